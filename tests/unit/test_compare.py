"""The A/B comparison on synthetic data: known shifts are found, identical distributions are not flagged."""

import tarfile

import numpy as np
import pandas as pd
import pytest
import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from unikio import archive, compare, results
from unikio import config as cfg
from unikio.errors import PipelineError


def blk_runs(total_ns, platform="host", arch="x86_64", reads=2000, pread_ns=None, accel="none",
             testbed="native", kvm_impl="", provider="", block_size=512, version="aaaaaaaaaaaa"):
    """Tidy blk runs (results.BLK_COLUMNS) of one row, one repetition per value."""
    n = len(total_ns)
    return pd.DataFrame({
        "arch": arch, "platform": platform, "provider": provider, "accel": accel, "testbed": testbed,
        "block_size": block_size, "reads": reads, "rep": range(1, n + 1), "total_ns": total_ns,
        "pread_ns": total_ns if pread_ns is None else pread_ns, "pread_calls": reads, "host": "test",
        "timestamp": "2026-01-01T00:00:00+00:00", "kvm_impl": kvm_impl, "pipeline_version": version,
    }).reindex(columns=results.BLK_COLUMNS)


def net_runs(pps, platform="solo5-hvt", arch="x86_64", data_bytes=1, packets=200, accel="kvm",
             testbed="native", kvm_impl="kvm_intel", provider="builtin"):
    pps = np.asarray(pps, dtype=float)
    return pd.DataFrame({
        "arch": arch, "platform": platform, "provider": provider, "accel": accel, "testbed": testbed,
        "data_bytes": data_bytes, "packets": packets, "rep": range(1, len(pps) + 1), "avg_rtt_ns": 1e9 / pps,
        "min_rtt_ns": 1e9 / pps / 2, "max_rtt_ns": 2e9 / pps, "pps": pps, "lost": 0, "host": "test",
        "timestamp": "2026-01-01T00:00:00+00:00", "kvm_impl": kvm_impl, "pipeline_version": "aaaaaaaaaaaa",
    }).reindex(columns=results.NET_COLUMNS)


def noisy(rng, n, mean=100_000.0, cv=0.02):
    return rng.normal(mean, cv * mean, n)


def lines(table, metric):
    return table[table["metric"] == metric]


# --- the test and the verdict --------------------------------------------------------------------------------------

@pytest.mark.parametrize("shift,lower_is_better,verdict", [
    (1.10, True, compare.SLOWER),    # a time 10% up
    (0.90, True, compare.FASTER),    # a time 10% down
    (1.10, False, compare.FASTER),   # pps 10% up
    (0.90, False, compare.SLOWER),   # pps 10% down
])
def test_a_known_10pct_shift_is_found_with_its_direction(shift, lower_is_better, verdict):
    rng = np.random.default_rng(7)
    base, cur = noisy(rng, 10), noisy(rng, 10) * shift
    r = compare.compare_values(base, cur, lower_is_better)
    assert r["verdict"] == verdict, r
    assert r["p_value"] < 0.01 and r["min_p"] < 0.01
    assert r["ci_low_pct"] < 100 * (shift - 1) < r["ci_high_pct"]
    assert abs(r["diff_pct"] - 100 * (shift - 1)) < 3


def trial_rates(trials, reps, cv, min_effect_pct, seed=2024):
    """Share of trials with a verdict, and with p < 0.05, for two samples of one distribution."""
    flagged = p05 = 0
    for t in range(trials):
        rng = np.random.default_rng([seed, t])
        r = compare.compare_values(noisy(rng, reps, cv=cv), noisy(rng, reps, cv=cv), True,
                                   min_effect_pct=min_effect_pct)
        flagged += r["verdict"] != compare.NO_CHANGE
        p05 += r["p_value"] < 0.05
    return flagged / trials, p05 / trials


