"""Measurement conditions: how busy the machine was around each repetition, how the host is set up,
and the CPU the single-threaded measurement processes run on.

Per repetition (every raw row, ``results.CONDITION_COLUMNS``): the 1-minute
load average (``/proc/loadavg``) and the number of runnable tasks
(``procs_running`` in ``/proc/stat``), just before and just after the measured
part. The runnable count includes the job that reads it, so an idle machine
reads 1; the load average includes what the measurement itself ran, so a long
or multi-threaded measurement raises its own ``load_after``.

Once per run (``provenance.json``, ``host.conditions``): the CPU frequency
governor of each CPU, turbo/boost, SMT, transparent huge pages, the kernel
command line and its CPU isolation parameters; ``"not exposed"`` where this
kernel has no such file (a VM often has no cpufreq at all).

Every reader takes the file-system root (default ``/``), so tests can give it
a fake ``proc`` and ``sys`` tree.
"""

from __future__ import annotations

import errno
import math
import os
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from .errors import PipelineError

NOT_EXPOSED = "not exposed"
CPU_SYS = "sys/devices/system/cpu"
THP_ENABLED = "sys/kernel/mm/transparent_hugepage/enabled"
# Kernel parameters that decide which CPUs are quiet and how fast they run; recorded when set.
CPU_PARAMS = ("isolcpus", "nohz_full", "rcu_nocbs", "rcu_nocb_poll", "irqaffinity", "nosmt", "idle",
              "intel_idle.max_cstate", "processor.max_cstate", "intel_pstate", "amd_pstate",
              "cpufreq.default_governor", "transparent_hugepage")

Number = float | int | None


def _read(root: Path | str, rel: str) -> str | None:
    """A kernel file's text without its trailing newline, or None where it does not exist or cannot be read."""
    try:
        return (Path(root) / rel).read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None


# ------------------------------------------------------- per repetition


def load_1min(root: Path | str = "/") -> float | None:
    """The 1-minute load average (first field of /proc/loadavg), None where it cannot be read."""
    text = _read(root, "proc/loadavg")
    try:
        return float(text.split()[0]) if text else None
    except ValueError:
        return None


def runnable_tasks(root: Path | str = "/") -> int | None:
    """Tasks running or ready to run right now (procs_running of /proc/stat, the reader included), or None."""
    m = re.search(r"^procs_running\s+(\d+)\s*$", _read(root, "proc/stat") or "", re.M)
    return int(m.group(1)) if m else None


@dataclass(frozen=True)
class Snapshot:
    """How busy the machine was at one instant."""

    load_1min: float | None
    runnable: int | None


def snapshot(root: Path | str = "/") -> Snapshot:
    return Snapshot(load_1min=load_1min(root), runnable=runnable_tasks(root))


def columns(before: Snapshot, after: Snapshot) -> dict[str, Number]:
    """The row fields (results.CONDITION_COLUMNS) of a measurement between two snapshots."""
    return {"load_before": before.load_1min, "load_after": after.load_1min,
            "runnable_before": before.runnable, "runnable_after": after.runnable}


class Around:
    """``with around() as cond: <measured part>``; then ``cond.values`` holds the row fields."""

    def __init__(self, root: Path | str = "/") -> None:
        self.root = root
        self.values: dict[str, Number] = {}
        self._before: Snapshot | None = None

    def __enter__(self) -> Around:
        self._before = snapshot(self.root)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        assert self._before is not None
        self.values = columns(self._before, snapshot(self.root))


def around(root: Path | str = "/") -> Around:
    """Snapshots just before and just after a with-block (the measured part of one repetition)."""
    return Around(root)


def missing() -> dict[str, Number]:
    """Row fields for a row measured without snapshots (they stay empty in the CSV)."""
    return columns(Snapshot(None, None), Snapshot(None, None))


# ------------------------------------------------------------- busy flag


