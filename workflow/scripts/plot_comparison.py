"""Rule compare_figure: the comparison table as a figure (results/figures/compare.png)."""

from pathlib import Path

import pandas as pd
from unikio import compare, job

sm = snakemake  # noqa: F821


def body(log):
    table = pd.read_csv(sm.input.table, keep_default_na=False, na_values=[""])
    compare.figure(table, Path(sm.output.png), sm.params.min_effect_pct, sm.params.baseline)
    log.write(f"wrote {sm.output.png}\n")


job.run(sm, body)
