"""Configure and build only what the study needs of QEMU; keep just the binaries."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO

from . import procs, progress
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


def run_step(what: str, argv: list[str], *, product: str, cwd: Path | str, env: dict[str, str],
             log: IO[str]) -> float:
    """One step of a QEMU build (configure, make) with its output in log; its seconds.

    make's ninja steps ([N/M]) become progress lines with an ETA (unikio.progress).
    """
    start = time.monotonic()
    log.write("$ " + shlex.join(argv) + "\n")
    log.flush()
    report = progress.Progress(f"{product} build", runs=1, per_run=1, unit="steps", log=None)
    report.phase(what)
    watch = progress.build_watch(report, log.name)
    # procs.run: a cancelled build stops its whole process group, compilers included.
    proc = procs.run(argv, timeout_s=None, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=env,
                     watch=watch)
    took = time.monotonic() - start
    log.write(f"# {what} took {took:.1f} s\n")
    if proc.returncode != 0:
        raise PipelineError(f"{what} for {product} failed with status {proc.returncode}")
    return took


def build(src: Path, install: Path, targets: list[str], flags: list[str], jobs: int, log: IO[str]) -> None:
    src = src.resolve()
    install.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=install.parent, prefix=".qemu-build-") as build_dir:
        for what, argv in (("configure", configure_argv(src, targets, flags)),
                           ("make", ["make", f"-j{jobs}", *binaries(targets)])):
            run_step(what, argv, product="QEMU", cwd=build_dir, env={"LC_ALL": "C", "PATH": SYSTEM_PATH}, log=log)
        bindir = install / "bin"
        bindir.mkdir(exist_ok=True)
        for name in binaries(targets):
            shutil.copy2(Path(build_dir) / name, bindir / name)
