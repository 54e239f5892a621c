# Measurements, one at a time and alone: each takes every core (WHOLE_MACHINE),
# in the order of their priority (see MEASUREMENT ORDER in common.smk).
# Block rows on this host: one
# job per repetition, since QEMU reports its pread totals at exit. Network rows
# and rows in the emulated testbed: one job per (arch, platform), whose one boot
# serves every repetition and data size.


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
        measure_cpu=config["measure"]["cpu"],
    threads: WHOLE_MACHINE
    priority: rep_priority
    script:
        "../scripts/run_blk_host.py"


rule blk_solo5_run:
    input:
        unpack(unikernel_files("blk")),
    output:
        row=f"{BLK_UNIKERNEL_RAW}/row.json",
    log:
        f"{BLK_UNIKERNEL_RAW}/run.log",
    benchmark:
        f"{BLK_UNIKERNEL_RAW}/benchmark.tsv"
    wildcard_constraints:
        platform="|".join(matrix.UNIKERNEL_PLATFORMS["blk"]),
    params:
        reads=config["blk"]["reads"],
        block_size=config["blk"]["block_size"],
        timeout_s=config["blk"]["timeout_s"],
        mem_mb=config["solo5"]["mem_mb"],
        measure_cpu=config["measure"]["cpu"],
    threads: WHOLE_MACHINE
    priority: rep_priority
    script:
        "../scripts/run_blk_solo5.py"


rule kvm_exit_floor_run:
    input:
        floor=f"{SOLO5_BUILTIN}/kvm_exit_floor",
    output:
        FLOOR,
    wildcard_constraints:
        arch=HOST_ARCH,
    log:
        FLOOR.replace("floor.json", "run.log"),
    params:
        exits=config["solo5"]["floor_exits"],
        timeout_s=config["blk"]["timeout_s"],
        measure_cpu=config["measure"]["cpu"],
    threads: WHOLE_MACHINE
    script:
        "../scripts/run_exit_floor.py"


checkpoint kvm_probe:
    input:
        qemu=QEMU_BIN,
        kernel=DEBIAN_TREE.replace("{name}", "kernel"),
        initramfs=f"{GUEST_BUILD}/initramfs.cpio.gz",
    output:
        PROBE,
    log:
        PROBE.replace("verdict.json", "probe.log"),
    params:
        policy=config["accel"],
        timeout_s=config["guest"]["kvm_probe_timeout_s"],
    threads: WHOLE_MACHINE
    priority: PRIORITY_PROBE
    script:
        "../scripts/probe_kvm.py"


rule blk_qemu_run:
    input:
        qemu=QEMU_BIN,
        kernel=DEBIAN_TREE.replace("{name}", "kernel"),
        initramfs=f"{GUEST_BUILD}/initramfs.cpio.gz",
        probe=probe_verdict,
    output:
        row=f"{BLK_RAW}/row.json",
    log:
        f"{BLK_RAW}/run.log",
    benchmark:
        f"{BLK_RAW}/benchmark.tsv"
    wildcard_constraints:
        platform="qemu-linux-smp|qemu-linux-1core",
    params:
        counts=linux_guest_counts("blk", ["reads"]),
        block_size=config["blk"]["block_size"],
        memory_mb=config["guest"]["memory_mb"],
        timeout_s=config["guest"]["run_timeout_s"],
        measure_cpu=config["measure"]["cpu"],
    threads: WHOLE_MACHINE
    priority: rep_priority
    script:
        "../scripts/run_blk_qemu.py"


rule net_solo5_run:
    input:
        unpack(unikernel_files("net")),
        icmp_bench=NATIVE_ICMP.format(arch=HOST_ARCH),
    output:
        rows=f"{NET_UNIKERNEL_RAW}/rows.json",
    log:
        f"{NET_UNIKERNEL_RAW}/run.log",
    benchmark:
        f"{NET_UNIKERNEL_RAW}/benchmark.tsv"
    wildcard_constraints:
        platform="|".join(matrix.UNIKERNEL_PLATFORMS["net"]),
    params:
        sizes=config["net"]["sizes"],
        reps=config["net"]["repetitions"],
        packets=config["net"]["packets"],
        max_loss_pct=config["net"]["max_loss_pct"],
        mem_mb=config["solo5"]["mem_mb"],
        measure_cpu=config["measure"]["cpu"],
    threads: WHOLE_MACHINE
    script:
        "../scripts/run_net_solo5.py"


rule net_qemu_run:
    input:
        qemu=QEMU_BIN,
        kernel=DEBIAN_TREE.replace("{name}", "kernel"),
        initramfs=f"{GUEST_BUILD}/initramfs.cpio.gz",
        probe=probe_verdict,
        icmp_bench=NATIVE_ICMP.format(arch=HOST_ARCH),
    output:
        rows=f"{NET_RAW}/rows.json".replace("{platform}", "qemu-linux"),
    log:
        f"{NET_RAW}/run.log".replace("{platform}", "qemu-linux"),
    benchmark:
        f"{NET_RAW}/benchmark.tsv".replace("{platform}", "qemu-linux")
    params:
        sizes=config["net"]["sizes"],
        counts=linux_guest_counts("net", ["packets", "repetitions"]),
        max_loss_pct=config["net"]["max_loss_pct"],
        memory_mb=config["guest"]["memory_mb"],
        timeout_s=config["guest"]["run_timeout_s"],
        measure_cpu=config["measure"]["cpu"],
    threads: WHOLE_MACHINE
    script:
        "../scripts/run_net_qemu.py"


# The emulated aarch64 host: one boot runs every repetition (and data size) of
# a row, since a testbed boot costs seconds and the rows share nothing.


rule testbed_run:
    input:
        qemu=QEMU_BIN,
        kernel=DEBIAN_TREE.replace("{name}", "kernel"),
        base=testbed_image,
    output:
        rows="results/raw/{experiment}/{arch}/{platform}/testbed/rows.json",
    log:
        "results/raw/{experiment}/{arch}/{platform}/testbed/run.log",
    benchmark:
        "results/raw/{experiment}/{arch}/{platform}/testbed/benchmark.tsv"
    wildcard_constraints:
        experiment="blk|net",
        arch=EMULATED_ARCH_RE,
        platform="|".join(sorted(matrix.TESTBED_PLATFORMS)),
    params:
        # Only this row's experiment, with the emulated counts: a blk change must not rerun the net boot.
        settings=lambda wc: counts.settings(config, wc.experiment, emulated=True),
        testbed=TESTBED_SETTINGS,
        mem_mb=config["solo5"]["mem_mb"],
        guest_memory_mb=config["guest"]["memory_mb"],
    threads: WHOLE_MACHINE
    script:
        "../scripts/run_testbed.py"


rule testbed_exit_floor_run:
    input:
        qemu=QEMU_BIN,
        kernel=DEBIAN_TREE.replace("{name}", "kernel"),
        base=TESTBED_BASE,
    output:
        FLOOR,
    log:
        FLOOR.replace("floor.json", "run.log"),
    wildcard_constraints:
        arch=EMULATED_ARCH_RE,
    params:
        exits=config["solo5"]["floor_exits"],
        testbed=TESTBED_SETTINGS,
    threads: WHOLE_MACHINE
    script:
        "../scripts/run_testbed.py"
