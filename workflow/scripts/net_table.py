"""Rule net_table: the study's Table 5.1-5.3 shape for one arch."""

from pathlib import Path

import pandas as pd
from unikio import aggregate, job

sm = snakemake  # noqa: F821


def body(log):
    table = aggregate.net_table(pd.read_csv(sm.input.runs, keep_default_na=False, na_values=[""]),
                                pd.read_csv(sm.input.reference), sm.wildcards.arch,
                                list(sm.params.platforms), dict(sm.params.skipped))
    caption = (f"ICMP echo round trips on {sm.wildcards.arch}: packets per second, mean over repetitions "
               "(pps_sd = spread), per platform and data size, beside the original study.")
    aggregate.write_table(table, Path(sm.output.csv).with_suffix(""), caption)
    log.write(table.to_string() + "\n")


job.run(sm, body)
