"""The run estimate: a cost model fitted to a run's own files, the plan it prices, and its checks."""

import json
from pathlib import Path

import pytest
import yaml
from unikio import estimate, matrix

REPO = Path(__file__).resolve().parents[2]
CONFIG = yaml.safe_load((REPO / "config/config.yaml").read_text())


def write_job(results, rel, seconds, rows):
    d = results / "raw" / rel
    d.mkdir(parents=True)
    (d / "benchmark.tsv").write_text(f"s\th:m:s\tmax_rss\n{seconds}\t0:00:00\t1\n")
    name = "row.json" if isinstance(rows, dict) else "rows.json"
    (d / name).write_text(json.dumps(rows))


def blk_row(platform, reads, total_s, accel="kvm", testbed="native", arch="x86_64", provider=""):
    return {"arch": arch, "platform": platform, "provider": provider, "accel": accel, "testbed": testbed,
            "reads": reads, "total_ns": int(total_s * 1e9)}


@pytest.fixture
def results(tmp_path):
    r = tmp_path / "results"
    # Two repetitions of 1000 reads: 0.5 s and 1.5 s of reading in jobs of 3 s and 4 s.
    write_job(r, "blk/x86_64/solo5-hvt/builtin/rep1", 3.0, blk_row("solo5-hvt", 1000, 0.5, provider="builtin"))
    write_job(r, "blk/x86_64/solo5-hvt/builtin/rep2", 4.0, blk_row("solo5-hvt", 1000, 1.5, provider="builtin"))
    # One testbed boot of 2 repetitions, 100 reads each, 1 s each, in a 32 s job.
    write_job(r, "blk/aarch64/host/testbed", 32.0,
              [blk_row("host", 100, 1.0, "none", "emulated", "aarch64")] * 2)
    # A network job: 2 runs of 1000 packets at 500 pps (2 s each) in 10 s.
    write_job(r, "net/x86_64/qemu-linux", 10.0,
              [{"arch": "x86_64", "platform": "qemu-linux", "accel": "tcg", "testbed": "native", "packets": 1000,
                "pps": 500.0}] * 2)
    (r / "benchmarks").mkdir()
    (r / "benchmarks" / "native_bench.x86_64.tsv").write_text("s\th:m:s\n2.5\t0:00:02\n")
    (r / "benchmarks" / "native_bench.aarch64.tsv").write_text("s\th:m:s\n3.5\t0:00:03\n")
    (r / "logs").mkdir()
    (r / "logs" / "qemu_build.log").write_text("$ make\n# make took 300.0 s\njob took 321.5 s\n")
    return r


def test_the_model_splits_each_job_into_fixed_and_per_unit_cost(results):
    model = estimate.fit(results, ["qemu_build"])
    solo5 = model.rows["blk/x86_64/solo5-hvt/builtin/native"]
    assert solo5.job_s == pytest.approx(2.5)  # mean of 3 - 0.5 and 4 - 1.5
    assert solo5.unit_s == pytest.approx(2.0 / 2000)
    testbed = model.rows["blk/aarch64/host/testbed"]
    assert (testbed.job_s, testbed.unit_s) == (pytest.approx(30.0), pytest.approx(0.01))
    net = model.rows["net/x86_64/qemu-linux/tcg"]
    assert (net.job_s, net.unit_s) == (pytest.approx(6.0), pytest.approx(0.002))
    assert model.rules == {"native_bench": pytest.approx(3.0), "qemu_build": pytest.approx(321.5)}
    assert "earlier runs" in model.source


def test_an_empty_results_directory_gives_an_empty_model(tmp_path):
    model = estimate.fit(tmp_path / "results")
    assert (model.rows, model.rules, model.source) == ({}, {}, "")


