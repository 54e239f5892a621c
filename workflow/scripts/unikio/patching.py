"""Unpack fetched sources and apply our zero-context, add-only patches."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import IO

from .errors import PipelineError


def _run(argv: list[str], log: IO[str], what: str, cwd: Path | None = None) -> None:
    log.write("$ " + " ".join(argv) + "\n")
    log.flush()
    proc = subprocess.run(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    log.write(proc.stdout)
    if proc.returncode != 0:
        raise PipelineError(f"{what} failed with status {proc.returncode}")


def unpack(files_dir: Path, dest: Path, log: IO[str]) -> None:
    """Debian source (.dsc, with Debian's own patches applied) or one release tarball."""
    if dest.exists():
        shutil.rmtree(dest)
    dsc = sorted(files_dir.glob("*.dsc"))
    if dsc:
        _run(["dpkg-source", "--no-copy", "-x", str(dsc[0]), str(dest)], log, "dpkg-source -x")
        return
    tarballs = sorted(p for p in files_dir.iterdir() if ".tar" in p.name)
    if len(tarballs) != 1:
        raise PipelineError(f"expected one .dsc or one tarball in {files_dir}, found {len(tarballs)}")
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        _run(["tar", "-xf", str(tarballs[0]), "-C", tmp], log, f"tar -xf {tarballs[0].name}")
        tops = list(Path(tmp).iterdir())
        if len(tops) != 1 or not tops[0].is_dir():
            raise PipelineError(f"{tarballs[0].name} does not unpack to one top directory")
        tops[0].rename(dest)


def check_add_only(patch: Path) -> None:
    """Our patches only add lines, so the repository holds only our lines."""
    in_hunk = False
    for n, line in enumerate(patch.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("@@"):
            in_hunk = True
        elif line.startswith(("--- ", "diff ")):
            in_hunk = False
        elif in_hunk and line.startswith("-"):
            raise PipelineError(f"{patch}:{n} removes a line; our patches must only add lines")
        elif in_hunk and line.startswith(" "):
            raise PipelineError(f"{patch}:{n} has a context line; our patches are zero-context")


def apply(src: Path, patches: list[Path], log: IO[str]) -> None:
    for patch in sorted(patches):
        check_add_only(patch)
        try:
            _run(["patch", "-p1", "--forward", "--batch", "--unified", "-d", str(src), "-i", str(patch.resolve())],
                 log, f"patch {patch.name}")
        except PipelineError:
            raise PipelineError(
                f"{patch} does not apply to the fetched source; the patch output is in the log"
            ) from None
