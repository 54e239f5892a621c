"""What a run will cost, said before it starts, and checked when it ends.

A run's cost is the sum of its jobs: measurements run alone, one at a time,
and most build time is the two QEMU builds, which take every core, so the
sum is close to the wall time. A measurement job costs a fixed part (boots,
setting up disks and taps) plus a part per unit of work (a read, a round
trip); other jobs cost what they cost last time.

The model comes from this machine's own results where a run left them (its
benchmark.tsv files beside the rows, results/benchmarks/ for the other
rules) and otherwise from config/cost_model.yaml, refreshed from the latest
full run (`./snakemake runtime` writes results/cost_model.yaml).
"""

from __future__ import annotations

import csv
import json
import re
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import counts, guest, hostinfo, matrix
from .errors import PipelineError
from .progress import duration

# What a job costs that the model does not know (a table, a plot).
UNKNOWN_RULE_S = 3.0
# A build found in the between-workflow cache is linked, not made.
CACHE_HIT_S = 2.0
# An estimate this far off (either way) is reported when the run ends.
WRONG_FACTOR = 2.0
# Shorter runs are mostly Snakemake's own start-up: their ratio says nothing about the model.
CHECKED_FROM_S = 120.0

# The rule that measures a native row (experiment, platform); every emulated-testbed row is testbed_run's.
NATIVE_RULE = {("blk", "host"): "blk_host_run", ("blk", "qemu-linux-smp"): "blk_qemu_run",
               ("blk", "qemu-linux-1core"): "blk_qemu_run", ("net", "qemu-linux"): "net_qemu_run",
               **{("blk", p): "blk_solo5_run" for p in ("solo5-hvt", "solo5-spt")},
               **{("net", p): "net_solo5_run" for p in matrix.TENDER}}
MEASUREMENT_RULES = {*NATIVE_RULE.values(), "testbed_run"}
BOOT_RULES = {"kvm_probe", "kvm_exit_floor_run", "testbed_exit_floor_run"}
BUILD_RULES = {"qemu_build", "qemu_cross_build", "qemu_cross_sysroot", "native_bench", "solo5_builtin",
               "solo5_upstream", "lwip_builtin", "lwip_upstream", "guest_init", "guest_initramfs",
               "testbed_initramfs", "testbed_nested_initramfs"}
# The cached QEMU builds have no benchmark.tsv (Snakemake forbids it): their log ends with this line.
TOOK_LINE = re.compile(r"^job took ([0-9.]+) s$", re.M)


@dataclass(frozen=True)
class RowCost:
    """A measurement job of one kind: job_s + units x unit_s."""

    job_s: float
    unit_s: float

    def seconds(self, units: int) -> float:
        return self.job_s + units * self.unit_s


@dataclass
class Model:
    rows: dict[str, RowCost] = field(default_factory=dict)
    rules: dict[str, float] = field(default_factory=dict)
    source: str = ""

    def merged_over(self, base: Model) -> Model:
        """This model, with base filling what it lacks."""
        return Model(rows={**base.rows, **self.rows}, rules={**base.rules, **self.rules},
                     source=" and ".join(filter(None, [self.source, base.source])))

    def to_yaml(self, machine: str, measured: str) -> str:
        data = {"machine": machine, "measured": measured,
                "rows": {k: {"job_s": round(v.job_s, 3), "unit_s": float(f"{v.unit_s:.4g}")}
                         for k, v in sorted(self.rows.items())},
                "rules": {k: round(v, 1) for k, v in sorted(self.rules.items())}}
        return ("# Cost model of the run estimate (unikio.estimate): not a config profile.\n"
                "# Refreshed from a full run: ./snakemake --cores 4 runtime, then copy results/cost_model.yaml here.\n"
                + yaml.safe_dump(data, sort_keys=False))


def row_key(experiment: str, arch: str, platform: str, mode: str, provider: str = "") -> str:
    """mode: native (this host, KVM or none), tcg (a native guest under TCG) or testbed (emulated host);
    provider: a unikernel row's Solo5 provider."""
    return f"{experiment}/{arch}/{platform}/{provider + '/' if provider else ''}{mode}"


def load_model(path: Path) -> Model:
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return Model(rows={k: RowCost(float(v["job_s"]), float(v["unit_s"])) for k, v in (data.get("rows") or {}).items()},
                 rules={k: float(v) for k, v in (data.get("rules") or {}).items()},
                 source=f"{path.name} ({data.get('machine', 'unknown machine')}, {data.get('measured', '?')})")


