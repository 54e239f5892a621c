"""Tidy data → the study's tables and figures, beside the original values."""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from . import conditions, hostinfo, matrix, metrics, stats
from .results import BLK_COLUMNS, NET_COLUMNS

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

STUDY_READS = 100_000  # reads per run in the original study
STUDY_BLOCK_SIZE = 512
NS_PER_MS = 1e6
COLUMNS = {"blk": BLK_COLUMNS, "net": NET_COLUMNS}
# Per metric: mean, sd, median and the 95% CI of the mean (unikio.stats); cv for the headline metric.
BLK_TABLE_COLUMNS = ["platform", "accel", "kvm_impl", "testbed", "runs", "reads", "block_size",
                     "total_ms", "total_sd", "cv_total", "total_median", "total_ci_low", "total_ci_high",
                     "pread_ms", "pread_sd", "pread_median", "pread_ci_low", "pread_ci_high",
                     "guest_monitor_ms", "guest_monitor_sd", "guest_monitor_median", "guest_monitor_ci_low",
                     "guest_monitor_ci_high", "us_per_read", "load_before_max", "note", "pipeline_version"]
NET_TABLE_COLUMNS = ["platform", "accel", "kvm_impl", "testbed", "data_bytes", "runs", "packets",
                     "pps", "pps_sd", "pps_cv", "pps_median", "pps_ci_low", "pps_ci_high",
                     "avg_rtt_us", "p50_rtt_us", "p90_rtt_us", "p99_rtt_us", "lost_pct", "load_before_max", "note",
                     "pipeline_version"]
OVERHEAD_TABLE_COLUMNS = ["platform", "accel", "kvm_impl", "testbed", "runs", "total_ns_per_read",
                          "pread_ns_per_read", "overhead_ns_per_read", "exit_floor_ns", "overhead_over_floor", "note",
                          "pipeline_version"]
NOT_PERFORMANCE = "emulated: not a performance result"
# What tells rows apart that must never be averaged together.
GROUP_KEYS = ["provider", "accel", "kvm_impl", "testbed"]
# Counts stay integers in the written tables even where a not-measured row leaves them empty.
_INT_COLUMNS = ("runs", "reads", "block_size", "data_bytes", "packets")
NAN = float("nan")
# Fixed per platform, so a platform looks the same in our panels and the study's.
PLATFORM_COLOURS = {"host": "#8c8c8c", "solo5-hvt": "#4c72b0", "qemu-linux": "#dd8452", "qemu-linux-smp": "#dd8452",
                    "qemu-linux-1core": "#c44e52", "mirage-solo5": "#55a868", "lwip-solo5-hvt": "#8172b3",
                    "lwip-solo5-spt": "#da8bc3", "solo5-spt": "#64b5cd"}
_SPARE_COLOURS = ("#937860", "#ccb974", "#2f4f4f")
UPSTREAM, UPSTREAM_ALPHA = "upstream", 0.5
# Figure layout (inches): the panels with their titles and axis labels, and the band below them for the legend
# (columns of LEGEND_COLUMN_IN, rows of LEGEND_ROW_IN) and the footnote (FOOTNOTE_CHARS_PER_IN per line).
PANELS_IN, MARGIN_IN = 3.5, 0.06
BLK_BAR_IN = 0.75
LEGEND_COLUMN_IN, LEGEND_ROW_IN = 2.4, 0.22
FOOTNOTE_CHARS_PER_IN, FOOTNOTE_LINE_IN = 17, 0.13
# Our network panel goes log scale where its rows differ more than this many times.
LOG_SCALE_SPAN = 10


def collect_rows(paths: list[Path], columns: list[str] = BLK_COLUMNS) -> pd.DataFrame:
    """One DataFrame from per-job JSON files (a row or a list of rows), in the contract's column order."""
    rows = []
    for p in paths:
        data = json.loads(Path(p).read_text(encoding="utf-8"))
        rows += data if isinstance(data, list) else [data]
    df = pd.DataFrame(rows, columns=columns)
    keys = [c for c in ("arch", "platform", "provider", "data_bytes", "rep") if c in columns]
    return df.sort_values(keys, kind="stable").reset_index(drop=True)


