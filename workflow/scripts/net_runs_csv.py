"""Rule net_runs_csv: the tidy per-repetition CSV of the network experiment."""

from pathlib import Path

from unikio import aggregate, job, net

sm = snakemake  # noqa: F821


def body(log):
    df = aggregate.collect_rows([Path(p) for p in sm.input.rows], net.NET_COLUMNS)
    df.to_csv(sm.output[0], index=False)
    log.write(f"{len(df)} rows\n")


job.run(sm, body)
