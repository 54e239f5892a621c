"""The smoke profile for real: fetch, patch, build, measure, aggregate, archive.

One full run from a copy of the project, then the caching behaviour the users
rely on, checked with dry runs of the same copy.
"""

import json
import os
import platform
import re
import signal
import subprocess
import tarfile
import time

import pandas as pd
import pytest
from testkit import planned_jobs, snakemake
from unikio import codehash, estimate, hostinfo, loopdev, results, version

pytestmark = pytest.mark.e2e

HOST_ARCH = {"x86_64": "x86_64", "aarch64": "aarch64"}.get(platform.machine())
KVM_USABLE, KVM_REASON = hostinfo.kvm_status()
OTHER_ARCH = {"x86_64": "aarch64", "aarch64": "x86_64"}.get(platform.machine())


@pytest.fixture(scope="module")
def project(smoke_project):
    return smoke_project


def read_runs(project):
    return pd.read_csv(project / "results/data/blk_runs.csv", keep_default_na=False, na_values=[""])


def test_tidy_csv_follows_the_contract(project):
    df = read_runs(project)
    assert list(df.columns) == results.BLK_COLUMNS
    expected = {(HOST_ARCH, "host", "native"), (HOST_ARCH, "qemu-linux-smp", "native"),
                (HOST_ARCH, "qemu-linux-1core", "native")}
    expected.add((HOST_ARCH, "solo5-spt", "native"))  # no KVM needed
    if KVM_USABLE:
        expected.add((HOST_ARCH, "solo5-hvt", "native"))
    if HOST_ARCH == "x86_64":  # every aarch64 row runs in the emulated testbed
        expected |= {("aarch64", p, "emulated")
                     for p in ("host", "solo5-hvt", "solo5-spt", "qemu-linux-smp", "qemu-linux-1core")}
    else:  # an x86_64 guest on an aarch64 host: TCG
        expected |= {("x86_64", "qemu-linux-smp", "native"), ("x86_64", "qemu-linux-1core", "native")}
    assert set(zip(df["arch"], df["platform"], df["testbed"], strict=True)) == expected
    assert (df["block_size"] == 512).all()
    for (arch, platform_name, testbed, accel), g in df.groupby(["arch", "platform", "testbed", "accel"]):
        # Emulated rows (the testbed, TCG) use testbed.blk's counts (smoke: 1000 x 2), the others blk's (2000 x 3).
        reads, reps = (1000, 2) if testbed == "emulated" or accel == "tcg" else (2000, 3)
        assert (g["reads"] == reads).all(), platform_name
        assert sorted(g["rep"]) == list(range(1, reps + 1)), platform_name
        if testbed == "emulated":
            raw = project / f"results/raw/blk/{arch}/{platform_name}/testbed"
            assert (raw / "benchmark.tsv").is_file()
            lines = (raw / "console.log").read_text(errors="replace").splitlines()
            assert sum(ln.startswith(f"RESULT blk reads={reads}") for ln in lines) == reps
            continue
        provider = "/builtin" if platform_name.startswith("solo5-") else ""
        for rep in range(1, reps + 1):
            raw = project / f"results/raw/blk/{arch}/{platform_name}{provider}/rep{rep}"
            assert (raw / "benchmark.tsv").is_file()
            where = raw / ("console.log" if platform_name.startswith("qemu-linux") else "run.log")
            assert f"RESULT blk reads={reads}" in where.read_text(errors="replace")
    host = df[df["platform"] == "host"]
    assert (host["accel"] == "none").all()
    assert (host["total_ns"] > 0).all() and (host["pread_ns"] == host["total_ns"]).all()


