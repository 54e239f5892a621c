"""Rule blk_table: the study's Table 5.4-5.6 shape for one arch."""

from pathlib import Path

import pandas as pd
from unikio import aggregate, job

sm = snakemake  # noqa: F821


def body(log):
    table = aggregate.blk_table(pd.read_csv(sm.input.runs, keep_default_na=False, na_values=[""]),
                                pd.read_csv(sm.input.reference), sm.wildcards.arch,
                                list(sm.params.platforms), dict(sm.params.skipped))
    caption = (f"Block reads on {sm.wildcards.arch}: mean of repetitions, ms (sd = spread); "
               "us_per_read and ratio_<host> compare per read with the original study.")
    aggregate.write_table(table, Path(sm.output.csv).with_suffix(""), caption)
    log.write(table.to_string() + "\n")


job.run(sm, body)