def _bench_s(path: Path) -> float | None:
    try:
        with open(path, encoding="utf-8") as f:
            values = [float(r["s"]) for r in csv.DictReader(f, delimiter="\t")]
    except (OSError, KeyError, ValueError):
        return None
    return values[-1] if values else None


def _row_mode(row: Mapping[str, Any]) -> str:
    if row.get("testbed") == "emulated":
        return "testbed"
    return "tcg" if row.get("accel") == "tcg" else "native"


def _measured(rows: list[dict[str, Any]], experiment: str) -> tuple[float, int]:
    """(seconds spent measuring, units) of a job's rows."""
    if experiment == "blk":
        return sum(r["total_ns"] for r in rows) / 1e9, sum(int(r["reads"]) for r in rows)
    return sum(r["packets"] / r["pps"] for r in rows if r.get("pps")), sum(int(r["packets"]) for r in rows)


def _sample(bench: Path, experiment: str) -> tuple[str, tuple[float, float, int]] | None:
    """(row kind, (job s, measuring s, units)) of one measurement job; None if its files say too little."""
    job_s = _bench_s(bench)
    for name in ("row.json", "rows.json"):
        path = bench.with_name(name)
        if job_s is None or not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            rows = data if isinstance(data, list) else [data]
            key = row_key(experiment, rows[0]["arch"], rows[0]["platform"], _row_mode(rows[0]),
                          rows[0].get("provider") or "")
            measuring, units = _measured(rows, experiment)
        except (ValueError, KeyError, IndexError, TypeError, ZeroDivisionError):
            return None  # an older or broken row file: the estimate does without it
        return key, (job_s, measuring, units)
    return None


def fit(results: Path, log_timed: Iterable[str] = ()) -> Model:
    """The model of the run whose results are here: every measurement job and every benchmarked rule."""
    samples: dict[str, list[tuple[float, float, int]]] = {}  # key: (job s, measuring s, units)
    for bench in sorted((results / "raw").glob("*/*/*/**/benchmark.tsv")):
        experiment = bench.relative_to(results / "raw").parts[0]
        sample = _sample(bench, experiment) if experiment in ("blk", "net") else None
        if sample is not None:
            samples.setdefault(sample[0], []).append(sample[1])
    model = Model()
    for key, jobs in samples.items():
        units = sum(u for _, _, u in jobs)
        model.rows[key] = RowCost(job_s=max(0.0, statistics.mean(j - m for j, m, _ in jobs)),
                                  unit_s=sum(m for _, m, _ in jobs) / units if units else 0.0)
    per_rule: dict[str, list[float]] = {}
    for rule, _, s in job_times(results, log_timed):
        if rule not in MEASUREMENT_RULES:
            per_rule.setdefault(rule, []).append(s)
    model.rules = {rule: statistics.mean(v) for rule, v in per_rule.items()}
    if model.rows or model.rules:
        model.source = f"this machine's earlier runs in {results}"
    return model


@dataclass
class Item:
    """One planned job and what it is expected to cost."""

    rule: str
    kind: str  # build, boot, measurement, other
    seconds: float
    label: str
    known: bool = True  # False: the model has nothing on it (a guess)


@dataclass
class Plan:
    items: list[Item]
    source: str

    def count(self, kind: str) -> int:
        return sum(1 for i in self.items if i.kind == kind)

    @property
    def seconds(self) -> float:
        return sum(i.seconds for i in self.items)

    def summary(self) -> str:
        unknown = [i for i in self.items if not i.known and i.kind in ("build", "measurement")]
        boots = self.count("boot") + sum(1 for i in self.items if i.kind == "measurement" and i.rule != "blk_host_run")
        return (f"plan: {self.count('build')} builds, {boots} boots (guests, tenders, testbeds), "
                f"{self.count('measurement')} measurement jobs, {len(self.items)} jobs in all; estimated wall time "
                f"{duration(self.seconds)} (model: {self.source or 'none'}"
                + (f"; {len(unknown)} builds and measurements not in it, guessed" if unknown else "") + ")")

    def slowest(self, n: int = 5) -> list[Item]:
        return sorted(self.items, key=lambda i: -i.seconds)[:n]


def measurement_units(experiment: str, settings: Mapping[str, Any], one_rep: bool) -> int:
    """Units of work of one job: reads of one repetition (one_rep), or every run of the row."""
    if experiment == "blk":
        return int(settings["reads"]) * (1 if one_rep else int(settings["repetitions"]))
    return int(settings["packets"]) * int(settings["repetitions"]) * len(settings["sizes"])


