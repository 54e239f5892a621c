"""Merging the artifacts of several hosts: real artifact.tar.gz files (unikio.archive.write) of synthetic projects."""

import copy
import hashlib
import io
import json
import tarfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from unikio import aggregate, archive, claims, merge, report, results  # noqa: E402
from unikio import config as cfg  # noqa: E402
from unikio.errors import PipelineError  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
REFERENCES = {e: REPO / p for e, p in merge.REFERENCES.items()}
CLAIMS = REPO / "config/reference/claims.yaml"
DEFAULT = yaml.safe_load((REPO / "config/config.yaml").read_text())
SMOKE = yaml.safe_load((REPO / "config/smoke.yaml").read_text())
EPYC = {"cpu_model": "AMD EPYC", "cores": 2, "arch": "x86_64", "kernel": "6.18.44-fc", "kvm_impl": "kvm_pvm"}
XEON = {"cpu_model": "Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz", "cores": 28, "arch": "x86_64",
        "kernel": "6.1.0-28-amd64", "kvm_impl": "kvm_intel"}


def smoke_config(**changes):
    """The smoke profile over the default one (as Snakemake merges them), with changes by dotted key."""
    config = copy.deepcopy(DEFAULT)
    for section, values in SMOKE.items():
        for key, value in values.items():
            if isinstance(value, dict):
                config[section][key].update(value)
            else:
                config[section][key] = value
    for dotted, value in changes.items():
        *path, last = dotted.split(".")
        node = config
        for part in path:
            node = node[part]
        node[last] = value
    return config


def blk_rows(rng, host, config):
    """Tidy block rows of every platform: native rows on the host's arch (TCG Linux guests where its KVM is
    software-assisted), the other arch in the emulated testbed."""
    rows = []
    tcg = host["kvm_impl"] == "kvm_pvm"
    for arch in ("x86_64", "aarch64"):
        emulated = arch != host["arch"]
        for platform in config["blk"]["platforms"]:
            accel = "none" if platform == "host" else "tcg" if platform.startswith("qemu-linux") and tcg else "kvm"
            kvm_impl = "" if accel in ("none", "tcg") else ("kvm_arm64-vhe" if emulated else host["kvm_impl"])
            reads, reps = ((config["testbed"]["blk"]["reads"], config["testbed"]["blk"]["repetitions"])
                           if emulated or accel == "tcg" else (config["blk"]["reads"], config["blk"]["repetitions"]))
            for rep in range(1, reps + 1):
                total = rng.normal(20_000 if platform == "host" else 60_000, 1_500) * reads
                pread = total if platform == "host" else total * 0.4
                rows.append({"arch": arch, "platform": platform,
                             "provider": "builtin" if platform == "solo5-hvt" else "", "accel": accel,
                             "testbed": "emulated" if emulated else "native", "block_size": 512, "reads": reads,
                             "rep": rep, "total_ns": int(total), "pread_ns": int(pread), "pread_calls": reads,
                             "host": host["cpu_model"], "timestamp": "2026-11-26T18:00:00+00:00",
                             "kvm_impl": kvm_impl, "pipeline_version": "aaaaaaaaaaaa",
                             "load_before": 0.2 if rep != 2 else 5.0, "load_after": 0.3, "runnable_before": 1,
                             "runnable_after": 1})
    return pd.DataFrame(rows, columns=results.BLK_COLUMNS)


def net_rows(rng, host, config):
    rows = []
    tcg = host["kvm_impl"] == "kvm_pvm"
    for platform in ("qemu-linux", "solo5-hvt"):
        accel = "tcg" if platform == "qemu-linux" and tcg else "kvm"
        for size in config["net"]["sizes"]:
            for rep in range(1, config["net"]["repetitions"] + 1):
                pps = rng.normal(9_000 if platform == "solo5-hvt" else 4_000, 200)
                rows.append({"arch": host["arch"], "platform": platform,
                             "provider": "builtin" if platform == "solo5-hvt" else "", "accel": accel,
                             "testbed": "native", "data_bytes": size, "packets": config["net"]["packets"],
                             "rep": rep, "avg_rtt_ns": 1e9 / pps, "min_rtt_ns": 5e8 / pps, "max_rtt_ns": 2e9 / pps,
                             "pps": pps, "lost": 0, "host": host["cpu_model"],
                             "timestamp": "2026-11-26T18:00:00+00:00",
                             "kvm_impl": "" if accel == "tcg" else host["kvm_impl"], "pipeline_version": "aaaaaaaaaaaa",
                             "p50_rtt_ns": 1e9 / pps, "p90_rtt_ns": 1.2e9 / pps, "p99_rtt_ns": 1.5e9 / pps,
                             "load_before": 0.1, "load_after": 0.2, "runnable_before": 1, "runnable_after": 1})
    return pd.DataFrame(rows, columns=results.NET_COLUMNS)


