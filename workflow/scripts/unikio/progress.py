"""How far a long job has got, with an ETA, in its log and on the terminal.

A job that can run longer than about a minute (a measurement, a testbed boot,
a QEMU build) gets a Progress. Our benchmarks print `progress DONE/TOTAL UNIT`
on stderr every few seconds (inside a guest, over its console), builds print
ninja's `[N/M]`, and a job made of several runs of equal size (repetitions,
data sizes) says when one begins and ends. Progress turns these into one line
at most every EVERY_S: to the job's log, and to stderr, which Snakemake shows
on the terminal. Between updates (a boot, say) it still says what it is doing.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections.abc import Callable
from typing import IO

# The bound is 30 s; the margin covers a poll interval and a slow console.
EVERY_S = 20.0

BENCH_LINE = re.compile(r"^progress (\d+)/(\d+) (\w+)\s*$")
NINJA_LINE = re.compile(r"^\[(\d+)/(\d+)\] ")


def parse_bench_line(line: str) -> tuple[int, int] | None:
    """(done, total) of a benchmark's `progress DONE/TOTAL UNIT` line, else None."""
    m = BENCH_LINE.match(line.strip())
    return (int(m.group(1)), int(m.group(2))) if m else None


def duration(seconds: float) -> str:
    """A short human duration: 45 s, 3 min 20 s, 1 h 05 min."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class Progress:
    """Progress of a job made of ``runs`` runs of ``per_run`` units each (reads, packets, build steps).

    Thread-safe: console readers and the job's main thread may both report.
    """

    def __init__(self, label: str, *, runs: int, per_run: int, unit: str, log: IO[str] | None,
                 every_s: float = EVERY_S, out: IO[str] | None = sys.stderr,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.label, self.runs, self.per_run, self.unit = label, max(1, runs), max(1, per_run), unit
        self.log, self.out, self.every_s, self.clock = log, out, every_s, clock
        self.t0 = clock()
        self.last_said = self.t0
        self.finished_runs = 0
        self.in_run = 0
        self.detail = "starting"
        self.measuring_since: float | None = None
        self._lock = threading.Lock()

    @property
    def total(self) -> int:
        return self.runs * self.per_run

    @property
    def done(self) -> int:
        return min(self.total, self.finished_runs * self.per_run + self.in_run)

    def phase(self, detail: str) -> None:
        """What the job is doing now (booting, size 512 repetition 2/5, ...)."""
        with self._lock:
            self.detail = detail

    def started(self, detail: str) -> None:
        """The work itself has begun (a boot is over): the ETA counts from here; detail unless a run said more."""
        with self._lock:
            if self.measuring_since is None:
                self.measuring_since = self.clock()
            if self.finished_runs == 0 and self.in_run == 0 and self.detail in ("starting", "booting"):
                self.detail = detail

    def begin_run(self, detail: str) -> None:
        with self._lock:
            self.detail, self.in_run = detail, 0
            if self.measuring_since is None:
                self.measuring_since = self.clock()
        self.tick()

    def advance(self, done_in_run: int) -> None:
        with self._lock:
            self.in_run = min(done_in_run, self.per_run)
        self.tick()

    def end_run(self) -> None:
        with self._lock:
            self.finished_runs, self.in_run = min(self.runs, self.finished_runs + 1), 0
        self.tick()

    def set_done(self, done: int, total: int | None = None) -> None:
        """For jobs counted as one run (a build's steps): done of total units."""
        with self._lock:
            if total:
                self.runs, self.per_run = 1, total
            self.finished_runs, self.in_run = 0, done
            if self.measuring_since is None:
                self.measuring_since = self.clock()
        self.tick()

    def eta_s(self) -> float | None:
        """Seconds left, from the rate since the first unit of work; None before there is a rate."""
        done, start = self.done, self.measuring_since
        if not done or start is None:
            return None
        spent = self.clock() - start
        return spent * (self.total - done) / done

    def line(self) -> str:
        with self._lock:
            return self._line_locked()

    def _line_locked(self) -> str:
        elapsed = duration(self.clock() - self.t0)
        done = self.done
        eta = self.eta_s()
        where = (f"{done:,}/{self.total:,} {self.unit} ({100 * done / self.total:.0f}%)"
                 if done or self.measuring_since is not None else "0 " + self.unit)
        return (f"progress {self.label}: {where}, {self.detail}, {elapsed} elapsed"
                + (f", ETA {duration(eta)}" if eta is not None else ""))

    def tick(self, force: bool = False) -> None:
        """Say where the job is, if EVERY_S has passed since the last time (or force)."""
        with self._lock:
            now = self.clock()
            if not force and now - self.last_said < self.every_s:
                return
            self.last_said = now
            text = self._line_locked() + "\n"
        for sink in (self.log, self.out):
            if sink is not None:
                try:
                    sink.write(text)
                    sink.flush()
                except (OSError, ValueError):
                    pass  # a closed terminal must not fail the measurement

    def bench_line(self, line: str) -> bool:
        """Take a benchmark's progress line (within the current run); True if it was one."""
        parsed = parse_bench_line(line)
        if parsed is None:
            return False
        self.advance(parsed[0])
        return True


class LogTail:
    """The new lines of a file another process appends to (a build log), read on each poll."""

    def __init__(self, path: str, on_line: Callable[[str], None]) -> None:
        self.path, self.on_line, self.offset, self.partial = path, on_line, 0, ""

    def poll(self) -> None:
        try:
            with open(self.path, encoding="utf-8", errors="replace") as f:
                f.seek(self.offset)
                chunk = f.read()
                self.offset = f.tell()
        except OSError:
            return
        text = self.partial + chunk
        lines = text.split("\n")
        self.partial = lines.pop()
        for line in lines:
            self.on_line(line)


def build_watch(progress: Progress, log_path: str) -> Callable[[], None]:
    """A poll function that reports a build's `[N/M]` steps from the log it writes."""

    def on_line(line: str) -> None:
        m = NINJA_LINE.match(line)
        if m:
            progress.set_done(int(m.group(1)), int(m.group(2)))

    tail = LogTail(log_path, on_line)

    def poll() -> None:
        tail.poll()
        progress.tick()

    return poll
