"""End-to-end blk_bench runs under KVM, pread accounting, O_DIRECT."""
import os
import re
import shutil
import subprocess

import pytest
from tender_common import tender

RESULT_RE = re.compile(
    r"^RESULT blk reads=(\d+) block_size=(\d+) total_ns=(\d+)$", re.M)
STATS_RE = re.compile(r"^pread_calls=(\d+) pread_ns=(\d+)\n$")


def _parse(r):
    m = RESULT_RE.findall(r.stdout)
    assert len(m) == 1, r.stdout + r.stderr
    return tuple(int(x) for x in m[0])


def _stats(path):
    text = path.read_text()
    m = STATS_RE.match(text)
    assert m, repr(text)
    return int(m.group(1)), int(m.group(2))


def test_blk_bench_e2e(build_x86, kvm, disk, tmp_path):
    stats = tmp_path / "stats.txt"
    r = tender(build_x86, f"--block:storage={disk}", f"--stats={stats}",
               build_x86 / "blk_bench.elf", "reads=1000")
    assert r.returncode == 0, r.stdout + r.stderr
    reads, bs, total = _parse(r)
    assert (reads, bs) == (1000, 512) and total > 0
    calls, ns = _stats(stats)
    assert calls >= 1000 and 0 < ns
    assert ns < total   # pread time is a part of the guest-measured loop


def test_stats_via_env(build_x86, kvm, disk, tmp_path):
    stats = tmp_path / "env-stats.txt"
    env = dict(os.environ, PREAD_STATS_FILE=str(stats))
    r = tender(build_x86, f"--block:storage={disk}",
               build_x86 / "blk_bench.elf", "reads=10", env=env)
    assert r.returncode == 0, r.stderr
    calls, ns = _stats(stats)
    assert calls == 10 and ns > 0


def test_final_write_and_wrap(build_x86, kvm, tmp_path):
    # 4 blocks, 10 reads: wraps at capacity; final write lands in block 0.
    d = tmp_path / "small.img"
    d.write_bytes(bytes(2048))
    r = tender(build_x86, f"--block:storage={d}", build_x86 / "blk_bench.elf",
               "reads=10")
    assert r.returncode == 0, r.stderr
    assert _parse(r)[0] == 10
    assert len(d.read_bytes()) == 2048


@pytest.mark.parametrize("misalign", [0, 1, 512])
def test_block_direct_file(build_x86, kvm, disk, tmp_path, misalign):
    # misalign != 0 forces the tender's aligned bounce-buffer path.
    stats = tmp_path / "stats.txt"
    r = tender(build_x86, "--block-direct", f"--block:storage={disk}",
               f"--stats={stats}", build_x86 / "blk_bench.elf", "reads=500",
               f"misalign={misalign}")
    if r.returncode != 0 and "O_DIRECT" in r.stderr:
        pytest.skip(f"filesystem of {disk} lacks O_DIRECT: {r.stderr}")
    assert r.returncode == 0, r.stdout + r.stderr
    reads, bs, _ = _parse(r)
    assert reads == 500 and bs in (512, 4096)
    assert _stats(stats)[0] == 500


def test_block_direct_loopdev(build_x86, kvm, disk, tmp_path):
    if not shutil.which("losetup"):
        pytest.skip("losetup not available")
    p = subprocess.run(["losetup", "--find", "--show", str(disk)],
                       capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot create loop device: {p.stderr.strip()}")
    dev = p.stdout.strip()
    try:
        stats = tmp_path / "stats.txt"
        r = tender(build_x86, "--block-direct", f"--block:storage={dev}",
                   f"--stats={stats}", build_x86 / "blk_bench.elf",
                   "reads=300", "misalign=3")
        assert r.returncode == 0, r.stdout + r.stderr
        assert _parse(r)[0] == 300
        assert _stats(stats)[0] == 300
    finally:
        subprocess.run(["losetup", "-d", dev])


def test_missing_block_file(build_x86, kvm, tmp_path):
    r = tender(build_x86, f"--block:storage={tmp_path}/nope.img",
               build_x86 / "blk_bench.elf")
    assert r.returncode == 1
    assert "nope.img" in r.stderr and len(r.stderr.splitlines()) == 1


def test_unattached_device(build_x86, kvm):
    r = tender(build_x86, build_x86 / "blk_bench.elf", "reads=1")
    assert r.returncode == 1
    assert "cannot acquire block device" in r.stdout
