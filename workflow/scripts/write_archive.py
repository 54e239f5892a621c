"""Rule archive: results/artifact.tar.gz."""

from pathlib import Path

from unikio import archive, job

sm = snakemake  # noqa: F821


def body(log):
    included = archive.write(Path.cwd(), Path(sm.output[0]))
    log.write("included: " + ", ".join(included) + "\n")


job.run(sm, body)
