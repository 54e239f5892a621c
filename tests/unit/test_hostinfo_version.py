"""What ran: the KVM implementation behind /dev/kvm (fixture /sys trees) and the pipeline's own version."""

import hashlib
import json
import subprocess
from pathlib import Path

import pytest
from unikio import hostinfo, results, version


def fake_root(tmp_path: Path, modules=(), flags="fpu sse2", cpuinfo=None, dev_kvm=True) -> Path:
    root = tmp_path / "root"
    for module in modules:
        (root / "sys" / "module" / module / "parameters").mkdir(parents=True)
    (root / "proc").mkdir(parents=True)
    (root / "proc" / "cpuinfo").write_text(cpuinfo or f"processor\t: 0\nflags\t\t: {flags}\n")
    (root / "dev").mkdir()
    if dev_kvm:
        (root / "dev" / "kvm").write_text("")
    return root


@pytest.mark.parametrize("modules,flags,expected", [
    (("kvm", "kvm_pvm"), "fpu hypervisor", "kvm_pvm"),
    (("kvm", "kvm_intel"), "fpu vmx", "kvm_intel"),
    (("kvm", "kvm_intel"), "fpu vmx hypervisor", "kvm_intel-nested"),
    (("kvm", "kvm_amd"), "fpu svm", "kvm_amd"),
    (("kvm", "kvm_amd"), "fpu svm hypervisor", "kvm_amd-nested"),
])
def test_x86_kvm_kinds(tmp_path, modules, flags, expected):
    assert hostinfo.kvm_impl(fake_root(tmp_path, modules, flags), kernel_log="") == expected


ARM_CPUINFO = "processor\t: 0\nBogoMIPS\t: 50.00\nCPU implementer\t: 0x41\n"


@pytest.mark.parametrize("log,expected", [
    ("[    0.31] kvm [1]: VHE mode initialized successfully\n", "kvm_arm64-vhe"),
    ("[    0.31] kvm [1]: Hyp mode initialized successfully\n", "kvm_arm64-nvhe"),
    ("[    0.31] kvm [1]: Hyp nVHE mode initialized successfully\n", "kvm_arm64-nvhe"),  # newer kernels
    ("[    0.31] kvm [1]: Hyp hVHE mode initialized successfully\n", "kvm_arm64-hvhe"),
    ("[    0.31] kvm [1]: Protected nVHE mode initialized successfully\n", "kvm_arm64-pkvm"),
    ("[    0.31] kvm [1]: Protected hVHE mode initialized successfully\n", "kvm_arm64-pkvm"),
    ("nothing about KVM\n", "kvm_arm64"),
])
def test_arm64_kvm_modes(tmp_path, log, expected):
    root = fake_root(tmp_path, ("kvm",), cpuinfo=ARM_CPUINFO)
    assert hostinfo.kvm_impl(root, kernel_log=log) == expected
    assert hostinfo.arm64_kvm_mode(f"TB-KVM {log}") == expected  # the testbed's relayed line


def test_no_kvm_at_all(tmp_path):
    assert hostinfo.kvm_impl(fake_root(tmp_path, dev_kvm=False), kernel_log="") == "none"


def test_a_kvm_row_names_its_kvm():
    assert results.row_context("kvm")["kvm_impl"] == hostinfo.current_kvm_impl()
    assert results.row_context("kvm", "kvm_arm64-vhe")["kvm_impl"] == "kvm_arm64-vhe"  # measured elsewhere
    assert results.row_context("tcg")["kvm_impl"] == ""
    with pytest.raises(ValueError, match="kvm_impl must name the KVM of an accel=kvm row"):
        results.row_context("kvm", "")
    with pytest.raises(ValueError):
        results.row_context("tcg", "kvm_pvm")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "checkout"
    (repo / "workflow").mkdir(parents=True)
    (repo / "workflow" / "rule.smk").write_text("rule a:\n")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    return repo


def test_a_clean_checkout_names_its_commit(repo):
    v = version.describe(repo)
    assert v == {"commit": git(repo, "rev-parse", "HEAD").strip(), "dirty": False, "diff_sha256": "",
                 "untracked": [], "source": "git"}
    assert version.label(v) == v["commit"][:12]


def test_a_modified_checkout_is_dirty_with_the_hash_of_its_diff(repo):
    (repo / "workflow" / "rule.smk").write_text("rule a:\n    shell: 'true'\n")
    (repo / "workflow" / "new.py").write_text("x = 1\n")
    (repo / "notes.txt").write_text("not watched\n")
    v = version.describe(repo)
    diff = subprocess.run(["git", "-C", str(repo), "diff", "HEAD", "--binary"], capture_output=True,
                          check=True).stdout
    assert v["dirty"] is True and v["diff_sha256"] == hashlib.sha256(diff).hexdigest()
    assert v["untracked"] == ["workflow/new.py"]
    assert version.label(v) == f"{v['commit'][:12]}+dirty.{v['diff_sha256'][:8]}"


def test_an_untracked_file_outside_the_watched_folders_keeps_it_clean(repo):
    (repo / "notes.txt").write_text("scratch\n")
    assert version.describe(repo)["dirty"] is False


def test_outside_git_the_artifact_names_its_commit(repo, tmp_path):
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    recorded = version.describe(repo)
    (unpacked / version.VERSION_FILE).write_text(json.dumps({k: v for k, v in recorded.items() if k != "source"}))
    v = version.describe(unpacked)
    assert v["commit"] == recorded["commit"] and v["source"] == "VERSION.json"
    assert version.describe(tmp_path / "nowhere")["commit"] == "unknown"
