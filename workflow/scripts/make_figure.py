"""Rules blk_figure and net_figure: the study's figure shape for one experiment and arch."""

from pathlib import Path

import pandas as pd
from unikio import aggregate, job

sm = snakemake  # noqa: F821


def body(log):
    table = pd.read_csv(sm.input.table, keep_default_na=False, na_values=[""])
    aggregate.FIGURES[sm.params.experiment](table, pd.read_csv(sm.input.reference), sm.wildcards.arch,
                                            Path(sm.output.png).with_suffix(""))
    log.write(f"wrote {sm.output.png} and {sm.output.pdf}\n")


job.run(sm, body)
