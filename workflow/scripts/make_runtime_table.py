"""Rule runtime_table: seconds per rule of this run, and the cost model fitted to it."""

import datetime
from pathlib import Path

import pandas as pd
from unikio import estimate, job

sm = snakemake  # noqa: F821


def body(log):
    results = Path("results")
    table = pd.DataFrame(estimate.runtime_table(estimate.job_times(results, sm.params.log_timed)))
    table.to_csv(sm.output.csv, index=False)
    Path(sm.output.md).write_text(table.to_markdown(index=False) + "\n", encoding="utf-8")
    model = estimate.fit(results, sm.params.log_timed)
    Path(sm.output.model).write_text(model.to_yaml(sm.params.machine, datetime.date.today().isoformat()),
                                     encoding="utf-8")
    log.write(f"{len(table)} rules, {table['total_s'].sum():.0f} s of jobs; model of {len(model.rows)} row kinds\n")


job.run(sm, body)