def _number(value: object) -> float | None:
    """value as a float, or None for None, NaN, pandas' NA and anything not numeric."""
    if value is None:
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def busy_load(load_before: object, load_after: object, cores: int, threshold: float) -> float | None:
    """The higher of the two loads when it exceeds threshold x cores, else None (also when both are missing)."""
    if isinstance(cores, bool) or int(cores) != cores or cores < 1:
        raise ValueError(f"cores must be a positive integer, not {cores!r}")
    if _number(threshold) is None or threshold < 0:
        raise ValueError(f"the busy threshold must be a number >= 0, not {threshold!r}")
    loads = [v for v in (_number(load_before), _number(load_after)) if v is not None]
    if not loads or max(loads) <= threshold * cores:
        return None
    return max(loads)


def busy_note(load_before: object, load_after: object, cores: int, threshold: float) -> str | None:
    """'busy machine (1-min load 1.73 on 2 cores)' when max(load_before, load_after) > threshold x cores, else None.

    threshold is conditions.busy_load_per_core; cores those of the machine
    that measured. Missing loads (None, NaN, pandas' NA) count as not busy;
    a table calls it once per row with the maximum over its repetitions.
    """
    peak = busy_load(load_before, load_after, cores, threshold)
    if peak is None:
        return None
    return f"busy machine (1-min load {peak:.2f} on {int(cores)} core{'s' if cores != 1 else ''})"


# ---------------------------------------------------------- host set-up


def _cpu_dirs(root: Path | str) -> list[Path]:
    base = Path(root) / CPU_SYS
    try:
        found = [p for p in base.iterdir() if re.fullmatch(r"cpu\d+", p.name)]
    except OSError:
        return []
    return sorted(found, key=lambda p: int(p.name[3:]))


def governors(root: Path | str = "/") -> dict[str, str]:
    """{cpuN: its cpufreq scaling_governor or "not exposed"} for every CPU the kernel lists."""
    return {p.name: _read(root, f"{CPU_SYS}/{p.name}/cpufreq/scaling_governor") or NOT_EXPOSED
            for p in _cpu_dirs(root)}


def turbo(root: Path | str = "/") -> tuple[str, str]:
    """("on" | "off" | "not exposed", the file that says so): intel_pstate's no_turbo or cpufreq's boost."""
    no_turbo = _read(root, f"{CPU_SYS}/intel_pstate/no_turbo")
    if no_turbo in ("0", "1"):
        return ("off" if no_turbo == "1" else "on"), f"/{CPU_SYS}/intel_pstate/no_turbo"
    boost = _read(root, f"{CPU_SYS}/cpufreq/boost")
    if boost in ("0", "1"):
        return ("on" if boost == "1" else "off"), f"/{CPU_SYS}/cpufreq/boost"
    return NOT_EXPOSED, NOT_EXPOSED


def smt(root: Path | str = "/") -> tuple[str, str]:
    """("on" | "off" | "not exposed" from smt/active, smt/control as the kernel says it or "not exposed")."""
    active = _read(root, f"{CPU_SYS}/smt/active")
    state = {"1": "on", "0": "off"}.get(active or "", NOT_EXPOSED)
    return state, _read(root, f"{CPU_SYS}/smt/control") or NOT_EXPOSED


def transparent_hugepages(root: Path | str = "/") -> str:
    """The chosen (bracketed) mode of transparent huge pages: always, madvise, never, or "not exposed"."""
    m = re.search(r"\[(\w+)\]", _read(root, THP_ENABLED) or "")
    return m.group(1) if m else NOT_EXPOSED


def kernel_cmdline(root: Path | str = "/") -> str:
    text = _read(root, "proc/cmdline")
    return NOT_EXPOSED if text is None else text


def cpu_params(cmdline: str) -> dict[str, str]:
    """The CPU_PARAMS set on a kernel command line ("" for a bare flag such as nosmt); words after "--" go to
    init, not the kernel."""
    found = {}
    for word in cmdline.split(" -- ", 1)[0].split():
        key, _, value = word.partition("=")
        if key in CPU_PARAMS:
            found[key] = value
    return found


def parse_cpu_list(text: str) -> set[int]:
    """CPUs of a kernel CPU list such as "0-2,5" (empty text: none); ValueError for anything else."""
    cpus: set[int] = set()
    for part in filter(None, (p.strip() for p in text.strip().split(","))):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise ValueError(f"not a CPU list: {text!r}")
        first, last = int(m.group(1)), int(m.group(2) or m.group(1))
        cpus.update(range(first, last + 1))
    return cpus