def test_emulated_testbed_rows_are_marked_and_separate(project):
    if HOST_ARCH != "x86_64":
        pytest.skip("the emulated aarch64 testbed is used on x86_64 hosts only")
    df = read_runs(project)
    emulated = df[df["testbed"] == "emulated"]
    assert set(emulated["arch"]) == {"aarch64"}
    tender = emulated[emulated["platform"] == "solo5-hvt"]
    assert (tender["accel"] == "kvm").all() and (tender["provider"] == "builtin").all()
    assert ((0 < tender["pread_ns"]) & (tender["pread_ns"] < tender["total_ns"])).all()
    table = pd.read_csv(project / "results/tables/blk_aarch64.csv", keep_default_na=False)
    rows = table[table["testbed"] == "emulated"]
    assert len(rows) == 5 and rows["note"].str.contains("not a performance result").all()
    spt = emulated[emulated["platform"] == "solo5-spt"]
    assert (spt["accel"] == "none").all() and (spt["provider"] == "builtin").all()
    assert (spt["pread_calls"] == spt["reads"]).all()
    floor = json.loads((project / "results/raw/floor/aarch64/floor.json").read_text())
    assert floor["n"] == 20000 and floor["total_ns"] > 0
    net_rows = pd.read_csv(project / "results/data/net_runs.csv", keep_default_na=False)
    # 5 platforms (qemu-linux, solo5-hvt, solo5-spt, lwip-solo5-hvt, lwip-solo5-spt) x 2 sizes x 2 runs.
    assert len(net_rows[(net_rows["arch"] == "aarch64") & (net_rows["testbed"] == "emulated")]) == 20


def test_linux_guest_rows_have_the_pread_breakdown_and_true_accel(project):
    df = read_runs(project)
    guests = df[df["platform"].str.startswith("qemu-linux")]
    assert ((0 < guests["pread_ns"]) & (guests["pread_ns"] < guests["total_ns"])).all()
    # The patched QEMU counts the benchmark's window only: exactly one host pread per guest read.
    assert (guests["pread_calls"] == guests["reads"]).all(), guests[["platform", "rep", "pread_calls"]]
    # Rows run directly on this host use the accelerator the KVM probe chose for that arch.
    if HOST_ARCH == "x86_64":  # no aarch64 guest runs directly on this host: nothing to probe
        assert not (project / "results/raw/probe/aarch64").exists()
    for arch, rows in guests[guests["testbed"] == "native"].groupby("arch"):
        verdict = json.loads((project / f"results/raw/probe/{arch}/verdict.json").read_text())
        assert set(rows["accel"]) == {verdict["accel"]}, verdict
        if arch != HOST_ARCH:
            assert verdict["accel"] == "tcg"  # a foreign-arch guest can only be emulated
    # In the emulated ARM host the guest runs under that machine's KVM, as on the study's boards.
    assert set(guests[guests["testbed"] == "emulated"]["accel"]) <= {"kvm"}


def test_unikernel_rows_have_the_pread_breakdown(project):
    df = read_runs(project)
    builtin = df[df["provider"] == "builtin"]
    spt = builtin[(builtin["platform"] == "solo5-spt") & (builtin["testbed"] == "native")]
    assert (spt["accel"] == "none").all() and len(spt) == 3
    assert (spt["pread_calls"] == spt["reads"]).all(), spt[["rep", "pread_calls"]]
    assert ((0 < spt["pread_ns"]) & (spt["pread_ns"] < spt["total_ns"])).all()
    if not KVM_USABLE:
        pytest.skip(f"solo5-hvt needs KVM: {KVM_REASON}")
    uk = builtin[builtin["platform"] == "solo5-hvt"]
    assert (uk["accel"] == "kvm").all() and len(uk[uk["testbed"] == "native"]) == 3
    assert (uk["pread_calls"] == uk["reads"]).all(), uk[["rep", "pread_calls"]]
    assert ((0 < uk["pread_ns"]) & (uk["pread_ns"] < uk["total_ns"])).all()
    overhead = pd.read_csv(project / f"results/tables/overhead_{HOST_ARCH}.csv")
    row = overhead[overhead["platform"] == "solo5-hvt (builtin)"].iloc[0]
    assert row["exit_floor_ns"] > 0 and row["overhead_over_floor"] > 0
    assert "solo5-spt (builtin)" in set(overhead["platform"])


