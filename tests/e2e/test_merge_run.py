"""Several machines, one study, for real: artifacts of real runs merged, checked cell by cell, and refused.

Works on copies of the shared smoke run, which stays as the other modules
expect it. This machine is the only one here, so the "second machine" is a
second run on it, labelled apart:

- a: the `archive` of a copy of the smoke run;
- b: the copy, its host block row measured again (`--forcerun blk_host_run`,
  same config: 3 repetitions of 2,000 reads, then the aggregation) and
  archived: a real second run with real new numbers. Same machine, same
  identity, so it is "run 2" of that host unless merge.labels names it apart;
  the first merge labels it "second-run";
- c: the copy again with blk.reads 1000: the host row measured again with 1000
  reads and provenance rewritten with that config. `--rerun-triggers mtime`
  keeps the other rows' 2,000-read runs: a real rerun of them would redo the
  emulated testbed's boots (minutes), and the compatibility check reads the
  config the artifact records, which is what differs (its host row really
  has 1,000 reads, which the merged table shows).

Cost after the smoke run: a copy of it, three `archive` runs (each reruns the
3 host repetitions and the aggregation), three merges, two refusals and one
report; not timed yet (the merges took about 20 s each on synthetic artifacts).
"""

import json
import platform
import shutil
import subprocess
import tarfile
import time

import pandas as pd
import pytest
from testkit import planned_jobs, snakemake
from unikio import aggregate, merge

pytestmark = pytest.mark.e2e

HOST_ARCH = {"x86_64": "x86_64", "aarch64": "aarch64"}.get(platform.machine())
MERGE_RULES = {"merged_runs", "merged_table", "merged_figure", "merged_claims_table", "merged_hosts_table",
               "merged_results", "merge"}
MEASUREMENTS = ("blk_host_run", "blk_solo5_run", "blk_qemu_run", "net_qemu_run", "net_solo5_run", "testbed_run")


def timed(project, *args, overrides=""):
    start = time.monotonic()
    proc = snakemake(project, *args, overrides=overrides)
    print(f"{' '.join(args)}: {time.monotonic() - start:.1f} s")
    return proc


def merge_config(artifacts, labels=None, allow_mismatch=False) -> str:
    labels = labels or {}
    return ("merge: {artifacts: [" + ", ".join(json.dumps(str(a)) for a in artifacts) + "], "
            f"allow_mismatch: {str(allow_mismatch).lower()}, "
            "labels: {" + ", ".join(f"{json.dumps(str(k))}: {json.dumps(v)}" for k, v in labels.items()) + "}}\n")


def errors(proc) -> list[str]:
    return [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.startswith("ERROR in rule")]


def member(artifact, rel):
    with tarfile.open(artifact) as tar:
        return pd.read_csv(tar.extractfile(f"unikio-artifact/{rel}"), keep_default_na=False, na_values=[""])


def read(path):
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


