"""A/B: the current runs against a baseline's — what did my change do?

The baseline is an ``artifact.tar.gz`` written by ``archive`` or a results (or
project) directory; only its runs CSVs are read. Rows are matched by
experiment, arch, platform, provider (and data size for the network); rows
whose measurement settings differ are not compared, and say which setting.

For each matched row and metric: the baseline and current mean over
repetitions, the difference in % with its 95% CI (the project's one bootstrap,
``stats.two_sample_ci``), the p-value of a two-sided permutation test of the
difference of means over the repetitions, and a verdict. ``faster`` or
``slower`` needs all three: p < alpha, |difference| >= the minimum effect, and
a CI that excludes 0; anything else is ``no significant change``.
"""

from __future__ import annotations

import io
import itertools
import math
import tarfile
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from . import aggregate, stats
from .errors import PipelineError
from .metrics import METRICS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

BASELINE_KEY = "compare.baseline"
RUNS_FILES = {"blk": "blk_runs.csv", "net": "net_runs.csv"}
# What names a row on both sides, and what must be equal before two rows are compared.
ROW_KEYS = {"blk": ["arch", "platform", "provider"], "net": ["arch", "platform", "provider", "data_bytes"]}
SETTINGS = {"blk": ["reads", "block_size", "accel", "testbed", "kvm_impl"],
            "net": ["packets", "accel", "testbed", "kvm_impl"]}
# Settings named in the plural ("reads differ").
_PLURAL = {"reads", "packets"}
# Permutation test: every split of the pooled repetitions when there are at most EXACT_LIMIT of them,
# otherwise PERMUTATIONS random splits (seeded).
EXACT_LIMIT = 20_000
PERMUTATIONS = 20_000
_CHUNK = 2_000
DEFAULT_ALPHA = 0.01
DEFAULT_MIN_EFFECT_PCT = 5.0
FASTER, SLOWER, NO_CHANGE = "faster", "slower", "no significant change"
ONLY_BASELINE, ONLY_CURRENT = "only in baseline", "only in current"
NOT_COMPARED = "not compared"
CANNOT = "cannot be significant"
NAN = float("nan")


# Columns a runs CSV needs for its metrics; the others may be missing from an older artifact.
_NEEDED = {"blk": ["arch", "platform", "reads", "block_size", "total_ns", "pread_ns"],
           "net": ["arch", "platform", "data_bytes", "packets", "pps", "avg_rtt_ns"]}

COLUMNS = ["experiment", "arch", "platform", "provider", "data_bytes", "accel", "testbed", "kvm_impl", "reads",
           "block_size", "packets", "metric", "better", "baseline_n", "current_n", "baseline_mean", "current_mean",
           "diff_pct", "ci_low_pct", "ci_high_pct", "p_value", "min_p", "verdict", "note", "baseline_max_load",
           "current_max_load", "baseline_pipeline", "current_pipeline"]
# The 1-minute load average recorded just before and after each repetition (results.CONDITION_COLUMNS).
# As the tables judge busy rows: the load after a repetition holds the measurement's own threads.
LOAD_COLUMNS = ("load_before",)
_INT_COLUMNS = ("data_bytes", "reads", "block_size", "packets", "baseline_n", "current_n")


# --- reading runs -----------------------------------------------------------------------------------------------

def _read_csv(data: bytes | Path, where: str) -> pd.DataFrame:
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    try:
        return pd.read_csv(source, keep_default_na=False, na_values=[""])
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise PipelineError(f"{where} is not a runs CSV: {str(exc).splitlines()[0]}") from exc