def test_every_provider_has_its_rows_or_says_why_not(project):
    """Upstream Solo5 runs where its source could be fetched; elsewhere its rows say why, in the plan's words."""
    plan = {e["combination"]: e for e in json.loads((project / "results/provenance.json").read_text())["plan"]}
    table = pd.read_csv(project / f"results/tables/blk_{HOST_ARCH}.csv", keep_default_na=False)
    df = read_runs(project)
    for platform_name in ("solo5-hvt", "solo5-spt"):
        entry = plan[f"blk/{HOST_ARCH}/{platform_name}/upstream"]
        (note,) = table.loc[table["platform"] == f"{platform_name} (upstream)", "note"]
        mine = df[(df["platform"] == platform_name) & (df["provider"] == "upstream")]
        if entry["runnable"]:
            assert len(mine) == 3 and not note.startswith("not measured")
        else:
            assert mine.empty and note == f"not measured: {entry['reason']}"
    upstream_ran = any(e["runnable"] for label, e in plan.items() if label.endswith("/upstream"))
    assert (project / "results/build/solo5-upstream").exists() == upstream_ran


def test_network_rows_from_real_packets(project):
    df = pd.read_csv(project / "results/data/net_runs.csv", keep_default_na=False, na_values=[""])
    assert list(df.columns) == results.NET_COLUMNS
    hvt = ("solo5-hvt", "lwip-solo5-hvt")
    spt = ("solo5-spt", "lwip-solo5-spt")
    expected = {(HOST_ARCH, p, "native") for p in ("qemu-linux", *spt, *(hvt if KVM_USABLE else ()))}
    if HOST_ARCH == "x86_64":  # the aarch64 rows run in the emulated testbed, under its KVM
        expected |= {("aarch64", p, "emulated") for p in ("qemu-linux", *hvt, *spt)}
    else:
        expected.add(("x86_64", "qemu-linux", "native"))
    assert set(zip(df["arch"], df["platform"], df["testbed"], strict=True)) == expected
    for _, g in df.groupby(["arch", "platform"]):
        assert sorted(zip(g["data_bytes"], g["rep"], strict=True)) == [(1, 1), (1, 2), (1472, 1), (1472, 2)]
    assert (df["packets"] == 200).all() and (df["lost"] <= 2).all()
    assert (0 < df["min_rtt_ns"]).all()
    assert ((df["min_rtt_ns"] <= df["avg_rtt_ns"]) & (df["avg_rtt_ns"] <= df["max_rtt_ns"])).all()
    assert (abs(df["pps"] * df["avg_rtt_ns"] / 1e9 - 1) < 0.01).all()
    unikernels = df[df["platform"].isin(hvt + spt)]
    # Upstream Solo5's rows too where its source could be fetched (test_every_provider_has_its_rows_or_says_why_not).
    assert "builtin" in set(unikernels["provider"]) and set(unikernels["provider"]) <= {"builtin", "upstream"}
    assert set(df[df["platform"].isin(spt)]["accel"]) == {"none"}
    assert set(df[df["platform"].isin(hvt) | (df["platform"] == "qemu-linux") & (df["testbed"] == "emulated")]
               ["accel"]) <= {"kvm"}
    # lwIP's rows stand beside the study's mirage-solo5 values and say so.
    table = pd.read_csv(project / "results/tables/net_aarch64.csv", keep_default_na=False)
    lwip = table[table["platform"] == "lwip-solo5-spt (builtin)"]
    stand_in = "full-stack unikernel (lwIP) on spt, a stand-in for mirage-solo5"
    assert len(lwip) == 2 and all(stand_in in note.split("; ") for note in lwip["note"])
    assert (lwip["zcu102_pps"] != "").all()
    assert "vhost-net: " in (project / f"results/raw/net/{HOST_ARCH}/qemu-linux/run.log").read_text()
    for arch in (HOST_ARCH, OTHER_ARCH):
        for ext in ("csv", "md", "tex"):
            assert (project / f"results/tables/net_{arch}.{ext}").stat().st_size > 0
        assert (project / f"results/figures/net_{arch}.png").stat().st_size > 1000


