"""Rule lwip_source: Debian's lwIP source, verified, unpacked, anchor-checked and locked."""

from pathlib import Path

from unikio import job, lwipsrc

sm = snakemake  # noqa: F821


def body(log):
    lwipsrc.fetch(Path(sm.input.apt), sm.params.version, Path(sm.output.tree), Path(sm.output.lock), log)
    log.write(Path(sm.output.lock).read_text())


job.run(sm, body)
