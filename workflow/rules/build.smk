# Builds. Every build takes the quiet_machine resource so none runs beside a
# measurement.


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
    resources:
        quiet_machine=1,
    # Reused by every checkout on this machine (./snakemake passes --cache);
    # keyed by the patches, the source version and this rule's code.
    cache: "omit-software"
    script:
        "../scripts/build_qemu.py"


rule native_bench:
    input:
        src="native/bench/blk_bench.c",
        makefile="native/bench/Makefile",
    output:
        NATIVE_BENCH,
    log:
        f"{LOGS}/native_bench_{{arch}}.log",
    params:
        outdir=lambda wc, output: Path(output[0]).parent.resolve(),
    resources:
        quiet_machine=1,
    shell:
        "make -C native/bench ARCH={wildcards.arch} O={params.outdir} > {log} 2>&1"


rule solo5_builtin:
    input:
        sources=sorted(
            str(p.relative_to(workflow.basedir))
            for d in ("solo5", "tender", "unikernels")
            for p in (Path(workflow.basedir) / "native" / d).rglob("*")
            if p.is_file()
        ),
        makefile="native/Makefile",
    output:
        tender=f"{SOLO5_BUILTIN}/tender",
        floor=f"{SOLO5_BUILTIN}/kvm_exit_floor",
        blk_bench=f"{SOLO5_BUILTIN}/blk_bench.elf",
        ping_serve=f"{SOLO5_BUILTIN}/ping_serve.elf",
    log:
        f"{LOGS}/solo5_builtin_{{arch}}.log",
    params:
        outdir=lambda wc, output: Path(output.tender).parent.resolve(),
    resources:
        quiet_machine=1,
    shell:
        "make -C native ARCH={wildcards.arch} O={params.outdir} > {log} 2>&1"
