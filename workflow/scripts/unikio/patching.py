"""Unpack fetched sources and apply our zero-context, add-only patches."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import IO

from . import procs
from .errors import PipelineError


def _run(argv: list[str], log: IO[str], what: str, cwd: Path | None = None) -> None:
    log.write("$ " + " ".join(argv) + "\n")
    log.flush()
    proc = procs.run(argv, timeout_s=None, cwd=cwd, stderr=subprocess.STDOUT)
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


_ANCHOR = re.compile(r"^anchor (?P<path>\S+):(?P<line>\d+):(?: (?P<text>.*))?$")
_HUNK = re.compile(r"^@@ -(?P<line>\d+)(?:,(?P<count>\d+))? \+\d+(?:,\d+)? @@")


def anchors(patch: Path) -> dict[tuple[str, int], str]:
    """The `anchor <file>:<line>: <exact text>` lines of a patch's description.

    Zero-context hunks carry no text that `patch` could compare, so each patch
    names, for every hunk, the source lines around its insertion point.
    """
    found = {}
    for line in patch.read_text(encoding="utf-8").splitlines():
        if line.startswith("--- "):
            break
        m = _ANCHOR.match(line)
        if m:
            found[(m["path"], int(m["line"]))] = (m["text"] or "").rstrip()
    return found


def insertion_points(patch: Path) -> list[tuple[str, int]]:
    """(file, line after which the hunk inserts) of every hunk."""
    points = []
    path = ""
    for line in patch.read_text(encoding="utf-8").splitlines():
        if line.startswith("+++ "):
            path = line[4:].split("\t")[0].split("/", 1)[1]
        m = _HUNK.match(line)
        if m:
            points.append((path, int(m["line"])))
    return points


def check_anchors(src: Path, patch: Path, misfit_hint: str) -> None:
    """Refuse a source tree that differs around any of the patch's insertion points.

    Every hunk must be pinned by anchors on the line it inserts after and the
    line that follows; misfit_hint says, naming the config key, what to do.
    """
    pinned = anchors(patch)
    for path, line in insertion_points(patch):
        lines = (src / path).read_text(encoding="utf-8", errors="replace").splitlines() if (src / path).is_file() \
            else None
        if lines is None:
            raise PipelineError(f"{patch.name} patches {path}, which the fetched source lacks; {misfit_hint}")
        for n in (line, line + 1):
            if n < 1 or (n > len(lines) and (path, n) not in pinned):
                continue  # nothing before the first line, nothing after the last
            if (path, n) not in pinned:
                raise PipelineError(f"{patch} has no anchor line for {path}:{n}, next to its hunk after line {line}; "
                                    f"add 'anchor {path}:{n}: <the line>' to its description")
            found = lines[n - 1].rstrip() if n <= len(lines) else "(end of file)"
            if found != pinned[(path, n)]:
                raise PipelineError(f"{patch.name} does not fit the fetched source: {path}:{n} is {found!r}, the patch "
                                    f"expects {pinned[(path, n)]!r}; {misfit_hint}")


def apply(src: Path, patches: list[Path], log: IO[str], misfit_hint: str) -> None:
    """Apply the patches in name order, each checked first (add-only, zero-context, anchors) on the tree so far."""
    for patch in sorted(patches):
        check_add_only(patch)
        check_anchors(src, patch, misfit_hint)
        try:
            _run(["patch", "-p1", "--forward", "--batch", "--unified", "-d", str(src), "-i", str(patch.resolve())],
                 log, f"patch {patch.name}")
        except PipelineError:
            raise PipelineError(
                f"{patch} does not apply to the fetched source; the patch output is in the log"
            ) from None
