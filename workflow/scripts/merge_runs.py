"""Checkpoint merged_runs: the artifacts read and checked; the merged provenance and runs (results/merging/)."""

from pathlib import Path

from unikio import job, merge

sm = snakemake  # noqa: F821


def body(log):
    record, runs = merge.read(list(sm.params.artifacts), dict(sm.params.labels), bool(sm.params.allow_mismatch))
    merge.write_record(record, Path(sm.output.provenance))
    for experiment, rows in runs.items():
        merge.write_runs(rows, Path(sm.output[experiment]))
    for host in record["hosts"]:
        marked = merge.mismatch_note(host["mismatch"])
        log.write(f"{host['column']}: {host['artifact']} (sha256 {host['sha256']}, pipeline "
                  f"{host['pipeline_version']}){'; ' + marked if marked else ''}\n")


job.run(sm, body)
