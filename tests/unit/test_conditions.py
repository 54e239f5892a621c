"""unikio.conditions against fake /proc and /sys trees: per-run load and runnable tasks, the host's set-up,
the busy flag, and the CPU the measurement processes are pinned to."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from unikio import conditions, procs, results, testbed
from unikio.errors import PipelineError

CPU = "sys/devices/system/cpu"
CMDLINE = ("BOOT_IMAGE=/vmlinuz root=UUID=1 ro isolcpus=2-3 nohz_full=2-3 rcu_nocbs=2-3 nosmt quiet "
           "intel_pstate=disable -- isolcpus=9 single")


def write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def tuned(tmp_path: Path) -> Path:
    """A host set up for quiet numbers: performance governors, turbo off, SMT off, THP never, CPUs 2-3 isolated."""
    write(tmp_path, "proc/loadavg", "0.42 0.30 0.25 2/345 6789\n")
    write(tmp_path, "proc/stat", "cpu  1 2 3 4\nctxt 99\nprocs_running 3\nprocs_blocked 1\n")
    write(tmp_path, "proc/cmdline", CMDLINE + "\n")
    for n in (0, 1, 2, 10):
        write(tmp_path, f"{CPU}/cpu{n}/cpufreq/scaling_governor", "performance\n")
    write(tmp_path, f"{CPU}/cpu3/online", "1\n")  # a CPU without cpufreq
    write(tmp_path, f"{CPU}/cpufreq/policy0/scaling_governor", "performance\n")  # not a CPU directory
    write(tmp_path, f"{CPU}/intel_pstate/no_turbo", "1\n")
    write(tmp_path, f"{CPU}/smt/active", "0\n")
    write(tmp_path, f"{CPU}/smt/control", "off\n")
    write(tmp_path, f"{CPU}/isolated", "2-3\n")
    write(tmp_path, f"{CPU}/nohz_full", "2-3\n")
    write(tmp_path, "sys/kernel/mm/transparent_hugepage/enabled", "always madvise [never]\n")
    return tmp_path


# ------------------------------------------------------- per repetition


def test_snapshot_reads_the_1_minute_load_and_procs_running(tuned: Path) -> None:
    assert conditions.load_1min(tuned) == 0.42
    assert conditions.runnable_tasks(tuned) == 3
    assert conditions.snapshot(tuned) == conditions.Snapshot(load_1min=0.42, runnable=3)


def test_around_takes_one_snapshot_before_and_one_after(tuned: Path) -> None:
    with conditions.around(tuned) as cond:
        write(tuned, "proc/loadavg", "1.73 0.50 0.25 5/345 6790\n")
        write(tuned, "proc/stat", "procs_running 7\nprocs_blocked 0\n")
    assert cond.values == {"load_before": 0.42, "load_after": 1.73, "runnable_before": 3, "runnable_after": 7}
    assert list(cond.values) == results.CONDITION_COLUMNS


def test_around_records_even_when_the_measurement_fails(tuned: Path) -> None:
    with pytest.raises(RuntimeError), conditions.around(tuned) as cond:
        raise RuntimeError("measurement failed")
    assert cond.values["load_after"] == 0.42


@pytest.mark.parametrize("loadavg, stat", [(None, None), ("", "procs_blocked 1\n"), ("x 1 2\n", "procs_running x\n")])
def test_unreadable_counters_are_none_not_a_crash(tmp_path: Path, loadavg: str | None, stat: str | None) -> None:
    if loadavg is not None:
        write(tmp_path, "proc/loadavg", loadavg)
        write(tmp_path, "proc/stat", stat or "")
    assert conditions.snapshot(tmp_path) == conditions.Snapshot(None, None)
    assert conditions.missing() == dict.fromkeys(results.CONDITION_COLUMNS)


def test_the_real_proc_gives_numbers() -> None:
    snap = conditions.snapshot()
    assert snap.load_1min is not None and snap.load_1min >= 0
    assert snap.runnable is not None and snap.runnable >= 1  # this test itself is running


def test_a_block_row_carries_the_conditions_in_contract_order() -> None:
    cond = {"load_before": 0.5, "load_after": 0.75, "runnable_before": 1, "runnable_after": 2}
    row = results.blk_row(arch="x86_64", platform="host", accel="none", testbed="native", rep=1, host="cpu",
                          result={"reads": 2, "block_size": 512, "total_ns": 10}, pread=None, conditions=cond)
    assert list(row) == results.BLK_COLUMNS
    assert [row[c] for c in results.CONDITION_COLUMNS] == [0.5, 0.75, 1, 2]


def test_testbed_rows_carry_the_boots_conditions_for_every_repetition() -> None:
    lines = []
    for rep, ns in ((1, 1000), (2, 2000)):
        lines += [f"TB-BEGIN kind=host-blk rep={rep}", f"RESULT blk reads=2 block_size=512 total_ns={ns}",
                  f"TB-END kind=host-blk rep={rep} status=0"]
    cond = {"load_before": 0.1, "load_after": 2.5, "runnable_before": 1, "runnable_after": 3}
    rows = testbed.blk_rows(testbed.parse_segments(lines), kind="host-blk", reps=2, block_size=512,
                            console_log="c.log", kvm_impl="kvm_arm64", host="h", cond=cond)
    assert [[r[c] for c in results.CONDITION_COLUMNS] for r in rows] == [[0.1, 2.5, 1, 3]] * 2
    assert all(list(r) == results.BLK_COLUMNS for r in rows)


# ------------------------------------------------------------- busy flag


@pytest.mark.parametrize("before, after, cores, threshold, note", [
    (0.2, 1.73, 2, 0.5, "busy machine (1-min load 1.73 on 2 cores)"),
    (1.73, 0.2, 2, 0.5, "busy machine (1-min load 1.73 on 2 cores)"),
    (0.2, 1.0, 2, 0.5, None),                  # exactly threshold x cores is not above it
    (0.2, 1.01, 2, 0.5, "busy machine (1-min load 1.01 on 2 cores)"),
    (3.9, 3.0, 8, 0.5, None),
    (0.6, None, 1, 0.5, "busy machine (1-min load 0.60 on 1 core)"),
    (None, None, 2, 0.5, None),
    (float("nan"), 1.5, 2, 0.5, "busy machine (1-min load 1.50 on 2 cores)"),
    (float("nan"), float("nan"), 2, 0.5, None),
    (0.01, 0.0, 4, 0.0, "busy machine (1-min load 0.01 on 4 cores)"),
])
def test_busy_note(before: float | None, after: float | None, cores: int, threshold: float, note: str | None) -> None:
    assert conditions.busy_note(before, after, cores, threshold) == note


def test_busy_note_takes_what_a_table_hands_it() -> None:
    pd = pytest.importorskip("pandas")
    np = pytest.importorskip("numpy")
    runs = pd.DataFrame({"platform": ["a", "a", "b", "b", "c"], "load_before": [0.1, 1.9, 0.2, 0.3, None],
                         "load_after": [0.4, 0.5, 0.2, np.nan, None]}).astype({"load_before": "Float64"})
    peak = runs.groupby("platform")[["load_before", "load_after"]].max()
    notes = [conditions.busy_note(r.load_before, r.load_after, np.int64(2), np.float64(0.5))
             for r in peak.itertuples()]
    assert notes == ["busy machine (1-min load 1.90 on 2 cores)", None, None]  # c: pandas' NA, not busy


@pytest.mark.parametrize("cores, threshold", [(0, 0.5), (-2, 0.5), (1.5, 0.5), (True, 0.5), (2, -0.1), (2, None)])
def test_busy_note_refuses_nonsense(cores: object, threshold: object) -> None:
    with pytest.raises(ValueError):
        conditions.busy_note(5.0, 5.0, cores, threshold)  # type: ignore[arg-type]


# ---------------------------------------------------------- host set-up


def test_host_conditions_of_a_tuned_host(tuned: Path) -> None:
    assert conditions.host_conditions(tuned) == {
        "cpu_governor": {"cpu0": "performance", "cpu1": "performance", "cpu2": "performance",
                         "cpu3": "not exposed", "cpu10": "performance"},
        "turbo": "off",
        "turbo_source": "/sys/devices/system/cpu/intel_pstate/no_turbo",
        "smt": "off",
        "smt_control": "off",
        "transparent_hugepage": "never",
        "kernel_cmdline": CMDLINE,
        # Words after "--" are init's, not the kernel's.
        "kernel_cpu_params": {"isolcpus": "2-3", "nohz_full": "2-3", "rcu_nocbs": "2-3", "nosmt": "",
                              "intel_pstate": "disable"},
        "isolated_cpus": "2-3",
        "nohz_full_cpus": "2-3",
    }


def test_host_conditions_where_nothing_is_exposed(tmp_path: Path) -> None:
    assert conditions.host_conditions(tmp_path) == {
        "cpu_governor": {}, "turbo": "not exposed", "turbo_source": "not exposed", "smt": "not exposed",
        "smt_control": "not exposed", "transparent_hugepage": "not exposed", "kernel_cmdline": "not exposed",
        "kernel_cpu_params": {}, "isolated_cpus": "not exposed", "nohz_full_cpus": "not exposed",
    }


def test_a_vm_without_cpufreq_and_smt(tmp_path: Path) -> None:
    """What the development machine shows: CPUs without cpufreq, SMT not supported, nothing isolated."""
    for n in (0, 1):
        write(tmp_path, f"{CPU}/cpu{n}/online", "1\n")
    write(tmp_path, f"{CPU}/smt/active", "0\n")
    write(tmp_path, f"{CPU}/smt/control", "notsupported\n")
    write(tmp_path, f"{CPU}/isolated", "\n")
    write(tmp_path, "sys/kernel/mm/transparent_hugepage/enabled", "always [madvise] never\n")
    host = conditions.host_conditions(tmp_path)
    assert host["cpu_governor"] == {"cpu0": "not exposed", "cpu1": "not exposed"}
    assert (host["smt"], host["smt_control"], host["isolated_cpus"]) == ("off", "notsupported", "")
    assert (host["turbo"], host["transparent_hugepage"]) == ("not exposed", "madvise")


@pytest.mark.parametrize("files, expected", [
    ({"intel_pstate/no_turbo": "0\n"}, ("on", "/sys/devices/system/cpu/intel_pstate/no_turbo")),
    ({"cpufreq/boost": "1\n"}, ("on", "/sys/devices/system/cpu/cpufreq/boost")),
    ({"cpufreq/boost": "0\n"}, ("off", "/sys/devices/system/cpu/cpufreq/boost")),
    # intel_pstate decides when it is the driver; a boost file beside it is not consulted.
    ({"intel_pstate/no_turbo": "1\n", "cpufreq/boost": "1\n"},
     ("off", "/sys/devices/system/cpu/intel_pstate/no_turbo")),
    ({"cpufreq/boost": "garbage\n"}, ("not exposed", "not exposed")),
])
def test_turbo(tmp_path: Path, files: dict[str, str], expected: tuple[str, str]) -> None:
    for rel, text in files.items():
        write(tmp_path, f"{CPU}/{rel}", text)
    assert conditions.turbo(tmp_path) == expected


@pytest.mark.parametrize("text, mode", [("[always] madvise never\n", "always"), ("always madvise [never]", "never"),
                                        ("always madvise never\n", "not exposed")])
def test_transparent_hugepages_reads_the_bracketed_choice(tmp_path: Path, text: str, mode: str) -> None:
    write(tmp_path, "sys/kernel/mm/transparent_hugepage/enabled", text)
    assert conditions.transparent_hugepages(tmp_path) == mode


def test_cpu_lists() -> None:
    assert conditions.parse_cpu_list("0-2,5, 7-8\n") == {0, 1, 2, 5, 7, 8}
    assert conditions.parse_cpu_list("") == set()
    assert conditions.format_cpu_list({8, 0, 1, 2, 5, 7}) == "0-2,5,7-8"
    assert conditions.format_cpu_list([3]) == "3"
    with pytest.raises(ValueError, match="not a CPU list"):
        conditions.parse_cpu_list("0-a")


# ---------------------------------------------------------------- pinning


def test_auto_is_the_highest_cpu_this_process_may_use(tmp_path: Path) -> None:
    assert conditions.measure_cpu("auto", allowed={0, 1, 5}, root=tmp_path) == 5
    assert conditions.measure_cpu("auto", allowed={0}, root=tmp_path) == 0
    assert conditions.measure_cpu("auto") == max(os.sched_getaffinity(0))


def test_a_named_cpu_is_taken_when_allowed_or_isolated(tuned: Path) -> None:
    assert conditions.measure_cpu(1, allowed={0, 1}, root=tuned) == 1
    assert conditions.measure_cpu(3, allowed={0, 1}, root=tuned) == 3  # isolcpus: no default affinity holds it
    assert conditions.measure_cpu_problem(0, allowed={0, 1}, root=tuned) is None


def test_a_cpu_out_of_reach_is_refused_in_one_sentence(tuned: Path, tmp_path: Path) -> None:
    message = ("config key measure.cpu is 7, but this process may run only on CPUs 0-1 or the isolated CPUs 2-3; "
               "set one of those or auto")
    assert conditions.measure_cpu_problem(7, allowed={0, 1}, root=tuned) == message
    with pytest.raises(PipelineError) as exc:
        conditions.measure_cpu(7, allowed={0, 1}, root=tuned)
    assert str(exc.value) == message
    bare = tmp_path / "bare"
    assert conditions.measure_cpu_problem(4, allowed={0, 1, 2}, root=bare) == (
        "config key measure.cpu is 4, but this process may run only on CPUs 0-2; set one of those or auto")


def test_pinned_wraps_the_command_in_taskset() -> None:
    assert conditions.pinned(["sh", "-c", "true"], None) == ["sh", "-c", "true"]
    assert conditions.pinned(["sh", "-c", "true"], 1) == ["taskset", "-c", "1", "sh", "-c", "true"]
    with pytest.raises(FileNotFoundError, match="no such executable"):
        conditions.pinned(["/nonexistent/blk_bench"], 0)


def test_a_pinned_program_runs_on_that_cpu_only() -> None:
    """Through the death guard and taskset, as a measurement job starts it."""
    cpu = conditions.measure_cpu("auto")
    argv = conditions.pinned([sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))"], cpu)
    proc = procs.run(argv, timeout_s=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"[{cpu}]"
    assert procs.command_line(argv).startswith(f"taskset -c {cpu} ")


def test_taskset_is_what_pins() -> None:
    # A CPU the machine does not have: taskset itself refuses, so the pinning is not silently dropped.
    bad = max(os.sched_getaffinity(0)) + 4096
    proc = subprocess.run(conditions.pinned(["true"], bad), capture_output=True, text=True, check=False)
    assert proc.returncode != 0 and "taskset" in proc.stderr



def test_provenance_names_the_method() -> None:
    from unikio import provenance

    method = provenance.method({"measure": {"cpu": "auto"}, "conditions": {"busy_load_per_core": 0.5}})
    assert method["measure_cpu"] == "auto" and method["pinned_cpu"] == max(os.sched_getaffinity(0))
    assert method["busy_load_per_core"] == 0.5
    assert method["repetition_order"].startswith("blk: interleaved, repetition 1 of every platform")
    with pytest.raises(PipelineError, match="config key measure.cpu is 4096"):
        provenance.method({"measure": {"cpu": 4096}, "conditions": {"busy_load_per_core": 0.5}})


FAKE_ICMP_BENCH = """\
#!{python}
import sys
args = sys.argv[1:]
size, count = args[args.index("--size") + 1], args[args.index("--count") + 1]
print(f"RESULT net size={{size}} packets={{count}} received={{count}} lost=0 corrupt=0 ignored=0 avg_ns=1000 "
      "min_ns=900 max_ns=1100 pps=1000000.00 p50_ns=1000 p90_ns=1050 p99_ns=1100")