@pytest.fixture(scope="module")
def runs(smoke_project, tmp_path_factory):
    """(the copy to merge in, {a, b: artifact}, root)."""
    if HOST_ARCH is None:
        pytest.skip(f"no host row on {platform.machine()}")
    root = tmp_path_factory.mktemp("merge")
    (root / "artifacts").mkdir()
    (root / "other").mkdir()
    # Copies, so the shared smoke run stays as the other modules expect it (no report or archive made here).
    first = root / "first"
    subprocess.run(["cp", "-a", str(smoke_project), str(first)], check=True)
    proc = timed(first, "archive")
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = root / "artifacts" / "a.tar.gz"
    shutil.copy2(first / "results/artifact.tar.gz", a)
    start = time.monotonic()
    project = root / "second"
    subprocess.run(["cp", "-a", str(smoke_project), str(project)], check=True)
    print(f"copy of the smoke run: {time.monotonic() - start:.1f} s")
    proc = timed(project, "archive", "--forcerun", "blk_host_run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    b = root / "artifacts" / "b.tar.gz"
    shutil.move(project / "results/artifact.tar.gz", b)
    return project, {"a": a, "b": b}, root


@pytest.fixture(scope="module")
def third(runs):
    """c: the copy's host row measured again with blk.reads 1000, provenance rewritten with that config, archived
    (made after the merges that do not need it: its config change would rerun the host row for them)."""
    project, _, root = runs
    proc = timed(project, "archive", "--rerun-triggers", "mtime", "--forcerun", "provenance", "blk_host_run",
                 overrides="blk: {reads: 1000}\n")
    assert proc.returncode == 0, proc.stderr[-3000:]
    c = root / "other" / "c.tar.gz"
    shutil.move(project / "results/artifact.tar.gz", c)
    with tarfile.open(c) as tar:
        recorded = json.loads(tar.extractfile("unikio-artifact/results/provenance.json").read())["config"]
    assert recorded["blk"]["reads"] == 1000
    return c


@pytest.fixture(scope="module")
def first_merge(runs):
    """a and b merged, b labelled "second-run"; a snapshot of results/merged (later merges replace it)."""
    project, art, root = runs
    overrides = merge_config([art["a"], art["b"]], labels={art["b"]: "second-run"})
    proc = timed(project, "merge", overrides=overrides)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = proc.stdout + proc.stderr
    assert set(planned_jobs(text)) <= MERGE_RULES, planned_jobs(text)
    assert not any(f"rule {m}:" in text for m in MEASUREMENTS)
    snapshot = root / "first-merged"
    shutil.copytree(project / "results/merged", snapshot)
    return project, snapshot, overrides


def test_an_unset_merge_stops_before_any_job_in_one_sentence(runs):
    project, _, _ = runs
    proc = snakemake(project, "merge")
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert ("merge.artifacts is empty: name the artifact.tar.gz files made by `archive` on each machine, or a "
            "directory holding them, e.g. ./snakemake --cores 4 merge --config "
            "'merge={\"artifacts\": [\"artifacts/\"]}'") in text, text[-2000:]
    assert "Job stats" not in text and not (project / "results/merged").exists()


def test_the_second_run_is_real_and_of_the_same_settings(runs):
    _, art, _ = runs
    before, again = member(art["a"], "results/data/blk_runs.csv"), member(art["b"], "results/data/blk_runs.csv")
    host = (before["platform"] == "host") & (before["arch"] == HOST_ARCH)
    assert not set(again.loc[host, "total_ns"]) & set(before.loc[host, "total_ns"])  # measured again
    assert before.loc[~host, "total_ns"].tolist() == again.loc[~host, "total_ns"].tolist()


def test_merged_hosts_labels_and_provenance(runs, first_merge):
    _, art, _ = runs
    _, merged, _ = first_merge
    record = json.loads((merged / "provenance.json").read_text())
    first, second = record["hosts"]
    assert (first["label_source"], first["run"], first["column"]) == ("derived", None, first["label"])
    assert (second["label_source"], second["column"]) == ("merge.labels", "second-run")
    assert first["identity"] == second["identity"]  # one machine: without the label, "run 1" and "run 2"
    assert first["label"] == merge.derived_label(first["identity"])
    provenance = json.loads(tarfile.open(art["a"]).extractfile("unikio-artifact/results/provenance.json").read())
    assert first["identity"]["cpu_model"] == provenance["host"]["cpu_model"]
    assert first["identity"]["kvm_impl"] == provenance["host"]["kvm_impl"]
    for host, key in zip(record["hosts"], ("a", "b"), strict=True):
        assert host["artifact"] == str(art[key]) and host["mismatch"] == []
        assert host["sha256"] == merge.read_artifact(str(art[key])).sha256
        assert host["pipeline_version"] == merge.pipeline_version(host["provenance"])
    hosts = read(merged / "hosts.csv")
    assert list(hosts["column"]) == [first["column"], "second-run"]
    names = {str(p.relative_to(merged)) for p in merged.rglob("*") if p.is_file()} - {".snakemake_timestamp"}
    assert names == set(merge.part_names(record))


def test_the_merged_tables_equal_each_sources_own_tables_cell_by_cell(runs, first_merge):
    _, art, _ = runs
    _, merged, _ = first_merge
    record = json.loads((merged / "provenance.json").read_text())
    checked = 0
    for experiment in merge.EXPERIMENTS:
        for arch in record["tables"][experiment]["archs"]:
            table = read(merged / f"tables/{experiment}_{arch}.csv")
            for host, key in zip(record["hosts"], ("a", "b"), strict=True):
                # What the host's own run wrote (results/tables/ in its artifact).
                own = member(art[key], f"results/tables/{experiment}_{arch}.csv")
                group = merge.group(table, host["column"], experiment)
                assert [aggregate.base_platform(p) for p in group["platform"]] == [
                    aggregate.base_platform(p) for p in own["platform"]]
                columns = merge.OUR_COLUMNS[experiment] + [c for c in group.columns if c.startswith("ratio_")]
                columns += ["data_bytes"] if experiment == "net" else []
                for column in columns:
                    for i, (x, y) in enumerate(zip(group[column], own[column], strict=True)):
                        where = (experiment, arch, host["column"], column, i, x, y)
                        if pd.isna(x) or pd.isna(y):
                            assert pd.isna(x) and pd.isna(y), where
                        elif isinstance(x, str) or isinstance(y, str):
                            assert str(x) == str(y), where
                        else:
                            assert float(x) == pytest.approx(float(y), rel=1e-12, abs=0), where
                        checked += 1
            # The study's values beside them, from the same reference as the sources' tables.
            for study in [c for c in table.columns if c.startswith("study ")]:
                name, value = study.removeprefix("study ").split(": ")
                own = member(art["a"], f"results/tables/{experiment}_{arch}.csv")
                assert table[study].fillna(-1).tolist() == own[f"{name}_{value}"].fillna(-1).tolist()
    assert checked > 100
    host_row = read(merged / f"tables/blk_{HOST_ARCH}.csv").query("platform == 'host'").iloc[0]
    first = record["hosts"][0]["column"]
    assert host_row[f"{first}: us_per_read"] != host_row["second-run: us_per_read"]  # two real runs
    runs_csv = read(merged / "data/blk_runs.csv")
    for column, key in ((first, "a"), ("second-run", "b")):
        mine = runs_csv[runs_csv["column"] == column]
        assert mine["total_ns"].tolist() == member(art[key], "results/data/blk_runs.csv")["total_ns"].tolist()


def test_emulated_and_tcg_rows_keep_their_labels(first_merge):
    _, merged, _ = first_merge
    record = json.loads((merged / "provenance.json").read_text())
    for arch in record["tables"]["blk"]["archs"]:
        table = read(merged / f"tables/blk_{arch}.csv")
        for host in record["hosts"]:
            group = merge.group(table, host["column"], "blk")
            emulated = group["testbed"].eq("emulated") | group["accel"].eq("tcg")
            assert group.loc[emulated, "note"].str.startswith(aggregate.NOT_PERFORMANCE).all()
            assert group.loc[emulated, [c for c in group.columns if c.startswith("ratio_")]].isna().all().all()
    for png in (merged / "figures").glob("*.png"):
        assert png.stat().st_size > 10_000


def test_the_report_and_the_archive_carry_the_merge(runs, first_merge):
    project, _, _ = runs
    _, _, overrides = first_merge
    proc = timed(project, "report", "archive", overrides=overrides)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not set(planned_jobs(proc.stdout + proc.stderr)) & MERGE_RULES  # the merge was up to date
    page = (project / "results/report.html").read_text()
    section = page.split('<section id="merged">', 1)[1].split("</section>", 1)[0]
    assert "second-run" in section and page.index('id="merged"') < page.index('id="provenance"')
    with tarfile.open(project / "results/artifact.tar.gz") as tar:
        names = tar.getnames()
    assert "unikio-artifact/results/merged/provenance.json" in names
    assert not any("results/merging" in n for n in names)
    (project / "results/artifact.tar.gz").unlink()
    assert not any(f"rule {m}:" in proc.stdout + proc.stderr for m in MEASUREMENTS)


def test_an_artifact_with_other_reads_is_refused_in_one_sentence_then_merged_marked(runs, first_merge, third):
    project, art, root = runs
    art = art | {"c": third}
    proc = timed(project, "merge", overrides=merge_config([art["a"], art["c"]]))
    assert proc.returncode != 0
    lines = errors(proc)
    assert len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith(f"ERROR in rule merged_runs: merge.artifacts: {art['c']} did not measure what "
                               f"{art['a']} did, first at blk.reads (1000 against 2000); ")
    proc = timed(project, "merge", overrides=merge_config([root / "artifacts", art["c"]], allow_mismatch=True))
    assert proc.returncode == 0, proc.stderr[-3000:]
    merged = project / "results/merged"
    record = json.loads((merged / "provenance.json").read_text())
    label = record["hosts"][0]["label"]
    # No label given: one machine, three runs of it.
    assert [h["column"] for h in record["hosts"]] == [f"{label} run {n}" for n in (1, 2, 3)]
    assert [h["mismatch"] for h in record["hosts"]] == [[], [], ["blk.reads"]]
    table = read(merged / f"tables/blk_{HOST_ARCH}.csv")
    assert table[f"{label} run 3: note"].str.startswith("mismatch: blk.reads").all()
    assert not table[f"{label} run 1: note"].fillna("").str.contains("mismatch").any()
    host = table[table["platform"] == "host"].iloc[0]
    assert (host[f"{label} run 1: reads"], host[f"{label} run 3: reads"]) == (2000, 1000)
    assert "Merged despite differing settings" in (merged / f"tables/blk_{HOST_ARCH}.md").read_text()


def test_a_truncated_artifact_is_refused_and_leaves_nothing_under_results_merged(runs):
    project, art, root = runs
    bad = root / "other" / "truncated.tar.gz"
    data = art["a"].read_bytes()
    bad.write_bytes(data[: len(data) * 6 // 10])
    # A merge that succeeded before stays until one replaces it; start without one.
    shutil.rmtree(project / "results/merged", ignore_errors=True)
    proc = timed(project, "merge", overrides=merge_config([art["a"], bad]))
    assert proc.returncode != 0
    lines = errors(proc)
    assert len(lines) == 1 and lines[0].startswith(
        f"ERROR in rule merged_runs: merge.artifacts names {bad}, which is truncated or corrupted ("), lines
    assert not (project / "results/merged").exists()
    assert not list((project / "results").glob(".merged*"))
    assert not (project / "results/merging/provenance.json").exists()