def test_every_row_names_its_kvm_and_its_pipeline(project):
    impl = hostinfo.kvm_impl()
    label = version.label(version.describe(project))  # the copy's VERSION.json: this checkout's commit
    for df in (read_runs(project), pd.read_csv(project / "results/data/net_runs.csv", keep_default_na=False,
                                               na_values=[""])):
        kvm = df[df["accel"] == "kvm"]
        assert (kvm[kvm["testbed"] == "native"]["kvm_impl"] == impl).all()
        assert kvm[kvm["testbed"] == "emulated"]["kvm_impl"].str.startswith("kvm_arm64").all()
        assert df[df["accel"] != "kvm"]["kvm_impl"].isna().all()
        assert set(df["pipeline_version"]) == {label}
    prov = json.loads((project / "results/provenance.json").read_text())
    assert prov["host"]["kvm_impl"] == impl
    assert prov["pipeline"]["commit"] == version.describe(project)["commit"]
    if impl not in hostinfo.SOFTWARE_KVM or not KVM_USABLE:
        return
    # On this kind of machine (kvm_pvm) the unikernel rows are marked like emulated ones.
    table = pd.read_csv(project / f"results/tables/blk_{HOST_ARCH}.csv", keep_default_na=False)
    row = table[(table["platform"] == "solo5-hvt (builtin)") & (table["testbed"] == "native")].iloc[0]
    # A busy-machine mark may follow (the load before a repetition); the KVM's comes first.
    assert row["kvm_impl"] == impl
    assert row["note"].split("; ")[0] == f"software-assisted KVM ({impl}): not a performance result"
    assert row["ratio_carbon-x1"] == "" and row["pipeline_version"] == label


def test_no_namespace_or_loop_device_is_left_behind(project):
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "unikio-net" not in namespaces
    loops = subprocess.run(["losetup", "--list", "--noheadings", "-O", "BACK-FILE"], capture_output=True,
                           text=True).stdout
    assert loopdev.PREFIX not in loops


def test_tables_and_figures_for_every_arch(project):
    for arch in (HOST_ARCH, OTHER_ARCH):
        for ext in ("csv", "md", "tex"):
            assert (project / f"results/tables/blk_{arch}.{ext}").stat().st_size > 0
        for ext in ("png", "pdf"):
            assert (project / f"results/figures/blk_{arch}.{ext}").stat().st_size > 1000
    mine = pd.read_csv(project / f"results/tables/blk_{HOST_ARCH}.csv")
    host = mine[mine["platform"] == "host"].iloc[0]
    assert host["runs"] == 3 and host["total_ms"] > 0 and host["us_per_read"] > 0
    reference_host = {"x86_64": "carbon-x1", "aarch64": "zcu102"}[HOST_ARCH]
    assert host[f"ratio_{reference_host}"] > 0
    other = pd.read_csv(project / f"results/tables/blk_{OTHER_ARCH}.csv", keep_default_na=False)
    if HOST_ARCH == "x86_64":
        # Every aarch64 row runs in the testbed, but upstream Solo5's, which builds for this host's arch only.
        measured = other["runs"] != ""
        assert set(other[measured]["testbed"]) == {"emulated"}
        assert set(other[~measured]["platform"]) == {"solo5-hvt (upstream)", "solo5-spt (upstream)"}
    else:  # no testbed can host x86_64
        assert other[other["platform"] == "host"].iloc[0]["note"].startswith("not measured: needs an")


