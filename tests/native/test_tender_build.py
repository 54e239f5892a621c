"""Both architectures build warning-free (-Wall -Wextra -Werror), out of
tree, producing all four artefacts."""
import subprocess

import pytest
from tender_common import NATIVE, have_cross, run_make

ARTEFACTS = ["tender", "kvm_exit_floor", "blk_bench.elf", "ping_serve.elf"]


def _check_build(arch, out):
    r = run_make(arch, out)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log
    assert "warning" not in log.lower(), log
    for a in ARTEFACTS:
        assert (out / a).is_file(), f"missing {a}"
    return log


def _native_tree_clean():
    # Out-of-tree only: no build products may appear under native/.
    # (Only our directories: native/ is shared with other components.)
    mine = [NATIVE / d for d in ("solo5", "tender", "unikernels")]
    found = [p for d in mine for p in d.rglob("*") if p.is_file()
             and (p.suffix in (".o", ".elf", ".d") or p.name in
             ("tender", "kvm_exit_floor"))]
    assert not found, found


def test_build_x86_64(tmp_path):
    _check_build("x86_64", tmp_path)
    _native_tree_clean()
    out = subprocess.run(["file", str(tmp_path / "blk_bench.elf")],
                         capture_output=True, text=True).stdout
    assert "x86-64" in out and "statically linked" in out


@pytest.mark.skipif(not have_cross(), reason="aarch64 cross compiler "
                    "(aarch64-linux-gnu-gcc) not installed")
def test_build_aarch64(tmp_path):
    _check_build("aarch64", tmp_path)
    _native_tree_clean()
    for a in ("tender", "kvm_exit_floor", "blk_bench.elf"):
        out = subprocess.run(["file", str(tmp_path / a)],
                             capture_output=True, text=True).stdout
        assert "aarch64" in out and "statically linked" in out, (a, out)


def test_build_requires_outdir():
    r = subprocess.run(["make", "-C", str(NATIVE)], capture_output=True,
                       text=True)
    assert r.returncode != 0
    assert "O=" in r.stderr
