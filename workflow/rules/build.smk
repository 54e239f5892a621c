# Builds. Small ones may run beside each other (the QEMU builds take every
# core); none runs beside a measurement, which takes every core (WHOLE_MACHINE).


rule qemu_build:
    input:
        QEMU_SRC,
    output:
        directory(QEMU_INSTALL),
    log:
        f"{LOGS}/qemu_build.log",
    params:
        targets=config["qemu"]["targets"],
        configure_flags=list(qemubuild.CONFIGURE_FLAGS),
        # The cache key covers the rule's script but not modules it imports.
        recipe=aptsrc.sha256_file(Path(workflow.basedir) / "workflow/scripts/unikio/qemubuild.py"),
    threads: workflow.cores
    # Reused by every checkout on this machine (./snakemake passes --cache);
    # keyed by the patches, the source version and this rule's code.
    cache: "omit-software"
    script:
        "../scripts/build_qemu.py"


# Snakemake's cache stores files without execute permission; this cheap copy
# out of the cached build gives the binaries their mode back.
rule qemu_binaries:
    input:
        QEMU_INSTALL,
    output:
        directory(QEMU_BIN),
    log:
        f"{LOGS}/qemu_binaries.log",
    shell:
        "install -D -m 0755 -t {output} {input}/bin/* > {log} 2>&1"


rule native_bench:
    input:
        blk_bench="native/bench/blk_bench.c",
        icmp_bench="native/bench/icmp_bench.c",
        rtt_histogram=["native/bench/rtt_histogram.c", "native/bench/rtt_histogram.h"],
        makefile="native/bench/Makefile",
    output:
        blk_bench=NATIVE_BENCH,
        icmp_bench=NATIVE_ICMP,
    log:
        f"{LOGS}/native_bench_{{arch}}.log",
    params:
        outdir=lambda wc, output: Path(output.blk_bench).parent.resolve(),
    shell:
        "make -C native/bench ARCH={wildcards.arch} O={params.outdir} > {log} 2>&1"


rule solo5_builtin:
    input:
        sources=workflow_files("native/solo5/**/*", "native/tender/**/*", "native/spt/**/*", "native/unikernels/**/*"),
        makefile="native/Makefile",
    output:
        tender=f"{SOLO5_BUILTIN}/tender",
        floor=f"{SOLO5_BUILTIN}/kvm_exit_floor",
        blk_bench=f"{SOLO5_BUILTIN}/blk_bench.elf",
        ping_serve=f"{SOLO5_BUILTIN}/ping_serve.elf",
        spt_tender=f"{SOLO5_BUILTIN}/spt_tender",
        blk_bench_spt=f"{SOLO5_BUILTIN}/blk_bench.spt",
        ping_serve_spt=f"{SOLO5_BUILTIN}/ping_serve.spt",
    log:
        f"{LOGS}/solo5_builtin_{{arch}}.log",
    params:
        outdir=lambda wc, output: Path(output.tender).parent.resolve(),
    shell:
        "make -C native ARCH={wildcards.arch} O={params.outdir} > {log} 2>&1"


# The lwIP unikernel on our bindings (hvt and spt), in a build directory of its
# own so it never races solo5_builtin over the shared objects.
rule lwip_builtin:
    input:
        lwip=LWIP_SRC,
        sources=workflow_files("native/solo5/**/*", "native/spt/**/*", "native/lwip/**/*"),
        makefile="native/Makefile",
    output:
        hvt=f"{LWIP_BUILTIN}/lwip_serve.elf",
        spt=f"{LWIP_BUILTIN}/lwip_serve.spt",
    log:
        f"{LOGS}/lwip_builtin_{{arch}}.log",
    params:
        outdir=lambda wc, output: Path(output.hvt).parent.resolve(),
        lwip=lambda wc, input: Path(input.lwip).resolve(),
    shell:
        "make -C native ARCH={wildcards.arch} O={params.outdir} LWIP_SRC={params.lwip}"
        " {params.outdir}/lwip_serve.elf {params.outdir}/lwip_serve.spt > {log} 2>&1"


rule debian_package_tree:
    input:
        DEBIAN_DEB,
    output:
        directory(DEBIAN_TREE),
    log:
        f"{LOGS}/debian_package_tree_{{name}}_{{arch}}.log",
    shell:
        "dpkg-deb -x {input} {output} > {log} 2>&1"


rule guest_init:
    input:
        src="native/guest/init.c",
        makefile="native/guest/Makefile",
    output:
        f"{GUEST_BUILD}/init",
    log:
        f"{LOGS}/guest_init_{{arch}}.log",
    params:
        outdir=lambda wc, output: Path(output[0]).parent.resolve(),
    shell:
        "make -C native/guest ARCH={wildcards.arch} O={params.outdir} > {log} 2>&1"


rule guest_initramfs:
    input:
        kernel=DEBIAN_TREE.replace("{name}", "kernel"),
        busybox=DEBIAN_TREE.replace("{name}", "busybox"),
        init=f"{GUEST_BUILD}/init",
        blk_bench=NATIVE_BENCH,
    output:
        initramfs=f"{GUEST_BUILD}/initramfs.cpio.gz",
        modules=f"{GUEST_BUILD}/modules.txt",
    log:
        f"{LOGS}/guest_initramfs_{{arch}}.log",
    params:
        modules=list(initramfs.DEFAULT_MODULES),
    script:
        "../scripts/make_initramfs.py"


