"""Common frame for Snakemake script jobs: log file, cancellation, one-line errors.

Whatever ends a job (success, an error, SIGINT from Ctrl-C, SIGTERM from
Snakemake or the user), every process it started is stopped before it exits
(see procs); a job that fails leaves none of its outputs, and the user sees
one line naming the rule, the cause and the log.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, NoReturn

from . import procs
from .errors import PipelineError


class Cancelled(BaseException):
    """SIGINT, SIGTERM or SIGHUP reached the job (a BaseException, so no `except Exception` swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    def __str__(self) -> str:
        return f"cancelled by {signal.Signals(self.signum).name}"


def _cancel(signum: int, _frame: object) -> None:
    # Later signals must not cut short the cleanup this one starts.
    for s in procs.CANCEL_SIGNALS:
        signal.signal(s, signal.SIG_IGN)
    raise Cancelled(signum)


def cancel_on_signals() -> None:
    """Turn SIGINT, SIGTERM and SIGHUP into Cancelled in the main thread."""
    for s in procs.CANCEL_SIGNALS:
        signal.signal(s, _cancel)


# Failures a user can act on: their message says all, no traceback in the log.
EXPECTED = (PipelineError, ValueError, Cancelled)


def describe(exc: BaseException) -> str:
    """The one-line message for an exception that ended a job."""
    if isinstance(exc, EXPECTED):
        return str(exc)
    if isinstance(exc, subprocess.TimeoutExpired):
        return f"{exc.cmd[0] if isinstance(exc.cmd, list) else exc.cmd} ran longer than {exc.timeout:g} s"
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror or exc}{where}"
    return f"unexpected {type(exc).__name__}: {exc}"


def run(snakemake: Any, body: Callable[[IO[str]], None]) -> None:
    """Run body(log); any failure becomes one stderr line naming the rule and the log, exit status non-zero."""
    cancel_on_signals()
    log_path = snakemake.log[0]
    start = time.monotonic()
    with open(log_path, "w", encoding="utf-8") as log:
        try:
            body(log)
        except BaseException as exc:  # noqa: BLE001 - every way out gets the same report and cleanup
            _stop_children(log)
            _remove_outputs(snakemake.output)
            _fail(snakemake.rule, log_path, log, exc)
        _stop_children(log)
        # The time of rules that cannot have a benchmark.tsv (they feed the between-workflow cache).
        log.write(f"job took {time.monotonic() - start:.1f} s\n")


def _stop_children(log: IO[str]) -> None:
    with procs.uninterrupted():
        left = procs.stop_all()
    if left:
        log.write(f"stopped child processes still running: {' '.join(map(str, left))}\n")


def _remove_outputs(outputs: Any) -> None:
    # Snakemake removes a failed job's outputs, but not those of a job it cancels.
    with procs.uninterrupted():
        for out in map(Path, outputs):
            if out.is_dir() and not out.is_symlink():
                shutil.rmtree(out, ignore_errors=True)
            else:
                out.unlink(missing_ok=True)


def _fail(rule: str, log_path: str, log: IO[str], exc: BaseException) -> NoReturn:
    if isinstance(exc, SystemExit):
        raise exc
    message = describe(exc)
    if not isinstance(exc, EXPECTED):
        log.write("".join(traceback.format_exception(exc)))
    log.write(f"ERROR: {message}\n")
    log.flush()
    print(f"ERROR in rule {rule}: {message} (log: {log_path})", file=sys.stderr, flush=True)
    sys.exit(128 + exc.signum if isinstance(exc, Cancelled) else 1)
