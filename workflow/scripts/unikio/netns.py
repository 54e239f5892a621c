"""Private network namespaces with one tap device, for the network experiment.

The tap, its host address and everything sent on it live in a namespace of
our own, so a measurement never touches (or is disturbed by) the machine's
real interfaces. Processes that open the tap (QEMU, the tender) and the
measuring program must run inside it: prefix their command with
`ns.exec_prefix()`.

Names carry the creating pid (`<prefix>-<pid>-<n>`) so a later run can tell
leftovers of crashed runs from namespaces that are still in use.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

from . import procs
from .errors import PipelineError
from .loopdev import pid_alive

_COUNTER = itertools.count()
_PREFIX_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_IFNAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,15}")
# Killed VMM processes can take a few seconds to go away under nested KVM.
_KILL_WAIT_S = 15.0
_IP_TIMEOUT_S = 30.0

_ROOT_HINT = "run the pipeline as root (e.g. sudo ./snakemake ...)"



@dataclass(frozen=True)
class NetNs:
    """A live namespace: its name, its tap and the tap's host address."""

    name: str
    tap: str
    host_cidr: str

    def exec_prefix(self) -> list[str]:
        """Command prefix that runs a program inside this namespace."""
        return ["ip", "netns", "exec", self.name]


def _ip(args: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False, timeout=_IP_TIMEOUT_S)
    if check and proc.returncode != 0:
        raise PipelineError(f"ip {' '.join(args)} failed: {proc.stderr.strip() or proc.returncode}")
    return proc


def list_namespaces() -> list[str]:
    """Names of all named network namespaces (`ip netns list`)."""
    out = _ip(["-json", "netns", "list"]).stdout.strip()
    # iproute2 prints nothing at all when there is no namespace.
    return [entry["name"] for entry in json.loads(out or "[]")]


def namespace_owner(name: str, name_prefix: str) -> int | None:
    """The creating pid encoded in a name of ours, or None for foreign names."""
    m = re.fullmatch(re.escape(name_prefix) + r"-(\d+)-(\d+)", name)
    return int(m.group(1)) if m else None


def _pids_inside(name: str) -> list[int]:
    out = _ip(["netns", "pids", name], check=False).stdout
    return [int(tok) for tok in out.split() if tok.isdigit()]


def _running(pid: int) -> bool:
    # A killed child of the caller stays a zombie until reaped; it holds no namespace.
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _kill_inside(name: str) -> None:
    """SIGKILL what still runs in the namespace: it would keep the tap alive."""
    pids = [p for p in _pids_inside(name) if p != os.getpid()]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + _KILL_WAIT_S
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if _running(p)]
        if pids:
            time.sleep(0.05)


def _delete(name: str) -> None:
    _kill_inside(name)
    _ip(["netns", "delete", name], check=False)


def reap_stale(name_prefix: str) -> list[str]:
    """Delete namespaces named by us whose creating process is dead; return their names."""
    removed = []
    for name in list_namespaces():
        pid = namespace_owner(name, name_prefix)
        if pid is not None and not pid_alive(pid):
            _delete(name)
            removed.append(name)
    return removed


def _check_prerequisites(name_prefix: str, tap: str) -> None:
    if not _PREFIX_RE.fullmatch(name_prefix):
        raise PipelineError(f"namespace prefix {name_prefix!r} must be 1-64 characters of letters, digits, '_.-'")
    if not _IFNAME_RE.fullmatch(tap):
        raise PipelineError(f"tap name {tap!r} must be 1-15 characters of letters, digits, '_.-'")
    if os.geteuid() != 0:
        raise PipelineError(f"network namespaces need root; {_ROOT_HINT}")
    if shutil.which("ip") is None:
        raise PipelineError("network namespaces need the 'ip' command; install iproute2")


@contextlib.contextmanager
def tap_namespace(name_prefix: str, host_cidr: str = "10.0.0.1/24", tap: str = "tap100") -> Iterator[NetNs]:
    """A fresh namespace holding an up tap with host_cidr; deleted on any exit.

    On exit, processes still running inside the namespace are killed first,
    since they would keep the tap (and the namespace) alive without a name.
    """
    _check_prerequisites(name_prefix, tap)
    reap_stale(name_prefix)
    name = f"{name_prefix}-{os.getpid()}-{next(_COUNTER)}"
    try:
        add = _ip(["netns", "add", name], check=False)
        if add.returncode != 0:
            raise PipelineError(
                f"network namespaces need root and iproute2, and 'ip netns add {name}' failed "
                f"({add.stderr.strip() or add.returncode}); {_ROOT_HINT}"
            )
        _ip(["-n", name, "link", "set", "lo", "up"])
        _ip(["-n", name, "tuntap", "add", "dev", tap, "mode", "tap"])
        _ip(["-n", name, "addr", "add", host_cidr, "dev", tap])
        _ip(["-n", name, "link", "set", tap, "up"])
        yield NetNs(name=name, tap=tap, host_cidr=host_cidr)
    except BaseException:
        # The first error is the one to report; a failed deletion is left to reap_stale.
        with procs.uninterrupted():
            _delete(name)
        raise
    with procs.uninterrupted():
        _delete(name)
    if name in list_namespaces():
        raise PipelineError(f"network namespace {name} could not be deleted; remove it with 'ip netns delete {name}'")