@pytest.mark.parametrize("cv,min_effect_pct", [
    (0.10, 5.0),   # the defaults, noise large enough that 5% differences happen by chance
    (0.10, 0.0),   # no minimum effect: only the permutation test and the CI decide
])
def test_identical_distributions_give_no_verdict_in_at_least_95pct_of_trials(cv, min_effect_pct):
    flagged, p05 = trial_rates(trials=400, reps=8, cv=cv, min_effect_pct=min_effect_pct)
    print(f"cv {cv:g}, min effect {min_effect_pct:g}%: flagged {flagged:.1%}, p < 0.05 in {p05:.1%}")
    assert flagged <= 0.05
    # The permutation test holds its level: about 5% of p-values fall below 0.05 under the null.
    assert p05 <= 0.09


def test_exact_permutation_p_values_on_hand_computed_examples():
    # {1,2,4} vs {3,5,6}: of the 20 splits, only {1,2,3}, {1,2,4}, {3,5,6}, {4,5,6} differ by >= 7/3.
    p, min_p, method = compare.permutation_test([1, 2, 4], [3, 5, 6])
    assert (p, min_p, method) == (pytest.approx(4 / 20), pytest.approx(2 / 20), "exact, 20 splits")
    # Fully separated 3 vs 3: the smallest p there is, 2/20 (the split and its mirror).
    assert compare.permutation_test([1, 2, 3], [4, 5, 6])[0] == pytest.approx(0.1)
    # 1 vs 3: the 4 splits give |d| = 2, 2/3, 2/3, 2.
    p, min_p, _ = compare.permutation_test([1], [2, 3, 4])
    assert (p, min_p) == (pytest.approx(0.5), pytest.approx(0.25))
    # No difference at all: every split is as extreme.
    assert compare.permutation_test([5, 5, 5], [5, 5, 5])[0] == 1.0


def test_many_splits_use_seeded_random_splits_close_to_the_exact_p():
    rng = np.random.default_rng(3)
    a, b = noisy(rng, 8, cv=0.1), noisy(rng, 8, cv=0.1) * 1.05
    exact, _, method = compare.permutation_test(a, b)
    assert method == "exact, 12870 splits"
    sampled, min_p, method = compare.permutation_test(a, b, exact_limit=100, permutations=20_000)
    assert method == "20000 random splits" and min_p == pytest.approx(1 / 20_001)
    assert sampled == compare.permutation_test(a, b, exact_limit=100, permutations=20_000)[0]  # seeded
    assert abs(sampled - exact) < 0.01


def test_too_few_repetitions_can_never_be_significant_and_say_so():
    r = compare.compare_values([100, 101, 99], [200, 201, 199], True)
    assert r["diff_pct"] == pytest.approx(100) and r["p_value"] == pytest.approx(0.1)
    assert r["min_p"] == pytest.approx(0.1) and r["verdict"] == compare.NO_CHANGE
    assert "smallest p is 0.1, not below alpha 0.01" in r["note"]
    # A looser alpha, set in the config, lets 3 against 3 decide.
    assert compare.compare_values([100, 101, 99], [200, 201, 199], True, alpha=0.11)["verdict"] == compare.SLOWER


def test_a_small_but_certain_difference_is_below_the_minimum_effect():
    rng = np.random.default_rng(11)
    base = noisy(rng, 10, cv=0.002)
    r = compare.compare_values(base, base * 1.02, True)
    assert r["p_value"] < 0.01 and r["verdict"] == compare.NO_CHANGE
    assert "below the minimum effect 5%" in r["note"]
    assert compare.compare_values(base, base * 1.02, True, min_effect_pct=1)["verdict"] == compare.SLOWER


# --- rows ---------------------------------------------------------------------------------------------------------

def test_rows_are_matched_and_time_and_pps_have_their_directions():
    rng = np.random.default_rng(5)
    base = {"blk": blk_runs(noisy(rng, 10)), "net": net_runs(noisy(rng, 10, mean=1000))}
    cur = {"blk": blk_runs(noisy(rng, 10) * 1.2), "net": net_runs(noisy(rng, 10, mean=1000) * 1.2)}
    table = compare.compare(base, cur)
    assert list(table.columns) == compare.COLUMNS
    # The host row: pread = total, guest + monitor = 0, so one line.
    blk = table[table["experiment"] == "blk"]
    assert list(blk["metric"]) == ["total_ns_per_read"] and list(blk["verdict"]) == [compare.SLOWER]
    assert blk.iloc[0]["baseline_mean"] == pytest.approx(base["blk"]["total_ns"].mean() / 2000)
    assert lines(table, "pps").iloc[0]["verdict"] == compare.FASTER
    assert lines(table, "pps").iloc[0]["better"] == "higher"
    assert lines(table, "avg_rtt_ns").iloc[0]["verdict"] == compare.FASTER  # round trips got shorter
    assert lines(table, "avg_rtt_ns").iloc[0]["diff_pct"] == pytest.approx(100 / 1.2 - 100, abs=2)


