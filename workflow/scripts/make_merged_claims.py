"""Rule merged_claims_table: the study's claims on each merged run."""

import json
from pathlib import Path

from unikio import claims, job, merge

sm = snakemake  # noqa: F821


def body(log):
    record = json.loads(Path(sm.input.provenance).read_text(encoding="utf-8"))
    runs = {e: merge.read_runs(Path(sm.input[e])) for e in claims.EXPERIMENTS}
    table = merge.claims_table(record, runs, claims.load(Path(sm.input.claims)))
    merge.write_claims(table, Path(sm.output.csv).with_suffix(""))
    log.write(table[["host", "claim_id", "arch", "testbed", "verdict"]].to_string() + "\n")


job.run(sm, body)
