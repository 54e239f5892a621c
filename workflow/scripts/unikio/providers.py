"""Whether each Solo5 provider can run here, decided once at start-up.

`builtin` (our tenders) always builds. `upstream` needs real Solo5's source:
a fetched copy (its lock file), `solo5.upstream.local` or `$UNIKIO_SOLO5_SOURCE`
(a local git directory or tarball), or the git URL answering `git ls-remote`.
Where none does, its rows are skipped with the reason, like any other
combination this host cannot run, and the rest of the run goes on.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SOURCE_ENV = "UNIKIO_SOLO5_SOURCE"
LS_REMOTE_TIMEOUT_S = 20


def upstream_source(config: Mapping[str, Any]) -> dict[str, Any]:
    """solo5.upstream with `local` taken from $UNIKIO_SOLO5_SOURCE when the config leaves it empty."""
    source = dict(config["solo5"]["upstream"])
    if not source.get("local"):
        source["local"] = os.environ.get(SOURCE_ENV, "")
    return source


def upstream_status(source: Mapping[str, Any], lock: Path) -> tuple[bool, str]:
    """(usable, reason) of the upstream provider's source. lock: the fetched source's lock file."""
    if lock.is_file():
        return True, f"fetched ({lock})"
    local = source.get("local", "")
    if local:
        path = Path(local).expanduser()
        if path.exists():
            return True, f"local copy {path}"
        return False, (f"solo5.upstream.local (or ${SOURCE_ENV}) names {path}, which does not exist; "
                       "point it at a git copy or release tarball of Solo5")
    url, tag = source["git"], source["tag"]
    try:
        proc = subprocess.run(["git", "ls-remote", "--exit-code", url, f"refs/tags/{tag}"], capture_output=True,
                              text=True, timeout=LS_REMOTE_TIMEOUT_S, env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        why = f"git ls-remote did not answer: {e}"
    else:
        if proc.returncode == 0:
            return True, f"{url} has {tag}"
        lines = [line.strip() for line in (proc.stderr or proc.stdout).splitlines() if line.strip()]
        why = lines[-1] if lines else f"git ls-remote exited with {proc.returncode} (no tag {tag}?)"
    return False, (f"the upstream Solo5 source cannot be fetched from solo5.upstream.git ({why}); "
                   f"set solo5.upstream.local or ${SOURCE_ENV} to a local git copy or release tarball")


def seccomp_status(actions: Path = Path("/proc/sys/kernel/seccomp/actions_avail")) -> tuple[bool, str]:
    """(usable, reason): whether this kernel offers the seccomp filter actions the spt tenders rely on."""
    try:
        avail = set(actions.read_text(encoding="utf-8").split())
    except OSError:
        return False, f"this kernel has no seccomp filters ({actions} is missing)"
    # Ours traps (SIGSYS names the call); upstream's libseccomp filter kills the thread.
    missing = sorted({"trap", "kill_thread", "allow"} - avail)
    if missing:
        return False, f"this kernel's seccomp lacks the action(s) {', '.join(missing)}"
    return True, "seccomp filters available"
