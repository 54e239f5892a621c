"""The DAG and the start-up checks, by dry runs of the real workflow (no root needed)."""

import os
import platform
import re

import pytest
from testkit import REPO, copy_project, planned_jobs, snakemake
from unikio import conditions


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return copy_project(tmp_path_factory.mktemp("project"))


def test_fresh_project_plans_the_whole_chain(project):
    proc = snakemake(project, "-n")
    assert proc.returncode == 0, proc.stderr
    jobs = planned_jobs(proc.stdout + proc.stderr)
    for rule in ("apt_index", "qemu_source", "qemu_source_patched", "qemu_build", "blk_runs_csv",
                 "provenance", "all"):
        assert jobs.get(rule) == 1, (rule, jobs)
    assert jobs["native_bench"] == 2  # both archs are cross-built
    assert jobs["blk_table"] == 2 and jobs["blk_figure"] == 2
    host_reps = 3 if platform.machine() in ("x86_64", "aarch64") else 0
    assert jobs.get("blk_host_run", 0) == host_reps  # only the host's own arch is measured


def planned(dry_run_output: str) -> list[dict[str, str]]:
    """Each planned job of a dry run: its rule, output, threads (1 when not shown) and priority (0 when not shown)."""
    jobs = []
    for block in re.split(r"\n(?=(?:rule|checkpoint) \w+:\n)", dry_run_output):
        m = re.match(r"(?:rule|checkpoint) (\w+):\n", block)
        if not m:
            continue
        fields = dict(re.findall(r"^    (\w+): (.*)$", block, re.M))
        jobs.append({"rule": m.group(1), "output": fields.get("output", ""), "threads": fields.get("threads", "1"),
                     "priority": fields.get("priority", "0")})
    return jobs


def test_measurements_take_every_core_so_nothing_runs_beside_them(project):
    """A job that holds all cores cannot share the machine: no build, fetch, plot or other measurement."""
    proc = snakemake(project, "-n")  # testkit runs with --cores 4
    assert proc.returncode == 0, proc.stderr
    jobs = planned(proc.stdout)
    measuring = measurement_rules()
    raw = [j for j in jobs if j["output"].startswith("results/raw/")]
    assert raw and {j["rule"] for j in raw} <= measuring  # every raw result comes from a measurement rule
    for job in jobs:
        if job["rule"] in measuring:
            assert job["threads"] == "4", job
    assert {j["rule"] for j in jobs if j["rule"] in measuring} >= {"blk_host_run", "net_qemu_run", "kvm_probe"}


def measurement_rules():
    return set(re.findall(r"^(?:rule|checkpoint) (\w+):", (REPO / "workflow/rules/experiments.smk").read_text(), re.M))


def test_linux_guest_block_repetitions_wait_for_the_probe(project):
    """How many repetitions a Linux-guest block row gets depends on the probe's accelerator (TCG: testbed.blk)."""
    proc = snakemake(project, "-n")
    assert proc.returncode == 0, proc.stderr
    jobs = planned(proc.stdout)
    assert [j for j in jobs if j["rule"] == "kvm_probe"]
    assert not [j for j in jobs if j["rule"] == "blk_qemu_run"]
    assert [j for j in jobs if j["rule"] == "blk_host_run"]  # the other rows are planned at once


