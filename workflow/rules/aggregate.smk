# Tidy data, the study's tables and figures, provenance.


rule blk_runs_csv:
    input:
        rows=blk_row_paths(guest_rows=False),
        guest_rows=lambda wc: blk_row_paths(guest_rows=True),
    output:
        BLK_RUNS,
    log:
        f"{LOGS}/blk_runs_csv.log",
    params:
        experiment="blk",
    script:
        "../scripts/collect_runs.py"


rule blk_table:
    input:
        runs=BLK_RUNS,
        reference="config/reference/paper_blk_ms.csv",
    output:
        csv=report(
            BLK_TABLE.replace("{ext}", "csv"),
            caption="../report/blk_table.rst",
            category="Block reads",
        ),
        md=BLK_TABLE.replace("{ext}", "md"),
        tex=BLK_TABLE.replace("{ext}", "tex"),
    log:
        f"{LOGS}/blk_table_{{arch}}.log",
    params:
        experiment="blk",
        platforms=config["blk"]["platforms"],
        skipped=lambda wc: skipped_reasons("blk", wc.arch),
        busy_load_per_core=config["conditions"]["busy_load_per_core"],
    script:
        "../scripts/make_table.py"


rule blk_figure:
    input:
        table=BLK_TABLE.replace("{ext}", "csv"),
        reference="config/reference/paper_blk_ms.csv",
    output:
        png=report(
            BLK_FIGURE.replace("{ext}", "png"),
            caption="../report/blk_figure.rst",
            category="Block reads",
        ),
        pdf=BLK_FIGURE.replace("{ext}", "pdf"),
    log:
        f"{LOGS}/blk_figure_{{arch}}.log",
    params:
        experiment="blk",
    script:
        "../scripts/make_figure.py"


rule claims_table:
    input:
        blk=BLK_RUNS,
        net=NET_RUNS,
        claims="config/reference/claims.yaml",
    output:
        csv=report(
            CLAIMS_TABLE.replace("{ext}", "csv"),
            caption="../report/claims_table.rst",
            category="Claims",
        ),
        md=CLAIMS_TABLE.replace("{ext}", "md"),
        tex=CLAIMS_TABLE.replace("{ext}", "tex"),
    log:
        f"{LOGS}/claims_table.log",
    script:
        "../scripts/make_claims_table.py"


rule provenance:
    input:
        locks=[QEMU_LOCK]
        + expand(
            DEBIAN_DEB.replace("package.deb", "lock.json"),
            name=["kernel", "busybox"],
            arch=linux_guest_archs(),
        )
        + unikernel_source_locks(),
        probes=expand(PROBE, arch=linux_guest_archs()),
        qemu=QEMU_BIN,
    output:
        PROVENANCE,
    log:
        f"{LOGS}/provenance.log",
    params:
        config=config,
        # As decided at start-up: what ran, and why the rest did not.
        plan=[dataclasses.asdict(c) for c in PLAN],
        # Reruns on every commit: provenance names the pipeline that wrote it.
        pipeline=version.label(PIPELINE),
    script:
        "../scripts/write_provenance.py"


rule overhead_table:
    input:
        runs=BLK_RUNS,
        floor=FLOOR,
    output:
        csv=OVERHEAD_TABLE.replace("{ext}", "csv"),
        md=OVERHEAD_TABLE.replace("{ext}", "md"),
        tex=OVERHEAD_TABLE.replace("{ext}", "tex"),
    log:
        f"{LOGS}/overhead_table_{{arch}}.log",
    script:
        "../scripts/overhead_table.py"


rule net_runs_csv:
    input:
        rows=net_row_paths(),
    output:
        NET_RUNS,
    log:
        f"{LOGS}/net_runs_csv.log",
    params:
        experiment="net",
    script:
        "../scripts/collect_runs.py"


rule net_table:
    input:
        runs=NET_RUNS,
        reference="config/reference/paper_net_pps.csv",
    output:
        csv=report(
            NET_TABLE.replace("{ext}", "csv"),
            caption="../report/net_table.rst",
            category="Network round trips",
        ),
        md=NET_TABLE.replace("{ext}", "md"),
        tex=NET_TABLE.replace("{ext}", "tex"),
    log:
        f"{LOGS}/net_table_{{arch}}.log",
    params:
        experiment="net",
        platforms=config["net"]["platforms"],
        skipped=lambda wc: skipped_reasons("net", wc.arch),
        busy_load_per_core=config["conditions"]["busy_load_per_core"],
    script:
        "../scripts/make_table.py"


rule net_figure:
    input:
        table=NET_TABLE.replace("{ext}", "csv"),
        reference="config/reference/paper_net_pps.csv",
    output:
        png=report(
            NET_FIGURE.replace("{ext}", "png"),
            caption="../report/net_figure.rst",
            category="Network round trips",
        ),
        pdf=NET_FIGURE.replace("{ext}", "pdf"),
    log:
        f"{LOGS}/net_figure_{{arch}}.log",
    params:
        experiment="net",
    script:
        "../scripts/make_figure.py"