"""


class FakeNs:
    tap = "tap-test"

    def exec_prefix(self) -> list[str]:
        return []


def test_network_runs_interleave_sizes_and_carry_their_conditions(tmp_path: Path) -> None:
    from unikio import net

    bench = tmp_path / "icmp_bench"
    bench.write_text(FAKE_ICMP_BENCH.format(python=sys.executable))
    bench.chmod(0o755)
    log = io.StringIO()
    cpu = conditions.measure_cpu("auto")
    rows = net.ping_all(FakeNs(), bench, [1, 1472], 2, 10, 1.0, log,  # type: ignore[arg-type]
                        lambda rep, res: {"rep": rep, "data_bytes": res["size"]}, cpu=cpu)
    # Repetition 1 of every size, then repetition 2: drift in the job does not land on one size.
    assert [(r["rep"], r["data_bytes"]) for r in rows] == [(1, 1), (1, 1472), (2, 1), (2, 1472)]
    for r in rows:
        assert list(r) == ["rep", "data_bytes", *results.CONDITION_COLUMNS, "pinned_cpu"]
        assert r["pinned_cpu"] == cpu and r["runnable_before"] >= 1 and r["load_after"] >= 0
    commands = [ln for ln in log.getvalue().splitlines() if ln.startswith("$ ")]
    assert len(commands) == 4 and all(c.startswith(f"$ taskset -c {cpu} {bench} --ifname tap-test") for c in commands)
