# The study on one self-contained page, verdicts first: ./snakemake --cores 4 report
# (unikio/report.py: claims, figures, tables, the A/B comparison when
# compare.baseline is set, the merged runs of several machines when
# merge.artifacts is set or results/merged/ exists, run conditions and provenance).

# The A/B section and its inputs only when a baseline run is named.
COMPARE_BASELINE = (config.get("compare") or {}).get("baseline") or ""
# The merged section: made first when merge.artifacts names artifacts; shown as it is when an earlier merge left
# results/merged/ (then no input, so a report without merge.artifacts never starts a merge).
MERGE_ARTIFACTS = (config.get("merge") or {}).get("artifacts") or []
MERGED_SHOWN = MERGED if MERGE_ARTIFACTS or Path(MERGED).is_dir() else ""


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
        merged=MERGED if MERGE_ARTIFACTS else [],
        captions=workflow_files("workflow/report/*.rst"),
    output:
        REPORT,
    log:
        f"{LOGS}/report.log",
    params:
        baseline=COMPARE_BASELINE,
        merged=MERGED_SHOWN,
    script:
        "../scripts/make_report.py"
