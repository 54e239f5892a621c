"""Rule overhead_table: the tender's per-read overhead against the KVM exit floor."""

import json
from pathlib import Path

import pandas as pd
from unikio import aggregate, job

sm = snakemake  # noqa: F821


def body(log):
    floor = json.loads(Path(sm.input.floor).read_text(encoding="utf-8"))
    table = aggregate.overhead_table(pd.read_csv(sm.input.runs, keep_default_na=False, na_values=[""]),
                                     sm.wildcards.arch, floor)
    caption = (f"Per-read cost on {sm.wildcards.arch} against the physical floor: the smallest KVM exit "
               "round trip measured on this machine (ns); overhead = total - pread per read.")
    aggregate.write_table(table, Path(sm.output.csv).with_suffix(""), caption)
    log.write(table.to_string() + "\n")


job.run(sm, body)
