"""The study's claims (config/reference/claims.yaml), checked against our runs.

Every claim is a set of ratios of one metric; it holds when each ratio lies in
the claim's range. A claim is evaluated once per (arch, testbed) group and,
where unikernel rows come from more than one Solo5 provider, per provider. The
verdict follows the 95% CI of each ratio (unikio.stats: bootstrap over
repetitions):

- reproduced: every ratio's CI lies inside the claim's range;
- not reproduced: some ratio's CI lies wholly outside it;
- inconclusive: otherwise (a CI straddles a bound, too few repetitions, or the
  claim held on the platforms measured but names one that was not);
- not comparable: no ratio could be measured, or a side timed an emulator
  (TCG, the emulated testbed, a software-assisted KVM) where the claim is
  about the platform.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from . import matrix, metrics, stats
from .aggregate import STUDY_BLOCK_SIZE, STUDY_READS, not_performance_why

VERDICTS = ("reproduced", "not reproduced", "inconclusive", "not comparable")
COLUMNS = ["claim_id", "verdict", "arch", "testbed", "accel", "provider", "our_effect", "ci_low", "ci_high",
           "study_effect", "reason", "sentence", "comparison", "holds_within", "effect_range", "as_measured",
           "runs", "pipeline_version"]
EXPERIMENTS = ("blk", "net")
# The pread part times a host syscall made by the monitor: native host work
# under a software-assisted KVM, which emulates only guest kernel code. Not
# under TCG, whose vCPU threads compete with QEMU's I/O for the host's cores.
HOST_SIDE_METRICS = frozenset({"pread_ns_per_read"})
_CLAIM_KEYS = {"id", "sentence", "experiment", "metric", "comparison", "ratios", "holds_within", "study_effect"}


@dataclass(frozen=True)
class Side:
    platform: str
    data_bytes: int | None = None

    def label(self) -> str:
        return self.platform + (f" at {self.data_bytes} B" if self.data_bytes is not None else "")


@dataclass(frozen=True)
class Claim:
    id: str
    sentence: str
    experiment: str
    metric: str
    comparison: str
    ratios: tuple[tuple[Side, Side], ...]
    holds_within: tuple[float | None, float | None]
    study_effect: dict[str, tuple[float, float]]
    per_size: bool = False

    def range_text(self) -> str:
        low, high = self.holds_within
        if high is None:
            return f"> {low:g}"
        if low is None:
            return f"<= {high:g}"
        return f"{low:g} to {high:g}"


def load(path: Path) -> list[Claim]:
    """The claims file, checked: a one-line ValueError names the claim and what is wrong."""
    entries = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected a list of claims")
    claims, seen = [], set()
    for entry in entries:
        name = entry.get("id", "?") if isinstance(entry, dict) else "?"
        if not isinstance(entry, dict) or not _CLAIM_KEYS <= set(entry):
            missing = sorted(_CLAIM_KEYS - set(entry)) if isinstance(entry, dict) else sorted(_CLAIM_KEYS)
            raise ValueError(f"{path}: claim {name} lacks {', '.join(missing)}")
        if name in seen:
            raise ValueError(f"{path}: claim id {name} appears twice")
        seen.add(name)
        known = {m.name for m in metrics.METRICS.get(entry["experiment"], [])}
        if entry["experiment"] not in EXPERIMENTS or entry["metric"] not in known:
            raise ValueError(f"{path}: claim {name}: unknown experiment or metric "
                             f"{entry['experiment']}/{entry['metric']}")
        low, high = entry["holds_within"]
        if low is None and high is None or (low is not None and high is not None and low >= high):
            raise ValueError(f"{path}: claim {name}: holds_within needs low < high, one of them set")
        ratios = tuple((Side(**r["numerator"]), Side(**r["denominator"])) for r in entry["ratios"])
        claims.append(Claim(
            id=name, sentence=entry["sentence"], experiment=entry["experiment"], metric=entry["metric"],
            comparison=entry["comparison"], ratios=ratios, holds_within=(low, high),
            study_effect={host: (float(a), float(b)) for host, (a, b) in entry["study_effect"].items()},
            per_size=bool(entry.get("per_size", False)),
        ))
    return claims


def metric_values(runs: pd.DataFrame, experiment: str, metric: str) -> pd.Series:
    """One value of the metric per repetition (unikio.metrics)."""
    return metrics.by_name(experiment, metric).values(runs).astype(float)


def study_metric(reference: pd.DataFrame, experiment: str, metric: str, side: Side) -> float:
    """The study's value of one side on one host's reference rows, in the units of metric_values (a stand-in
    platform of ours takes the value of the study's platform it stands in for)."""
    rows = reference[reference["platform"] == matrix.STUDY_PLATFORM.get(side.platform, side.platform)]
    if experiment == "net":
        rows = rows[rows["icmp_data_bytes"] == side.data_bytes]
        return float(rows["packets_per_second"].iloc[0]) if len(rows) else stats.NAN
    if rows.empty:
        return stats.NAN
    row = rows.iloc[0]
    ms = {"total_ns_per_read": row["total_ms"], "pread_ns_per_read": row["pread_syscall_ms"],
          "guest_monitor_ns_per_read": row["total_ms"] - row["pread_syscall_ms"]}[metric]
    return float(ms) * 1e6 / STUDY_READS


def _expanded(claim: Claim, sizes_of: Any) -> list[tuple[Side, Side]]:
    """The claim's ratios, one per data size measured on both sides where per_size asks for it."""
    if not claim.per_size:
        return list(claim.ratios)
    out = []
    for num, den in claim.ratios:
        for size in sorted(set(sizes_of(num.platform)) & set(sizes_of(den.platform))):
            out.append((Side(num.platform, size), Side(den.platform, size)))
    return out


def study_effects(claim: Claim, reference: pd.DataFrame) -> dict[str, tuple[float, float]]:
    """Per original host: the smallest and largest of the claim's ratios in the study's data."""
    out = {}
    for host in dict.fromkeys(reference["host"]):
        ref = reference[reference["host"] == host]
        pairs = _expanded(claim, lambda p, ref=ref: ref.loc[ref["platform"] == matrix.STUDY_PLATFORM.get(p, p),
                                                            "icmp_data_bytes"])
        values = [study_metric(ref, claim.experiment, claim.metric, n) / study_metric(ref, claim.experiment,
                                                                                       claim.metric, d)
                  for n, d in pairs]
        values = [v for v in values if v == v]
        if values:
            out[host] = (min(values), max(values))
    return out


@dataclass
class _Ratio:
    num: Side
    den: Side
    point: float
    low: float
    high: float
    n: tuple[int, int]

    def label(self) -> str:
        return f"{self.num.label()} / {self.den.label()}"


@dataclass
class _Group:
    arch: str
    testbed: str
    provider: str
    runs: pd.DataFrame
    notes: list[str] = field(default_factory=list)


def _side_rows(runs: pd.DataFrame, side: Side, provider: str) -> pd.DataFrame:
    rows = runs[runs["platform"] == side.platform]
    if provider and rows["provider"].ne("").any():
        rows = rows[rows["provider"] == provider]
    if side.data_bytes is not None:
        rows = rows[rows["data_bytes"] == side.data_bytes]
    return rows


def _why_not_comparable(claim: Claim, rows: pd.DataFrame) -> str | None:
    """Why one measured side cannot speak for the platform, as a phrase the platforms' names precede."""
    if (rows["testbed"] == "emulated").any():
        return "measured inside the emulated testbed, whose timings are the emulator's"
    if claim.experiment == "blk" and (rows["block_size"] != STUDY_BLOCK_SIZE).any():
        return f"read {int(rows['block_size'].iloc[0])}-byte blocks, the study {STUDY_BLOCK_SIZE}"
    first = rows.iloc[0]
    why = not_performance_why(first["accel"], first["testbed"], first["kvm_impl"])
    if why == "emulated":
        if claim.metric in HOST_SIDE_METRICS:
            return "ran under TCG, whose threads compete with the monitor's preads for the host's cores"
        return "ran under TCG, which times the emulator rather than the platform"
    if why and claim.metric not in HOST_SIDE_METRICS:
        return f"ran under {why}, which emulates guest kernel code"
    return None


def _phrases(platforms_by_why: dict[str, list[str]]) -> str:
    """'a, b ran under TCG, ...; c measured ...': each reason once, after the platforms it concerns."""
    return "; ".join(f"{', '.join(dict.fromkeys(names))} {why}" for why, names in platforms_by_why.items())


def _classify(ratio: _Ratio, within: tuple[float | None, float | None]) -> str:
    """'inside' / 'outside' (the CI wholly on one side), 'straddles', or 'no ci'."""
    low, high = within
    if ratio.low != ratio.low:
        return "no ci"
    inside = (low is None or ratio.low > low) and (high is None or ratio.high <= high)
    outside = (low is not None and ratio.high <= low) or (high is not None and ratio.low > high)
    return "inside" if inside else "outside" if outside else "straddles"


def _holds(value: float, within: tuple[float | None, float | None]) -> bool:
    low, high = within
    return (low is None or value > low) and (high is None or value <= high)


def evaluate(claim: Claim, group: _Group) -> dict[str, Any]:
    """One row of the claims table: the claim on one group's runs."""
    runs = group.runs
    def sizes_of(platform: str) -> list[int]:
        if claim.experiment != "net":
            return []
        return list(_side_rows(runs, Side(platform), group.provider)["data_bytes"].dropna().astype(int))

    pairs = _expanded(claim, sizes_of)
    row: dict[str, Any] = {
        "claim_id": claim.id, "arch": group.arch, "testbed": group.testbed, "provider": group.provider,
        "sentence": claim.sentence, "comparison": claim.comparison, "holds_within": claim.range_text(),
        "study_effect": "; ".join(f"{h} {a:.2f}-{b:.2f}" for h, (a, b) in claim.study_effect.items()),
        "our_effect": stats.NAN, "ci_low": stats.NAN, "ci_high": stats.NAN, "effect_range": "",
        "as_measured": "", "runs": "", "accel": "", "pipeline_version": "",
    }
    if not pairs:
        platforms = sorted({s.platform for pair in claim.ratios for s in pair})
        return row | {"verdict": "not comparable",
                      "reason": f"no data size measured on both {' and '.join(platforms)}"}
    ratios, used = [], []
    unmeasured: list[str] = []
    incomparable: dict[str, list[str]] = {}
    for num, den in pairs:
        sides = [(s, _side_rows(runs, s, group.provider)) for s in (num, den)]
        missing = [s.platform for s, rows in sides if rows.empty]
        if missing:
            unmeasured += missing
            continue
        for s, rows in sides:
            if why := _why_not_comparable(claim, rows):
                incomparable.setdefault(why, []).append(s.platform)
        used += [rows for _, rows in sides]
        a, b = (metric_values(rows, claim.experiment, claim.metric) for _, rows in sides)
        point, low, high = stats.ratio_ci(a.to_numpy(), b.to_numpy())
        ratios.append(_Ratio(num, den, point, low, high, (len(a), len(b))))
    if used:
        both = pd.concat(used)
        accels = sorted({f"{a} ({k})" if k else str(a) for a, k in zip(both["accel"], both["kvm_impl"],
                                                                       strict=True)})
        versions = sorted(set(both["pipeline_version"].fillna("").astype(str)) - {""})
        row |= {"accel": ", ".join(accels), "pipeline_version": " ".join(versions)}
    not_measured = f"{', '.join(dict.fromkeys(unmeasured))} not measured"
    if not ratios:
        return row | {"verdict": "not comparable", "reason": not_measured}
    kinds = [_classify(r, claim.holds_within) for r in ratios]
    # The ratio that decides: one that fails outright, else the least certain, else the closest to a bound.
    order = {"outside": 0, "no ci": 1, "straddles": 2, "inside": 3}
    critical = min(zip(kinds, ratios, strict=True), key=lambda kr: (order[kr[0]], _margin(kr[1], claim)))[1]
    row |= {
        "our_effect": critical.point, "ci_low": critical.low, "ci_high": critical.high,
        "effect_range": (f"{min(r.point for r in ratios):.3g}-{max(r.point for r in ratios):.3g}"
                         if len(ratios) > 1 else f"{critical.point:.3g}"),
        "as_measured": "holds" if all(_holds(r.point, claim.holds_within) for r in ratios) else "fails",
        "runs": "; ".join(f"{r.label()}: {r.n[0]} / {r.n[1]}" for r in ratios),
    }
    partial = f"; {not_measured}, so checked on the rest" if unmeasured else ""
    if incomparable:
        return row | {"verdict": "not comparable", "reason": _phrases(incomparable) + partial}
    deciding = f"{critical.label()} = {critical.point:.3g}"
    if "outside" in kinds:
        return row | {"verdict": "not reproduced",
                      "reason": f"{deciding}, CI {critical.low:.3g}-{critical.high:.3g} outside "
                                f"{claim.range_text()}" + partial}
    if "no ci" in kinds:
        few = min(critical.n) < 2
        why = "fewer than two repetitions, no CI" if few else "a mean of 0 below it, no ratio"
        return row | {"verdict": "inconclusive", "reason": f"{critical.label()}: {why}" + partial}
    if "straddles" in kinds:
        return row | {"verdict": "inconclusive",
                      "reason": f"{deciding}, CI {critical.low:.3g}-{critical.high:.3g} crosses a bound of "
                                f"{claim.range_text()}" + partial}
    holds = (f"every CI inside {claim.range_text()}; closest: {deciding}, "
             f"CI {critical.low:.3g}-{critical.high:.3g}")
    if unmeasured:
        # The claim names platforms we could not run: it held where it was checked, no more.
        return row | {"verdict": "inconclusive", "reason": f"{not_measured}; on the rest {holds}"}
    return row | {"verdict": "reproduced", "reason": holds}


def _margin(ratio: _Ratio, claim: Claim) -> float:
    """How far the ratio's CI keeps from the nearest bound, relative to it (smaller: closer)."""
    margins = []
    low, high = claim.holds_within
    if low is not None:
        margins.append(((ratio.low if ratio.low == ratio.low else ratio.point) - low) / low)
    if high is not None:
        margins.append((high - (ratio.high if ratio.high == ratio.high else ratio.point)) / high)
    return min(margins)


def names_a_unikernel(claim: Claim) -> bool:
    """Whether a side of the claim is a unikernel platform, whose rows come from a Solo5 provider."""
    return any(side.platform in matrix.TENDER for pair in claim.ratios for side in pair)


def groups(runs: pd.DataFrame, per_provider: bool = True) -> list[_Group]:
    """One group per (arch, testbed) and, with per_provider where unikernel rows name several providers, per
    provider (a claim on no unikernel is the same for every provider: one group)."""
    out = []
    runs = runs.assign(provider=runs["provider"].fillna(""), kvm_impl=runs["kvm_impl"].fillna(""))
    for (arch, testbed), g in runs.groupby(["arch", "testbed"], sort=True):
        providers = (sorted(set(g["provider"]) - {""}) if per_provider else []) or [""]
        out += [_Group(str(arch), str(testbed), provider, g) for provider in providers]
    return out


def table(claims: list[Claim], runs: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Every claim on every group of its experiment's runs (a claim with no runs at all: one row saying so)."""
    rows = []
    for claim in claims:
        found = groups(runs[claim.experiment], names_a_unikernel(claim)) if len(runs[claim.experiment]) else []
        for group in found:
            rows.append(evaluate(claim, group))
        if not found:
            rows.append({"claim_id": claim.id, "sentence": claim.sentence, "verdict": "not comparable",
                         "reason": f"no {claim.experiment} runs", "holds_within": claim.range_text(),
                         "comparison": claim.comparison})
    return pd.DataFrame.from_records(rows).reindex(columns=COLUMNS)


CAPTION = ("The study's claims on our runs: our_effect is the deciding ratio (the one that fails, else the least "
           "certain, else the closest to a bound) with its 95% CI (" + stats.METHOD + "); study_effect is the "
           "study's range of the same ratios per original host. not comparable: a side was not measured or timed "
           "an emulator.")


def readable(table: pd.DataFrame) -> pd.DataFrame:
    """The verdict table as a reader takes it in: claim, where, verdict, our effect with its CI, the study's."""

    def effect(r: pd.Series) -> str:
        if r["our_effect"] != r["our_effect"]:
            return ""
        ci = f" [{r['ci_low']:.3g}, {r['ci_high']:.3g}]" if r["ci_low"] == r["ci_low"] else " (no CI)"
        return f"{r['our_effect']:.3g}{ci}"

    return pd.DataFrame({
        "claim": table["claim_id"], "arch": table["arch"].fillna(""), "testbed": table["testbed"].fillna(""),
        "provider": table["provider"].fillna(""),
        "verdict": table["verdict"], "ours (95% CI)": table.apply(effect, axis=1) if len(table) else [],
        "as measured": table["as_measured"].fillna(""),
        "holds within": table["holds_within"], "study": table["study_effect"].fillna(""),
        "why": table["reason"].fillna(""),
    })


def write(table: pd.DataFrame, stem: Path) -> None:
    """stem.csv (every column, full precision); stem.md and stem.tex (the readable verdict table)."""
    table.to_csv(stem.with_suffix(".csv"), index=False)
    short = readable(table)
    stem.with_suffix(".md").write_text(f"{CAPTION}\n\n{short.to_markdown(index=False)}\n", encoding="utf-8")
    stem.with_suffix(".tex").write_text(short.to_latex(index=False, caption=CAPTION, escape=True), encoding="utf-8")
