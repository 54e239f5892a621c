"""Rule apt_index: a private apt state from the system's Debian sources."""

from pathlib import Path

from unikio import aptsrc, job


def body(log):
    apt = aptsrc.PrivateApt(Path(snakemake.output[0]))  # noqa: F821
    sources = aptsrc.derive_sources(aptsrc.read_system_sources(), aptsrc.os_codename())
    log.write(sources + "\n")
    apt.create(sources)
    apt.update(log)


job.run(snakemake, body)  # noqa: F821
