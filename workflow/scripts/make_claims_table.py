"""Rule claims_table: the study's claims checked on our runs (unikio.claims)."""

from pathlib import Path

import pandas as pd
from unikio import claims, job

sm = snakemake  # noqa: F821


def body(log):
    runs = {e: pd.read_csv(sm.input[e], keep_default_na=False, na_values=[""]) for e in claims.EXPERIMENTS}
    table = claims.table(claims.load(Path(sm.input.claims)), runs)
    claims.write(table, Path(sm.output.csv).with_suffix(""))
    log.write(claims.readable(table).to_string() + "\n")


job.run(sm, body)
