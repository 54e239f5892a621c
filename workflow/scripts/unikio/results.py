"""Result lines printed by our benchmarks and monitors, and tidy rows."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import hostinfo, version
from .errors import PipelineError

# kvm_impl: which KVM ran a row under accel=kvm (hostinfo.kvm_impl), empty otherwise;
# pipeline_version: the commit of this pipeline that measured it (version.label).
# The conditions a repetition ran under: 1-minute load average and runnable tasks just before and after it.
CONDITION_COLUMNS = ["load_before", "load_after", "runnable_before", "runnable_after"]
# Round-trip percentiles of one icmp_bench run, from its own fixed log-scale histogram.
RTT_PERCENTILE_COLUMNS = ["p50_rtt_ns", "p90_rtt_ns", "p99_rtt_ns"]

BLK_COLUMNS = [
    "arch", "platform", "provider", "accel", "testbed", "block_size", "reads", "rep",
    "total_ns", "pread_ns", "pread_calls", "host", "timestamp", "kvm_impl", "pipeline_version",
    *CONDITION_COLUMNS,
]

NET_COLUMNS = [
    "arch", "platform", "provider", "accel", "testbed", "data_bytes", "packets", "rep", "avg_rtt_ns",
    "min_rtt_ns", "max_rtt_ns", "pps", "lost", "host", "timestamp", "kvm_impl", "pipeline_version",
    *RTT_PERCENTILE_COLUMNS, *CONDITION_COLUMNS,
]

RESULT_NET_RE = re.compile(
    r"RESULT net size=(?P<size>\d+) packets=(?P<packets>\d+) received=(?P<received>\d+)"
    r" lost=(?P<lost>\d+) corrupt=(?P<corrupt>\d+) ignored=(?P<ignored>\d+)"
    r" avg_ns=(?P<avg_ns>\d+) min_ns=(?P<min_ns>\d+) max_ns=(?P<max_ns>\d+) pps=(?P<pps>\d+(?:\.\d+)?)"
    r" p50_ns=(?P<p50_ns>\d+) p90_ns=(?P<p90_ns>\d+) p99_ns=(?P<p99_ns>\d+)"
)
MAX_ICMP_PAYLOAD = 1472

_FIELD = re.compile(r"(\w+)=(\d+)")


def _fields(line: str, prefix: str, keys: tuple[str, ...]) -> dict[str, int]:
    if not line.startswith(prefix):
        raise ValueError(f"not a {prefix.strip()!r} line: {line!r}")
    found = dict((k, int(v)) for k, v in _FIELD.findall(line[len(prefix):]))
    missing = [k for k in keys if k not in found]
    if missing:
        raise ValueError(f"{prefix.strip()!r} line lacks {', '.join(missing)}: {line!r}")
    return {k: found[k] for k in keys}


def parse_blk_result(text: str) -> dict[str, int]:
    """The single `RESULT blk reads=N block_size=B total_ns=T` line in text."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("RESULT blk ")]
    if len(lines) != 1:
        raise ValueError(f"expected one 'RESULT blk' line, found {len(lines)}")
    return _fields(lines[0], "RESULT blk ", ("reads", "block_size", "total_ns"))


def parse_pread_stats(text: str) -> dict[str, int]:
    """The monitor's `pread_calls=N pread_ns=T` line (patched QEMU or our tender)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("pread_calls=")]
    if len(lines) != 1:
        raise ValueError(f"expected one 'pread_calls=' line, found {len(lines)}")
    return _fields(lines[0], "", ("pread_calls", "pread_ns"))


def blk_row(
    *, arch: str, platform: str, accel: str, testbed: str, rep: int, host: str,
    result: dict[str, int], pread: dict[str, int] | None, provider: str = "", kvm_impl: str | None = None,
    conditions: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One tidy row of blk_runs.csv (kvm_impl: see row_context).

    conditions: the CONDITION_COLUMNS of the repetition (unikio.conditions.around); empty when None.
    """
    return {
        "arch": arch,
        "platform": platform,
        "provider": provider,
        "accel": accel,
        "testbed": testbed,
        "block_size": result["block_size"],
        "reads": result["reads"],
        "rep": rep,
        "total_ns": result["total_ns"],
        "pread_ns": pread["pread_ns"] if pread else None,
        "pread_calls": pread["pread_calls"] if pread else None,
        "host": host,
        **row_context(accel, kvm_impl),
        **{c: (conditions or {}).get(c) for c in CONDITION_COLUMNS},
    }


