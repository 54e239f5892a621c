"""spt_tender and the spt guests build warning-free for both architectures:
the tender a static PIE (runs from a minimal initramfs, loaded far from the
guest's fixed addresses), the guests static executables entered at 1 MiB."""
import struct

import pytest
from tender_common import GUESTS, SPT_TARGETS, have_cross, run_make

EM = {"x86_64": 62, "aarch64": 183}
PT_INTERP, PT_DYNAMIC = 3, 2


def _elf(path):
    """(e_type, e_machine, e_entry, [p_type...]) of a little-endian ELF64."""
    data = path.read_bytes()
    assert data[:6] == b"\x7fELF\x02\x01", path
    e_type, e_machine = struct.unpack_from("<HH", data, 16)
    (entry, phoff) = struct.unpack_from("<QQ", data, 24)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    types = [struct.unpack_from("<I", data, phoff + i * phentsize)[0]
             for i in range(phnum)]
    return e_type, e_machine, entry, types


def _check(arch, out):
    r = run_make(arch, out, *(str(out / t) for t in SPT_TARGETS))
    log = r.stdout + r.stderr
    assert r.returncode == 0, log
    assert "warning" not in log.lower(), log
    e_type, machine, _, types = _elf(out / "spt_tender")
    # Static PIE: ET_DYN with a dynamic section but no interpreter.
    assert (e_type, machine) == (3, EM[arch])
    assert PT_INTERP not in types and PT_DYNAMIC in types
    for g in ("blk_bench.spt", "ping_serve.spt"):
        e_type, machine, entry, types = _elf(out / g)
        assert (e_type, machine, entry) == (2, EM[arch], 0x100000), g
        assert PT_INTERP not in types and PT_DYNAMIC not in types
    r = run_make(arch, out, f"GUEST_SRC={GUESTS / 'spt_evil.c'}",
                 "GUEST_NAME=spt_evil", "guest-spt")
    assert r.returncode == 0, r.stdout + r.stderr
    assert _elf(out / "spt_evil.spt")[:3] == (2, EM[arch], 0x100000)
    r = run_make(arch, out, "clean")
    assert r.returncode == 0, r.stdout + r.stderr
    assert not list(out.glob("*.spt")) and not (out / "spt_tender").exists()


def test_build_spt_x86_64(tmp_path):
    _check("x86_64", tmp_path)


@pytest.mark.skipif(not have_cross(), reason="aarch64 cross compiler "
                    "(aarch64-linux-gnu-gcc) not installed")
def test_build_spt_aarch64(tmp_path):
    _check("aarch64", tmp_path)
