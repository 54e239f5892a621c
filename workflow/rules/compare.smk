# A/B: this run's rows against a baseline's, named by compare.baseline (an
# artifact.tar.gz made by `archive`, or a results or project directory):
#   ./snakemake --cores 4 compare --config 'compare={"baseline": "old/artifact.tar.gz"}'
# Not part of `all`.
from unikio import compare as unikio_compare  # noqa: E402


rule compare_table:
    input:
        # An input, so a new baseline at the same path reruns the comparison; unset or missing: one sentence.
        baseline=lambda wc: unikio_compare.baseline_input(config["compare"]["baseline"]),
        blk=BLK_RUNS,
        net=NET_RUNS,
    output:
        csv=COMPARE_TABLE.replace("{ext}", "csv"),
        md=COMPARE_TABLE.replace("{ext}", "md"),
    log:
        f"{LOGS}/compare_table.log",
    params:
        baseline=config["compare"]["baseline"],
        alpha=config["compare"]["alpha"],
        min_effect_pct=config["compare"]["min_effect_pct"],
    script:
        "../scripts/make_comparison.py"


rule compare_figure:
    input:
        table=rules.compare_table.output.csv,
    output:
        png=COMPARE_FIGURE,
    log:
        f"{LOGS}/compare_figure.log",
    params:
        baseline=config["compare"]["baseline"],
        min_effect_pct=config["compare"]["min_effect_pct"],
    script:
        "../scripts/plot_comparison.py"


rule compare:
    input:
        rules.compare_table.output,
        rules.compare_figure.output,
