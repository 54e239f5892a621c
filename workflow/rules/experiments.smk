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
