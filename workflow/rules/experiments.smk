# Measurements: one job per (arch, platform, repetition), one at a time.


rule blk_host_run:
    input:
        bench=NATIVE_BENCH,
    output:
        row=f"{BLK_RAW}/row.json".replace("{platform}", "host"),
    log:
        f"{BLK_RAW}/run.log".replace("{platform}", "host"),
    benchmark:
        f"{BLK_RAW}/benchmark.tsv".replace("{platform}", "host")
    params:
        reads=config["blk"]["reads"],
        block_size=config["blk"]["block_size"],
        timeout_s=config["blk"]["timeout_s"],
    resources:
        quiet_machine=1,
    script:
        "../scripts/run_blk_host.py"


rule blk_solo5_run:
    input:
        tender=f"{SOLO5_BUILTIN}/tender",
        guest=f"{SOLO5_BUILTIN}/blk_bench.elf",
    output:
        row=f"{BLK_RAW}/row.json".replace("{platform}", "solo5-hvt"),
    log:
        f"{BLK_RAW}/run.log".replace("{platform}", "solo5-hvt"),
    benchmark:
        f"{BLK_RAW}/benchmark.tsv".replace("{platform}", "solo5-hvt")
    params:
        reads=config["blk"]["reads"],
        block_size=config["blk"]["block_size"],
        timeout_s=config["blk"]["timeout_s"],
        mem_mb=config["solo5"]["mem_mb"],
        provider=config["solo5"]["provider"],
    resources:
        quiet_machine=1,
    script:
        "../scripts/run_blk_solo5.py"


rule kvm_exit_floor_run:
    input:
        floor=f"{SOLO5_BUILTIN}/kvm_exit_floor",
    output:
        FLOOR,
    log:
        FLOOR.replace("floor.json", "run.log"),
    params:
        exits=config["solo5"]["floor_exits"],
        timeout_s=config["blk"]["timeout_s"],
    resources:
        quiet_machine=1,
    script:
        "../scripts/run_exit_floor.py"