def test_the_model_survives_its_yaml_and_local_values_win(results, tmp_path):
    model = estimate.fit(results, ["qemu_build"])
    path = tmp_path / "cost_model.yaml"
    path.write_text(model.to_yaml("a machine", "2026-11-26"))
    stored = estimate.load_model(path)
    assert stored.rows.keys() == model.rows.keys() and stored.rules.keys() == model.rules.keys()
    assert stored.rows["blk/x86_64/solo5-hvt/builtin/native"].job_s == pytest.approx(2.5)
    assert "a machine, 2026-11-26" in stored.source
    local = estimate.Model(rules={"qemu_build": 10.0}, source="local")
    merged = local.merged_over(stored)
    assert merged.rules["qemu_build"] == 10.0 and merged.rules["native_bench"] == pytest.approx(3.0)


def test_a_job_is_priced_by_its_counts_and_mode(results):
    model = estimate.fit(results, ["qemu_build"])
    config = {**CONFIG, "blk": {**CONFIG["blk"], "reads": 10000}}
    builtin = {"arch": "x86_64", "platform": "solo5-hvt", "provider": "builtin", "rep": "1"}
    native = estimate.estimate_job(model, "blk_solo5_run", builtin, config, {})
    assert native.seconds == pytest.approx(2.5 + 10000 * 0.001) and native.known
    # The other provider's row is a row kind of its own, not priced by this one.
    assert not estimate.estimate_job(model, "blk_solo5_run", {**builtin, "provider": "upstream"}, config, {}).known
    # A testbed job runs every repetition at the emulated counts.
    bed = estimate.estimate_job(model, "testbed_run", {"arch": "aarch64", "platform": "host", "experiment": "blk"},
                                config, {})
    tb = CONFIG["testbed"]["blk"]
    assert bed.seconds == pytest.approx(30 + tb["reads"] * tb["repetitions"] * 0.01)
    # The Linux guest under TCG: emulated counts, every size and repetition in one job.
    net = estimate.estimate_job(model, "net_qemu_run", {"arch": "x86_64"}, config, {"x86_64": "tcg"})
    units = CONFIG["testbed"]["net"]["packets"] * CONFIG["testbed"]["net"]["repetitions"] * len(CONFIG["net"]["sizes"])
    assert net.seconds == pytest.approx(6 + units * 0.002)
    unknown = estimate.estimate_job(model, "net_solo5_run",
                                    {"arch": "x86_64", "platform": "solo5-spt", "provider": "builtin"}, config, {})
    assert not unknown.known
    cached = estimate.estimate_job(model, "qemu_build", {}, config, {}, cached=True)
    assert cached.seconds == estimate.CACHE_HIT_S and cached.label == "qemu_build (cached)"


def test_the_plan_has_one_job_per_native_repetition_and_one_per_testbed_boot():
    plan = matrix.plan(CONFIG, "x86_64", (True, "usable"))
    jobs = [rule for c in plan if c.runnable for rule, _ in estimate.combination_jobs(c, CONFIG, {"x86_64": "tcg"})]
    reps, tcg_reps = CONFIG["blk"]["repetitions"], CONFIG["testbed"]["blk"]["repetitions"]
    # solo5-hvt and solo5-spt, each from both providers.
    assert jobs.count("blk_host_run") == reps and jobs.count("blk_solo5_run") == 4 * reps
    assert jobs.count("blk_qemu_run") == 2 * tcg_reps  # smp and 1core under TCG: emulated counts
    kvm = [rule for c in plan if c.runnable for rule, _ in estimate.combination_jobs(c, CONFIG, {"x86_64": "kvm"})]
    assert kvm.count("blk_qemu_run") == 2 * reps
    # aarch64 in the testbed: 5 block rows, 5 network rows, unikernels from the builtin provider only.
    assert jobs.count("testbed_run") == 10 and jobs.count("net_qemu_run") == 1
    assert jobs.count("net_solo5_run") == 8  # 4 unikernel platforms x 2 providers