# For a row kind the model lacks: a guess, said as such in the plan.
UNKNOWN_UNIT_S = 1e-3


def _row_of(rule: str, wildcards: Mapping[str, str]) -> tuple[str, str]:
    """(experiment, platform) a measurement job measures."""
    if "experiment" in wildcards:
        return wildcards["experiment"], wildcards["platform"]
    found = [key for key, r in NATIVE_RULE.items() if r == rule]
    return found[0] if len(found) == 1 else (found[0][0], wildcards["platform"])


def estimate_job(model: Model, rule: str, wildcards: Mapping[str, str], config: Mapping[str, Any],
                 linux_accel: Mapping[str, str], cached: bool = False) -> Item:
    """The expected cost of one planned job. linux_accel: the accelerator of each arch's Linux guest."""
    if rule in MEASUREMENT_RULES:
        experiment, platform = _row_of(rule, wildcards)
        arch = wildcards["arch"]
        if rule == "testbed_run":
            mode = "testbed"
        elif platform.startswith("qemu-linux") and linux_accel.get(arch) == "tcg":
            mode = "tcg"
        else:
            mode = "native"
        settings = counts.settings(config, experiment, emulated=mode != "native")
        units = measurement_units(experiment, settings, one_rep=(experiment == "blk" and mode != "testbed"))
        # The testbed runs the builtin provider's unikernels only (unikio.matrix).
        provider = wildcards.get("provider") or ("builtin" if platform in matrix.TENDER else "")
        key = row_key(experiment, arch, platform, mode, provider)
        cost = model.rows.get(key)
        if cost is None:
            return Item(rule, "measurement", UNKNOWN_RULE_S + units * UNKNOWN_UNIT_S, key, known=False)
        return Item(rule, "measurement", cost.seconds(units), key)
    kind = "boot" if rule in BOOT_RULES else "build" if rule in BUILD_RULES else "other"
    label = rule + "".join(f" {v}" for v in wildcards.values())
    if cached:
        return Item(rule, kind, CACHE_HIT_S, label + " (cached)")
    return Item(rule, kind, model.rules.get(rule, UNKNOWN_RULE_S), label, known=rule in model.rules)


def combination_jobs(c: Any, config: Mapping[str, Any], linux_accel: Mapping[str, str]
                     ) -> list[tuple[str, dict[str, str]]]:
    """(rule, wildcards) of every measurement job of a runnable combination (matrix.Combination)."""
    wc = {"arch": c.arch, "platform": c.platform}
    if c.testbed == "emulated":
        return [("testbed_run", {**wc, "experiment": c.experiment})]
    if c.provider:
        wc["provider"] = c.provider
    rule = NATIVE_RULE[c.experiment, c.platform]
    if c.experiment == "net":
        return [(rule, wc)]
    tcg = rule == "blk_qemu_run" and linux_accel.get(c.arch) == "tcg"
    return [(rule, wc)] * counts.settings(config, "blk", tcg)["repetitions"]


def planned_measurements(model: Model, plan: Iterable[Any], config: Mapping[str, Any],
                         linux_accel: Mapping[str, str]) -> list[Item]:
    """Every measurement job of the plan, with its expected cost."""
    return [estimate_job(model, rule, wc, config, linux_accel)
            for c in plan if c.runnable for rule, wc in combination_jobs(c, config, linux_accel)]


def too_long(plan: Plan, config: Mapping[str, Any]) -> str | None:
    """One sentence if a measurement job the model knows would outlive its time limit, else None.

    A guess (a row kind the model lacks) refuses nothing: it could refuse a run that fits.
    """
    limits = {"testbed_run": "testbed.timeout_s", "blk_qemu_run": "guest.run_timeout_s",
              "net_qemu_run": "guest.run_timeout_s", "blk_host_run": "blk.timeout_s",
              "blk_solo5_run": "blk.timeout_s"}
    for item in plan.items:
        key = limits.get(item.rule)
        if key is None or not item.known:
            continue
        section, name = key.split(".")
        limit = config[section][name]
        if item.rule == "testbed_run":
            limit += config["testbed"]["boot_timeout_s"]  # its timeout_s counts from the end of the boot
        if item.seconds > limit:
            experiment = item.label.split("/", 1)[0]
            prefix = "testbed." if item.label.endswith(("/tcg", "/testbed")) else ""
            # One job per block repetition natively: only the reads make it longer.
            what = ["reads"] if experiment == "blk" and item.rule != "testbed_run" else \
                list(counts.EMULATED_KEYS[experiment])
            keys = " or ".join(f"{prefix}{experiment}.{k}" for k in what)
            bound = (f"{key} + testbed.boot_timeout_s = {limit:g} s" if item.rule == "testbed_run"
                     else f"{key}={limit:g} s")
            return (f"{item.label} is estimated at {duration(item.seconds)} per job, longer than {bound}; "
                    f"lower {keys}, or raise {key}")
    return None


