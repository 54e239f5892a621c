"""Configure and build only what the study needs of QEMU; keep just the binaries."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO

from . import procs
from .errors import PipelineError

# Only what the study needs, and the same on every machine: without
# --without-default-features configure enables whatever -dev packages happen
# to be installed. The dfsg source has no bundled meson, dtc or firmware:
# Debian's meson and libfdt are used, and ROMs come from Debian packages at
# run time (-L).
CONFIGURE_FLAGS = (
    "--without-default-features",
    "--enable-kvm",
    "--enable-fdt=system",
    "--meson=/usr/bin/meson",
    "--with-git-submodules=ignore",
    "--disable-install-blobs",
    "--disable-docs",
    "--disable-tools",
    "--disable-werror",
)

# configure runs the python3 it finds first; Debian's meson needs the system one
# (a venv or pyenv python earlier on PATH lacks meson's modules).
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def binaries(targets: list[str]) -> list[str]:
    """qemu-system-<arch> for each softmmu target."""
    return ["qemu-system-" + t.removesuffix("-softmmu") for t in targets]


def configure_argv(src: Path, targets: list[str], flags: list[str]) -> list[str]:
    return [str(src / "configure"), f"--target-list={','.join(targets)}", *flags]


def build(src: Path, install: Path, targets: list[str], flags: list[str], jobs: int, log: IO[str]) -> None:
    src = src.resolve()
    install.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=install.parent, prefix=".qemu-build-") as build_dir:
        for argv in (configure_argv(src, targets, flags), ["make", f"-j{jobs}", *binaries(targets)]):
            start = time.monotonic()
            log.write("$ " + " ".join(argv) + "\n")
            log.flush()
            # procs.run: a cancelled build stops its whole process group, compilers included.
            proc = procs.run(argv, timeout_s=None, cwd=build_dir, stdout=log, stderr=subprocess.STDOUT,
                             env={"LC_ALL": "C", "PATH": SYSTEM_PATH})
            log.write(f"# {argv[0]} took {time.monotonic() - start:.1f} s\n")
            if proc.returncode != 0:
                raise PipelineError(f"{Path(argv[0]).name} for QEMU failed with status {proc.returncode}")
        bindir = install / "bin"
        bindir.mkdir(exist_ok=True)
        for name in binaries(targets):
            shutil.copy2(Path(build_dir) / name, bindir / name)
