"""Which pipeline produced a result: the git commit of this checkout, and whether it was modified.

Outside git (an unpacked artifact) the checkout's VERSION.json, written into
every artifact, names the commit it came from.
"""

from __future__ import annotations

import functools
import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
VERSION_FILE = "VERSION.json"
# Untracked files here change what runs; elsewhere (results/, notes) they do not.
WATCHED = ("workflow", "native", "patches", "config")


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=False, timeout=60)


def describe(repo: Path = REPO) -> dict[str, Any]:
    """{commit, dirty, diff_sha256, untracked, source} of the checkout at repo.

    dirty: tracked files differ from the commit, or files git does not know
    lie under workflow/, native/, patches/ or config/; diff_sha256 is the
    sha256 of `git diff HEAD` (binary; empty when only untracked files make
    the tree dirty), untracked lists those files.
    """
    head = _git(repo, "rev-parse", "--verify", "HEAD")
    inside = _git(repo, "rev-parse", "--show-toplevel")
    if head.returncode == 0 and Path(inside.stdout.decode().strip()).resolve() == repo.resolve():
        diff = _git(repo, "diff", "HEAD", "--binary").stdout
        untracked = _git(repo, "ls-files", "--others", "--exclude-standard", "--", *WATCHED).stdout.decode().split()
        dirty = bool(diff) or bool(untracked)
        return {"commit": head.stdout.decode().strip(), "dirty": dirty,
                "diff_sha256": hashlib.sha256(diff).hexdigest() if diff else "",
                "untracked": sorted(untracked), "source": "git"}
    recorded = repo / VERSION_FILE
    if recorded.is_file():
        return {**json.loads(recorded.read_text(encoding="utf-8")), "source": VERSION_FILE}
    return {"commit": "unknown", "dirty": None, "diff_sha256": "", "untracked": [], "source": "none"}


def label(version: dict[str, Any]) -> str:
    """Short form for rows and captions: 12 hex digits of the commit, +dirty.<8 of the diff hash> if modified."""
    text = version["commit"][:12]
    if version.get("dirty"):
        text += f"+dirty.{(version.get('diff_sha256') or 'untracked')[:8]}"
    return text


def record(repo: Path = REPO) -> str:
    """The VERSION.json an artifact (or a copy outside git) carries: describe() without its source."""
    recorded = {k: v for k, v in describe(repo).items() if k != "source"}
    return json.dumps(recorded, indent=2, sort_keys=True) + "\n"


@functools.cache
def current_label() -> str:
    """label() of this checkout, read once per job."""
    return label(describe())