def test_provenance_and_source_lock(project):
    prov = json.loads((project / "results/provenance.json").read_text())
    assert prov["host"]["arch"] == HOST_ARCH and prov["host"]["cores"] == os.cpu_count()
    assert isinstance(prov["host"]["kvm_usable"], bool)
    lock = prov["sources"]["qemu"]
    assert lock["version"] == prov["config"]["qemu"]["debian_version"]
    assert any(name.endswith(".dsc") for name in lock["files"])
    assert all(len(h) == 64 for h in lock["files"].values())
    assert "7.2" in prov["tools"]["qemu-system-x86_64"]


def test_built_binaries(project):
    for name in ("qemu-system-x86_64", "qemu-system-aarch64"):
        assert os.access(project / "results/build/qemu/bin" / name, os.X_OK)
    for arch, magic in (("x86_64", "x86-64"), ("aarch64", "aarch64")):
        out = subprocess.run(["file", "-L", str(project / f"results/build/native/{arch}/blk_bench")],
                             capture_output=True, text=True).stdout
        assert magic in out.replace("ARM aarch64", "aarch64") and "statically linked" in out


def test_patched_qemu_reports_its_preads(project, tmp_path):
    """SeaBIOS reads the boot sector of a virtio disk on a loop device (cache=none, TCG)."""
    qemu = project / "results/build/qemu/bin/qemu-system-x86_64"
    stats = tmp_path / "pread.stats"
    with loopdev.tmpfs_loop(1 << 20) as dev:
        proc = subprocess.Popen(
            [str(qemu), "-nodefaults", "-display", "none", "-machine", "pc,accel=tcg", "-m", "64",
             "-L", "/usr/share/qemu", "-L", "/usr/share/seabios",
             "-drive", f"file={dev},format=raw,if=virtio,cache=none,aio=threads", "-boot", "c"],
            env={**os.environ, "PREAD_STATS_FILE": str(stats)})
        time.sleep(8)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    counts = results.parse_pread_stats(stats.read_text())
    assert counts["pread_calls"] >= 1 and counts["pread_ns"] > 0
    # Nothing wrote to the disk, so no read was set apart as setup.
    assert " setup_pread_calls=0 setup_pread_ns=0\n" in stats.read_text()


def test_second_run_has_nothing_to_do(project):
    proc = snakemake(project, "-n")
    assert proc.returncode == 0, proc.stderr
    assert planned_jobs(proc.stdout + proc.stderr) == {}, proc.stdout[-2000:]


def test_a_copied_checkout_has_nothing_to_do(project, tmp_path):
    """Snakemake's records name paths relative to the checkout: moving it rebuilds nothing."""
    moved = tmp_path / "moved"
    subprocess.run(["cp", "-a", str(project), str(moved)], check=True)
    proc = snakemake(moved, "-n")
    assert proc.returncode == 0, proc.stderr
    assert planned_jobs(proc.stdout + proc.stderr) == {}, proc.stdout[-2000:]


# What depends on the QEMU build: the binaries, the probes and every Linux-guest row.
# The Linux guest's block repetitions are not in it: they join once the rerun probe (a checkpoint) has said
# under which accelerator, and so with which counts, they run.
QEMU_CHAIN = {"qemu_source_patched", "qemu_build", "qemu_binaries", "kvm_probe", "blk_runs_csv",
              "blk_table", "blk_figure", "net_qemu_run", "net_runs_csv", "net_table", "net_figure", "provenance",
              "all", "overhead_table", "claims_table"} | (
    {"testbed_run", "testbed_exit_floor_run", "qemu_cross_build", "qemu_cross_binary", "testbed_nested_initramfs"}
    if HOST_ARCH == "x86_64" else set())


