"""Child processes of a job: each in a session of its own, tracked, and always stopped.

Every program a measurement job starts (QEMU, the tender, blk_bench, icmp_bench,
the testbed) goes through :func:`start` or :func:`run`, so that

* the job can stop it and everything it forked (its process group) on every
  exit path: :func:`job.run` calls :func:`stop_all` after the job body, whether
  it returned, raised, timed out or was cancelled by SIGINT/SIGTERM;
* it dies with the job even when the job itself is SIGKILLed: it is started
  under ``setpriv --pdeathsig KILL``, which asks the kernel to kill it when the
  thread that started it goes away (the setting survives the exec of
  ``taskset`` and ``ip netns exec``, which do not fork);
* a Ctrl-C in the terminal reaches only the job, which then stops its children
  in order (QEMU before the loop device it holds), not QEMU directly.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

# Asks the kernel to SIGKILL the program when the thread that started it ends.
DEATH_GUARD = ("setpriv", "--pdeathsig", "KILL", "--")
# A killed VMM under nested KVM can take seconds to be reaped.
STOP_WAIT_S = 15.0
# What job.run turns into a clean cancellation, and what a cleanup must not be cut short by.
CANCEL_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

_live: set[subprocess.Popen[Any]] = set()
_lock = threading.Lock()


def start(argv: Sequence[str | Path], *, env: Mapping[str, str] | None = None, **popen: Any) -> subprocess.Popen[Any]:
    """Popen(argv) in a new session under the death guard, tracked until :func:`stop`.

    ``env`` holds additions to this process's environment.
    """
    # The guard would report a missing program as its own exit status 127; say it as Popen would.
    program = str(argv[0])
    if "/" in program and popen.get("cwd") is not None:
        program = os.path.join(popen["cwd"], program)  # as the child, started in cwd, will see it
    if shutil.which(program) is None:
        raise FileNotFoundError(errno.ENOENT, "no such executable", str(argv[0]))
    full_env = None if env is None else {**os.environ, **env}
    proc = subprocess.Popen([*DEATH_GUARD, *map(str, argv)], start_new_session=True, env=full_env, **popen)
    with _lock:
        _live.add(proc)
    return proc


def stop(proc: subprocess.Popen[Any], wait_s: float = STOP_WAIT_S) -> None:
    """SIGKILL proc's whole process group (a stopped one too) and reap proc."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        pass  # stuck in the kernel; the group is already killed and the kernel reaps it later
    with _lock:
        _live.discard(proc)


def stop_all() -> list[int]:
    """Stop every child still tracked; the pids that were still running."""
    with _lock:
        procs = list(_live)
    running = [p.pid for p in procs if p.poll() is None]
    for p in procs:
        stop(p)
    return running


def forget(proc: subprocess.Popen[Any]) -> None:
    """Stop tracking a child that has exited (reaped by its caller)."""
    with _lock:
        _live.discard(proc)


class Stopped(Exception):
    """run() stopped the child because its ``watch`` said why it should not go on."""


# How often run() asks its watch.
WATCH_EVERY_S = 0.1


class Finished(subprocess.CompletedProcess):
    """A finished child, with the pid it ran as (what the kernel's records of it name)."""

    def __init__(self, args: Any, returncode: int, stdout: Any, stderr: Any, *, pid: int) -> None:
        super().__init__(args, returncode, stdout, stderr)
        self.pid = pid


