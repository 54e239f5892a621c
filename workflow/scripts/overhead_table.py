"""Rule overhead_table: the tender's per-read overhead against the KVM exit floor."""

import json
from pathlib import Path

import pandas as pd
from unikio import aggregate, job

sm = snakemake  # noqa: F821


def body(log):
    floor = json.loads(Path(sm.input.floor).read_text(encoding="utf-8"))
    runs = pd.read_csv(sm.input.runs, keep_default_na=False, na_values=[""])
    table = aggregate.overhead_table(runs, sm.wildcards.arch, floor)
    aggregate.write_table(table, Path(sm.output.csv).with_suffix(""),
                          aggregate.caption("overhead", runs, sm.wildcards.arch))
    log.write(table.to_string() + "\n")


job.run(sm, body)
