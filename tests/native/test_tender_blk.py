"""End-to-end blk_bench runs under KVM, pread accounting (the benchmark
window), --block-sector-size, O_DIRECT."""
import os
import re
import shutil
import signal
import subprocess
import time
from functools import partial

import pytest
from tender_common import (
    WINDOW_CASES,
    check_short_read,
    check_window_case,
    distinct_disk,
    loopdev,
    pattern,
    read_stats,
    skip_without_odirect,
    start_ready,
    tender,
    written,
)

RESULT_RE = re.compile(
    r"^RESULT blk reads=(\d+) block_size=(\d+) total_ns=(\d+)$", re.M)


def _parse(r):
    m = RESULT_RE.findall(r.stdout)
    assert len(m) == 1, r.stdout + r.stderr
    return tuple(int(x) for x in m[0])


# ---- blk_bench: the window holds exactly the timed reads


def test_blk_bench_e2e(build_x86, kvm, tmp_path):
    disk = tmp_path / "disk.img"
    before = distinct_disk(disk, 2048)
    stats = tmp_path / "stats.txt"
    r = tender(build_x86, f"--block:storage={disk}", f"--stats={stats}",
               build_x86 / "blk_bench.elf", "reads=1000")
    assert r.returncode == 0, r.stdout + r.stderr
    reads, bs, total = _parse(r)
    assert (reads, bs) == (1000, 512) and total > 0
    calls, ns, setup_calls, setup_ns = read_stats(stats)
    # One setup read of block 0, then its write-back opens the window.
    assert (calls, setup_calls) == (1000, 1)
    assert 0 < ns < total   # pread time is a part of the guest-measured loop
    assert setup_ns > 0
    # Block 0 was written back unchanged.
    assert written(disk) and disk.read_bytes() == before


def test_stats_via_env(build_x86, kvm, disk, tmp_path):
    stats = tmp_path / "env-stats.txt"
    env = dict(os.environ, PREAD_STATS_FILE=str(stats))
    r = tender(build_x86, f"--block:storage={disk}",
               build_x86 / "blk_bench.elf", "reads=10", env=env)
    assert r.returncode == 0, r.stderr
    calls, ns, setup_calls, _ = read_stats(stats)
    assert (calls, setup_calls) == (10, 1) and ns > 0


def test_wrap_at_capacity_leaves_disk_unchanged(build_x86, kvm, tmp_path):
    # 4 blocks, 10 reads: wraps at capacity (a read past the end would fail
    # the guest); the only write puts block 0's own bytes back.
    d = tmp_path / "small.img"
    before = distinct_disk(d, 4)
    stats = tmp_path / "stats.txt"
    r = tender(build_x86, f"--block:storage={d}", f"--stats={stats}",
               build_x86 / "blk_bench.elf", "reads=10")
    assert r.returncode == 0, r.stdout + r.stderr
    assert _parse(r)[:2] == (10, 512)
    assert read_stats(stats)[::2] == (10, 1)
    assert written(d) and d.read_bytes() == before


@pytest.mark.parametrize("misalign", [0, 1, 512])
def test_block_direct_file(build_x86, kvm, tmp_path, misalign):
    # misalign=1 never meets O_DIRECT's memory alignment, so it takes the
    # tender's bounce-buffer path; 0 and 512 use the guest buffer directly
    # wherever the device accepts 512-byte aligned buffers.
    disk = tmp_path / "disk.img"
    before = distinct_disk(disk, 2048)
    stats = tmp_path / "stats.txt"
    r = tender(build_x86, "--block-direct", f"--block:storage={disk}",
               f"--stats={stats}", build_x86 / "blk_bench.elf", "reads=500",
               f"misalign={misalign}")
    skip_without_odirect(r, disk)
    assert r.returncode == 0, r.stdout + r.stderr
    reads, bs, _ = _parse(r)
    assert reads == 500 and bs in (512, 4096)  # the filesystem's DIO alignment
    # Each read is one pread(), bounced or not.
    assert read_stats(stats)[::2] == (500, 1)
    assert written(disk) and disk.read_bytes() == before


