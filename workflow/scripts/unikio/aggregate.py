"""Tidy data → the study's tables and figures, beside the original values."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .results import BLK_COLUMNS, NET_COLUMNS

STUDY_READS = 100_000  # reads per run in the original study
STUDY_BLOCK_SIZE = 512
NS_PER_MS = 1e6
COLUMNS = {"blk": BLK_COLUMNS, "net": NET_COLUMNS}
BLK_TABLE_COLUMNS = ["platform", "accel", "testbed", "runs", "reads", "block_size", "total_ms", "total_sd",
                     "pread_ms", "pread_sd", "guest_monitor_ms", "guest_monitor_sd", "cv_total", "us_per_read",
                     "note"]
NET_TABLE_COLUMNS = ["platform", "accel", "testbed", "data_bytes", "runs", "packets", "pps", "pps_sd", "avg_rtt_us",
                     "lost", "note"]


def collect_rows(paths: list[Path], columns: list[str] = BLK_COLUMNS) -> pd.DataFrame:
    """One DataFrame from per-job JSON files (a row or a list of rows), in the contract's column order."""
    rows = []
    for p in paths:
        data = json.loads(Path(p).read_text(encoding="utf-8"))
        rows += data if isinstance(data, list) else [data]
    df = pd.DataFrame(rows, columns=columns)
    keys = [c for c in ("arch", "platform", "provider", "data_bytes", "rep") if c in columns]
    return df.sort_values(keys, kind="stable").reset_index(drop=True)


def _label(platform: str, provider: str) -> str:
    return f"{platform} ({provider})" if provider else platform


def blk_table(runs: pd.DataFrame, reference: pd.DataFrame, arch: str,
              platforms: list[str], skipped: dict[str, str]) -> pd.DataFrame:
    """The study's Table 5.4–5.6 shape for one arch: mean and spread per platform.

    Times are in ms for the configured number of reads; `us_per_read` and the
    ratio to each original host are per read, so they compare across read counts.
    """
    ours = runs[runs["arch"] == arch].copy()
    ours["provider"] = ours["provider"].fillna("")
    ours["guest_monitor_ns"] = ours["total_ns"] - ours["pread_ns"]
    ref = reference[reference["arch"] == arch]
    ref_hosts = list(dict.fromkeys(ref["host"]))
    records = []
    for platform in platforms:
        mine = ours[ours["platform"] == platform]
        groups = list(mine.groupby(["provider", "accel", "testbed"], dropna=False)) or [(("", "", ""), None)]
        for (provider, accel, testbed), g in groups:
            rec: dict[str, object] = {"platform": _label(platform, provider), "accel": accel,
                                      "testbed": testbed}
            if g is None:
                rec["note"] = "not measured: " + skipped.get(platform, "no runs")
            else:
                total_ms = g["total_ns"] / NS_PER_MS
                pread_ms = g["pread_ns"] / NS_PER_MS
                gm_ms = g["guest_monitor_ns"] / NS_PER_MS
                reads = int(g["reads"].iloc[0])
                per_read_us = (g["total_ns"] / g["reads"]).mean() / 1e3
                rec.update({
                    "runs": len(g), "reads": reads, "block_size": int(g["block_size"].iloc[0]),
                    "total_ms": total_ms.mean(), "total_sd": total_ms.std(ddof=1),
                    "pread_ms": pread_ms.mean(), "pread_sd": pread_ms.std(ddof=1),
                    "guest_monitor_ms": gm_ms.mean(), "guest_monitor_sd": gm_ms.std(ddof=1),
                    "cv_total": total_ms.std(ddof=1) / total_ms.mean() if len(g) > 1 else float("nan"),
                    "us_per_read": per_read_us,
                    "note": "emulated: not a performance result" if accel == "tcg" or testbed == "emulated" else "",
                })
            for host in ref_hosts:
                orig = ref[(ref["host"] == host) & (ref["platform"] == platform)]
                orig_ms = float(orig["total_ms"].iloc[0]) if len(orig) else float("nan")
                rec[f"{host}_total_ms"] = orig_ms
                comparable = g is not None and int(g["block_size"].iloc[0]) == STUDY_BLOCK_SIZE
                rec[f"ratio_{host}"] = (
                    rec["us_per_read"] / (orig_ms * 1e3 / STUDY_READS) if comparable and len(orig) else float("nan")
                )
            records.append(rec)
    return _ordered(pd.DataFrame.from_records(records), BLK_TABLE_COLUMNS)