def make_artifact(tmp_path, name, host=EPYC, seed=1, config=None, patch="--- a\n+++ b\n", bench="int main(void);\n",
                  lock_version="1:7.2+dfsg-7+deb12u18", solo5_from="https://github.com/Solo5/solo5.git"):
    """A real artifact.tar.gz, made by archive.write from a synthetic project; returns its path."""
    config = config or smoke_config()
    root = tmp_path / f"project-{name}"
    rng = np.random.default_rng(seed)
    files = {
        "config/config.yaml": yaml.safe_dump(DEFAULT),
        "patches/qemu/0001-pread-accounting.patch": patch,
        "native/bench/blk_bench.c": bench,
        "results/sources/qemu/lock.json": json.dumps({"package": "qemu", "version": lock_version}),
        f"results/sources/kernel-{host['arch']}/lock.json": json.dumps({"version": "6.1.192-2"}),
        "results/sources/solo5/lock.json": json.dumps({"kind": "git" if "://" in solo5_from else "local-git",
                                                       "source": solo5_from, "commit": "38e0c348"}),
    }
    plan = [{"combination": f"blk/{a}/{p}", "runnable": True, "reason": "",
             "testbed": "native" if a == host["arch"] else "emulated"}
            for a in config["archs"] for p in config["blk"]["platforms"]]
    plan += [{"combination": f"net/{a}/{p}", "runnable": a == host["arch"],
              "reason": "" if a == host["arch"] else "not in this synthetic run", "testbed": "native"}
             for a in config["archs"] for p in config["net"]["platforms"]]
    provenance = {"pipeline": {"commit": f"{seed:040d}", "dirty": False, "diff_sha256": "", "untracked": []},
                  "host": dict(host), "config": config,
                  "guest_accel": [{"arch": host["arch"], "accel": "tcg" if host["kvm_impl"] == "kvm_pvm" else "kvm"}],
                  "plan": plan}
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / "results/data").mkdir(parents=True)
    blk_rows(rng, host, config).to_csv(root / "results/data/blk_runs.csv", index=False)
    net_rows(rng, host, config).to_csv(root / "results/data/net_runs.csv", index=False)
    (root / "results/provenance.json").write_text(json.dumps(provenance, indent=2, sort_keys=True))
    out = tmp_path / "artifacts" / f"{name}.tar.gz"
    out.parent.mkdir(exist_ok=True)
    archive.write(root, out)
    return out


def source_runs(artifact, experiment):
    """The runs CSV inside an artifact, read as the host's own table rule reads it."""
    with tarfile.open(artifact) as tar:
        f = tar.extractfile(f"unikio-artifact/results/data/{merge.RUNS_FILES[experiment]}")
        return pd.read_csv(f, keep_default_na=False, na_values=[""])


def hosts_of(rec):
    return [h["column"] for h in rec["hosts"]]


# --- identity and labels ------------------------------------------------------------------------------------------

def test_the_derived_label_is_short_stable_and_names_cpu_cores_and_kvm():
    assert merge.derived_label(EPYC) == "amd-epyc-2c-kvm-pvm"
    assert merge.derived_label(XEON) == "intel-xeon-e5-2680-v4-28c-kvm-intel"
    assert merge.derived_label({"cpu_model": None, "cores": None, "kvm_impl": ""}) == "unknown-no-kvm"


def test_two_artifacts_of_one_host_are_two_runs_of_it_and_another_host_is_its_own(tmp_path):
    a = make_artifact(tmp_path, "a", seed=1)
    b = make_artifact(tmp_path, "b", seed=2)
    c = make_artifact(tmp_path, "c", host=XEON, seed=3)
    rec, runs = merge.read([str(a), str(b), str(c)])
    assert hosts_of(rec) == ["amd-epyc-2c-kvm-pvm run 1", "amd-epyc-2c-kvm-pvm run 2",
                             "intel-xeon-e5-2680-v4-28c-kvm-intel"]
    assert [(h["label"], h["run"], h["label_source"]) for h in rec["hosts"]] == [
        ("amd-epyc-2c-kvm-pvm", 1, "derived"), ("amd-epyc-2c-kvm-pvm", 2, "derived"),
        ("intel-xeon-e5-2680-v4-28c-kvm-intel", None, "derived")]
    ident = rec["hosts"][0]["identity"]
    assert {k: ident[k] for k in merge.MACHINE_FACTS} == EPYC
    assert ident["guest_accel"] == {"x86_64": "tcg"}
    assert ident["rows"]["blk x86_64 qemu-linux-smp"] == "tcg, native"
    assert ident["rows"]["blk aarch64 solo5-hvt"] == "kvm (kvm_arm64-vhe), emulated"
    assert ident["rows"]["net x86_64 solo5-hvt"] == "kvm (kvm_pvm), native"
    assert set(runs["blk"][merge.COLUMN]) == set(hosts_of(rec))


