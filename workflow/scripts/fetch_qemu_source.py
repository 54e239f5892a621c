"""Rule qemu_source: QEMU's source from Debian (apt) or a verified tarball."""

from pathlib import Path

from unikio import aptsrc, fetch, job

sm = snakemake  # noqa: F821


def body(log):
    dest = Path(sm.output.files)
    if sm.params.source == "debian":
        apt = aptsrc.PrivateApt(Path(sm.input.apt))
        files = apt.download_source("qemu", sm.params.version, dest, log, key="qemu.debian_version")
        record = {"source": "debian", "package": "qemu", "version": sm.params.version}
    else:
        name = sm.params.url.rstrip("/").rsplit("/", 1)[-1] or "qemu-source.tar"
        fetch.download_verified(sm.params.url, sm.params.sha256, dest / name)
        files = [dest / name]
        record = {"source": "tarball", "url": sm.params.url, "sha256": sm.params.sha256}
    aptsrc.write_lock(Path(sm.output.lock), record, files)
    log.write(Path(sm.output.lock).read_text())


job.run(sm, body)