def test_block_direct_loopdev(build_x86, kvm, tmp_path):
    disk = tmp_path / "disk.img"
    before = distinct_disk(disk, 2048)
    dev = loopdev(disk)
    try:
        stats = tmp_path / "stats.txt"
        r = tender(build_x86, "--block-direct", f"--block:storage={dev}",
                   f"--stats={stats}", build_x86 / "blk_bench.elf",
                   "reads=300", "misalign=3")
        assert r.returncode == 0, r.stdout + r.stderr
        assert _parse(r)[:2] == (300, 512)
        assert read_stats(stats)[::2] == (300, 1)
    finally:
        subprocess.run(["losetup", "-d", dev])
    assert disk.read_bytes() == before


def test_missing_block_file(build_x86, kvm, tmp_path):
    r = tender(build_x86, f"--block:storage={tmp_path}/nope.img",
               build_x86 / "blk_bench.elf")
    assert r.returncode == 1
    assert "nope.img" in r.stderr and len(r.stderr.splitlines()) == 1


def test_unattached_device(build_x86, kvm):
    r = tender(build_x86, build_x86 / "blk_bench.elf", "reads=1")
    assert r.returncode == 1
    assert "cannot acquire block device" in r.stdout


# ---- window semantics with a scripted guest (tests/native/guests/blkwin.c)


def _blkwin(build, disk, stats, ops, *extra):
    return tender(build, f"--block:storage={disk}", f"--stats={stats}",
                  *extra, build / "blkwin.elf", f"ops={ops}", timeout=60)


def _start_blkwin(build, disk, stats, ops):
    """Start blkwin and wait until its "p" op prints ready."""
    return start_ready([str(build / "tender"), f"--block:storage={disk}",
                        f"--stats={stats}", str(build / "blkwin.elf"),
                        f"ops={ops}"])


@pytest.mark.parametrize("case", sorted(WINDOW_CASES))
def test_window_accounting(build_x86, kvm, window_disk, case):
    check_window_case(case, partial(_blkwin, build_x86), window_disk)


def test_write_failing_on_the_host_does_not_move_the_window(build_x86, kvm,
                                                           tmp_path):
    # The loop device turns read-only while the guest pauses: its write gets
    # as far as pwrite(), which fails (EPERM).
    if not shutil.which("blockdev"):
        pytest.skip("blockdev not available")
    disk = tmp_path / "disk.img"
    before = distinct_disk(disk, 8)
    dev = loopdev(disk)
    try:
        stats = tmp_path / "stats.txt"
        proc = _start_blkwin(build_x86, dev, stats, "r2,w1,r3,p2,y,r4")
        subprocess.run(["blockdev", "--setro", dev], check=True)
        out, err = proc.communicate(timeout=30)
        assert (proc.returncode, out) == (0, "done\n"), out + err
        assert read_stats(stats)[::2] == (7, 2)
    finally:
        # The flag outlives the attachment: the next user of dev would get
        # a read-only device.
        subprocess.run(["blockdev", "--setrw", dev])
        subprocess.run(["losetup", "-d", dev])
    after = disk.read_bytes()   # w1 landed, y did not
    assert after[512:1024] == pattern(1, 512)
    assert after[:512] + after[1024:] == before[:512] + before[1024:]


def test_stats_written_on_guest_fault(build_x86, kvm, window_disk):
    disk, _, stats = window_disk
    r = _blkwin(build_x86, disk, stats, "r2,w1,r3,f")
    assert r.returncode == 255 and "guest fault" in r.stderr, r.stderr
    assert read_stats(stats)[::2] == (3, 2)


def test_stats_written_on_sigterm(build_x86, kvm, window_disk):
    disk, _, stats = window_disk
    proc = _start_blkwin(build_x86, disk, stats, "r1,w1,r2,p30")
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert time.monotonic() - start < 10    # the sleeping guest is cut short
    assert read_stats(stats)[::2] == (2, 1)


def test_short_read_counts_each_syscall(build_x86, kvm, window_disk):
    check_short_read(partial(_start_blkwin, build_x86), window_disk)


# ---- --block-sector-size


@pytest.mark.parametrize("misalign", [0, 1])
def test_sector_size_4096_direct(build_x86, kvm, tmp_path, misalign):
    disk = tmp_path / "disk.img"
    before = distinct_disk(disk, 2048)
    stats = tmp_path / "stats.txt"
    r = tender(build_x86, "--block-direct", "--block-sector-size:storage=4096",
               f"--block:storage={disk}", f"--stats={stats}",
               build_x86 / "blk_bench.elf", "reads=300",
               f"misalign={misalign}")
    skip_without_odirect(r, disk)
    assert r.returncode == 0, r.stdout + r.stderr
    assert _parse(r)[:2] == (300, 4096)
    assert read_stats(stats)[::2] == (300, 1)
    assert written(disk) and disk.read_bytes() == before