def test_one_machine_with_another_kernel_is_another_host_with_a_distinguishing_label(tmp_path):
    a = make_artifact(tmp_path, "a")
    b = make_artifact(tmp_path, "b", host=EPYC | {"kernel": "6.19.0"})
    rec, _ = merge.read([str(a), str(b)])
    first, second = hosts_of(rec)
    assert first != second and first.startswith("amd-epyc-2c-kvm-pvm-") and second.startswith("amd-epyc-2c-kvm-pvm-")
    assert merge.read([str(a), str(b)])[0]["hosts"][0]["column"] == first  # deterministic


def test_labels_override_by_path_or_sha256_prefix(tmp_path):
    a = make_artifact(tmp_path, "a", seed=1)
    b = make_artifact(tmp_path, "b", seed=2)
    sha_b = hashlib.sha256(b.read_bytes()).hexdigest()
    rec, _ = merge.read([str(tmp_path / "artifacts")], labels={str(b): "second-run"})
    assert hosts_of(rec) == ["amd-epyc-2c-kvm-pvm", "second-run"]
    assert rec["hosts"][1]["label_source"] == "merge.labels"
    rec, _ = merge.read([str(a), str(b)], labels={sha_b[:8]: "lab", sha_b[:10].upper(): "lab"})
    assert hosts_of(rec) == ["amd-epyc-2c-kvm-pvm", "lab"]
    # Sharing a label makes runs of one host, whatever their identity.
    rec, _ = merge.read([str(a), str(b)], labels={str(a): "lab", str(b): "lab"})
    assert hosts_of(rec) == ["lab run 1", "lab run 2"]


@pytest.mark.parametrize("labels,message", [
    ({"nowhere.tar.gz": "x"}, "merge.labels names nowhere.tar.gz, which is none of the merged artifacts (give its "
                              "path as merge.artifacts lists it, or at least 6 hex digits of its sha256)"),
    ({"{a}": "x", "{sha_a}": "y"}, "merge.labels gives {a} two labels (x and y)"),
])
def test_a_label_for_no_artifact_or_two_labels_for_one_are_one_sentence(tmp_path, labels, message):
    a = make_artifact(tmp_path, "a", seed=1)
    b = make_artifact(tmp_path, "b", seed=2)
    fill = {"a": str(a), "sha_a": hashlib.sha256(a.read_bytes()).hexdigest()[:12]}
    with pytest.raises(PipelineError) as err:
        merge.read([str(a), str(b)], labels={k.format(**fill): v for k, v in labels.items()})
    assert str(err.value) == message.format(**fill)


# --- compatibility ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("change,key", [
    ({"config": smoke_config(**{"blk.reads": 1000})}, "blk.reads"),
    ({"config": smoke_config(**{"net.sizes": [1, 512]})}, "net.sizes"),
    ({"config": smoke_config(**{"testbed.blk.repetitions": 3})}, "testbed.blk.repetitions"),
    ({"config": smoke_config(**{"blk.platforms": ["host", "solo5-hvt"]})}, "blk.platforms"),
    ({"patch": "--- a\n+++ b\n+x\n"}, "patches/qemu/0001-pread-accounting.patch"),
    ({"lock_version": "1:7.2+dfsg-7+deb12u20"}, "results/sources/qemu/lock.json:version"),
    ({"bench": "int main(void) { return 1; }\n"}, "native/bench/blk_bench.c"),
])
def test_an_artifact_that_measured_something_else_is_refused_naming_it_and_the_first_differing_key(
        tmp_path, change, key):
    a = make_artifact(tmp_path, "a")
    b = make_artifact(tmp_path, "b", seed=2, **change)
    out = tmp_path / "merged"
    with pytest.raises(PipelineError) as err:
        merge.merge([str(a), str(b)], out, REFERENCES, CLAIMS)
    text = str(err.value)
    assert text.startswith(f"merge.artifacts: {b} did not measure what {a} did, first at {key} (")
    assert text.endswith("set merge.allow_mismatch: true to merge it with its columns marked")
    assert "\n" not in text and text.count(". ") == 0
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["artifacts", "project-a", "project-b"]