def test_the_load_each_side_ran_under_is_shown():
    base, cur = blk_runs([1000.0, 1010.0, 990.0]), blk_runs([1000.0, 1010.0, 990.0])
    # As the tables judge it: the load before each repetition, not after it (its own threads).
    base["load_before"], base["load_after"] = [0.1, 3.5, 0.2], [0.3, 0.4, 4.25]
    row = compare.compare({"blk": base}, {"blk": cur}).iloc[0]
    assert row["baseline_max_load"] == 3.5 and np.isnan(row["current_max_load"])  # none recorded


def test_rows_whose_settings_differ_are_refused_with_the_reason():
    rng = np.random.default_rng(1)
    base = {"blk": pd.concat([blk_runs(noisy(rng, 5)),
                              blk_runs(noisy(rng, 5), platform="qemu-linux-smp", accel="kvm", kvm_impl="kvm_intel",
                                       pread_ns=noisy(rng, 5, mean=50_000))])}
    cur = {"blk": pd.concat([blk_runs(noisy(rng, 5), reads=1000),
                             blk_runs(noisy(rng, 5), platform="qemu-linux-smp", accel="tcg",
                                      pread_ns=noisy(rng, 5, mean=50_000))])}
    table = compare.compare(base, cur)
    host = table[table["platform"] == "host"]
    assert list(host["verdict"]) == ["not compared: reads differ (baseline 2000, current 1000)"]
    assert host["diff_pct"].isna().all() and host.iloc[0]["metric"] != host.iloc[0]["metric"]  # no metric: NaN
    guest = table[table["platform"] == "qemu-linux-smp"]
    assert list(guest["verdict"]) == ["not compared: accel differs (baseline kvm, current tcg); "
                                      "kvm_impl differs (baseline kvm_intel, current none)"]


def test_block_size_testbed_and_packets_are_settings_too():
    base = {"blk": blk_runs([1.0, 2.0]), "net": net_runs([10.0, 11.0])}
    cur = {"blk": blk_runs([1.0, 2.0], block_size=4096, testbed="emulated"), "net": net_runs([10.0, 11.0], packets=99)}
    verdicts = set(compare.compare(base, cur)["verdict"])
    assert verdicts == {"not compared: block_size differs (baseline 512, current 4096); "
                        "testbed differs (baseline native, current emulated)",
                        "not compared: packets differ (baseline 200, current 99)"}


def test_rows_on_one_side_only_are_listed():
    rng = np.random.default_rng(2)
    base = {"blk": blk_runs(noisy(rng, 3)), "net": net_runs(noisy(rng, 3, mean=1000), data_bytes=1472)}
    cur = {"blk": blk_runs(noisy(rng, 3), arch="aarch64")}
    table = compare.compare(base, cur).set_index(["experiment", "arch"])
    assert table.loc[("blk", "x86_64"), "verdict"] == compare.ONLY_BASELINE
    assert table.loc[("blk", "aarch64"), "verdict"] == compare.ONLY_CURRENT
    assert table.loc[("net", "x86_64"), "verdict"] == compare.ONLY_BASELINE
    assert table.loc[("blk", "aarch64"), "current_n"] == 3 and table.loc[("blk", "aarch64"), "baseline_n"] == 0


