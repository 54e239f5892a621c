"""Rule qemu_cross_sysroot: arm64 headers and libraries for cross-building QEMU, from Debian packages."""

import tempfile
from pathlib import Path

from unikio import aptsrc, job, qemucross

sm = snakemake  # noqa: F821


def body(log):
    apt = aptsrc.PrivateApt(Path(sm.input.apt))
    packages = qemucross.resolve_packages(apt, log)
    with tempfile.TemporaryDirectory(dir=Path(sm.output.sysroot).parent, prefix=".debs-") as debs:
        files = qemucross.build_sysroot(apt, packages, Path(sm.output.sysroot), Path(debs), log)
        aptsrc.write_lock(Path(sm.output.lock), {"arch": qemucross.DEB_ARCH, "packages": packages}, files)


job.run(sm, body)