def test_counts_beyond_a_time_limit_are_refused_with_the_key_to_change(results):
    model = estimate.fit(results, ["qemu_build"])
    config = {**CONFIG, "testbed": {**CONFIG["testbed"], "timeout_s": 60, "boot_timeout_s": 20}}
    plan = matrix.plan(config, "x86_64", (True, "usable"))
    items = estimate.planned_measurements(model, [c for c in plan if c.platform == "host"], config, {})
    message = estimate.too_long(estimate.Plan(items, "test"), config)
    assert message == ("blk/aarch64/host/testbed is estimated at 1 min 30 s per job, longer than "
                       "testbed.timeout_s + testbed.boot_timeout_s = 80 s; lower testbed.blk.reads or "
                       "testbed.blk.repetitions, or raise testbed.timeout_s")
    assert estimate.too_long(estimate.Plan(items, "test"), CONFIG) is None
    # A native block job is one repetition: only its reads make it longer.
    slow = {**CONFIG, "blk": {**CONFIG["blk"], "reads": 1_000_000, "timeout_s": 1}}
    items = estimate.planned_measurements(model, [c for c in plan if c.label == "blk/x86_64/solo5-hvt/builtin"],
                                          slow, {})
    assert "; lower blk.reads, or raise blk.timeout_s" in estimate.too_long(estimate.Plan(items, "test"), slow)


def test_a_guess_refuses_nothing():
    """A row kind the model lacks (here: a Linux guest under a hardware KVM) is guessed, never refused."""
    model = estimate.load_model(REPO / "config/cost_model.yaml")
    config = {**CONFIG, "net": {**CONFIG["net"], "packets": 100_000}}  # the study's: the guess is long
    plan = matrix.plan(config, "x86_64", (True, "usable"))
    items = estimate.planned_measurements(model, plan, config, {"x86_64": "kvm"})
    net = next(i for i in items if i.rule == "net_qemu_run")
    assert not net.known and net.seconds > config["guest"]["run_timeout_s"]
    assert estimate.too_long(estimate.Plan(items, "test"), config) is None


def test_an_estimate_more_than_twice_off_is_reported():
    assert estimate.verdict(1000, 1900) is None and estimate.verdict(1000, 600) is None
    assert estimate.verdict(1000, 2100).startswith("the run took 35 min 00 s, 2.1x the estimated 16 min 40 s")
    assert "0.4x" in estimate.verdict(1000, 400)
    assert estimate.verdict(10, 100) is None  # too short to say anything about the model


def test_the_linux_guest_accelerator_is_the_probes_once_it_ran(tmp_path):
    verdict = tmp_path / "verdict.json"
    guess = estimate.predict_linux_accel
    assert guess("auto", "x86_64", "x86_64", True, "kvm_pvm", verdict) == "tcg"
    assert guess("auto", "x86_64", "x86_64", True, "kvm_intel", verdict) == "kvm"
    assert guess("auto", "aarch64", "x86_64", True, "kvm_intel", verdict) == "tcg"
    assert guess("kvm", "x86_64", "x86_64", False, "none", verdict) == "kvm"  # the probe will say why not
    assert guess("tcg", "x86_64", "x86_64", True, "kvm_intel", verdict) == "tcg"
    verdict.write_text('{"accel": "kvm"}')
    assert guess("auto", "x86_64", "x86_64", True, "kvm_pvm", verdict) == "kvm"


def test_the_runtime_table_sums_per_rule_costliest_first(results):
    rows = estimate.runtime_table(estimate.job_times(results, ["qemu_build", "qemu_cross_build"]))
    assert [r["rule"] for r in rows] == ["qemu_build", "testbed_run", "net_qemu_run", "blk_solo5_run",
                                         "native_bench"]
    solo5 = next(r for r in rows if r["rule"] == "blk_solo5_run")
    assert (solo5["jobs"], solo5["total_s"], solo5["max_s"]) == (2, 7.0, 4.0)
    assert sum(r["share_pct"] for r in rows) == pytest.approx(100, abs=0.2)


def test_the_stored_model_covers_every_row_of_the_default_run_here():
    """config/cost_model.yaml, refreshed from a full default run, prices every row kind of that run."""
    model = estimate.load_model(REPO / "config/cost_model.yaml")
    plan = matrix.plan(CONFIG, "x86_64", (True, "usable"))
    items = estimate.planned_measurements(model, plan, CONFIG, {"x86_64": "tcg"})
    assert [i.label for i in items if not i.known] == []
    for rule in ("qemu_build", "qemu_cross_build", "qemu_source", "native_bench"):
        assert rule in model.rules, rule