def row_context(accel: str, kvm_impl: str | None = None) -> dict[str, str]:
    """What every row records about when and under what it ran: timestamp, kvm_impl, pipeline_version.

    kvm_impl defaults to this host's KVM for an accel=kvm row; a row measured
    elsewhere (the testbed) passes its own. It is empty unless accel is kvm.
    """
    if kvm_impl is None:
        kvm_impl = hostinfo.current_kvm_impl() if accel == "kvm" else ""
    if (accel == "kvm") != bool(kvm_impl):
        raise ValueError(f"kvm_impl must name the KVM of an accel=kvm row and be empty otherwise "
                         f"(accel={accel!r}, kvm_impl={kvm_impl!r})")
    return {"timestamp": datetime.now(UTC).isoformat(timespec="seconds"), "kvm_impl": kvm_impl,
            "pipeline_version": version.current_label()}


def write_row(path: Path, row: dict[str, Any]) -> None:
    missing = [c for c in BLK_COLUMNS if c not in row]
    if missing:
        raise PipelineError(f"result row for {path} lacks {', '.join(missing)}")
    path.write_text(json.dumps(row, sort_keys=True) + "\n", encoding="utf-8")


def parse_exit_floor(text: str) -> dict[str, int]:
    """`exit_floor n=N total_ns=T ns_per_exit=X` from kvm_exit_floor."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("exit_floor ")]
    if len(lines) != 1:
        raise ValueError(f"expected one 'exit_floor' line, found {len(lines)}")
    return _fields(lines[0], "exit_floor ", ("n", "total_ns"))


def parse_net_result(text: str) -> dict[str, int | float]:
    """The single `RESULT net ...` line of icmp_bench in text, checked for consistency.

    Raises ValueError for a missing, repeated, malformed or self-contradictory line.
    """
    lines = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("RESULT net")]
    if len(lines) != 1:
        raise ValueError(f"expected one 'RESULT net' line, found {len(lines)}")
    m = RESULT_NET_RE.fullmatch(lines[0])
    if not m:
        raise ValueError(f"malformed 'RESULT net' line: {lines[0]!r}")
    res: dict[str, int | float] = {k: int(v) for k, v in m.groupdict().items() if k != "pps"}
    res["pps"] = float(m.group("pps"))
    _check_net_result(res, lines[0])
    return res


def _check_net_result(res: dict[str, int | float], line: str) -> None:
    problems = []
    if res["size"] > MAX_ICMP_PAYLOAD:
        problems.append(f"size above {MAX_ICMP_PAYLOAD}")
    if res["packets"] < 1 or res["received"] + res["lost"] != res["packets"]:
        problems.append("received + lost != packets")
    if res["corrupt"] > res["lost"]:
        # A corrupted reply is never received: it is one of the lost.
        problems.append("corrupt > lost")
    if res["received"] == 0:
        if any(res[k] for k in ("avg_ns", "min_ns", "max_ns", "pps", "p50_ns", "p90_ns", "p99_ns")):
            problems.append("times without received packets")
    elif not (0 < res["min_ns"] <= res["avg_ns"] <= res["max_ns"]):
        problems.append("not min <= avg <= max")
    elif abs(res["pps"] * res["avg_ns"] / 1e9 - 1) > 0.01:
        # avg_ns is rounded down, so allow a little slack around pps = 1e9 / avg.
        problems.append("pps != 1e9 / avg_ns")
    if res["received"] and not (res["min_ns"] <= res["p50_ns"] <= res["p90_ns"] <= res["p99_ns"] <= res["max_ns"]):
        # icmp_bench clamps each histogram percentile to the exact min and max.
        problems.append("not min <= p50 <= p90 <= p99 <= max")
    if problems:
        raise ValueError(f"inconsistent 'RESULT net' line ({'; '.join(problems)}): {line!r}")