_label = matrix.row_label


def _study_platform(platform: str) -> str:
    """The study's platform whose published values a row of ours is shown beside."""
    return matrix.STUDY_PLATFORM.get(platform, platform)


def _with_platform_note(platform: str, row_note: str) -> str:
    """The row's note (why it is not a performance result) first, then what the platform is."""
    return "; ".join(n for n in (row_note, matrix.NOTES.get(platform, "")) if n)


def _unmeasured_labels(platform: str, measured: set[str], skipped: dict[str, str]) -> list[str]:
    """Row labels of platform to show as not measured: each skipped provider's, or the platform's if it has no
    row at all (skipped keys are row labels: the platform, with its provider in brackets for a unikernel)."""
    labels = [label for label in skipped if base_platform(label) == platform and label not in measured]
    return labels or ([] if measured else [platform])


def not_performance_why(accel: object, testbed: object, kvm_impl: object = "") -> str | None:
    """Why a row times an emulator rather than the platform, or None: TCG guests, anything inside the
    emulated testbed, guests of a software-assisted KVM (whose kernel code is emulated)."""
    if accel == "tcg" or testbed == "emulated":
        return "emulated"
    if kvm_impl in hostinfo.SOFTWARE_KVM:
        return f"software-assisted KVM ({kvm_impl})"
    return None


def note(accel: object, testbed: object, kvm_impl: object = "") -> str:
    """The table note of a measured row: why it is not a performance result, or nothing."""
    why = not_performance_why(accel, testbed, kvm_impl)
    return f"{why}: not a performance result" if why else ""


def marker(accel: object, testbed: object, kvm_impl: object) -> str:
    """The figure label's mark for a row that is not a performance result, or nothing."""
    why = not_performance_why(accel, testbed, kvm_impl)
    if why is None:
        return ""
    return f"[{accel}, emulated]" if why == "emulated" else f"[{kvm_impl}]"


@dataclass(frozen=True)
class Busy:
    """When a row counts as measured on a busy machine: conditions.busy_load_per_core and the cores measured on."""

    load_per_core: float
    cores: int

    def columns(self, g: pd.DataFrame, note_so_far: str) -> dict[str, object]:
        """load_before_max and the note, with the busy mark added where it applies.

        Only the load before each repetition counts: the 1-minute average after
        it holds the measurement's own threads (a TCG guest's vCPUs).
        """
        peak = pd.to_numeric(g["load_before"], errors="coerce").max()
        busy = conditions.busy_note(peak, None, self.cores, self.load_per_core)
        return {"load_before_max": peak, "note": "; ".join(n for n in (note_so_far, busy) if n)}


NO_BUSY_FLAG = Busy(load_per_core=float("inf"), cores=1)


def _versions(g: pd.DataFrame) -> str:
    return " ".join(sorted(set(g["pipeline_version"].fillna("").astype(str)) - {""}))


def _prepared(runs: pd.DataFrame, arch: str) -> pd.DataFrame:
    ours = runs[runs["arch"] == arch].copy()
    for column in ("provider", "kvm_impl"):
        ours[column] = ours[column].fillna("")
    return ours


def _not_measured(label: str, skipped: dict[str, str]) -> dict[str, object]:
    """The start of a row for a configured platform (or provider of one) without runs: why, no accel or testbed."""
    return {"platform": label, "accel": None, "kvm_impl": None, "testbed": None,
            "note": "not measured: " + skipped.get(label, "no runs")}


def _reference(ref: pd.DataFrame, host: str, platform: str, column: str, size: int | None = None) -> float:
    """One original value, NaN where the study has none."""
    sel = (ref["host"] == host) & (ref["platform"] == platform)
    if size is not None:
        sel &= ref["icmp_data_bytes"] == size
    hit = ref.loc[sel, column]
    return float(hit.iloc[0]) if len(hit) else NAN


