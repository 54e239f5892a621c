# The study on one self-contained page, verdicts first: ./snakemake --cores 4 report
# (unikio/report.py: claims, figures, tables, the A/B comparison when
# compare.baseline is set, run conditions and provenance).

# The A/B section and its inputs only when a baseline run is named.
COMPARE_BASELINE = (config.get("compare") or {}).get("baseline") or ""


rule report:
    input:
        claims=CLAIMS_TABLE.replace("{ext}", "csv"),
        figures=expand(BLK_FIGURE, arch=config["archs"], ext="png")
        + expand(NET_FIGURE, arch=net_archs(), ext="png"),
        tables=expand(BLK_TABLE, arch=config["archs"], ext="csv")
        + expand(NET_TABLE, arch=net_archs(), ext="csv")
        + expand(OVERHEAD_TABLE, arch=runnable_archs("blk", "solo5-hvt"), ext="csv"),
        provenance=PROVENANCE,
        compare=[COMPARE_TABLE.replace("{ext}", "csv"), COMPARE_FIGURE] if COMPARE_BASELINE else [],
        captions=workflow_files("workflow/report/*.rst"),
    output:
        REPORT,
    log:
        f"{LOGS}/report.log",
    params:
        baseline=COMPARE_BASELINE,
    script:
        "../scripts/make_report.py"