def run(argv: Sequence[str | Path], *, timeout_s: float | None, env: Mapping[str, str] | None = None,
        cwd: Path | str | None = None, stdout: Any = subprocess.PIPE, stderr: Any = subprocess.PIPE,
        text: bool = True, watch: Callable[[], str | None] | None = None,
        on_stderr_line: Callable[[str], None] | None = None) -> subprocess.CompletedProcess[Any]:
    """Like subprocess.run(check=False), but the child's whole group is stopped on timeout or any exception.

    Raises subprocess.TimeoutExpired after stopping it when it outlives
    ``timeout_s``, and Stopped (with watch's reason) as soon as ``watch``,
    asked every WATCH_EVERY_S while the child runs, returns a reason.
    ``on_stderr_line`` gets each stderr line as it comes (progress lines),
    and stderr is still returned whole (text mode and piped stdout/stderr only).
    """
    if on_stderr_line is not None:
        if not (text and stdout is subprocess.PIPE and stderr is subprocess.PIPE):
            raise ValueError("on_stderr_line needs text mode with stdout and stderr piped")
        return _run_streaming(argv, timeout_s=timeout_s, env=env, cwd=cwd, watch=watch, on_stderr_line=on_stderr_line)
    proc = start(argv, env=env, cwd=cwd, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL, text=text)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    try:
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            step = left if watch is None else (WATCH_EVERY_S if left is None else min(left, WATCH_EVERY_S))
            try:
                # Repeated communicate() calls keep what was read so far.
                out, err = proc.communicate(timeout=step)
                break
            except subprocess.TimeoutExpired:
                if deadline is not None and time.monotonic() >= deadline:
                    raise subprocess.TimeoutExpired(list(map(str, argv)), timeout_s) from None
                reason = watch() if watch is not None else None
                if reason:
                    raise Stopped(reason) from None
    except BaseException:
        stop(proc)
        raise
    forget(proc)
    return Finished(list(map(str, argv)), proc.returncode, out, err, pid=proc.pid)


def _run_streaming(argv: Sequence[str | Path], *, timeout_s: float | None, env: Mapping[str, str] | None,
                   cwd: Path | str | None, watch: Callable[[], str | None] | None,
                   on_stderr_line: Callable[[str], None]) -> subprocess.CompletedProcess[Any]:
    """run() with stderr read line by line in a thread (communicate() would hold it back until exit)."""
    proc = start(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                 text=True)
    out: list[str] = []
    err: list[str] = []

    def read_stdout() -> None:
        block_cancel_signals()
        assert proc.stdout is not None
        out.append(proc.stdout.read())

    def read_stderr() -> None:
        block_cancel_signals()
        assert proc.stderr is not None
        for line in iter(proc.stderr.readline, ""):
            err.append(line)
            on_stderr_line(line)

    readers = [threading.Thread(target=f, daemon=True) for f in (read_stdout, read_stderr)]
    for t in readers:
        t.start()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    try:
        while proc.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(list(map(str, argv)), timeout_s or 0)
            reason = watch() if watch is not None else None
            if reason:
                raise Stopped(reason)
            time.sleep(WATCH_EVERY_S)
    except BaseException:
        stop(proc)
        raise
    for t in readers:
        t.join(STOP_WAIT_S)  # a grandchild holding the pipes open must not hang the job
    forget(proc)
    return subprocess.CompletedProcess(list(map(str, argv)), proc.returncode, "".join(out), "".join(err))


def command_line(argv: Sequence[str | Path], env: Mapping[str, str] | None = None) -> str:
    """The shell-quoted command (environment additions first) as a run.log records it."""
    return shlex.join([*(f"{k}={v}" for k, v in (env or {}).items()), *map(str, argv)])


def exit_reason(returncode: int, stderr: str | None = None) -> str:
    """'killed by SIGX', or 'status N' with the last line of stderr when given."""
    if returncode < 0:
        return f"killed by {signal.Signals(-returncode).name}"
    if stderr is None:
        return f"status {returncode}"
    return f"status {returncode}: {(stderr.strip().splitlines() or ['no message'])[-1]}"


def block_cancel_signals() -> None:
    """Keep SIGINT/SIGTERM/SIGHUP away from this (helper) thread.

    The kernel hands a process-wide signal to any thread that does not block
    it; helper threads block them all, so the signal waits for the main thread,
    which runs the handler, and for the end of a cleanup it holds back.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, CANCEL_SIGNALS)


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """Hold back SIGINT/SIGTERM/SIGHUP for a cleanup; they take effect right after it.

    Only the main thread runs Python signal handlers, so only there can a
    cancellation land in the middle of a cleanup.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, CANCEL_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
