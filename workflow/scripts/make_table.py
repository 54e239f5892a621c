"""Rules blk_table and net_table: the study's table shape for one experiment and arch."""

import os
from pathlib import Path

import pandas as pd
from unikio import aggregate, job

sm = snakemake  # noqa: F821


def body(log):
    experiment, arch = sm.params.experiment, sm.wildcards.arch
    runs = pd.read_csv(sm.input.runs, keep_default_na=False, na_values=[""])
    # The rows were measured on this machine (testbed rows: their load is this host's too).
    busy = aggregate.Busy(sm.params.busy_load_per_core, os.cpu_count() or 1)
    table = aggregate.TABLES[experiment](runs, pd.read_csv(sm.input.reference), arch, list(sm.params.platforms),
                                         dict(sm.params.skipped), busy)
    aggregate.write_table(table, Path(sm.output.csv).with_suffix(""), aggregate.caption(experiment, runs, arch))
    log.write(table.to_string() + "\n")


job.run(sm, body)