def blk_table(runs: pd.DataFrame, reference: pd.DataFrame, arch: str,
              platforms: list[str], skipped: dict[str, str], busy: Busy = NO_BUSY_FLAG) -> pd.DataFrame:
    """The study's Table 5.4–5.6 shape for one arch: mean and spread per platform.

    Times are in ms for the configured number of reads; `us_per_read` and the
    ratio to each original host are per read, so they compare across read counts.
    Ratios are left empty for rows that are not performance results (TCG, emulated
    testbed, software-assisted KVM) and for block sizes other than the study's; the
    study's values stay.
    """
    ours = _prepared(runs, arch)
    ours["guest_monitor_ns"] = metrics.guest_monitor_ns(ours)
    ref = reference[reference["arch"] == arch]
    ref_hosts = list(dict.fromkeys(ref["host"]))
    records = []
    for platform in platforms:
        mine = ours[ours["platform"] == platform]
        study = _study_platform(platform)
        measured = {_label(platform, p) for p in mine["provider"]}
        for label in _unmeasured_labels(platform, measured, skipped):
            rec = _not_measured(label, skipped)
            for host in ref_hosts:
                rec[f"{host}_total_ms"] = _reference(ref, host, study, "total_ms")
                rec[f"ratio_{host}"] = NAN
            records.append(rec)
        for (provider, accel, kvm_impl, testbed), g in mine.groupby(GROUP_KEYS, dropna=False):
            block_size = int(g["block_size"].iloc[0])
            per_read_us = (g["total_ns"] / g["reads"]).mean() / 1e3
            rec = {
                "platform": _label(platform, provider), "accel": accel, "kvm_impl": kvm_impl, "testbed": testbed,
                "runs": len(g), "reads": int(g["reads"].iloc[0]), "block_size": block_size,
                **_described("total", g["total_ns"] / NS_PER_MS, "ms", cv="cv_total"),
                **_described("pread", g["pread_ns"] / NS_PER_MS, "ms"),
                **_described("guest_monitor", g["guest_monitor_ns"] / NS_PER_MS, "ms"),
                "us_per_read": per_read_us,
                **busy.columns(g, _with_platform_note(platform, note(accel, testbed, kvm_impl))),
                "pipeline_version": _versions(g),
            }
            comparable = block_size == STUDY_BLOCK_SIZE and not not_performance_why(accel, testbed, kvm_impl)
            for host in ref_hosts:
                orig_ms = _reference(ref, host, study, "total_ms")
                rec[f"{host}_total_ms"] = orig_ms
                rec[f"ratio_{host}"] = per_read_us / (orig_ms * 1e3 / STUDY_READS) if comparable else NAN
            records.append(rec)
    return _ordered(pd.DataFrame.from_records(records), BLK_TABLE_COLUMNS)


def _described(metric: str, values: pd.Series, mean_suffix: str = "", cv: str = "") -> dict[str, float]:
    """The table columns of one metric over repetitions: mean (metric_<mean_suffix>), sd, median, CI, cv."""
    summary = stats.summary(values.to_numpy(dtype=float))
    out = {f"{metric}_{mean_suffix}" if mean_suffix else metric: summary["mean"], f"{metric}_sd": summary["sd"],
           f"{metric}_median": summary["median"], f"{metric}_ci_low": summary["ci_low"],
           f"{metric}_ci_high": summary["ci_high"]}
    if cv:
        out[cv] = summary["cv"]
    return out