def baseline_problem(baseline: str) -> str | None:
    """One sentence on why compare.baseline cannot be read as a baseline at all, or None."""
    if not str(baseline).strip():
        return (f"{BASELINE_KEY} is empty: name the archive or results directory to compare with, e.g. "
                "./snakemake --cores 4 compare --config 'compare={\"baseline\": \"old/artifact.tar.gz\"}'")
    path = Path(baseline).expanduser()
    if not path.exists():
        return f"{BASELINE_KEY} names {baseline}, which does not exist"
    here, resolved = Path.cwd().resolve(), path.resolve()
    if resolved == here or resolved == here / "results" or here / "results" in resolved.parents:
        return (f"{BASELINE_KEY} names {baseline}, this run's own results, which the run rewrites; "
                "keep the baseline out of results/ (e.g. move results/artifact.tar.gz to old/)")
    if path.is_file() and not tarfile.is_tarfile(path):
        return f"{BASELINE_KEY} names {baseline}, which is neither a directory nor a tar archive made by `archive`"
    return None


def baseline_input(baseline: str) -> str:
    """The baseline as the workflow's input, checked: PipelineError in one sentence when unset or missing."""
    problem = baseline_problem(baseline)
    if problem:
        raise PipelineError(problem)
    return baseline


def _from_archive(path: Path) -> dict[str, pd.DataFrame]:
    """The runs CSVs inside an archive, read in memory (nothing is extracted)."""
    found: dict[str, pd.DataFrame] = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            members = [m for m in tar.getmembers() if m.isfile()]
            for experiment, name in RUNS_FILES.items():
                # unikio-artifact/results/data/<name>, or any results/data/<name>: the shallowest wins.
                hits = sorted((m for m in members if m.name == f"results/data/{name}"
                               or m.name.endswith(f"/results/data/{name}")), key=lambda m: m.name.count("/"))
                f = tar.extractfile(hits[0]) if hits else None
                if f is not None:
                    found[experiment] = _read_csv(f.read(), f"{BASELINE_KEY} {path}: {hits[0].name}")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise PipelineError(f"{BASELINE_KEY} names {path}, which cannot be read as an archive: {exc}") from exc
    return found


def _from_directory(path: Path) -> dict[str, pd.DataFrame]:
    """A results directory (data/<name>), a project (results/data/<name>) or an unpacked artifact's parent."""
    found: dict[str, pd.DataFrame] = {}
    for base in (path, path / "results", path / "unikio-artifact" / "results"):
        for experiment, name in RUNS_FILES.items():
            if experiment not in found and (base / "data" / name).is_file():
                found[experiment] = _read_csv(base / "data" / name, f"{BASELINE_KEY} {path}: {base / 'data' / name}")
        if found:
            break
    return found


def read_baseline(baseline: str) -> dict[str, pd.DataFrame]:
    """{experiment: runs} of the baseline named by compare.baseline; PipelineError in one sentence if unusable."""
    problem = baseline_problem(baseline)
    if problem:
        raise PipelineError(problem)
    path = Path(baseline).expanduser()
    found = _from_directory(path) if path.is_dir() else _from_archive(path)
    if not found:
        where = "results/data/" if path.is_dir() else "unikio-artifact/results/data/"
        raise PipelineError(f"{BASELINE_KEY} names {baseline}, which holds no runs CSV "
                            f"({where}blk_runs.csv or net_runs.csv)")
    return {experiment: tidy(runs, experiment, f"{BASELINE_KEY} {baseline}") for experiment, runs in found.items()}


def read_current(paths: dict[str, str | Path]) -> dict[str, pd.DataFrame]:
    """{experiment: runs} from this run's runs CSVs."""
    return {experiment: tidy(_read_csv(Path(p), str(p)), experiment, str(p)) for experiment, p in paths.items()}


def tidy(runs: pd.DataFrame, experiment: str, where: str) -> pd.DataFrame:
    """The runs with every column the comparison uses; a column an older artifact lacks is empty."""
    missing = [c for c in _NEEDED[experiment] if c not in runs.columns]
    if missing:
        raise PipelineError(f"{where}: {RUNS_FILES[experiment]} lacks the column(s) {', '.join(missing)}")
    runs = runs.copy()
    for column in ("provider", "accel", "testbed", "kvm_impl", "pipeline_version"):
        runs[column] = runs[column].astype(object).where(runs[column].notna(), "").astype(str) if column in runs else ""
    return runs


# --- statistics -------------------------------------------------------------------------------------------------