@pytest.mark.parametrize("before_block", [True, False])
def test_sector_size_buffered_either_order(build_x86, kvm, disk, tmp_path,
                                           before_block):
    opts = ["--block-sector-size:storage=32768", f"--block:storage={disk}"]
    if not before_block:
        opts.reverse()
    stats = tmp_path / "stats.txt"
    r = tender(build_x86, *opts, f"--stats={stats}",
               build_x86 / "blk_bench.elf", "reads=40")
    assert r.returncode == 0, r.stdout + r.stderr
    # 1 MiB = 32 blocks of 32 KiB: 40 reads wrap once.
    assert _parse(r)[:2] == (40, 32768)
    assert read_stats(stats)[::2] == (40, 1)


@pytest.mark.parametrize("value", [
    "1000", "256", "65536", "0", "", "abc", "-512", "+512", " 512", "4097",
    "4096x", "99999999999999999999999",
])
def test_sector_size_bad_value(build_x86, disk, value):
    r = tender(build_x86, f"--block-sector-size:storage={value}",
               f"--block:storage={disk}", build_x86 / "blk_bench.elf")
    assert r.returncode == 1
    assert r.stderr == (f"tender: error: bad --block-sector-size value "
                        f"'{value}' for block 'storage' (a power of two, "
                        f"512..32768)\n")


@pytest.mark.parametrize("spec, message", [
    ("storage", "bad --block-sector-size argument 'storage'"),
    ("=512", "bad --block-sector-size argument '=512'"),
    ("other=512", "--block-sector-size:other given, but no --block:other"),
])
def test_sector_size_bad_spec(build_x86, disk, spec, message):
    r = tender(build_x86, f"--block-sector-size:{spec}",
               f"--block:storage={disk}", build_x86 / "blk_bench.elf")
    assert r.returncode == 1
    assert len(r.stderr.splitlines()) == 1
    assert r.stderr.startswith("tender: error: " + message), r.stderr


def test_sector_size_given_twice(build_x86, disk):
    r = tender(build_x86, "--block-sector-size:storage=1024",
               "--block-sector-size:storage=2048", f"--block:storage={disk}",
               build_x86 / "blk_bench.elf")
    assert r.returncode == 1
    assert r.stderr == ("tender: error: duplicate --block-sector-size for "
                        "block 'storage'\n")


def test_sector_size_must_fit_odirect_alignment(build_x86, kvm, tmp_path):
    # A loop device with 4096-byte logical sectors: O_DIRECT needs 4096.
    disk = tmp_path / "disk.img"
    before = distinct_disk(disk, 2048)
    dev = loopdev(disk, "--sector-size", "4096")
    try:
        for size in (512, 2048):
            r = tender(build_x86, "--block-direct",
                       f"--block-sector-size:storage={size}",
                       f"--block:storage={dev}", build_x86 / "blk_bench.elf")
            assert r.returncode == 1
            assert r.stderr == (
                f"tender: error: block 'storage': --block-sector-size {size} "
                f"is not a multiple of the 4096-byte alignment O_DIRECT "
                f"needs on {dev}\n")
        stats = tmp_path / "stats.txt"
        r = tender(build_x86, "--block-direct",
                   "--block-sector-size:storage=8192", f"--block:storage={dev}",
                   f"--stats={stats}", build_x86 / "blk_bench.elf",
                   "reads=50", "misalign=1")
        assert r.returncode == 0, r.stdout + r.stderr
        assert _parse(r)[:2] == (50, 8192)
        assert read_stats(stats)[::2] == (50, 1)
        # Without O_DIRECT the page cache takes any accepted size.
        r = tender(build_x86, "--block-sector-size:storage=512",
                   f"--block:storage={dev}", build_x86 / "blk_bench.elf",
                   "reads=5")
        assert r.returncode == 0, r.stdout + r.stderr
        assert _parse(r)[:2] == (5, 512)
        # The device default under O_DIRECT is its 4096-byte sector.
        r = tender(build_x86, "--block-direct", f"--block:storage={dev}",
                   build_x86 / "blk_bench.elf", "reads=5")
        assert r.returncode == 0, r.stdout + r.stderr
        assert _parse(r)[:2] == (5, 4096)
    finally:
        subprocess.run(["losetup", "-d", dev])
    assert disk.read_bytes() == before
