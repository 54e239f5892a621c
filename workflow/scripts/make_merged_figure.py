"""Rule merged_figure: one experiment and arch, a panel per merged run beside the original hosts."""

import json
from pathlib import Path

import pandas as pd
from unikio import job, merge

sm = snakemake  # noqa: F821


def body(log):
    record = json.loads(Path(sm.input.provenance).read_text(encoding="utf-8"))
    merge.figure(record, merge.read_runs(Path(sm.input.table)), pd.read_csv(sm.input.reference),
                 sm.wildcards.experiment, sm.wildcards.arch, Path(sm.output.png).with_suffix(""))
    log.write(f"wrote {sm.output.png} and {sm.output.pdf}\n")


job.run(sm, body)
