import json
import tarfile

from unikio import archive, version


def test_archive_holds_project_and_results_but_no_caches(tmp_path):
    for rel in ("config/config.yaml", "patches/qemu/0001.patch", "results/data/blk_runs.csv",
                "results/provenance.json", "workflow/scripts/__pycache__/x.pyc",
                "results/sources/qemu/files/qemu_7.2.orig.tar.xz", "results/sources/qemu/lock.json"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    out = tmp_path / "artifact.tar.gz"
    archive.write(tmp_path, out)
    names = tarfile.open(out).getnames()
    assert "unikio-artifact/results/data/blk_runs.csv" in names
    assert "unikio-artifact/patches/qemu/0001.patch" in names
    assert "unikio-artifact/results/sources/qemu/lock.json" in names
    assert not any("__pycache__" in n or n.endswith(".tar.xz") for n in names)
    assert not (tmp_path / "artifact.tar.gz.part").exists()


def test_archive_names_the_commit_it_came_from(tmp_path):
    """Unpacked outside git, the artifact still says which pipeline commit made it."""
    (tmp_path / "project" / "config").mkdir(parents=True)
    (tmp_path / "project" / "VERSION.json").write_text(
        json.dumps({"commit": "a" * 40, "dirty": True, "diff_sha256": "b" * 64, "untracked": []}))
    out = tmp_path / "artifact.tar.gz"
    archive.write(tmp_path / "project", out)
    with tarfile.open(out) as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    unpacked = tmp_path / "unpacked" / "unikio-artifact"
    v = version.describe(unpacked)
    assert (v["commit"], v["dirty"], v["diff_sha256"], v["source"]) == ("a" * 40, True, "b" * 64, "VERSION.json")
    assert version.label(v) == "aaaaaaaaaaaa+dirty.bbbbbbbb"
