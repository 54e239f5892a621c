"""Which unikio modules a script runs, from its imports: the `code` param every script rule gets."""

from pathlib import Path

from unikio import codehash


def test_every_import_form_is_found():
    script = ("import json\nfrom unikio import blk, job\nimport unikio.guest\nfrom unikio.results import x\n"
              "from pathlib import Path\n")
    assert codehash.direct_imports(script, in_package=False) == {"__init__", "blk", "job", "guest", "results"}
    module = "from . import procs\nfrom .errors import PipelineError\nfrom .. import elsewhere\nimport os\n"
    assert codehash.direct_imports(module, in_package=True) == {"__init__", "procs", "errors"}
    # Outside the package a relative import is not ours.
    assert codehash.direct_imports("from . import procs\n", in_package=False) == set()


def _package(tmp_path: Path) -> Path:
    pkg = tmp_path / "unikio"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("from .c import thing\n")
    (pkg / "c.py").write_text("thing = 1\n")
    (pkg / "d.py").write_text("")
    return pkg


def test_imports_are_followed_through_modules(tmp_path):
    pkg = _package(tmp_path)
    script = tmp_path / "run.py"
    script.write_text("from unikio import a\n")
    assert [p.name for p in codehash.modules_of(script, pkg)] == ["__init__.py", "a.py", "b.py", "c.py"]


def test_hash_changes_exactly_with_the_modules_a_script_runs(tmp_path):
    pkg = _package(tmp_path)
    script = tmp_path / "run.py"
    script.write_text("from unikio import a\n")
    before = codehash.code_hash(script, pkg)
    (pkg / "d.py").write_text("x = 'not imported by run.py'\n")
    assert codehash.code_hash(script, pkg) == before
    (pkg / "c.py").write_text("# a comment and blank lines change no code\n\nthing = 1\n")
    assert codehash.code_hash(script, pkg) == before
    (pkg / "c.py").write_text("thing = 2\n")  # reached through a -> b -> c
    assert codehash.code_hash(script, pkg) != before


def test_the_pipeline_scripts_reach_the_modules_they_run(repo):
    scripts = repo / "workflow" / "scripts"

    def names(script: str) -> set[str]:
        return {p.stem for p in codehash.modules_of(scripts / script)}

    # The ones the hand-written lists had missed: testbed rows run net (and through it netns), and the
    # Linux-guest rows build their initramfs paths and host labels.
    assert {"testbed", "net", "netns", "guest", "initramfs", "hostinfo", "procs", "job"} <= names("run_testbed.py")
    assert {"blk", "guest", "loopdev", "initramfs", "hostinfo", "procs"} <= names("run_blk_qemu.py")
    assert "netns" not in names("run_blk_host.py") and "testbed" not in names("run_blk_host.py")
