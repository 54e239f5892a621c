import tarfile

from unikio import archive


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