def test_patch_edit_reruns_only_the_qemu_chain(project):
    patch = project / "patches/qemu/0001-pread-accounting.patch"
    original = patch.read_text()
    try:
        patch.write_text("Edited description.\n" + original)
        proc = snakemake(project, "-n")
        assert proc.returncode == 0, proc.stderr
        jobs = planned_jobs(proc.stdout + proc.stderr)
        assert set(jobs) == QEMU_CHAIN, jobs
        assert "blk_host_run" not in jobs and "blk_solo5_run" not in jobs
    finally:
        patch.write_text(original)
        os.utime(patch, (time.time() - 3600 * 24,) * 2)


def test_changing_reads_reruns_measurements_and_aggregation_only(project):
    proc = snakemake(project, "-n", overrides="blk: {reads: 1000}\n")
    assert proc.returncode == 0, proc.stderr
    jobs = planned_jobs(proc.stdout + proc.stderr)
    assert jobs.get("blk_host_run") == 3
    # solo5-spt's 3 repetitions, and solo5-hvt's where KVM works (the builtin provider: upstream's rows, where its
    # source could be fetched, count as many more).
    upstream = json.loads((project / "results/provenance.json").read_text())["plan"]
    per_provider = 1 + any(e["runnable"] for e in upstream if e["combination"] == f"blk/{HOST_ARCH}/solo5-spt/upstream")
    assert jobs.get("blk_solo5_run", 0) == 3 * per_provider * (2 if KVM_USABLE else 1)
    # Emulated rows keep their own counts (testbed.blk): the Linux guest under TCG and the testbed do not rerun.
    verdicts = {a: json.loads((project / f"results/raw/probe/{a}/verdict.json").read_text())["accel"]
                for a in ("x86_64", "aarch64") if (project / f"results/raw/probe/{a}").exists()}
    assert jobs.get("blk_qemu_run", 0) == 6 * sum(v == "kvm" for v in verdicts.values())  # 2 variants x 3 reps
    assert not {"net_qemu_run", "net_solo5_run", "net_runs_csv", "testbed_exit_floor_run", "testbed_run"} & set(jobs)
    assert {"blk_runs_csv", "blk_table", "blk_figure"} <= set(jobs)
    builds = {"qemu_build", "qemu_binaries", "qemu_source_patched", "native_bench", "solo5_builtin", "apt_index",
              "guest_init", "guest_initramfs", "debian_package", "debian_package_tree", "kvm_probe",
              "testbed_initramfs", "testbed_nested_initramfs", "qemu_cross_sysroot", "qemu_cross_build",
              "qemu_cross_binary"}
    assert not builds & set(jobs), jobs


AGGREGATION = {"blk_runs_csv", "blk_table", "blk_figure", "net_runs_csv", "net_table", "net_figure", "overhead_table",
               "claims_table", "all"}


def rule_scripts(project):
    """{rule: its script} of every script rule, read from the rule files."""
    found = {}
    for smk in (project / "workflow/rules").glob("*.smk"):
        for rule, script in re.findall(r'^(?:rule|checkpoint) (\w+):\n(?:(?!^(?:rule|checkpoint) ).*\n)*?    script:\n'
                                       r'        "([^"]+)"',
                                       smk.read_text(), re.M):
            found[rule] = (smk.parent / script).resolve()
    return found


def test_editing_a_module_reruns_exactly_the_jobs_whose_scripts_import_it(project):
    module = project / "workflow/scripts/unikio/netns.py"
    scripts = rule_scripts(project)
    importers = {rule for rule, script in scripts.items()
                 if module in codehash.modules_of(script, module.parent)}
    in_dag = set(planned_jobs(snakemake(project, "-n", "--forceall").stdout))
    original = module.read_text()
    try:
        module.write_text(original + "\n# a comment alone changes no code\n")
        assert planned_jobs(snakemake(project, "-n").stdout) == {}
        module.write_text(original + "\n_EDITED = True\n")
        proc = snakemake(project, "-n")
    finally:
        module.write_text(original)
    assert proc.returncode == 0, proc.stderr
    jobs = set(planned_jobs(proc.stdout + proc.stderr))
    assert "net_qemu_run" in importers and "blk_host_run" not in importers
    assert jobs & set(scripts) - AGGREGATION == importers & in_dag, jobs
    assert jobs - importers <= AGGREGATION, jobs - importers
    assert planned_jobs(snakemake(project, "-n").stdout) == {}