def test_the_first_differing_key_is_named_when_several_differ(tmp_path):
    a = make_artifact(tmp_path, "a")
    b = make_artifact(tmp_path, "b", config=smoke_config(**{"blk.reads": 1000, "net.packets": 300}),
                      bench="changed\n")
    with pytest.raises(PipelineError, match=r"first at blk\.reads \(1000 against 2000\);"):
        merge.read([str(a), str(b)])


def test_a_key_only_one_artifact_records_differs_and_config_keys_come_before_files(tmp_path):
    a = make_artifact(tmp_path, "a")
    newer = smoke_config()
    newer["blk"]["warmup_reads"] = 10  # a setting a later pipeline added
    b = make_artifact(tmp_path, "b", config=newer, bench="changed\n")
    with pytest.raises(PipelineError, match=r"first at blk\.warmup_reads \(10 against \(missing\)\);"):
        merge.read([str(a), str(b)])
    rec, _ = merge.read([str(a), str(b)], allow_mismatch=True)
    assert rec["hosts"][1]["mismatch"] == ["blk.warmup_reads", "native/bench/blk_bench.c"]


def test_another_accelerator_on_the_same_machine_is_another_host(tmp_path):
    a = make_artifact(tmp_path, "a")
    b = make_artifact(tmp_path, "b", seed=2)
    first, second = merge.read_artifact(str(a)), merge.read_artifact(str(b))
    second.runs["blk"].loc[second.runs["blk"]["platform"] == "qemu-linux-smp", "accel"] = "kvm"
    cols = merge.columns([first, second])
    assert [c.name for c in cols][0] != [c.name for c in cols][1]
    assert all(c.run is None for c in cols) and cols[1].identity["rows"]["blk x86_64 qemu-linux-smp"] == "kvm, native"


def test_host_specific_keys_and_a_lock_only_one_host_needed_may_differ(tmp_path):
    a = make_artifact(tmp_path, "a")
    b = make_artifact(tmp_path, "b", host=XEON, config=smoke_config(**{
        "measure.cpu": 3, "conditions.busy_load_per_core": 1.0, "compare.baseline": "old/a.tar.gz",
        "blk.timeout_s": 999, "guest.run_timeout_s": 99, "testbed.timeout_s": 9, "testbed.boot_timeout_s": 8,
        "guest.kvm_probe_timeout_s": 7, "qemu.tarball.url": "https://mirror.example/qemu.tar.xz"}))
    rec, _ = merge.read([str(a), str(b)])  # kernel-x86_64 lock in both, equal; no refusal
    assert [h["mismatch"] for h in rec["hosts"]] == [[], []]
    assert merge.host_specific("merge.labels") and not merge.host_specific("blk.reads")


def test_allow_mismatch_merges_and_marks_the_columns_of_the_differing_artifact(tmp_path):
    a = make_artifact(tmp_path, "a")
    b = make_artifact(tmp_path, "b", seed=2, config=smoke_config(**{"blk.reads": 1000}))
    out = tmp_path / "merged"
    rec = merge.merge([str(a), str(b)], out, REFERENCES, CLAIMS, allow_mismatch=True)
    first, second = hosts_of(rec)
    assert [h["mismatch"] for h in rec["hosts"]] == [[], ["blk.reads"]]
    table = pd.read_csv(out / "tables/blk_x86_64.csv", keep_default_na=False, na_values=[""])
    assert table[f"{second}: note"].str.startswith("mismatch: blk.reads").all()
    assert not table[f"{first}: note"].str.contains("mismatch").any()
    host_row = table[table["platform"] == "host"].iloc[0]
    assert (host_row[f"{first}: reads"], host_row[f"{second}: reads"]) == (2000, 1000)
    md = (out / "tables/blk_x86_64.md").read_text()
    assert f"Merged despite differing settings: {second} (mismatch: blk.reads)." in md.split("\n\n")[0]
    hosts = pd.read_csv(out / "hosts.csv", keep_default_na=False)
    assert list(hosts["mismatch"]) == ["", "blk.reads"]
    verdicts = pd.read_csv(out / "tables/claims.csv", keep_default_na=False)
    assert set(verdicts.loc[verdicts["host"] == second, "mismatch"]) == {"mismatch: blk.reads"}
    assert set(verdicts.loc[verdicts["host"] == first, "mismatch"]) == {""}


# --- refusals that leave nothing behind ---------------------------------------------------------------------------

def truncated(src, dest, keep=0.6):
    dest.write_bytes(src.read_bytes()[: int(src.stat().st_size * keep)])
    return dest