def _ordered(table: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Every contract column first (empty if no row fills it); rows in the emulated testbed after the others."""
    table = table.reindex(columns=columns + [c for c in table.columns if c not in columns])
    table = table.astype({c: "Int64" for c in _INT_COLUMNS if c in table.columns})
    if "testbed" in table:
        table = table.sort_values("testbed", key=lambda t: t.eq("emulated"), kind="stable").reset_index(drop=True)
    return table


def write_table(table: pd.DataFrame, stem: Path, caption: str) -> None:
    """stem.csv (full precision), stem.md and stem.tex (rounded for reading)."""
    table.to_csv(stem.with_suffix(".csv"), index=False)
    readable = table.round(3).astype(object).where(table.notna(), "")
    stem.with_suffix(".md").write_text(
        f"{caption}\n\n" + readable.to_markdown(index=False) + "\n", encoding="utf-8"
    )
    stem.with_suffix(".tex").write_text(
        readable.to_latex(index=False, caption=caption, escape=True), encoding="utf-8"
    )


def _our_panels(table: pd.DataFrame, value_col: str) -> list[tuple[str, pd.DataFrame]]:
    """Our measured rows split into native and emulated-testbed panels (never one axis)."""
    measured = table[table[value_col].notna()] if value_col in table else table.iloc[0:0]
    emulated = measured["testbed"].eq("emulated")
    panels = [("this pipeline: native", measured[~emulated]),
              ("this pipeline: emulated testbed\n(not performance results)", measured[emulated])]
    return [(title, rows) for title, rows in panels if len(rows)] or [("this pipeline", measured)]


Panels = list[tuple[str, pd.DataFrame]]


def _figure(table: pd.DataFrame, reference: pd.DataFrame, arch: str, value_col: str, width: float,
            panels: Panels | None = None, bar_in: float = 0.0
            ) -> tuple[pd.DataFrame, pd.DataFrame, list[str], Panels, Figure, list[Axes]]:
    """Shared set-up: (table with notes as text, reference rows, reference hosts, our panels, figure, axes).

    panels: (title, table rows) of our bars, one axis each; by default this table's native and emulated-testbed
    rows (a merge of several hosts gives its own). Rows without a value are left out. width: inches per panel, at
    least bar_in per bar of the fullest of ours (one bar per row), so labels under the bars never overlap.
    """
    # A bare Figure, not pyplot: no global figure registry to leak into, and callers may inspect it after saving.
    from matplotlib.figure import Figure

    ref = reference[reference["arch"] == arch]
    ref_hosts = list(dict.fromkeys(ref["host"]))
    table = table.assign(note=table["note"].fillna("").astype(str))
    if panels is None:
        panels = _our_panels(table, value_col)
    else:
        measured = [(title, rows[rows[value_col].notna()]) for title, rows in panels]
        panels = [(title, rows.assign(note=rows["note"].astype(object).fillna("").astype(str)))
                  for title, rows in measured]
    n = len(panels) + len(ref_hosts)
    width = max(width, bar_in * max((len(rows) for _, rows in panels), default=0))
    fig = Figure(figsize=(width * n + 0.5, PANELS_IN))
    axes = fig.subplots(1, n, squeeze=False)
    return table, ref, ref_hosts, panels, fig, list(axes[0])


def _blk_title(table: pd.DataFrame, arch: str) -> str:
    """The figure title, naming the block size our bars were read with (each, if they differ)."""
    measured = table[table["us_per_read"].notna() & table["block_size"].notna()]
    by_size: dict[int, list[str]] = {}
    for platform, size in zip(measured["platform"], measured["block_size"], strict=True):
        by_size.setdefault(int(size), []).append(platform)
    study = f"the study's: {STUDY_BLOCK_SIZE}-byte"
    if len(by_size) == 1:
        (size,) = by_size
        return (f"Block reads ({arch}): time per {size}-byte O_DIRECT read"
                + ("" if size == STUDY_BLOCK_SIZE else f" ({study})"))
    if not by_size:
        return f"Block reads ({arch}): time per O_DIRECT read ({study})"
    sizes = "; ".join(f"{size} B: {', '.join(dict.fromkeys(names))}" for size, names in sorted(by_size.items()))
    return f"Block reads ({arch}): time per O_DIRECT read, block sizes differ ({sizes}; {study})"


def base_platform(label: str) -> str:
    """'solo5-hvt (builtin)\n[kvm_pvm]' -> 'solo5-hvt'."""
    return label.split("\n")[0].split(" ")[0]


def provider_alpha(label: str) -> float:
    """A provider's shade of its platform's colour: upstream Solo5's rows lighter, so both stand side by side."""
    return UPSTREAM_ALPHA if label.split("\n")[0].split(" [")[0].endswith(f"({UPSTREAM})") else 1.0


def platform_colour(label: str) -> str:
    """One colour per platform in every panel of every figure (a provider suffix or mark keeps it)."""
    base = base_platform(label)
    return PLATFORM_COLOURS.get(base, _SPARE_COLOURS[sum(map(ord, base)) % len(_SPARE_COLOURS)])


def _error_bars(ax: Axes, x: list[float], mean: pd.Series, low: pd.Series, high: pd.Series) -> None:
    """95% CI whiskers on our bars; rows without a CI (one repetition) get none."""
    below = (mean - low).to_numpy(dtype=float)
    above = (high - mean).to_numpy(dtype=float)
    ax.errorbar(x, mean.to_numpy(dtype=float), yerr=[below, above], fmt="none", ecolor="black", elinewidth=1,
                capsize=3)


def blk_figure(table: pd.DataFrame, reference: pd.DataFrame, arch: str, stem: Path,
               panels: Panels | None = None) -> Figure:
    """Stacked bars (pread light, guest + monitor dark, µs per read) in each platform's colour, with the 95% CI
    of our total; ours beside the study's; writes PNG and PDF. panels: see _figure."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    table, ref, ref_hosts, panels, fig, axes = _figure(table, reference, arch, "us_per_read", 3.8, panels,
                                                       bar_in=BLK_BAR_IN)

    def stacked(ax: Axes, labels: list[str], pread: pd.Series, rest: pd.Series, hatch: list[str]) -> list[int]:
        x = list(range(len(labels)))
        colours = [platform_colour(label) for label in labels]
        ax.bar(x, pread, color=colours, alpha=0.45, hatch=hatch, edgecolor="black", linewidth=0.5)
        ax.bar(x, rest, bottom=pread, color=colours, hatch=hatch, edgecolor="black", linewidth=0.5)
        ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
        return x

    any_marked = False
    for ax, (title, rows) in zip(axes, panels, strict=False):
        if rows.empty:
            ax.text(0.5, 0.5, "no runs", ha="center", va="center", transform=ax.transAxes)
        else:
            per_read = rows["us_per_read"] / rows["total_ms"]
            marks = [marker(a, t, k) for a, t, k in zip(rows["accel"], rows["testbed"], rows["kvm_impl"], strict=True)]
            labels = [p + (f"\n{m}" if m else "") for p, m in zip(rows["platform"], marks, strict=True)]
            any_marked |= any(marks)
            x = stacked(ax, labels, rows["pread_ms"] * per_read, rows["guest_monitor_ms"] * per_read,
                        ["//" if m else "" for m in marks])
            _error_bars(ax, x, rows["us_per_read"], rows["total_ci_low"] * per_read,
                        rows["total_ci_high"] * per_read)
        ax.set_title(title, fontsize=9)
    axes[0].set_ylabel("µs per read")
    for ax, host in zip(axes[len(panels):], ref_hosts, strict=True):
        rows = ref[ref["host"] == host]
        stacked(ax, list(rows["platform"]), rows["pread_syscall_ms"] * 1e3 / STUDY_READS,
                rows["guest_plus_monitor_ms"].fillna(0) * 1e3 / STUDY_READS, [""] * len(rows))
        ax.set_title(f"original study: {host}", fontsize=9)
    legend = [Patch(facecolor="grey", alpha=0.45, label="pread syscall (light)"),
              Patch(facecolor="grey", label="guest + monitor (dark)"),
              Line2D([], [], color="black", marker="_", markersize=8, linewidth=0, label="95% CI of our total")]
    if any_marked:
        legend.append(Patch(facecolor="white", edgecolor="black", hatch="//", label="not a performance result"))
    _finish(fig, table, _blk_title(table, arch), stem, legend)
    return fig


def overhead_table(runs: pd.DataFrame, arch: str, floor: dict[str, int]) -> pd.DataFrame:
    """Per platform: ns per read (total, pread, the rest) and that rest over the exit floor."""
    floor_ns = floor["total_ns"] / floor["n"]
    # The floor is measured where the tender runs: compare the tender and the host's own pread, not TCG guests.
    ours = _prepared(runs, arch)
    ours = ours[ours["platform"].isin(["host", "solo5-hvt", "solo5-spt"])]
    records = []
    for (platform, provider, accel, kvm_impl, testbed), g in ours.groupby(["platform", *GROUP_KEYS], dropna=False):
        total = (g["total_ns"] / g["reads"]).mean()
        pread = (g["pread_ns"] / g["reads"]).mean()
        rec = {"platform": _label(platform, provider), "accel": accel, "kvm_impl": kvm_impl,
               "testbed": testbed, "runs": len(g), "total_ns_per_read": total, "pread_ns_per_read": pread,
               "overhead_ns_per_read": total - pread, "exit_floor_ns": floor_ns,
               # Only an hvt read costs VM exits; host and spt reads make none.
               "overhead_over_floor": (total - pread) / floor_ns if matrix.TENDER.get(platform) == "hvt" else NAN,
               "note": _with_platform_note(platform, note(accel, testbed, kvm_impl)), "pipeline_version": _versions(g)}
        records.append(rec)
    # Explicit columns: an arch with no host or tender runs still gets a table with a header.
    return _ordered(pd.DataFrame.from_records(records, columns=OVERHEAD_TABLE_COLUMNS), OVERHEAD_TABLE_COLUMNS)


def _net_reference(ref: pd.DataFrame, ref_hosts: list[str], platform: str, size: int | None,
                   pps: float) -> dict[str, float]:
    """Each original host's pps for this platform and size, and ours over it (NaN pps: no ratio)."""
    out = {}
    for host in ref_hosts:
        orig = _reference(ref, host, platform, "packets_per_second", size) if size is not None else NAN
        out[f"{host}_pps"] = orig
        out[f"ratio_{host}"] = pps / orig
    return out


def net_table(runs: pd.DataFrame, reference: pd.DataFrame, arch: str, platforms: list[str],
              skipped: dict[str, str], busy: Busy = NO_BUSY_FLAG) -> pd.DataFrame:
    """The study's Table 5.1-5.3 shape for one arch: mean pps (with spread) per platform and size.

    `packets` is per run; `lost_pct` is lost over sent, both summed over the runs.
    A platform we did not measure keeps one row per size the study reports for it.
    """
    ours = _prepared(runs, arch)
    ref = reference[reference["arch"] == arch]
    ref_hosts = list(dict.fromkeys(ref["host"]))
    records = []
    for platform in platforms:
        mine = ours[ours["platform"] == platform]
        study = _study_platform(platform)
        measured = {_label(platform, p) for p in mine["provider"]}
        for label in _unmeasured_labels(platform, measured, skipped):
            sizes: list[int | None] = sorted({int(s) for s in ref.loc[ref["platform"] == study, "icmp_data_bytes"]})
            for size in sizes or [None]:
                rec = _not_measured(label, skipped) | {"data_bytes": size}
                records.append(rec | _net_reference(ref, ref_hosts, study, size, NAN))
        for (provider, accel, kvm_impl, testbed, size), g in mine.groupby([*GROUP_KEYS, "data_bytes"], dropna=False):
            pps = g["pps"].mean()
            rec = {"platform": _label(platform, provider), "accel": accel, "kvm_impl": kvm_impl, "testbed": testbed,
                   "data_bytes": int(size), "runs": len(g), "packets": int(g["packets"].iloc[0]),
                   **_described("pps", g["pps"], cv="pps_cv"), "avg_rtt_us": g["avg_rtt_ns"].mean() / 1e3,
                   # Each run's percentile, averaged over runs (icmp_bench keeps no samples to pool).
                   **{f"p{q}_rtt_us": g[f"p{q}_rtt_ns"].mean() / 1e3 for q in (50, 90, 99)},
                   "lost_pct": 100 * g["lost"].sum() / g["packets"].sum(),
                   **busy.columns(g, _with_platform_note(platform, note(accel, testbed, kvm_impl))),
                   "pipeline_version": _versions(g)}
            ratio_pps = NAN if not_performance_why(accel, testbed, kvm_impl) else pps
            records.append(rec | _net_reference(ref, ref_hosts, study, int(size), ratio_pps))
    return _ordered(pd.DataFrame.from_records(records), NET_TABLE_COLUMNS)


def net_figure(table: pd.DataFrame, reference: pd.DataFrame, arch: str, stem: Path,
               panels: Panels | None = None) -> Figure:
    """Grouped bars (pps per data size, one bar per platform in its colour, 95% CI on ours): ours beside the
    study's; writes PNG and PDF. panels: see _figure."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    table, ref, ref_hosts, panels, fig, axes = _figure(table, reference, arch, "pps", 4.2, panels)
    seen: dict[str, Patch] = {}

    def grouped(ax: Axes, frame: pd.DataFrame, label_col: str, size_col: str, value_col: str,
                hatched: frozenset[str] = frozenset(), ci: tuple[str, str] | None = None) -> None:
        labels = list(dict.fromkeys(frame[label_col]))
        sizes = sorted({int(s) for s in frame[size_col]})
        width = 0.8 / max(1, len(labels))
        for i, label in enumerate(labels):
            part = frame[frame[label_col] == label].set_index(size_col).reindex(sizes)
            x = [s + i * width for s in range(len(sizes))]
            hatch = "//" if label in hatched else ""
            ax.bar(x, part[value_col], width, label=label, color=platform_colour(label), hatch=hatch,
                   edgecolor="black", linewidth=0.5, alpha=provider_alpha(label))
            row = label.split(" [")[0]  # the platform and its provider, without a not-a-result mark
            seen.setdefault(row, Patch(facecolor=platform_colour(row), alpha=provider_alpha(row), label=row))
            if ci:
                _error_bars(ax, x, part[value_col], part[ci[0]], part[ci[1]])
        ax.set_xticks([x + width * (len(labels) - 1) / 2 for x in range(len(sizes))], [str(s) for s in sizes])
        ax.set_xlabel("ICMP data bytes")

    any_marked = False
    for ax, (title, rows) in zip(axes, panels, strict=False):
        if rows.empty:
            ax.text(0.5, 0.5, "no runs", ha="center", va="center", transform=ax.transAxes)
        else:
            marks = [marker(a, t, k) for a, t, k in zip(rows["accel"], rows["testbed"], rows["kvm_impl"], strict=True)]
            labels = [p + (f" {m}" if m else "") for p, m in zip(rows["platform"], marks, strict=True)]
            hatched = frozenset(label for label, m in zip(labels, marks, strict=True) if m)
            any_marked |= bool(hatched)
            grouped(ax, rows.assign(label=labels), "label", "data_bytes", "pps", hatched,
                    ci=("pps_ci_low", "pps_ci_high"))
            # spt answers some 30x faster than hvt: on a linear axis the slower rows would be slivers.
            if rows["pps"].max() > LOG_SCALE_SPAN * rows["pps"].min():
                ax.set_yscale("log")
                title += " (log scale)"
        ax.set_title(title, fontsize=9)
    axes[0].set_ylabel("packets per second")
    for ax, host in zip(axes[len(panels):], ref_hosts, strict=True):
        grouped(ax, ref[ref["host"] == host], "platform", "icmp_data_bytes", "packets_per_second")
        ax.set_title(f"original study: {host}", fontsize=9)
    legend: list[Artist] = list(seen.values())
    legend.append(Line2D([], [], color="black", marker="_", markersize=8, linewidth=0, label="95% CI (ours)"))
    if any_marked:
        legend.append(Patch(facecolor="white", edgecolor="black", hatch="//", label="not a performance result"))
    _finish(fig, table, f"ICMP echo round trips ({arch})", stem, legend)
    return fig


def _finish(fig: Figure, table: pd.DataFrame, title: str, stem: Path, legend: list[Artist]) -> None:
    """One legend below the panels (never over a bar), a footnote naming the platforms that could not run
    (each reason once, after the rows it concerns, wrapped to the figure's width), the title; writes PNG and PDF.

    The figure grows by the rows of legend and footnote, so the panels keep their height however many there are.
    """
    width_in = fig.get_figwidth()
    notes = table["note"].fillna("").astype(str)
    skipped = table[notes.str.startswith("not measured")]
    by_reason: dict[str, list[str]] = {}
    for platform, row_note in zip(skipped["platform"], skipped["note"], strict=True):
        by_reason.setdefault(row_note.removeprefix("not measured: "), []).append(platform)
    footnote = textwrap.fill("not measured: " + "; ".join(f"{', '.join(dict.fromkeys(rows))} ({why})"
                                                          for why, rows in by_reason.items()),
                             width=int(width_in * FOOTNOTE_CHARS_PER_IN)) if by_reason else ""
    ncol = max(1, min(len(legend), int(width_in / LEGEND_COLUMN_IN)))
    legend_in = LEGEND_ROW_IN * -(-len(legend) // ncol)
    footnote_in = FOOTNOTE_LINE_IN * (footnote.count("\n") + 1) if footnote else 0.0
    band_in = MARGIN_IN + footnote_in + legend_in + MARGIN_IN
    height_in = PANELS_IN + band_in
    fig.set_figheight(height_in)
    if footnote:
        fig.text(0.01, MARGIN_IN / height_in, footnote, fontsize=7, va="bottom")
    fig.legend(handles=legend, loc="lower center", bbox_to_anchor=(0.5, (MARGIN_IN + footnote_in) / height_in),
               ncol=ncol, fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, band_in / height_in, 1, 1))
    for ext in (".png", ".pdf"):
        fig.savefig(stem.with_suffix(ext), dpi=120)


def caption(experiment: str, runs: pd.DataFrame, arch: str) -> str:
    """The table caption, naming the pipeline versions that measured this arch's rows."""
    versions = _versions(runs[runs["arch"] == arch]) or "(no rows)"
    return CAPTIONS[experiment].format(arch=arch, versions=versions)


# What the generic aggregation scripts dispatch on, per experiment.
TABLES = {"blk": blk_table, "net": net_table}
FIGURES = {"blk": blk_figure, "net": net_figure}
CAPTIONS = {
    "blk": ("Block reads on {arch}: mean of repetitions, ms (sd = spread); us_per_read and ratio_<host> "
            "compare per read with the original study (no ratio for TCG, emulated-testbed or software-assisted "
            "KVM rows). runs x reads: the counts each row used; emulated rows (TCG, emulated testbed) use "
            "testbed.blk's. Measured by pipeline {versions}."),
    "net": ("ICMP echo round trips on {arch}: packets per second, mean over repetitions (pps_sd = spread), "
            "per platform and data size; packets per run, lost_pct = lost / sent over all runs (%); "
            "beside the original study (no ratio for TCG, emulated-testbed or software-assisted KVM rows). "
            "runs x packets: the counts each row used; emulated rows (TCG, emulated testbed) use testbed.net's. "
            "Measured by pipeline {versions}."),
    "overhead": ("Per-read cost on {arch} against the physical floor: the smallest KVM exit round trip measured "
                 "on this machine (ns); overhead = total - pread per read. Measured by pipeline {versions}."),
}