def test_block_repetitions_interleave_across_platforms(project):
    """Builds first, then the KVM probe, then repetition 1 of every block platform, repetition 2 of every one, ...

    Snakemake starts the ready job of highest priority, and a measurement only
    when nothing else runs. A dry run lists jobs in no scheduling order, so
    this reads the priorities it prints and orders the jobs by them.
    """
    proc = snakemake(project, "-n")
    assert proc.returncode == 0, proc.stderr
    jobs = planned(proc.stdout)
    measuring = measurement_rules()
    prepare = [int(j["priority"]) for j in jobs if j["rule"] not in measuring]
    measure = [j for j in jobs if j["rule"] in measuring]
    by_rep = {}  # {repetition: {(arch, platform and provider): priority}}
    for j in measure:
        m = re.fullmatch(r"results/raw/blk/(\w+)/([\w/-]+)/rep(\d+)/row\.json", j["output"])
        if m:
            by_rep.setdefault(int(m.group(3)), {})[m.group(1), m.group(2)] = int(j["priority"])
    assert sorted(by_rep) == [1, 2, 3]  # smoke: 3 repetitions
    platforms = set(by_rep[1])
    # The Linux-guest rows join once the probe has run (same rep_priority; see the test above).
    assert {p for _, p in platforms} >= {"host", "solo5-hvt/builtin", "solo5-spt/builtin"}, platforms
    # One priority per repetition, the same for every platform, lower for each later one: in priority order the
    # jobs run repetition 1 of every platform, then repetition 2 of every platform, then 3.
    assert [set(by_rep[r]) for r in (1, 2, 3)] == [platforms] * 3
    levels = [set(by_rep[r].values()) for r in (1, 2, 3)]
    assert all(len(level) == 1 for level in levels), levels
    assert levels[0].pop() > levels[1].pop() > levels[2].pop()
    order = [int(m.group(1)) for j in sorted(measure, key=lambda j: -int(j["priority"]))
             if (m := re.search(r"/rep(\d+)/row\.json$", j["output"]))]
    assert order == [1] * len(platforms) + [2] * len(platforms) + [3] * len(platforms)
    # Every build before any measurement, and the probe, whose verdict the Linux-guest rows need, before them.
    rep_priorities = [p for level in by_rep.values() for p in level.values()]
    probe = [int(j["priority"]) for j in measure if j["rule"] == "kvm_probe"]
    assert probe and min(prepare) > max(probe) and min(probe) > max(rep_priorities)
    # Rows made by one job each (network, testbed, exit floor) come after the block repetitions.
    whole = [int(j["priority"]) for j in measure if j["rule"] != "kvm_probe" and "/rep" not in j["output"]]
    assert whole and max(whole) < min(rep_priorities)


def test_a_thread_cap_below_the_cores_is_refused(project):
    proc = snakemake(project, "-n", "--max-threads", "2")
    assert proc.returncode != 0
    message = "--max-threads 2 is below --cores 4, so measurements could run beside other jobs"
    assert message in proc.stdout + proc.stderr


@pytest.mark.parametrize("override,message", [
    ("blk: {reads: 100000000, block_size: 32768}",
     r"blk.reads x blk.block_size needs a 3125000 MiB disk image in /dev/shm, which has \d+ MiB free"),
    ("testbed: {blk: {reads: 2000000}}",
     r"testbed.blk.reads x blk.block_size needs a 977 MiB disk image, but the emulated testbed has room for 384 MiB "
     r"\(testbed.memory_mb=1024 less 384 MiB for its system and guest.memory_mb=256\); raise testbed.memory_mb"),
    ("blk: {block_size: 4000}", r"config key blk.block_size has 4000; allowed values: 512, 1024, 2048, 4096"),
])
def test_a_block_run_that_cannot_fit_is_refused_before_any_job(project, override, message):
    if "testbed" in message and platform.machine() != "x86_64":
        pytest.skip("the emulated aarch64 testbed runs on x86_64 hosts only")
    proc = snakemake(project, "-n", overrides=override + "\n")
    assert proc.returncode != 0
    assert re.search(message, proc.stdout + proc.stderr), (proc.stdout + proc.stderr)[-2000:]
    assert "Job stats" not in proc.stdout


def test_a_measure_cpu_out_of_reach_is_refused_before_any_job(project):
    cpus = os.sched_getaffinity(0)  # Snakemake inherits this test's affinity
    bad = max(cpus) + 64
    proc = snakemake(project, "-n", overrides=f"measure: {{cpu: {bad}}}\n")
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert (f"config key measure.cpu is {bad}, but this process may run only on CPUs "
            f"{conditions.format_cpu_list(cpus)}") in text, text[-2000:]
    assert "Job stats" not in proc.stdout


def test_a_block_size_every_platform_reads_is_accepted(project):
    proc = snakemake(project, "-n", overrides="blk: {block_size: 4096}\n")
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_skipped_combinations_are_announced(project):
    out = snakemake(project, "-n", overrides="net: {platforms: [qemu-linux, mirage-solo5]}\n")
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-2000:]
    # One line per reason, naming every combination it skips.
    assert "skipped net/x86_64/mirage-solo5, net/aarch64/mirage-solo5: MirageOS needs the opam repository" in text


