"""Rules blk_runs_csv and net_runs_csv: the tidy per-repetition CSV of an experiment."""

from pathlib import Path

from unikio import aggregate, job

sm = snakemake  # noqa: F821


def body(log):
    rows = [*sm.input.rows, *sm.input.get("guest_rows", [])]
    df = aggregate.collect_rows([Path(p) for p in rows], aggregate.COLUMNS[sm.params.experiment])
    df.to_csv(sm.output[0], index=False)
    log.write(f"{len(df)} rows\n")


job.run(sm, body)