def test_archive_holds_the_artifact(project):
    proc = snakemake(project, "archive")
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = tarfile.open(project / "results/artifact.tar.gz").getnames()
    for must in ("config/config.yaml", "patches/qemu/0001-pread-accounting.patch", "native/bench/blk_bench.c",
                 "results/sources/qemu/lock.json", "results/data/blk_runs.csv",
                 f"results/tables/blk_{HOST_ARCH}.md", f"results/figures/blk_{HOST_ARCH}.png",
                 "results/provenance.json", f"results/raw/blk/{HOST_ARCH}/host/rep1/run.log", "VERSION.json"):
        assert f"unikio-artifact/{must}" in names, must


def elapsed_s(text):
    """Seconds of a progress.duration() text: 45 s, 3 min 20 s, 1 h 05 min."""
    m = re.fullmatch(r"(?:(\d+) h )?(?:(\d+) min ?)?(?:(\d+) s)?", text.strip())
    h, mi, s = (int(g) if g else 0 for g in m.groups())
    return 3600 * h + 60 * mi + s


def test_every_long_job_says_how_far_it_got_at_least_every_30_s(project):
    """Each job that ran longer than a minute logged progress lines no more than 30 s apart, with an ETA."""
    long_jobs = 0
    for bench in (project / "results/raw").rglob("benchmark.tsv"):
        took = float(bench.read_text().splitlines()[1].split("\t")[0])
        if took < 60:
            continue
        long_jobs += 1
        # Ours, not the benchmarks' own "progress DONE/TOTAL" lines, which the log keeps too.
        lines = [ln for ln in (bench.parent / "run.log").read_text().splitlines()
                 if ln.startswith("progress ") and " elapsed" in ln]
        assert lines, bench.parent
        stamps = [elapsed_s(re.search(r", ([^,]+) elapsed", ln).group(1)) for ln in lines]
        gaps = [b - a for a, b in zip([0, *stamps], [*stamps, took], strict=True)]
        assert max(gaps) <= 30, (bench.parent, stamps, took)
        assert any("ETA" in ln and "%)" in ln for ln in lines), lines
    assert long_jobs, "no job ran a minute: nothing to check"  # the testbed's Linux-guest rows do here



def test_the_run_said_its_plan_up_front_and_its_time_at_the_end(project):
    out = (project / "smoke-run.out").read_text()
    start = re.search(r"^measurements: (\d+) jobs, about (.+) if all run \(model: (.+)\); ", out, re.M)
    assert start, out[:3000]
    plan = re.search(r"^plan: (\d+) builds, (\d+) boots \(guests, tenders, testbeds\), (\d+) measurement jobs, "
                     r"(\d+) jobs in all; estimated wall time (.+) \(model: ", out, re.M)
    assert plan, out[:5000]
    runs = pd.read_csv(project / "results/data/blk_runs.csv")
    native_blk = len(runs[runs["testbed"] == "native"])  # one job per native block repetition
    testbed = len({(a, p) for a, p, t in zip(runs["arch"], runs["platform"], runs["testbed"], strict=True)
                   if t == "emulated"})
    nets = pd.read_csv(project / "results/data/net_runs.csv")
    net_jobs = len({(a, p) for a, p in zip(nets["arch"], nets["platform"], strict=True)})
    # Every measurement job was in the plan, the Linux guest's repetitions before its probe had run included.
    assert int(plan.group(3)) == int(start.group(1)) == native_blk + testbed + net_jobs
    took = re.search(r"^the run took (.+) \(estimated (.+)\)$", out, re.M)
    assert took and took.group(2) == plan.group(5)


