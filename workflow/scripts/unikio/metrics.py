"""The per-repetition metrics of tidy rows: one definition each, for tables, claims and comparisons."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd


def guest_monitor_ns(runs: pd.DataFrame) -> pd.Series:
    """Guest + monitor time of a block repetition: everything but the host pread that served it."""
    return runs["total_ns"] - runs["pread_ns"]


@dataclass(frozen=True)
class Metric:
    name: str
    label: str  # short, for a figure
    lower_is_better: bool
    values: Callable[[pd.DataFrame], pd.Series]


# Block times per read, so they compare across read counts; pps: higher is faster.
METRICS = {
    "blk": [
        Metric("total_ns_per_read", "total / read", True, lambda g: g["total_ns"] / g["reads"]),
        Metric("pread_ns_per_read", "pread / read", True, lambda g: g["pread_ns"] / g["reads"]),
        Metric("guest_monitor_ns_per_read", "guest+monitor / read", True,
               lambda g: guest_monitor_ns(g) / g["reads"]),
    ],
    "net": [
        Metric("pps", "pps (higher is faster)", False, lambda g: g["pps"]),
        Metric("avg_rtt_ns", "avg round trip", True, lambda g: g["avg_rtt_ns"]),
    ],
}


def by_name(experiment: str, name: str) -> Metric:
    """The metric of that name; KeyError names what exists."""
    for metric in METRICS[experiment]:
        if metric.name == name:
            return metric
    raise KeyError(f"no {experiment} metric {name!r}; known: {', '.join(m.name for m in METRICS[experiment])}")