def _ordered(table: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Contract columns first; rows measured in the emulated testbed after the others."""
    first = [c for c in columns if c in table.columns]
    table = table[first + [c for c in table.columns if c not in first]]
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


def _figure(table: pd.DataFrame, reference: pd.DataFrame, arch: str, value_col: str, width: float):
    """Shared set-up: (table with notes as text, reference rows, reference hosts, our panels, figure, axes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref = reference[reference["arch"] == arch]
    ref_hosts = list(dict.fromkeys(ref["host"]))
    table = table.assign(note=table["note"].fillna("").astype(str))
    panels = _our_panels(table, value_col)
    n = len(panels) + len(ref_hosts)
    fig, axes = plt.subplots(1, n, figsize=(width * n + 0.5, 4), squeeze=False)
    return table, ref, ref_hosts, panels, fig, list(axes[0])


def blk_figure(table: pd.DataFrame, reference: pd.DataFrame, arch: str, stem: Path) -> None:
    """Stacked bars (pread vs guest+monitor, µs per read): ours beside the study's."""
    table, ref, ref_hosts, panels, fig, axes = _figure(table, reference, arch, "us_per_read", 3.8)
    for ax, (title, rows) in zip(axes, panels, strict=False):
        if rows.empty:
            ax.text(0.5, 0.5, "no runs", ha="center", va="center", transform=ax.transAxes)
        else:
            per_read = rows["us_per_read"] / rows["total_ms"]
            pread, rest = rows["pread_ms"] * per_read, rows["guest_monitor_ms"] * per_read
            emulated = rows["note"].str.startswith("emulated")
            labels = [p + (f"\n[{a}, emulated]" if e else "")
                      for p, a, e in zip(rows["platform"], rows["accel"], emulated, strict=True)]
            hatch = ["//" if e else "" for e in emulated]
            x = list(range(len(rows)))
            ax.bar(x, pread, label="pread syscall", color="#4c72b0", hatch=hatch)
            ax.bar(x, rest, bottom=pread, label="guest + monitor", color="#dd8452", hatch=hatch)
            ax.set_xticks(x, labels, rotation=20, ha="right", fontsize=8)
            ax.legend(fontsize=8)
        ax.set_title(title, fontsize=9)
    axes[0].set_ylabel("µs per read")
    for ax, host in zip(axes[len(panels):], ref_hosts, strict=True):
        rows = ref[ref["host"] == host]
        x = list(range(len(rows)))
        pread = rows["pread_syscall_ms"] * 1e3 / STUDY_READS
        rest = rows["guest_plus_monitor_ms"].fillna(0) * 1e3 / STUDY_READS
        ax.bar(x, pread, color="#4c72b0")
        ax.bar(x, rest, bottom=pread, color="#dd8452")
        ax.set_xticks(x, list(rows["platform"]), rotation=20, ha="right", fontsize=8)
        ax.set_title(f"original study: {host}", fontsize=9)
    _finish(fig, table, f"Block reads ({arch}): time per {STUDY_BLOCK_SIZE}-byte O_DIRECT read", stem)


def overhead_table(runs: pd.DataFrame, arch: str, floor: dict[str, int]) -> pd.DataFrame:
    """Per platform: ns per read (total, pread, the rest) and that rest over the exit floor."""
    floor_ns = floor["total_ns"] / floor["n"]
    # The floor is measured where the tender runs: compare the tender and the host's own pread, not TCG guests.
    ours = runs[(runs["arch"] == arch) & runs["platform"].isin(["host", "solo5-hvt"])]
    records = []
    for (platform, provider, accel, testbed), g in ours.groupby(["platform", "provider", "accel", "testbed"],
                                                                dropna=False):
        total = (g["total_ns"] / g["reads"]).mean()
        pread = (g["pread_ns"] / g["reads"]).mean()
        rec = {"platform": _label(platform, provider if isinstance(provider, str) else ""), "accel": accel,
               "testbed": testbed, "runs": len(g), "total_ns_per_read": total, "pread_ns_per_read": pread,
               "overhead_ns_per_read": total - pread, "exit_floor_ns": floor_ns,
               "overhead_over_floor": (total - pread) / floor_ns if platform != "host" else float("nan")}
        records.append(rec)
    return pd.DataFrame.from_records(records)


def net_table(runs: pd.DataFrame, reference: pd.DataFrame, arch: str, platforms: list[str],
              skipped: dict[str, str]) -> pd.DataFrame:
    """The study's Table 5.1-5.3 shape for one arch: mean pps (with spread) per platform and size."""
    ours = runs[runs["arch"] == arch].copy()
    ours["provider"] = ours["provider"].fillna("")
    ref = reference[reference["arch"] == arch]
    ref_hosts = list(dict.fromkeys(ref["host"]))
    records = []
    for platform in platforms:
        mine = ours[ours["platform"] == platform]
        if mine.empty:
            rec: dict[str, object] = {"platform": platform, "note": "not measured: " + skipped.get(platform, "no runs")}
            records.append(rec)
            continue
        for (provider, accel, testbed, size), g in mine.groupby(["provider", "accel", "testbed", "data_bytes"]):
            rec = {"platform": _label(platform, provider), "accel": accel, "testbed": testbed,
                   "data_bytes": int(size), "runs": len(g), "packets": int(g["packets"].iloc[0]),
                   "pps": g["pps"].mean(), "pps_sd": g["pps"].std(ddof=1), "avg_rtt_us": g["avg_rtt_ns"].mean() / 1e3,
                   "lost": int(g["lost"].sum()),
                   "note": "emulated: not a performance result" if accel == "tcg" or testbed == "emulated" else ""}
            for host in ref_hosts:
                orig = ref[(ref["host"] == host) & (ref["platform"] == platform) & (ref["icmp_data_bytes"] == size)]
                orig_pps = float(orig["packets_per_second"].iloc[0]) if len(orig) else float("nan")
                rec[f"{host}_pps"] = orig_pps
                rec[f"ratio_{host}"] = rec["pps"] / orig_pps if len(orig) else float("nan")
            records.append(rec)
    return _ordered(pd.DataFrame.from_records(records), NET_TABLE_COLUMNS)



def net_figure(table: pd.DataFrame, reference: pd.DataFrame, arch: str, stem: Path) -> None:
    """Grouped bars (pps per data size, one bar per platform): ours beside the study's."""
    table, ref, ref_hosts, panels, fig, axes = _figure(table, reference, arch, "pps", 4.2)

    def grouped(ax, frame: pd.DataFrame, label_col: str, size_col: str, value_col: str) -> None:
        labels = list(dict.fromkeys(frame[label_col]))
        sizes = sorted(set(frame[size_col]))
        width = 0.8 / max(1, len(labels))
        for i, label in enumerate(labels):
            part = frame[frame[label_col] == label].set_index(size_col)
            values = [part[value_col].get(s, float("nan")) for s in sizes]
            ax.bar([x + i * width for x in range(len(sizes))], values, width, label=label,
                   hatch="//" if "emulated" in label else "")
        ax.set_xticks([x + width * (len(labels) - 1) / 2 for x in range(len(sizes))], [str(s) for s in sizes])
        ax.set_xlabel("ICMP data bytes")
        ax.legend(fontsize=7)

    for ax, (title, rows) in zip(axes, panels, strict=False):
        if rows.empty:
            ax.text(0.5, 0.5, "no runs", ha="center", va="center", transform=ax.transAxes)
        else:
            labels = [p + (f" [{a}, emulated]" if n.startswith("emulated") else "")
                      for p, a, n in zip(rows["platform"], rows["accel"], rows["note"], strict=True)]
            grouped(ax, rows.assign(label=labels), "label", "data_bytes", "pps")
        ax.set_title(title, fontsize=9)
    axes[0].set_ylabel("packets per second")
    for ax, host in zip(axes[len(panels):], ref_hosts, strict=True):
        grouped(ax, ref[ref["host"] == host], "platform", "icmp_data_bytes", "packets_per_second")
        ax.set_title(f"original study: {host}", fontsize=9)
    _finish(fig, table, f"ICMP echo round trips ({arch})", stem)


def _finish(fig, table: pd.DataFrame, title: str, stem: Path) -> None:
    """Footnote the platforms that could not run, title, write PNG and PDF."""
    import matplotlib.pyplot as plt

    skipped = table[table["note"].fillna("").astype(str).str.startswith("not measured")]
    if len(skipped):
        fig.text(0.01, 0.01, "not measured: " + ", ".join(skipped["platform"]), fontsize=7)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    for ext in (".png", ".pdf"):
        fig.savefig(stem.with_suffix(ext), dpi=120)
    plt.close(fig)


# What the generic aggregation scripts dispatch on, per experiment.
TABLES = {"blk": blk_table, "net": net_table}
FIGURES = {"blk": blk_figure, "net": net_figure}
CAPTIONS = {
    "blk": ("Block reads on {arch}: mean of repetitions, ms (sd = spread); us_per_read and ratio_<host> "
            "compare per read with the original study."),
    "net": ("ICMP echo round trips on {arch}: packets per second, mean over repetitions (pps_sd = spread), "
            "per platform and data size, beside the original study."),
}