def corrupted(src, dest):
    data = bytearray(src.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(b ^ 0xFF for b in data[middle:middle + 64])
    dest.write_bytes(bytes(data))
    return dest


@pytest.mark.parametrize("damage", [truncated, corrupted, lambda s, d: truncated(s, d, keep=0.999)])
def test_a_truncated_or_corrupted_artifact_is_refused_naming_it_and_nothing_is_left(tmp_path, damage):
    a = make_artifact(tmp_path, "a")
    bad = damage(make_artifact(tmp_path, "b", seed=2), tmp_path / "bad.tar.gz")
    out = tmp_path / "results" / "merged"
    with pytest.raises(PipelineError) as err:
        merge.merge([str(a), str(bad)], out, REFERENCES, CLAIMS)
    text = str(err.value)
    assert text.startswith(f"merge.artifacts names {bad}, which is truncated or corrupted (")
    assert text.endswith("make it again with `archive` on its machine, or leave it out") and "\n" not in text
    assert not out.exists() and not out.parent.exists()


def test_a_failure_after_reading_leaves_no_half_written_output(tmp_path, monkeypatch):
    a = make_artifact(tmp_path, "a")
    b = make_artifact(tmp_path, "b", seed=2)
    out = tmp_path / "results" / "merged"

    def broken(*args, **kwargs):
        raise RuntimeError("figure failed")

    monkeypatch.setattr(merge, "figure", broken)
    with pytest.raises(RuntimeError, match="figure failed"):
        merge.merge([str(a), str(b)], out, REFERENCES, CLAIMS)
    assert not out.exists() and list(out.parent.iterdir()) == []


def test_an_archive_that_is_no_artifact_is_refused(tmp_path):
    plain = tmp_path / "plain.tar.gz"
    with tarfile.open(plain, "w:gz") as tar:
        tar.add(REPO / "config/smoke.yaml", arcname="x/config/smoke.yaml")
    with pytest.raises(PipelineError, match=r"^merge.artifacts names .*plain.tar.gz, which holds no "
                                            r"results/provenance.json, so it was not made by `archive`"):
        merge.read([str(plain)])
    notgz = tmp_path / "notes.tar.gz"
    notgz.write_text("not an archive\n")
    with pytest.raises(PipelineError, match=r"notes.tar.gz, which is truncated or corrupted \(Not a gzipped file"):
        merge.read([str(notgz)])


def test_artifact_list_errors_are_one_sentence(tmp_path, monkeypatch):
    with pytest.raises(PipelineError) as err:
        merge.artifact_paths([])
    assert str(err.value) == ("merge.artifacts is empty: name the artifact.tar.gz files made by `archive` on each "
                              "machine, or a directory holding them, e.g. ./snakemake --cores 4 merge --config "
                              "'merge={\"artifacts\": [\"artifacts/\"]}'")
    with pytest.raises(PipelineError, match="^merge.artifacts names nowhere.tar.gz, which does not exist$"):
        merge.artifact_paths(["nowhere.tar.gz"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(PipelineError, match=r"names the directory .*empty, which holds no \*\.tar\.gz$"):
        merge.artifact_paths([str(tmp_path / "empty")])
    a = make_artifact(tmp_path, "a")
    with pytest.raises(PipelineError, match=r"names .*a.tar.gz twice"):
        merge.artifact_paths([str(a), str(tmp_path / "artifacts")])
    (tmp_path / "results").mkdir()
    (tmp_path / "results/artifact.tar.gz").write_bytes(a.read_bytes())
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PipelineError, match=r"^merge.artifacts names results/artifact.tar.gz, inside this run's own "
                                            r"results/"):
        merge.artifact_paths(["results/artifact.tar.gz"])
    (tmp_path / "copy.tar.gz").write_bytes(a.read_bytes())
    with pytest.raises(PipelineError, match=r"names .*a.tar.gz and copy.tar.gz, which are the same artifact"):
        merge.read([str(a), "copy.tar.gz"])


def test_a_directory_gives_its_artifacts_sorted(tmp_path):
    make_artifact(tmp_path, "b", seed=2)
    make_artifact(tmp_path, "a", seed=1)
    (tmp_path / "artifacts/notes.txt").write_text("x")
    assert merge.artifact_paths([str(tmp_path / "artifacts")]) == [str(tmp_path / "artifacts/a.tar.gz"),
                                                                    str(tmp_path / "artifacts/b.tar.gz")]


# --- the merged results -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def merged(tmp_path_factory):
    """Two runs of one host (one relabelled) and another host, merged into out."""
    tmp = tmp_path_factory.mktemp("merged")
    a = make_artifact(tmp, "a", seed=1)
    b = make_artifact(tmp, "b", seed=2)
    c = make_artifact(tmp, "c", host=XEON, seed=3)
    out = tmp / "results" / "merged"
    rec = merge.merge([str(a), str(b), str(c)], out, REFERENCES, CLAIMS)
    return rec, out, {h["column"]: Path(h["artifact"]) for h in rec["hosts"]}


def test_every_part_is_written_and_nothing_else(merged):
    rec, out, _ = merged
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == sorted(merge.part_names(rec))
    assert {"tables/blk_x86_64.tex", "tables/net_aarch64.csv", "figures/blk_aarch64.pdf", "tables/claims.md",
            "hosts.md", "data/net_runs.csv", "provenance.json"} <= set(written)
    assert [p.name for p in out.parent.iterdir()] == ["merged"]  # no temporary directory left beside it


def assert_same_cells(merged_group, source, columns):
    """Every cell of the merged column group equals the source's, numbers to the last bits, text exactly."""
    assert len(merged_group) == len(source)
    for column in columns:
        ours, theirs = merged_group[column].reset_index(drop=True), source[column].reset_index(drop=True)
        for i, (x, y) in enumerate(zip(ours, theirs, strict=True)):
            if pd.isna(x) or pd.isna(y):
                assert pd.isna(x) and pd.isna(y), (column, i, x, y)
            elif isinstance(y, str) or isinstance(x, str):
                assert str(x) == str(y), (column, i, x, y)
            else:
                assert float(x) == pytest.approx(float(y), rel=1e-12, abs=0), (column, i, x, y)


@pytest.mark.parametrize("experiment,arch", [("blk", "x86_64"), ("blk", "aarch64"), ("net", "x86_64"),
                                             ("net", "aarch64")])
def test_the_merged_table_equals_each_hosts_own_aggregate_cell_by_cell(merged, experiment, arch):
    rec, out, sources = merged
    table = pd.read_csv(out / f"tables/{experiment}_{arch}.csv", keep_default_na=False, na_values=[""])
    reference = pd.read_csv(REFERENCES[experiment])
    study_hosts = list(dict.fromkeys(reference.loc[reference["arch"] == arch, "host"]))
    for host in rec["hosts"]:
        config = host["provenance"]["config"]
        # The host's own table, as its make_table job made it from its runs CSV on its machine.
        plan = host["provenance"]["plan"]
        skipped = {e["combination"].split("/")[2]: e["reason"] for e in plan
                   if e["combination"].startswith(f"{experiment}/{arch}/") and not e["runnable"]}
        own = aggregate.TABLES[experiment](source_runs(sources[host["column"]], experiment), reference, arch,
                                           config[experiment]["platforms"], skipped,
                                           aggregate.Busy(config["conditions"]["busy_load_per_core"],
                                                          host["provenance"]["host"]["cores"]))
        own = pd.read_csv(io.StringIO(own.to_csv(index=False)), keep_default_na=False, na_values=[""])  # as written
        group = merge.group(table, host["column"], experiment)
        keys = merge.ROW_KEYS[experiment]
        # Rows line up by platform (and size); the merged label is the measured one (with its provider).
        assert [aggregate.base_platform(p) for p in group["platform"]] == [aggregate.base_platform(p)
                                                                           for p in own["platform"]]
        if experiment == "net":
            assert_same_cells(group, own, ["data_bytes"])
        assert_same_cells(group, own, merge.OUR_COLUMNS[experiment] + [f"ratio_{h}" for h in study_hosts])
        assert set(group.columns) == set(keys + merge.OUR_COLUMNS[experiment] + [f"ratio_{h}" for h in study_hosts])
        for h in study_hosts:
            value = merge.STUDY_VALUE[experiment]
            assert_same_cells(table, own, [])  # lengths
            assert_same_cells(table[[f"study {h}: {value}"]].rename(columns=lambda c: "v"),
                              own[[f"{h}_{value}"]].rename(columns=lambda c: "v"), ["v"])


def test_rows_that_are_not_performance_results_keep_their_labels(merged):
    rec, out, _ = merged
    epyc = rec["hosts"][0]["column"]
    table = pd.read_csv(out / "tables/blk_x86_64.csv", keep_default_na=False, na_values=[""])
    smp = table[table["platform"] == "qemu-linux-smp"].iloc[0]
    assert smp[f"{epyc}: accel"] == "tcg" and smp[f"{epyc}: note"].startswith(aggregate.NOT_PERFORMANCE)
    assert pd.isna(smp[f"{epyc}: ratio_carbon-x1"]) and pd.notna(smp["study carbon-x1: total_ms"])
    tender = table[table["platform"] == "solo5-hvt (builtin)"].iloc[0]
    assert tender[f"{epyc}: note"].startswith("software-assisted KVM (kvm_pvm): not a performance result")
    xeon = rec["hosts"][2]["column"]  # a hardware KVM: a performance result, busy only by the load seen (28 cores)
    assert pd.isna(tender[f"{xeon}: note"]) and tender[f"{xeon}: kvm_impl"] == "kvm_intel"
    arm = pd.read_csv(out / "tables/blk_aarch64.csv", keep_default_na=False, na_values=[""])
    assert (arm[f"{epyc}: testbed"] == "emulated").all()
    assert arm[f"{epyc}: note"].str.startswith(aggregate.NOT_PERFORMANCE).all()
    # A busy repetition (load 5 before rep 2 on 2 cores) is marked as the host's own table marks it.
    assert table[f"{epyc}: note"].str.contains("busy machine").any()


def test_figures_draw_every_run_apart_with_emulated_rows_marked_and_the_legend_clear(merged, tmp_path):
    rec, out, _ = merged
    table = pd.read_csv(out / "tables/blk_aarch64.csv", keep_default_na=False, na_values=[""])
    fig = merge.figure(rec, table, pd.read_csv(REFERENCES["blk"]), "blk", "aarch64", tmp_path / "blk_aarch64")
    titles = [ax.get_title() for ax in fig.axes]
    for host in rec["hosts"]:
        assert f"{host['column']}: emulated testbed\n(not performance results)" in titles
    assert any(t.startswith("original study: ") for t in titles)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    legend = fig.legends[0].get_window_extent(renderer)
    assert not any(legend.overlaps(ax.get_window_extent(renderer)) for ax in fig.axes)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "not a performance result" in labels and "95% CI of our total" in labels
    # The TCG rows of a native panel are hatched too.
    x86 = pd.read_csv(out / "tables/blk_x86_64.csv", keep_default_na=False, na_values=[""])
    fig = merge.figure(rec, x86, pd.read_csv(REFERENCES["blk"]), "blk", "x86_64", tmp_path / "blk_x86_64")
    epyc = next(ax for ax in fig.axes if ax.get_title() == rec["hosts"][0]["column"])
    hatched = [p.get_hatch() for p in epyc.patches]
    assert "//" in hatched and "" in hatched
    assert (out / "figures/net_x86_64.png").stat().st_size > 10_000


def test_claims_are_evaluated_on_each_runs_rows(merged):
    rec, out, sources = merged
    table = pd.read_csv(out / "tables/claims.csv", keep_default_na=False, na_values=[""])
    assert list(dict.fromkeys(table["host"])) == hosts_of(rec)
    claim_list = claims.load(CLAIMS)
    for column, artifact in sources.items():
        own = claims.table(claim_list, {e: source_runs(artifact, e) for e in claims.EXPERIMENTS})
        mine = table[table["host"] == column].reset_index(drop=True)
        assert list(mine["verdict"]) == list(own["verdict"]) and list(mine["claim_id"]) == list(own["claim_id"])
        assert_same_cells(mine, own, ["our_effect", "ci_low", "ci_high", "reason"])
    md = (out / "tables/claims.md").read_text()
    assert md.startswith("The study's claims on each merged run") and "| host" in md


def test_the_merged_provenance_names_every_host_its_artifact_and_pipeline(merged):
    rec, out, sources = merged
    written = json.loads((out / "provenance.json").read_text())
    assert hosts_of(written) == hosts_of(rec)
    for host in written["hosts"]:
        path = sources[host["column"]]
        assert host["artifact"] == str(path) and host["artifact_path"] == str(path.resolve())
        assert host["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert host["pipeline_version"] == host["provenance"]["pipeline"]["commit"][:12]
        assert host["label"] and host["identity"]["cpu_model"] == host["provenance"]["host"]["cpu_model"]
    assert written["merged_by"]["merge"]["allow_mismatch"] is False
    assert written["tables"]["blk"] == {"archs": ["x86_64", "aarch64"],
                                        "platforms": ["host", "solo5-hvt", "solo5-spt", "qemu-linux-smp",
                                                      "qemu-linux-1core"]}
    assert written["settings"]["blk.reads"] == 2000 and "measure.cpu" not in written["settings"]
    hosts = pd.read_csv(out / "hosts.csv", keep_default_na=False)
    assert list(hosts.columns) == merge.HOSTS_COLUMNS and list(hosts["column"]) == hosts_of(rec)
    runs = pd.read_csv(out / "data/blk_runs.csv", keep_default_na=False, na_values=[""])
    assert list(runs.columns) == [merge.COLUMN] + results.BLK_COLUMNS
    for column, artifact in sources.items():
        mine = runs[runs[merge.COLUMN] == column]
        assert mine["total_ns"].tolist() == source_runs(artifact, "blk")["total_ns"].tolist()


def test_the_report_has_a_merged_section_before_the_provenance(merged, tmp_path):
    rec, out, _ = merged
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables/claims.csv").write_text("claim_id,verdict\nx,reproduced\n")
    (tmp_path / "provenance.json").write_text(json.dumps({"config": {"archs": ["x86_64"]}}))
    inputs = report.Inputs(claims=tmp_path / "tables/claims.csv", figures=[], tables=[],
                           provenance=tmp_path / "provenance.json")
    page = report.render(inputs)
    assert 'id="merged"' not in page
    inputs.merged = out
    page = report.render(inputs)
    ids = [i for i in ("claims", "figures", "tables", "merged", "provenance") if f'<section id="{i}">' in page]
    assert ids == ["claims", "figures", "tables", "merged", "provenance"]
    section = page.split('<section id="merged">', 1)[1].split("</section>", 1)[0]
    for host in rec["hosts"]:
        assert host["column"] in section
    assert section.count("<img src=\"data:image/png;base64,") == 4
    assert 'id="fig-merged-blk-x86-64"' in section and 'id="table-merged-net-aarch64"' in section
    assert "Merged runs" in section and "Claims per run" in section
    inputs.merged = tmp_path / "nowhere"
    with pytest.raises(ValueError, match="the merged runs .*nowhere are missing"):
        report.render(inputs)


def test_the_archive_carries_the_merged_results():
    assert "results/merged" in archive.RESULT_PATHS and "results/merging" not in archive.RESULT_PATHS


# --- configuration ------------------------------------------------------------------------------------------------

def test_the_merge_keys_default_to_unset_and_are_validated():
    schema = cfg.load_schema(REPO / "workflow/schemas/config.schema.yaml")
    assert DEFAULT["merge"] == {"artifacts": [], "allow_mismatch": False, "labels": {}}
    good = copy.deepcopy(DEFAULT)
    good["merge"] = {"artifacts": ["artifacts/", "b.tar.gz"], "allow_mismatch": True, "labels": {"abcdef12": "lab"}}
    assert cfg.explain_invalid(good, schema) is None
    for key, value, message in (
        ("artifacts", "a.tar.gz", "config key merge.artifacts is invalid"),
        ("allow_mismatch", "yes", "config key merge.allow_mismatch is invalid"),
        ("labels", {"a.tar.gz": "lab: 1"}, "config key merge.labels.a.tar.gz is invalid"),
        ("label", {}, "unknown config key 'label' at merge"),
    ):
        bad = copy.deepcopy(DEFAULT)
        bad["merge"][key] = value
        assert cfg.explain_invalid(bad, schema).startswith(message), key



def test_where_a_source_came_from_may_differ_but_not_what_it_is(tmp_path):
    """One host cloned Solo5, another used a local copy of the same commit: the same source."""
    a = make_artifact(tmp_path, "a", seed=1)
    b = make_artifact(tmp_path, "b", seed=2, solo5_from="/srv/mirror/solo5")
    rec, _ = merge.read([str(a), str(b)])
    assert [h["mismatch"] for h in rec["hosts"]] == [[], []]
    c = make_artifact(tmp_path, "c", seed=3, lock_version="1:7.2+dfsg-7+deb12u17")
    with pytest.raises(PipelineError, match=r"first at results/sources/qemu/lock.json:version"):
        merge.read([str(a), str(c)])


def test_labels_that_would_give_two_column_groups_one_name_are_refused(tmp_path):
    a = make_artifact(tmp_path, "a", seed=1)
    b = make_artifact(tmp_path, "b", seed=2, host=XEON)
    c = make_artifact(tmp_path, "c", seed=3, host=XEON)
    # b and c are runs of one host ("lab run 1", "lab run 2"); a labelled "lab run 1" would collide.
    with pytest.raises(PipelineError, match=r"two column groups would be called 'lab run 1'"):
        merge.read([str(a), str(b), str(c)], labels={str(a): "lab run 1", str(b): "lab", str(c): "lab"})


def test_a_home_relative_artifact_path_is_expanded(tmp_path, monkeypatch):
    a = make_artifact(tmp_path, "a", seed=1)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert merge.artifact_paths(["~/artifacts/a.tar.gz"]) == [str(a)]