def format_cpu_list(cpus: Iterable[int]) -> str:
    """The kernel's spelling of a CPU set: {0, 1, 2, 5} -> "0-2,5"."""
    ranges: list[list[int]] = []
    for cpu in sorted(set(cpus)):
        if ranges and cpu == ranges[-1][1] + 1:
            ranges[-1][1] = cpu
        else:
            ranges.append([cpu, cpu])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


def isolated_cpus(root: Path | str = "/") -> set[int]:
    """CPUs the kernel isolated (isolcpus): left out of every default affinity set, yet taskset can use them."""
    try:
        return parse_cpu_list(_read(root, f"{CPU_SYS}/isolated") or "")
    except ValueError:
        return set()


def host_conditions(root: Path | str = "/") -> dict[str, Any]:
    """What provenance.json records under host.conditions (see README, "Preparing the host")."""
    boost, boost_source = turbo(root)
    smt_state, smt_control = smt(root)
    cmdline = kernel_cmdline(root)
    isolated = _read(root, f"{CPU_SYS}/isolated")
    nohz_full = _read(root, f"{CPU_SYS}/nohz_full")
    return {
        "cpu_governor": governors(root),
        "turbo": boost,
        "turbo_source": boost_source,
        "smt": smt_state,
        "smt_control": smt_control,
        "transparent_hugepage": transparent_hugepages(root),
        "kernel_cmdline": cmdline,
        # Only what is set: an empty mapping means none of CPU_PARAMS is on the command line.
        "kernel_cpu_params": cpu_params(cmdline) if cmdline != NOT_EXPOSED else {},
        # What the kernel made of them: "" when no CPU is isolated or tickless.
        "isolated_cpus": NOT_EXPOSED if isolated is None else isolated,
        "nohz_full_cpus": NOT_EXPOSED if nohz_full is None else nohz_full,
    }


# ---------------------------------------------------------------- pinning


def _measure_cpu(setting: int | str, allowed: Iterable[int] | None, root: Path | str) -> tuple[int | None, str]:
    affinity = set(os.sched_getaffinity(0) if allowed is None else allowed)
    if setting == "auto":
        # The highest CPU we may use: away from CPU 0, which takes most interrupts and housekeeping.
        return (max(affinity), "") if affinity else (None, "this process may run on no CPU")
    isolated = isolated_cpus(root)
    if isinstance(setting, int) and not isinstance(setting, bool) and setting in affinity | isolated:
        return setting, ""
    extra = f" or the isolated CPUs {format_cpu_list(isolated)}" if isolated else ""
    return None, (f"config key measure.cpu is {setting!r}, but this process may run only on CPUs "
                  f"{format_cpu_list(affinity)}{extra}; set one of those or auto")


def measure_cpu(setting: int | str, allowed: Iterable[int] | None = None, root: Path | str = "/") -> int:
    """The CPU measure.cpu names: itself, or for "auto" the highest CPU of this process's affinity set.

    A CPU isolated with isolcpus is accepted too (taskset can use it though no
    default affinity set holds it). allowed stands in for the affinity set in
    tests. Raises PipelineError, one sentence naming the key, for any other CPU.
    """
    cpu, problem = _measure_cpu(setting, allowed, root)
    if cpu is None:
        raise PipelineError(problem)
    return cpu


def measure_cpu_problem(setting: int | str, allowed: Iterable[int] | None = None,
                        root: Path | str = "/") -> str | None:
    """Why measure.cpu cannot be used here (one sentence), or None: the start-up check."""
    return _measure_cpu(setting, allowed, root)[1] or None


def pinned(argv: Sequence[str], cpu: int | None) -> list[str]:
    """argv run on one CPU through taskset, so the command line in run.log shows it; unchanged for None.

    A missing program is reported as procs.start would report it, not as taskset's failure to exec it.
    """
    if cpu is None:
        return list(argv)
    if shutil.which(str(argv[0])) is None:
        raise FileNotFoundError(errno.ENOENT, "no such executable", str(argv[0]))
    return ["taskset", "-c", str(cpu), *map(str, argv)]