@pytest.mark.parametrize("override,named", [
    ("blk={'reads': 'many'}", "blk.reads"),
    ("archs=['riscv64']", "archs"),
    ("blk={'platforms': ['xen']}", "blk.platforms"),
    ("qemu={'source': 'ftp'}", "qemu.source"),
    ("solo5={'providers': ['xen']}", "solo5.providers"),
    ("typo_key=1", "typo_key"),
])
def test_bad_config_stops_before_any_job_with_one_sentence(project, override, named):
    proc = snakemake(project, "-n", "--config", override)
    assert proc.returncode != 0
    errors = [ln for ln in (proc.stdout + proc.stderr).splitlines() if named in ln]
    assert errors, proc.stderr
    assert not (project / "results" / "data").exists()


# Software comes from envs/ (Debian packages and the pinned venv), not conda or
# containers, which these machines cannot fetch; that one lint is expected.
SOFTWARE_LINT = "Specify a conda environment or container for each rule."


def test_lint_is_clean_apart_from_software_deployment(project):
    proc = snakemake(project, "--lint")
    text = proc.stdout + proc.stderr
    assert "Lints for snakefile" not in text
    titles = {line.strip()[2:].rstrip(":") for line in text.splitlines() if line.startswith("    * ")}
    assert titles <= {SOFTWARE_LINT}, titles


def test_an_unreachable_upstream_solo5_skips_its_rows_with_one_sentence_and_the_rest_run(project):
    overrides = ("solo5: {providers: [builtin, upstream], upstream: {git: 'file:///nonexistent/solo5.git'}}\n"
                 "archs: [x86_64]\nblk: {platforms: [solo5-hvt, solo5-spt]}\nnet: {platforms: [lwip-solo5-spt]}\n")
    proc = snakemake(project, "-n", overrides=overrides)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-2000:]
    (line,) = [ln for ln in text.splitlines() if ln.startswith("skipped ")]
    assert line.startswith("skipped blk/x86_64/solo5-hvt/upstream, blk/x86_64/solo5-spt/upstream, "
                           "net/x86_64/lwip-solo5-spt/upstream: the upstream Solo5 source cannot be fetched from "
                           "solo5.upstream.git (")
    assert line.endswith("; set solo5.upstream.local or $UNIKIO_SOLO5_SOURCE to a local git copy or release tarball")
    jobs = planned(proc.stdout)
    assert not [j for j in jobs if "upstream" in j["rule"] or "/upstream/" in j["output"]]
    outputs = {j["output"] for j in jobs}
    for row in ("blk/x86_64/solo5-hvt/builtin/rep1/row.json", "blk/x86_64/solo5-spt/builtin/rep1/row.json",
                "net/x86_64/lwip-solo5-spt/builtin/rows.json"):
        assert f"results/raw/{row}" in outputs, row


def test_a_local_upstream_copy_plans_both_providers_side_by_side(project, tmp_path):
    copy = tmp_path / "solo5.git"
    copy.mkdir()  # existence is all start-up checks; the fetch verifies the commit
    overrides = (f"solo5: {{providers: [builtin, upstream], upstream: {{local: '{copy}'}}}}\n"
                 "archs: [x86_64]\nblk: {platforms: [solo5-spt]}\nnet: {platforms: [lwip-solo5-hvt]}\n")
    proc = snakemake(project, "-n", overrides=overrides)
    assert proc.returncode == 0, proc.stderr[-2000:]
    jobs = planned(proc.stdout)
    outputs = {j["output"] for j in jobs}
    for provider in ("builtin", "upstream"):
        assert f"results/raw/blk/x86_64/solo5-spt/{provider}/rep1/row.json" in outputs
        assert f"results/raw/net/x86_64/lwip-solo5-hvt/{provider}/rows.json" in outputs
    rules = {j["rule"] for j in jobs}
    assert {"solo5_upstream_source", "solo5_upstream", "lwip_source", "lwip_builtin", "lwip_upstream"} <= rules


def test_the_old_single_provider_key_is_refused_with_the_new_one_named(project):
    proc = snakemake(project, "-n", overrides="solo5: {provider: upstream}\n")
    assert proc.returncode != 0
    assert "unknown config key 'provider' at solo5; known keys there: floor_exits, mem_mb, providers, upstream" in (
        proc.stdout + proc.stderr)
