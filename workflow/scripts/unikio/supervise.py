"""Snakemake's side of a cancellation: SIGINT, SIGTERM or SIGHUP to Snakemake stops the running jobs now.

Left alone, Snakemake answers SIGTERM by waiting for its running jobs to
finish, and a SIGINT sent to its pid alone never reaches them: a Linux-guest
row at the study's counts would hold the run for hours.  Installed from the
Snakefile's ``onstart``, :func:`forward_cancellation` makes every one of these
signals (a terminal's Ctrl-C included) do the same thing: each running job gets
SIGTERM, which our job scripts turn into a clean stop (unikio.job, unikio.procs),
and Snakemake itself cancels the run as it does on Ctrl-C, removing the
outputs of the jobs it stopped.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

from . import procs
from .procs import CANCEL_SIGNALS

# Snakemake runs a `script:` job as `python .snakemake/scripts/tmpXXXX.<name>.py`.
_SCRIPT_MARK = "/.snakemake/scripts/"


def _parents(proc: Path = Path("/proc")) -> dict[int, int]:
    """{pid: parent pid} of every process (those that vanish or read oddly meanwhile are left out)."""
    parents = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text(errors="replace")
            # The command name in parentheses may hold spaces; the ppid is the second field after it.
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return parents


def cancel_targets(root: int, parents: dict[int, int], cmdline: dict[int, str]) -> list[int]:
    """What to signal below root: a job script only (it stops its own children in order),
    anything else (a shell rule: a shell and the build it runs) with everything below it."""
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)

    def below(pid: int) -> list[int]:
        out = []
        for child in children.get(pid, []):
            out += [child, *below(child)]
        return out

    targets = []
    for job in sorted(children.get(root, [])):
        targets += [job] if _SCRIPT_MARK in cmdline.get(job, "") else [job, *below(job)]
    return targets


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def stop_jobs() -> None:
    """SIGTERM to the running jobs of this process (see cancel_targets)."""
    me = os.getpid()
    parents = _parents()
    jobs = [pid for pid, ppid in parents.items() if ppid == me]
    for pid in cancel_targets(me, parents, {pid: _cmdline(pid) for pid in jobs}):
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass


def forward_cancellation() -> None:
    """Make SIGINT, SIGTERM and SIGHUP to this (Snakemake) process stop its jobs and cancel the run.

    Python runs signal handlers in the main thread only, and only once it
    wakes; the kernel may hand the signal to another of Snakemake's threads
    and leave the main one asleep until a job ends. So the jobs are stopped
    at once by a thread of our own, woken through the signal module's wakeup
    fd; their end wakes the main thread, whose handler then cancels the run
    as Snakemake does on Ctrl-C.
    """
    cancelled = threading.Event()
    jobs_stopped = threading.Event()

    def handler(_signum: int, _frame: object) -> None:
        if not cancelled.is_set():
            cancelled.set()
            # The main thread may leave at once (a signal outside Snakemake's own try):
            # the jobs must have had their SIGTERM by then, not die with the daemon waker.
            jobs_stopped.wait(5)
            # What Snakemake's scheduler treats as a user's request to stop.
            raise KeyboardInterrupt

    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)

    def waker() -> None:
        procs.block_cancel_signals()
        while True:
            if set(os.read(read_end, 64)) & set(CANCEL_SIGNALS):
                stop_jobs()
                jobs_stopped.set()

    for s in CANCEL_SIGNALS:
        signal.signal(s, handler)
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    threading.Thread(target=waker, name="unikio-cancel", daemon=True).start()
