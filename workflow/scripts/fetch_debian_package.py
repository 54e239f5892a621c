"""Rule debian_package: one binary .deb of any arch through the private apt state."""

from pathlib import Path

from unikio import aptsrc, job

sm = snakemake  # noqa: F821


def body(log):
    apt = aptsrc.PrivateApt(Path(sm.input.apt))
    out = Path(sm.output.deb)
    deb = apt.download_binary(sm.params.package, sm.params.version, sm.params.debian_arch, out.parent, log,
                              key=sm.params.key)
    deb.replace(out)
    aptsrc.write_lock(Path(sm.output.lock), {"package": f"{sm.params.package}:{sm.params.debian_arch}",
                                             "version": sm.params.version, "file": deb.name}, [out])


job.run(sm, body)