def verdict(plan_s: float, actual_s: float) -> str | None:
    """One sentence when the estimate was more than WRONG_FACTOR off, else None."""
    if plan_s <= 0 or actual_s <= 0 or max(plan_s, actual_s) < CHECKED_FROM_S:
        return None
    ratio = actual_s / plan_s
    if 1 / WRONG_FACTOR <= ratio <= WRONG_FACTOR:
        return None
    return (f"the run took {duration(actual_s)}, {ratio:.1f}x the estimated {duration(plan_s)}: refresh the cost "
            "model (./snakemake --cores 4 runtime, then copy results/cost_model.yaml to config/cost_model.yaml)")


def rule_of_raw(bench: Path, raw: Path) -> str:
    """The measurement rule that wrote a benchmark.tsv under results/raw (raw/EXPERIMENT/ARCH/PLATFORM/...)."""
    parts = bench.relative_to(raw).parts
    if "testbed" in parts:
        return "testbed_run"
    return NATIVE_RULE.get((parts[0], parts[2]), f"{parts[0]} {parts[2]}")


def job_times(results: Path, log_timed: Iterable[str] = ()) -> list[tuple[str, str, float]]:
    """(rule, what, seconds) of every job of the run whose results are here that left a time behind.

    log_timed: rules without a benchmark.tsv whose log, named after the rule, ends with the job's time.
    """
    out = []
    raw = results / "raw"
    for bench in sorted(raw.glob("*/*/*/**/benchmark.tsv")):
        s = _bench_s(bench)
        if s is not None:
            out.append((rule_of_raw(bench, raw), str(bench.parent.relative_to(raw)), s))
    for bench in sorted((results / "benchmarks").glob("*.tsv")):
        s = _bench_s(bench)
        if s is not None:
            out.append((bench.stem.split(".", 1)[0], bench.stem, s))
    for rule in sorted(log_timed):
        log = results / "logs" / f"{rule}.log"
        m = TOOK_LINE.search(log.read_text(encoding="utf-8", errors="replace")) if log.is_file() else None
        if m:
            out.append((rule, rule, float(m.group(1))))
    return out


def runtime_table(times: list[tuple[str, str, float]]) -> list[dict[str, Any]]:
    """Per rule: jobs, total and largest seconds, share of the total; the costliest first."""
    total = sum(s for _, _, s in times) or 1.0
    by_rule: dict[str, list[float]] = {}
    for rule, _, s in times:
        by_rule.setdefault(rule, []).append(s)
    rows = [{"rule": rule, "jobs": len(v), "total_s": round(sum(v), 1), "max_s": round(max(v), 1),
             "share_pct": round(100 * sum(v) / total, 1)} for rule, v in by_rule.items()]
    return sorted(rows, key=lambda r: -r["total_s"])


def predict_linux_accel(policy: str, arch: str, host_arch: str, kvm_usable: bool, kvm_impl: str,
                        probe_verdict: Path | None) -> str:
    """The accelerator the KVM probe will choose for arch's Linux guest: its verdict once it ran, else a guess.

    The guess: KVM where the host's own KVM runs guest kernels in hardware; TCG
    on another arch, without KVM, or on a KVM that emulates guest kernel code
    (kvm_pvm: a Linux guest fails under it).
    """
    if probe_verdict is not None and probe_verdict.is_file():
        try:
            return str(json.loads(probe_verdict.read_text(encoding="utf-8"))["accel"])
        except (ValueError, KeyError):
            pass
    usable = arch == host_arch and kvm_usable and kvm_impl not in (*hostinfo.SOFTWARE_KVM, "none")
    try:
        return guest.choose_accel(policy, lambda: (usable, "predicted"))[0]
    except PipelineError:
        return "kvm"  # accel: kvm where it will not work: the probe stops the run with the reason