def flip_probe(project, arch):
    """Context: the probe's verdict for arch says the other accelerator (mtime kept: nothing else reruns)."""
    verdict = project / f"results/raw/probe/{arch}/verdict.json"
    original, st = verdict.read_text(), verdict.stat()
    data = json.loads(original)
    flipped = "kvm" if data["accel"] == "tcg" else "tcg"

    class Flip:
        def __enter__(self):
            verdict.write_text(json.dumps({**data, "accel": flipped}))
            os.utime(verdict, ns=(st.st_atime_ns, st.st_mtime_ns))
            return flipped

        def __exit__(self, *exc):
            verdict.write_text(original)
            os.utime(verdict, ns=(st.st_atime_ns, st.st_mtime_ns))

    return Flip()


def test_the_probes_accelerator_sets_the_linux_guests_counts(project):
    """TCG: testbed.blk's counts (smoke 1000 reads x 2); KVM: blk's (2000 x 3). A flipped verdict replans them."""
    with flip_probe(project, HOST_ARCH) as accel:
        proc = snakemake(project, "-n")
    assert proc.returncode == 0, proc.stderr[-2000:]
    jobs = planned_jobs(proc.stdout + proc.stderr)
    reps = 3 if accel == "kvm" else 2
    assert jobs.get("blk_qemu_run") == 2 * reps, jobs  # smp and 1core, every repetition: new reads
    assert not {"blk_host_run", "blk_solo5_run", "testbed_run", "kvm_probe"} & set(jobs), jobs


def test_emulated_counts_rerun_only_the_rows_that_use_them(project):
    proc = snakemake(project, "-n", overrides="testbed: {blk: {reads: 500}}\n")
    assert proc.returncode == 0, proc.stderr[-2000:]
    jobs = planned_jobs(proc.stdout + proc.stderr)
    accel = json.loads((project / f"results/raw/probe/{HOST_ARCH}/verdict.json").read_text())["accel"]
    assert jobs.get("blk_qemu_run", 0) == (4 if accel == "tcg" else 0), jobs  # 2 variants x 2 emulated reps
    assert jobs.get("testbed_run", 0) == (5 if HOST_ARCH == "x86_64" else 0), jobs  # the testbed's block rows
    assert not {"net_qemu_run", "net_solo5_run", "testbed_exit_floor_run", "blk_host_run", "blk_solo5_run"} & set(jobs)


def test_runtime_table_and_cost_model_come_from_this_runs_own_timings(project):
    proc = snakemake(project, "runtime")
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = pd.read_csv(project / "results/tables/runtime.csv")
    by_rule = dict(zip(table["rule"], table["jobs"], strict=True))
    runs = pd.read_csv(project / "results/data/blk_runs.csv")
    native = runs[runs["testbed"] == "native"]
    assert by_rule["blk_host_run"] == len(native[native["platform"] == "host"])
    assert by_rule["blk_qemu_run"] == len(native[native["platform"].str.startswith("qemu-linux")])
    # Every other rule that made files has its own benchmark.tsv (add_benchmarks): builds, tables, the archive.
    assert by_rule["native_bench"] == 2 and by_rule["archive"] == 1 and by_rule["report"] == 1
    assert (project / "results/benchmarks/native_bench.x86_64.tsv").is_file()
    assert abs(table["share_pct"].sum() - 100) < 0.5
    model = estimate.load_model(project / "results/cost_model.yaml")
    kinds = {estimate.row_key("blk", a, p, "testbed" if t == "emulated" else "tcg" if c == "tcg" else "native",
                              "" if pd.isna(v) else v)
             for a, p, t, c, v in zip(runs["arch"], runs["platform"], runs["testbed"], runs["accel"], runs["provider"],
                                      strict=True)}
    assert kinds <= set(model.rows), kinds - set(model.rows)
    assert all(cost.unit_s > 0 for cost in model.rows.values())