rule solo5_upstream:
    input:
        tree=SOLO5_UPSTREAM_SRC,
        patches=workflow_files("patches/solo5/*.patch"),
        apps=workflow_files("native/unikernels/*/*"),
        util=["native/solo5/util.c", "native/solo5/include/solo5_util.h"],
    output:
        tree=directory(f"{SOLO5_UPSTREAM}/tree"),
        blk_bench=f"{SOLO5_UPSTREAM}/blk_bench.hvt",
        ping_serve=f"{SOLO5_UPSTREAM}/ping_serve.hvt",
        blk_bench_spt=f"{SOLO5_UPSTREAM}/blk_bench.spt",
        ping_serve_spt=f"{SOLO5_UPSTREAM}/ping_serve.spt",
    log:
        f"{LOGS}/solo5_upstream_{{arch}}.log",
    script:
        "../scripts/build_solo5_upstream.py"


# The lwIP unikernel with upstream Solo5's toolchain: the same lwIP files and
# glue as lwip_builtin, on upstream's bindings.
rule lwip_upstream:
    input:
        tree=f"{SOLO5_UPSTREAM}/tree",
        lwip=LWIP_SRC,
        glue=workflow_files("native/lwip/**/*"),
        util=["native/solo5/util.c", "native/solo5/include/solo5_util.h"],
    output:
        hvt=f"{LWIP_UPSTREAM}/lwip_serve.hvt",
        spt=f"{LWIP_UPSTREAM}/lwip_serve.spt",
    log:
        f"{LOGS}/lwip_upstream_{{arch}}.log",
    script:
        "../scripts/build_lwip_upstream.py"


rule testbed_initramfs:
    input:
        kernel=DEBIAN_TREE.replace("{name}", "kernel"),
        busybox=DEBIAN_TREE.replace("{name}", "busybox"),
        init=f"{GUEST_BUILD}/init",
        native=[NATIVE_BENCH, NATIVE_ICMP],
        solo5=multiext(f"{SOLO5_BUILTIN}/", "tender", "kvm_exit_floor", "blk_bench.elf", "ping_serve.elf",
                       "spt_tender", "blk_bench.spt", "ping_serve.spt"),
        # The lwIP guests only where an lwIP row runs in the testbed.
        lwip=lambda wc: (multiext(f"{LWIP_BUILTIN.format(arch=wc.arch)}/", "lwip_serve.elf", "lwip_serve.spt")
                         if lwip_rows(wc.arch) else []),
    output:
        TESTBED_BASE,
    log:
        f"{LOGS}/testbed_initramfs_{{arch}}.log",
    wildcard_constraints:
        arch=EMULATED_ARCH_RE,
    script:
        "../scripts/make_testbed_initramfs.py"


# The arm64 build of our patched QEMU, for the Linux guest under KVM inside the
# emulated ARM host: static, from arm64 Debian packages unpacked into a sysroot
# (the machine's dpkg architectures stay as they are).


rule qemu_cross_sysroot:
    input:
        apt=APT_INDEX,
    output:
        sysroot=directory(f"{QEMU_CROSS}/sysroot"),
        lock=f"{QEMU_CROSS}/sysroot.lock.json",
    log:
        f"{LOGS}/qemu_cross_sysroot.log",
    script:
        "../scripts/make_qemu_sysroot.py"


rule qemu_cross_build:
    input:
        src=QEMU_SRC,
        sysroot=f"{QEMU_CROSS}/sysroot",
    output:
        directory(f"{QEMU_CROSS}/install"),
    log:
        f"{LOGS}/qemu_cross_build.log",
    params:
        configure_flags=list(qemubuild.CONFIGURE_FLAGS),
        recipe=aptsrc.sha256_file(Path(workflow.basedir) / "workflow/scripts/unikio/qemucross.py"),
    threads: workflow.cores
    cache: "omit-software"
    script:
        "../scripts/build_qemu_cross.py"


rule qemu_cross_binary:
    input:
        f"{QEMU_CROSS}/install",
    output:
        f"{QEMU_CROSS}/bin/qemu-system-aarch64",
    log:
        f"{LOGS}/qemu_cross_binary.log",
    shell:
        "install -D -m 0755 {input}/bin/qemu-system-aarch64 {output} > {log} 2>&1"


rule testbed_nested_initramfs:
    input:
        base=TESTBED_BASE,
        qemu=f"{QEMU_CROSS}/bin/qemu-system-aarch64",
        kernel=DEBIAN_TREE.replace("{name}", "kernel"),
        guest_initramfs=f"{GUEST_BUILD}/initramfs.cpio.gz",
    output:
        TESTBED_NESTED,
    log:
        f"{LOGS}/testbed_nested_initramfs_{{arch}}.log",
    wildcard_constraints:
        arch=EMULATED_ARCH_RE,
    script:
        "../scripts/make_testbed_nested.py"