@lru_cache(maxsize=32)
def _splits(n: int, k: int) -> np.ndarray:
    """Every choice of k of n indices, one per row."""
    return np.array(list(itertools.combinations(range(n), k)), dtype=np.intp).reshape(-1, k)


def permutation_test(a: Sequence[float], b: Sequence[float], exact_limit: int = EXACT_LIMIT,
                     permutations: int = PERMUTATIONS, seed: int = stats.SEED) -> tuple[float, float, str]:
    """(p, smallest possible p, method) of a two-sided permutation test of mean(a) - mean(b).

    Exact over every split of the pooled values into groups of len(a) and len(b) when there are at most
    exact_limit splits; otherwise `permutations` seeded random splits, p = (1 + hits) / (1 + permutations).
    The smallest possible p is what the most extreme split gives (2 / splits for equal groups, whose mirror
    split is as extreme), so with few repetitions it can exceed any alpha.
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    x, y = x[~np.isnan(x)], y[~np.isnan(y)]
    if not len(x) or not len(y):
        return NAN, NAN, ""
    pooled = np.concatenate([x, y])
    n, k = len(pooled), len(x)
    total = pooled.sum()
    observed = abs(x.mean() - y.mean())
    # Equal differences computed in another order must count as "as extreme".
    tol = 1e-9 * max(float(np.abs(pooled).max()), 1e-300)
    splits = math.comb(n, k)
    if splits <= exact_limit:
        in_a = pooled[_splits(n, k)].sum(axis=1)
        diffs = np.abs(in_a / k - (total - in_a) / (n - k))
        return float(np.mean(diffs >= observed - tol)), (2 if 2 * k == n else 1) / splits, f"exact, {splits} splits"
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, permutations, _CHUNK):
        rows = min(_CHUNK, permutations - start)
        shuffled = rng.permuted(np.broadcast_to(pooled, (rows, n)), axis=1)
        in_a = shuffled[:, :k].sum(axis=1)
        hits += int(np.sum(np.abs(in_a / k - (total - in_a) / (n - k)) >= observed - tol))
    return (1 + hits) / (1 + permutations), 1 / (1 + permutations), f"{permutations} random splits"


def _pct_change(baseline_means: np.ndarray, current_means: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return 100 * (current_means / baseline_means - 1)


def compare_values(baseline: Sequence[float], current: Sequence[float], lower_is_better: bool,
                   alpha: float = DEFAULT_ALPHA, min_effect_pct: float = DEFAULT_MIN_EFFECT_PCT) -> dict[str, object]:
    """One metric of one row: means, difference (%) with its CI, permutation p, verdict and why not significant."""
    b, c = np.asarray(baseline, dtype=float), np.asarray(current, dtype=float)
    b, c = b[~np.isnan(b)], c[~np.isnan(c)]
    out: dict[str, object] = {"baseline_n": len(b), "current_n": len(c),
                              "baseline_mean": float(b.mean()) if len(b) else NAN,
                              "current_mean": float(c.mean()) if len(c) else NAN,
                              "diff_pct": NAN, "ci_low_pct": NAN, "ci_high_pct": NAN, "p_value": NAN, "min_p": NAN}
    notes = []
    if not len(b) or not len(c):
        return out | {"verdict": f"{NOT_COMPARED}: no values on the {'baseline' if not len(b) else 'current'} side",
                      "note": ""}
    if out["baseline_mean"] == 0:
        return out | {"verdict": f"{NOT_COMPARED}: the baseline mean is 0, so there is no relative difference",
                      "note": ""}
    diff, low, high = stats.two_sample_ci(b, c, _pct_change)
    p, min_p, _method = permutation_test(b, c)
    out |= {"diff_pct": diff, "ci_low_pct": low, "ci_high_pct": high, "p_value": p, "min_p": min_p}
    ci_excludes_zero = bool(low > 0 or high < 0)  # False when the CI is NaN
    significant = p < alpha and abs(diff) >= min_effect_pct and ci_excludes_zero
    if significant:
        verdict = FASTER if (diff < 0) == lower_is_better else SLOWER
    else:
        verdict = NO_CHANGE
        if min_p >= alpha:
            notes.append(f"{CANNOT}: with {len(b)} and {len(c)} repetitions the smallest p is {min_p:.3g}, "
                         f"not below alpha {alpha:g}")
        elif p < alpha and abs(diff) < min_effect_pct:
            notes.append(f"p < {alpha:g} but |difference| below the minimum effect {min_effect_pct:g}%")
        elif p < alpha and not ci_excludes_zero:
            notes.append(f"p < {alpha:g} but the CI includes 0" if not math.isnan(low) else
                         f"p < {alpha:g} but no CI (fewer than 2 repetitions on a side)")
    if (len(b) < 2 or len(c) < 2) and not any("CI" in n for n in notes):
        notes.append("fewer than 2 repetitions on a side: no CI")
    return out | {"verdict": verdict, "note": "; ".join(notes)}


# --- rows -------------------------------------------------------------------------------------------------------

def _shown(value: object) -> object:
    """A setting as written: integers without '.0', empty for missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return int(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def _values(g: pd.DataFrame, column: str) -> list[object]:
    return list(dict.fromkeys(_shown(v) for v in g[column])) if column in g else [""]


def setting_differences(experiment: str, base: pd.DataFrame, cur: pd.DataFrame) -> list[str]:
    """Why two rows may not be compared: each setting that differs (or varies within a side)."""
    problems = []
    for column in SETTINGS[experiment]:
        verb = "differ" if column in _PLURAL else "differs"
        vb, vc = _values(base, column), _values(cur, column)
        for side, values in (("baseline", vb), ("current", vc)):
            if len(values) > 1:
                problems.append(f"{column} {'vary' if column in _PLURAL else 'varies'} within the {side} "
                                f"({', '.join(map(str, values))})")
        if len(vb) == 1 and len(vc) == 1 and str(vb[0]) != str(vc[0]):
            problems.append(f"{column} {verb} (baseline {vb[0] if vb[0] != '' else 'none'}, "
                            f"current {vc[0] if vc[0] != '' else 'none'})")
    return problems


def _max_load(g: pd.DataFrame | None) -> float:
    """The highest load average recorded around any repetition of the row; NaN where none was recorded."""
    if g is None or g.empty:
        return NAN
    loads = [pd.to_numeric(g[c], errors="coerce") for c in LOAD_COLUMNS if c in g]
    return float(pd.concat(loads).max()) if loads else NAN


def _versions(g: pd.DataFrame | None) -> str:
    if g is None or g.empty:
        return ""
    return " ".join(sorted(set(g["pipeline_version"]) - {""}))


def _row_base(experiment: str, key: tuple, shown: pd.DataFrame) -> dict[str, object]:
    rec: dict[str, object] = {"experiment": experiment}
    rec.update({k: _shown(v) for k, v in zip(ROW_KEYS[experiment], key, strict=True)})
    for column in ("accel", "testbed", "kvm_impl", *SETTINGS[experiment]):
        values = _values(shown, column)
        # Several values (setting_differences names them): none shown, and integer columns stay integer.
        rec[column] = values[0] if len(values) == 1 else pd.NA
    return rec


def _groups(runs: pd.DataFrame | None, experiment: str) -> dict[tuple, pd.DataFrame]:
    if runs is None or runs.empty:
        return {}
    keys = ROW_KEYS[experiment]
    return {tuple(_shown(v) for v in (k if isinstance(k, tuple) else (k,))): g
            for k, g in runs.groupby(keys, dropna=False, sort=False)}


def _order(key: tuple) -> tuple:
    """Rows by arch, platform, provider, then data size as a number."""
    return tuple((0, v, "") if isinstance(v, int) else (1, 0, str(v)) for v in key)


def compare(baseline: dict[str, pd.DataFrame], current: dict[str, pd.DataFrame],
            alpha: float = DEFAULT_ALPHA, min_effect_pct: float = DEFAULT_MIN_EFFECT_PCT) -> pd.DataFrame:
    """The comparison table: one line per row and metric, or one per row that is not compared."""
    records = []
    for experiment in RUNS_FILES:
        base, cur = _groups(baseline.get(experiment), experiment), _groups(current.get(experiment), experiment)
        for key in sorted(base.keys() | cur.keys(), key=_order):
            gb, gc = base.get(key), cur.get(key)
            rec = _row_base(experiment, key, gc if gc is not None else gb)
            rec |= {"baseline_pipeline": _versions(gb), "current_pipeline": _versions(gc),
                    "baseline_max_load": _max_load(gb), "current_max_load": _max_load(gc),
                    "baseline_n": 0 if gb is None else len(gb), "current_n": 0 if gc is None else len(gc)}
            if gb is None or gc is None:
                records.append(rec | {"verdict": ONLY_CURRENT if gb is None else ONLY_BASELINE, "note": ""})
                continue
            problems = setting_differences(experiment, gb, gc)
            if problems:
                records.append(rec | {"verdict": f"{NOT_COMPARED}: " + "; ".join(problems), "note": ""})
                continue
            why_not = aggregate.note(rec["accel"], rec["testbed"], rec["kvm_impl"])
            listed: list[tuple[np.ndarray, np.ndarray]] = []
            for metric in METRICS[experiment]:
                vb, vc = metric.values(gb).astype(float), metric.values(gc).astype(float)
                if (vb.fillna(0) == 0).all() and (vc.fillna(0) == 0).all():
                    continue  # zero by definition on both sides (the host's guest + monitor)
                pair = (vb.to_numpy(), vc.to_numpy())
                if any(np.array_equal(pair[0], b, equal_nan=True) and np.array_equal(pair[1], c, equal_nan=True)
                       for b, c in listed):
                    continue  # the same numbers as a metric listed already (the host's pread is its total)
                listed.append(pair)
                result = compare_values(vb, vc, metric.lower_is_better, alpha, min_effect_pct)
                note = "; ".join(n for n in (why_not, result.pop("note")) if n)
                records.append(rec | result | {"metric": metric.name, "note": note,
                                               "better": "lower" if metric.lower_is_better else "higher"})
    table = pd.DataFrame.from_records(records, columns=COLUMNS)
    return table.astype({c: "Int64" for c in _INT_COLUMNS})


# --- outputs ----------------------------------------------------------------------------------------------------

def caption(baseline: str, alpha: float, min_effect_pct: float) -> str:
    return (
        f"A/B comparison of this run against the baseline {baseline}. One line per row and metric: mean over "
        "repetitions on each side (blk: ns per read; net: packets per second and ns per round trip); diff_pct = "
        "(current - baseline) / baseline x 100 with its 95% CI (ci_low_pct, ci_high_pct; "
        f"{stats.METHOD}, each side resampled on its own); p_value: two-sided permutation test of the difference "
        f"of means over the repetitions (exact over all splits when there are at most {EXACT_LIMIT}, otherwise "
        f"{PERMUTATIONS} seeded random splits); min_p: the smallest p those repetition counts allow. Verdict "
        f"faster or slower only when p < {alpha:g}, |diff_pct| >= {min_effect_pct:g} and the CI excludes 0 "
        "(better = lower for times, higher for pps); alpha applies per line, without correction for the number "
        "of lines. Rows whose settings (reads, block_size, packets, accel, testbed, kvm_impl) differ are not "
        "compared. baseline_max_load and current_max_load: the highest 1-minute load average recorded around a "
        "repetition of the row (a busy machine on one side only can make a difference of its own). A metric "
        "that is zero on both sides, or equal to one listed before it (the host row: pread = total), is left "
        "out; note says why a line cannot be significant or is not a performance result."
    )


def write_table(table: pd.DataFrame, csv: Path, md: Path, text: str) -> None:
    """csv (full precision) and md (caption line, then the table rounded for reading)."""
    table = table.astype({c: "Int64" for c in _INT_COLUMNS if c in table})
    table.to_csv(csv, index=False)
    readable = table.astype(object).where(table.notna(), "")
    for column in ("baseline_mean", "current_mean"):
        readable[column] = [f"{v:.1f}" if v != "" else "" for v in readable[column]]
    for column in ("diff_pct", "ci_low_pct", "ci_high_pct"):
        readable[column] = [f"{v:+.2f}" if v != "" else "" for v in readable[column]]
    for column in ("baseline_max_load", "current_max_load"):
        readable[column] = [f"{v:.2f}" if v != "" else "" for v in readable[column]]
    for column in ("p_value", "min_p"):
        readable[column] = [f"{v:.3g}" if v != "" else "" for v in readable[column]]
    md.write_text(f"{text}\n\n" + readable.to_markdown(index=False, disable_numparse=True) + "\n", encoding="utf-8")


VERDICT_COLOURS = {SLOWER: "#c44e52", FASTER: "#55a868", NO_CHANGE: "#7f7f7f"}


def _label(row: pd.Series) -> str:
    provider = f" ({row['provider']})" if isinstance(row["provider"], str) and row["provider"] else ""
    size = f" {int(row['data_bytes'])} B" if pd.notna(row["data_bytes"]) else ""
    labels = {m.name: m.label for ms in METRICS.values() for m in ms}
    return f"{row['arch']} {row['platform']}{provider}{size}: {labels.get(row['metric'], row['metric'])}"


def figure(table: pd.DataFrame, png: Path, min_effect_pct: float, baseline: str) -> Figure:
    """Difference (%) with its CI per row and metric, coloured by verdict; zero line and the minimum-effect band."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    table = table.assign(note=table["note"].fillna("").astype(str), verdict=table["verdict"].fillna("").astype(str))
    shown = table[table["diff_pct"].notna() & table["verdict"].isin(VERDICT_COLOURS)].reset_index(drop=True)
    fig = Figure(figsize=(9, 2.2 + 0.26 * max(len(shown), 1)), layout="constrained")
    ax = fig.subplots()
    ax.axvspan(-min_effect_pct, min_effect_pct, color="#e8e8e8", zorder=0)
    ax.axvline(0, color="black", linewidth=0.8, zorder=1)
    y = np.arange(len(shown))[::-1]
    for i, row in shown.iterrows():
        colour = VERDICT_COLOURS[row["verdict"]]
        low, high = row["ci_low_pct"], row["ci_high_pct"]
        hollow = "not a performance result" in row["note"]
        marker = "s" if CANNOT in row["note"] else "o"
        if pd.notna(low) and pd.notna(high):
            ax.errorbar([row["diff_pct"]], [y[i]], xerr=[[row["diff_pct"] - low], [high - row["diff_pct"]]],
                        fmt="none", ecolor=colour, capsize=3, linewidth=1.2, zorder=2)
        ax.plot([row["diff_pct"]], [y[i]], marker, color=colour, markerfacecolor="white" if hollow else colour,
                markersize=6, zorder=3)
    if len(shown):
        ax.set_yticks(y, [_label(r) for _, r in shown.iterrows()], fontsize=7)
        ax.set_ylim(-0.7, len(shown) - 0.3)
    else:
        ax.set_yticks([])
        ax.text(0.5, 0.5, "no row compared", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("current vs baseline: difference of the mean (%), bar: 95% CI")
    handles = [Line2D([], [], marker="o", linestyle="", color=c, label=v) for v, c in VERDICT_COLOURS.items()]
    handles += [Line2D([], [], marker="o", linestyle="", color="black", markerfacecolor="white",
                       label="not a performance result"),
                Line2D([], [], marker="s", linestyle="", color="black", markerfacecolor="white",
                       label="too few repetitions to be significant"),
                Patch(color="#e8e8e8", label=f"within ±{min_effect_pct:g}% (minimum effect)")]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    left_out = table[~table.index.isin(table[table["diff_pct"].notna()
                                             & table["verdict"].isin(VERDICT_COLOURS)].index)]
    title = f"A/B: this run against {baseline}"
    if len(left_out):
        counts = left_out["verdict"].str.split(":").str[0].value_counts()
        title += "\nnot shown: " + ", ".join(f"{n} {v}" for v, n in counts.items())
    ax.set_title(title, fontsize=9)
    fig.savefig(png, dpi=120)
    return fig
