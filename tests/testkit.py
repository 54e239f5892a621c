"""Test helpers: skips with reasons, and driving the real pipeline from a copy of the project."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from unikio import aptsrc, lwipsrc, version
from unikio.errors import PipelineError

REPO = Path(__file__).resolve().parents[1]
SMOKE = ["--configfile", "config/smoke.yaml"]


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (loop devices, namespaces, taps)")


def copy_project(dest: Path) -> Path:
    """Copy what git would (tracked and new, not ignored) plus a link to the venv.

    The copy is no git checkout: its VERSION.json names this checkout's commit, as an artifact's does.
    """
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    (dest / ".venv").symlink_to(REPO / ".venv")
    (dest / version.VERSION_FILE).write_text(version.record(REPO))
    return dest


def snakemake(project: Path, *args: str, overrides: str = "", timeout: float = 3600) -> subprocess.CompletedProcess:
    """./snakemake --cores 4 ARGS --configfile config/smoke.yaml [overrides] (targets go in ARGS).

    overrides is YAML merged over the smoke profile (--config would pass nested values as strings).
    """
    extra = []
    if overrides:
        (project / "override.yaml").write_text(overrides)
        extra = ["override.yaml"]
    return subprocess.run(["./snakemake", "--cores", "4", *args, *SMOKE, *extra], cwd=project,
                          capture_output=True, text=True, timeout=timeout, env=os.environ.copy())


def planned_jobs(dry_run_output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run as {rule: count}; empty when nothing to do."""
    jobs: dict[str, int] = {}
    if "Job stats:" not in dry_run_output:
        return jobs
    table = dry_run_output.split("Job stats:", 1)[1]
    for line in table.splitlines():
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if m and m.group(1) != "total":
            jobs[m.group(1)] = int(m.group(2))
        elif line.strip().startswith("total"):
            break
    return jobs


def stop_process(proc: subprocess.Popen, timeout: float = 10) -> None:
    """SIGTERM proc if it still runs, SIGKILL it if that has not ended it after timeout s; reaped either way."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def apt_index(tmp: Path) -> Path:
    """$UNIKIO_APT_INDEX (used read-only), else a private index built in tmp as the apt_index rule does."""
    if shutil.which("apt-get") is None or shutil.which("dpkg-source") is None:
        pytest.skip("needs apt-get and dpkg-source (Debian)")
    given = os.environ.get("UNIKIO_APT_INDEX")
    if given:
        if not (Path(given) / "state" / "lists").is_dir():
            pytest.skip(f"UNIKIO_APT_INDEX={given} is no apt index made by the apt_index rule")
        return Path(given)
    if os.geteuid() != 0:
        pytest.skip("building a private apt index runs apt-get update, which needs root")
    root = tmp / "apt-index"
    try:
        sources = aptsrc.derive_sources(aptsrc.read_system_sources(), aptsrc.os_codename())
    except PipelineError as exc:
        pytest.skip(f"no apt index: set UNIKIO_APT_INDEX, or give this machine Debian sources ({exc})")
    apt = aptsrc.PrivateApt(root)
    apt.create(sources)
    with open(tmp / "apt-update.log", "w", encoding="utf-8") as log:
        try:
            apt.update(log)
        except PipelineError as exc:
            pytest.skip(f"no apt index: apt-get update of a private index failed, no Debian archive reachable? ({exc})")
    return root


def fetch_lwip(index: Path, debian_version: str, out: Path) -> Path:
    """Debian's lwIP source fetched for real into out/tree (lock out/lock.json, log out/fetch.log); returns the tree."""
    with open(out / "fetch.log", "w", encoding="utf-8") as log:
        lwipsrc.fetch(index, debian_version, out / "tree", out / "lock.json", log)
    return out / "tree"
