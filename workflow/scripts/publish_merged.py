"""Rule merged_results: results/merged/, published whole from the parts in results/merging/."""

from pathlib import Path

from unikio import job, merge

sm = snakemake  # noqa: F821


def body(log):
    parts = [Path(p) for p in sm.input]
    merge.publish(parts, Path(sm.params.staging), Path(sm.output[0]))
    log.write(f"published {len(parts)} files as {sm.output[0]}\n")


job.run(sm, body)
