"""Rule compare_table: this run's rows against a baseline's (results/tables/compare.{csv,md})."""

from pathlib import Path

from unikio import compare, job

sm = snakemake  # noqa: F821


def body(log):
    baseline = compare.read_baseline(sm.params.baseline)
    current = compare.read_current({"blk": sm.input.blk, "net": sm.input.net})
    table = compare.compare(baseline, current, sm.params.alpha, sm.params.min_effect_pct)
    compare.write_table(table, Path(sm.output.csv), Path(sm.output.md),
                        compare.caption(sm.params.baseline, sm.params.alpha, sm.params.min_effect_pct))
    log.write(f"baseline: {sm.params.baseline}\n" + table.to_string() + "\n")


job.run(sm, body)