def test_rows_that_are_not_performance_results_are_compared_with_the_note():
    rng = np.random.default_rng(4)
    kw = {"platform": "qemu-linux-smp", "accel": "tcg"}
    base = {"blk": blk_runs(noisy(rng, 10), pread_ns=noisy(rng, 10, mean=20_000), **kw)}
    cur = {"blk": blk_runs(noisy(rng, 10) * 1.3, pread_ns=noisy(rng, 10, mean=20_000), **kw)}
    table = compare.compare(base, cur)
    assert list(table["metric"]) == ["total_ns_per_read", "pread_ns_per_read", "guest_monitor_ns_per_read"]
    assert table.iloc[0]["verdict"] == compare.SLOWER and table.iloc[1]["verdict"] == compare.NO_CHANGE
    assert table["note"].str.startswith("emulated: not a performance result").all()


# --- the baseline -------------------------------------------------------------------------------------------------

def write_project(root):
    (root / "results/data").mkdir(parents=True)
    rng = np.random.default_rng(9)
    blk_runs(noisy(rng, 4)).to_csv(root / "results/data/blk_runs.csv", index=False)
    net_runs(noisy(rng, 4, mean=1000)).to_csv(root / "results/data/net_runs.csv", index=False)
    (root / "config").mkdir()
    (root / "config/config.yaml").write_text("archs: [x86_64]\n")
    return root


def test_the_baseline_is_read_from_an_archive_without_extracting_it(tmp_path):
    project = write_project(tmp_path / "project")
    out = tmp_path / "old" / "artifact.tar.gz"
    out.parent.mkdir()
    archive.write(project, out)
    runs = compare.read_baseline(str(out))
    assert set(runs) == {"blk", "net"}
    assert runs["blk"]["total_ns"].tolist() == pd.read_csv(project / "results/data/blk_runs.csv")["total_ns"].tolist()
    assert sorted(p.name for p in out.parent.iterdir()) == ["artifact.tar.gz"]  # nothing unpacked


@pytest.mark.parametrize("where", ["results", "project", "unpacked"])
def test_the_baseline_is_read_from_a_results_or_project_directory(tmp_path, where):
    project = write_project(tmp_path / "project")
    if where == "unpacked":
        archive.write(project, tmp_path / "a.tar.gz")
        with tarfile.open(tmp_path / "a.tar.gz") as tar:
            tar.extractall(tmp_path / "unpacked", filter="data")
    path = {"results": project / "results", "project": project, "unpacked": tmp_path / "unpacked"}[where]
    runs = compare.read_baseline(str(path))
    assert len(runs["blk"]) == 4 and len(runs["net"]) == 4


def test_an_older_artifact_without_newer_columns_is_read(tmp_path):
    (tmp_path / "data").mkdir()
    old = blk_runs([1000.0, 1100.0]).drop(columns=["kvm_impl", "pipeline_version"])
    old.to_csv(tmp_path / "data/blk_runs.csv", index=False)
    runs = compare.read_baseline(str(tmp_path))
    table = compare.compare(runs, {"blk": blk_runs([1000.0, 1100.0])})
    assert list(table["verdict"]) == [compare.NO_CHANGE]


@pytest.mark.parametrize("make,message", [
    (lambda p: "", "compare.baseline is empty: name the archive or results directory to compare with, e.g. "
                   "./snakemake --cores 4 compare --config 'compare={\"baseline\": \"old/artifact.tar.gz\"}'"),
    (lambda p: str(p / "nowhere.tar.gz"), "compare.baseline names {p}/nowhere.tar.gz, which does not exist"),
    (lambda p: str(p), "compare.baseline names {p}, which holds no runs CSV (results/data/blk_runs.csv or "
                       "net_runs.csv)"),
    (lambda p: (p / "notes.txt").write_text("x") and str(p / "notes.txt"),
     "compare.baseline names {p}/notes.txt, which is neither a directory nor a tar archive made by `archive`"),
])
def test_an_unusable_baseline_is_one_sentence_naming_the_key(tmp_path, make, message):
    with pytest.raises(PipelineError) as err:
        compare.read_baseline(make(tmp_path))
    assert str(err.value) == message.replace("{p}", str(tmp_path))
    assert "\n" not in str(err.value)


