"""Rule merged_hosts_table: who measured each merged run, from which artifact."""

import json
from pathlib import Path

from unikio import job, merge

sm = snakemake  # noqa: F821


def body(log):
    table = merge.hosts_table(json.loads(Path(sm.input.provenance).read_text(encoding="utf-8")))
    merge.write_hosts(table, Path(sm.output.csv), Path(sm.output.md))
    log.write(table.to_string() + "\n")


job.run(sm, body)
