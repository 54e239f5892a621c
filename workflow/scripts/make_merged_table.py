"""Rule merged_table: one experiment and arch, every merged run side by side with the original study."""

import json
from pathlib import Path

import pandas as pd
from unikio import job, merge

sm = snakemake  # noqa: F821


def body(log):
    experiment, arch = sm.wildcards.experiment, sm.wildcards.arch
    record = json.loads(Path(sm.input.provenance).read_text(encoding="utf-8"))
    table = merge.merged_table(record, merge.read_runs(Path(sm.input.runs)), pd.read_csv(sm.input.reference),
                               experiment, arch)
    merge.write_table(table, Path(sm.output.csv).with_suffix(""), merge.caption(record, experiment, arch))
    log.write(table.to_string() + "\n")


job.run(sm, body)