def test_a_baseline_inside_this_runs_results_is_refused(tmp_path, monkeypatch):
    """results/artifact.tar.gz would be rebuilt from this very run before the comparison."""
    project = write_project(tmp_path / "project")
    archive.write(project, project / "results/artifact.tar.gz")
    monkeypatch.chdir(project)
    for baseline in ("results/artifact.tar.gz", "results", str(project / "results/data"), "."):
        with pytest.raises(PipelineError, match=f"^compare.baseline names {baseline}, this run's own results"):
            compare.read_baseline(baseline)
    (project / "old").mkdir()
    (project / "results/artifact.tar.gz").rename(project / "old/artifact.tar.gz")
    assert len(compare.read_baseline("old/artifact.tar.gz")["blk"]) == 4


def test_an_empty_runs_csv_is_named(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data/blk_runs.csv").write_text("")
    with pytest.raises(PipelineError, match=r"^compare.baseline .*data/blk_runs.csv is not a runs CSV: No columns"):
        compare.read_baseline(str(tmp_path))


def test_an_archive_without_runs_is_refused(tmp_path):
    (tmp_path / "project/config").mkdir(parents=True)
    (tmp_path / "project/config/config.yaml").write_text("x: 1\n")
    archive.write(tmp_path / "project", tmp_path / "a.tar.gz")
    with pytest.raises(PipelineError, match=r"which holds no runs CSV \(unikio-artifact/results/data/"):
        compare.read_baseline(str(tmp_path / "a.tar.gz"))


# --- outputs ------------------------------------------------------------------------------------------------------

def test_table_and_figure(tmp_path):
    rng = np.random.default_rng(8)
    base = {"blk": pd.concat([blk_runs(noisy(rng, 8)), blk_runs(noisy(rng, 3), arch="aarch64", testbed="emulated"),
                              blk_runs(noisy(rng, 8), platform="qemu-linux-1core", accel="tcg",
                                       pread_ns=noisy(rng, 8, mean=30_000))]),
            "net": net_runs(noisy(rng, 8, mean=1000))}
    cur = {"blk": pd.concat([blk_runs(noisy(rng, 8) * 1.3), blk_runs(noisy(rng, 3), arch="aarch64",
                                                                      testbed="emulated", reads=10),
                             blk_runs(noisy(rng, 8) * 0.8, platform="qemu-linux-1core", accel="tcg",
                                      pread_ns=noisy(rng, 8, mean=30_000))]),
           "net": net_runs(noisy(rng, 8, mean=1000))}
    table = compare.compare(base, cur)
    csv, md, png = tmp_path / "compare.csv", tmp_path / "compare.md", tmp_path / "compare.png"
    compare.write_table(table, csv, md, compare.caption("old/artifact.tar.gz", 0.01, 5))
    back = pd.read_csv(csv, keep_default_na=False, na_values=[""])
    assert list(back.columns) == compare.COLUMNS and len(back) == len(table)
    first, blank, header = md.read_text().splitlines()[:3]
    assert first.startswith("A/B comparison of this run against the baseline old/artifact.tar.gz.") and not blank
    assert "| verdict" in header
    fig = compare.figure(back, png, 5, "old/artifact.tar.gz")
    assert png.stat().st_size > 10_000
    ax = fig.axes[0]
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    legend = fig.legends[0].get_window_extent(renderer)
    assert not legend.overlaps(ax.get_window_extent(renderer))  # the legend is clear of the data
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert "x86_64 host: total / read" in labels and "x86_64 solo5-hvt (builtin) 1 B: pps (higher is faster)" in labels
    assert "not shown: 1 not compared" in ax.get_title()


# --- configuration ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("key,value,message", [
    ("alpha", "small", "config key compare.alpha is invalid"),
    ("alpha", 0, "config key compare.alpha is invalid"),
    ("min_effect_pct", -1, "config key compare.min_effect_pct is invalid"),
    ("baseline", None, "config key compare.baseline is invalid"),
    ("treshold", 1, "unknown config key 'treshold' at compare"),
])
def test_the_compare_keys_are_validated_in_one_sentence(repo, key, value, message):
    default = yaml.safe_load((repo / "config/config.yaml").read_text())
    assert default["compare"] == {"baseline": "", "alpha": 0.01, "min_effect_pct": 5}
    default["compare"][key] = value
    problem = cfg.explain_invalid(default, cfg.load_schema(repo / "workflow/schemas/config.schema.yaml"))
    assert problem.startswith(message), problem
