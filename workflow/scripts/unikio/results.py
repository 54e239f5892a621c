"""Result lines printed by our benchmarks and monitors, and tidy rows."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import PipelineError

BLK_COLUMNS = [
    "arch", "platform", "provider", "accel", "testbed", "block_size", "reads", "rep",
    "total_ns", "pread_ns", "pread_calls", "host", "timestamp",
]

NET_COLUMNS = [
    "arch", "platform", "provider", "accel", "testbed", "data_bytes", "packets", "rep", "avg_rtt_ns",
    "min_rtt_ns", "max_rtt_ns", "pps", "lost", "host", "timestamp",
]

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
    result: dict[str, int], pread: dict[str, int] | None, provider: str = "",
) -> dict[str, Any]:
    """One tidy row of blk_runs.csv."""
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
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
    }


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
