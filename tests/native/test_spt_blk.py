"""spt_tender end-to-end with block devices: blk_bench.spt, the pread
accounting window (same stats line and semantics as the hvt tender, checked
with the same blkwin guest), O_DIRECT with and without the bounce buffer,
and multi-block requests, which the bindings split into one pread64 or
pwrite64 per block (all the seccomp filter allows)."""
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
    read_stats,
    skip_without_odirect,
    spt_tender,
    start_ready,
    written,
)
from unikio.results import parse_blk_result


def _blk(r):
    assert r.returncode == 0, r.stdout + r.stderr
    res = parse_blk_result(r.stdout)
    return res["reads"], res["block_size"], res["total_ns"]


def test_blk_bench_counts_exactly_the_timed_reads(build_spt, tmp_path):
    disk = tmp_path / "disk.img"
    before = distinct_disk(disk, 2048)     # 1 MiB
    stats = tmp_path / "stats.txt"
    r = spt_tender(build_spt, f"--block:storage={disk}", f"--stats={stats}",
                   build_spt / "blk_bench.spt", "reads=1000")
    reads, bs, total = _blk(r)
    assert (reads, bs) == (1000, 512) and total > 0
    calls, ns, setup_calls, setup_ns = read_stats(stats)
    # The setup read of block 0, then its write-back opens the window.
    assert (calls, setup_calls) == (1000, 1)
    assert 0 < ns < total and setup_ns > 0
    assert r.stderr == ""
    assert written(disk) and disk.read_bytes() == before


@pytest.mark.parametrize("reads", [1, 37, 2048, 2049])
def test_reads_argument_honoured_and_wraps(build_spt, tmp_path, reads):
    disk = tmp_path / "disk.img"
    before = distinct_disk(disk, 2048)
    stats = tmp_path / "stats.txt"
    r = spt_tender(build_spt, f"--block:storage={disk}", f"--stats={stats}",
                   build_spt / "blk_bench.spt", f"reads={reads}")
    assert _blk(r)[:2] == (reads, 512)
    assert read_stats(stats)[::2] == (reads, 1)
    assert disk.read_bytes() == before


def test_stats_via_env(build_spt, tmp_path):
    disk = tmp_path / "disk.img"
    distinct_disk(disk, 16)
    stats = tmp_path / "env-stats.txt"
    env = dict(os.environ, PREAD_STATS_FILE=str(stats))
    r = spt_tender(build_spt, f"--block:storage={disk}",
                   build_spt / "blk_bench.spt", "reads=10", env=env)
    assert _blk(r)[0] == 10
    assert read_stats(stats)[::2] == (10, 1)


@pytest.mark.parametrize("misalign", [0, 1, 512])
def test_block_direct_file(build_spt, tmp_path, misalign):
    # misalign=1 never meets O_DIRECT's alignment: the bindings' bounce
    # buffer; each guest read is still exactly one pread.
    disk = tmp_path / "disk.img"
    before = distinct_disk(disk, 2048)
    stats = tmp_path / "stats.txt"
    r = spt_tender(build_spt, "--block-direct", f"--block:storage={disk}",
                   f"--stats={stats}", build_spt / "blk_bench.spt",
                   "reads=500", f"misalign={misalign}")
    skip_without_odirect(r, disk)
    reads, bs, _ = _blk(r)
    assert reads == 500 and bs in (512, 4096)
    assert read_stats(stats)[::2] == (500, 1)
    assert written(disk) and disk.read_bytes() == before


@pytest.mark.parametrize("misalign", [0, 3])
def test_block_direct_loopdev(build_spt, tmp_path, misalign):
    if os.geteuid() != 0:
        pytest.skip("loop devices need root")
    disk = tmp_path / "disk.img"
    before = distinct_disk(disk, 2048)
    dev = loopdev(disk)
    try:
        stats = tmp_path / "stats.txt"
        r = spt_tender(build_spt, "--block-direct", f"--block:storage={dev}",
                       f"--stats={stats}", build_spt / "blk_bench.spt",
                       "reads=300", f"misalign={misalign}")
        assert _blk(r)[:2] == (300, 512)
        assert read_stats(stats)[::2] == (300, 1)
    finally:
        subprocess.run(["losetup", "-d", dev])
    assert disk.read_bytes() == before


def test_sector_size_4096_direct_bounced(build_spt, tmp_path):
    disk = tmp_path / "disk.img"
    before = distinct_disk(disk, 2048)
    stats = tmp_path / "stats.txt"
    r = spt_tender(build_spt, "--block-direct",
                   "--block-sector-size:storage=4096",
                   f"--block:storage={disk}", f"--stats={stats}",
                   build_spt / "blk_bench.spt", "reads=300", "misalign=1")
    skip_without_odirect(r, disk)
    assert _blk(r)[:2] == (300, 4096)
    assert read_stats(stats)[::2] == (300, 1)
    assert disk.read_bytes() == before


def test_sector_size_bad_value_same_message_as_hvt(build_spt, tmp_path):
    disk = tmp_path / "disk.img"
    distinct_disk(disk, 8)
    r = spt_tender(build_spt, "--block-sector-size:storage=1000",
                   f"--block:storage={disk}", build_spt / "blk_bench.spt")
    assert r.returncode == 1
    assert r.stderr == ("spt_tender: error: bad --block-sector-size value "
                        "'1000' for block 'storage' (a power of two, "
                        "512..32768)\n")


def test_missing_block_file(build_spt, tmp_path):
    r = spt_tender(build_spt, f"--block:storage={tmp_path}/nope.img",
                   build_spt / "blk_bench.spt")
    assert r.returncode == 1
    assert "nope.img" in r.stderr and len(r.stderr.splitlines()) == 1


def test_unattached_device(build_spt):
    r = spt_tender(build_spt, build_spt / "blk_bench.spt", "reads=1")
    assert r.returncode == 1
    assert r.stdout == "blk_bench: cannot acquire block device 'storage'\n"


# ---- window semantics with the scripted guest (tests/native/guests/blkwin.c)


def _blkwin(build, disk, stats, ops):
    return spt_tender(build, f"--block:storage={disk}", f"--stats={stats}",
                      build / "blkwin.spt", f"ops={ops}")


def _start_blkwin(build, disk, stats, ops):
    return start_ready([str(build / "spt_tender"), f"--block:storage={disk}",
                        f"--stats={stats}", str(build / "blkwin.spt"),
                        f"ops={ops}"])


@pytest.mark.parametrize("case", sorted(WINDOW_CASES))
def test_window_accounting(build_spt, window_disk, case):
    check_window_case(case, partial(_blkwin, build_spt), window_disk)


def test_short_read_counts_each_syscall(build_spt, window_disk):
    check_short_read(partial(_start_blkwin, build_spt), window_disk)


def test_short_block_read_is_an_error_not_retried(build_spt, window_disk):
    # The file ends 100 bytes into the last block: its pread returns 100
    # bytes, and a retry of the rest (a shorter count) would be killed by
    # the filter. The bindings return EUNSPEC after that one pread, as
    # upstream Solo5's spt does: block 6 and block 7, 2 calls.
    disk, _, stats = window_disk
    proc = _start_blkwin(build_spt, disk, stats, "r1,w1,p2,t")
    os.truncate(disk, 7 * 512 + 100)
    out, err = proc.communicate(timeout=30)
    assert (proc.returncode, out, err) == (0, "done\n", "")
    calls, ns, setup_calls, _ = read_stats(stats)
    assert (calls, setup_calls) == (2, 1) and ns > 0


def _multi(build, disk, stats, blocks, *opts, misalign=0):
    return spt_tender(build, *opts, f"--block:storage={disk}",
                      f"--stats={stats}", build / "spt_evil.spt",
                      "case=multi", f"blocks={blocks}", f"misalign={misalign}")


def _multi_pattern(n):
    """spt_evil.c's multi_case write data."""
    return bytes(i * 13 % 251 + 1 for i in range(n))


@pytest.mark.parametrize("blocks", [1, 2, 7, 16])
def test_multi_block_read_is_one_pread_per_block(build_spt, tmp_path,
                                                 blocks):
    # Read [0, n), write [n, 2n), read [n, 2n) back: the last read is the
    # window, the first the setup.
    disk = tmp_path / "disk.img"
    before = distinct_disk(disk, 64)
    stats = tmp_path / "stats.txt"
    r = _multi(build_spt, disk, stats, blocks)
    assert (r.returncode, r.stdout, r.stderr) == (0, "OK multi\n", "")
    calls, ns, setup_calls, setup_ns = read_stats(stats)
    assert (calls, setup_calls) == (blocks, blocks)
    assert ns > 0 and setup_ns > 0
    n = blocks * 512
    assert disk.read_bytes() == (before[:n] + _multi_pattern(n) +
                                 before[2 * n:])


@pytest.mark.parametrize("misalign", [0, 3])
def test_multi_block_direct(build_spt, tmp_path, misalign):
    # misalign=3: every block through the bounce buffer, copied outside the
    # timed pread; still one pread per block. The block size is O_DIRECT's
    # alignment on this filesystem: 512 or 4096.
    disk = tmp_path / "disk.img"
    before = distinct_disk(disk, 128)
    stats = tmp_path / "stats.txt"
    r = _multi(build_spt, disk, stats, 5, "--block-direct",
               misalign=misalign)
    skip_without_odirect(r, disk)
    assert (r.returncode, r.stdout, r.stderr) == (0, "OK multi\n", "")
    assert read_stats(stats)[::2] == (5, 5)
    after = disk.read_bytes()
    assert after in [before[:5 * bs] + _multi_pattern(5 * bs) +
                     before[10 * bs:] for bs in (512, 4096)]


TRACE_RE = re.compile(r"^\d+ +(pread64|pwrite64)\(\d+, .*, (\d+), (\d+)\)"
                      r" += (-?\d+)$")


def _strace_spt(build_spt, tmp_path, syscalls, guest, *args):
    """spt_tender under strace on a 64-block disk: (its run, the traced
    lines of those syscalls, the stats file)."""
    if shutil.which("strace") is None:
        pytest.skip("strace not installed")
    disk = tmp_path / "disk.img"
    distinct_disk(disk, 64)
    stats, trace = tmp_path / "stats.txt", tmp_path / "trace.txt"
    r = subprocess.run(["strace", "-f", "-qq", "-o", str(trace), "-e",
                        f"trace={syscalls}", "-e", "signal=none",
                        str(build_spt / "spt_tender"),
                        f"--block:storage={disk}", f"--stats={stats}",
                        str(build_spt / guest), *args],
                       capture_output=True, text=True, timeout=60)
    return r, trace.read_text().splitlines(), stats


def test_multi_block_syscalls_seen_by_the_kernel(build_spt, tmp_path):
    # strace: 7 blocks read, written and read again are 21 calls, each of
    # exactly one aligned 512-byte block.
    r, lines, stats = _strace_spt(build_spt, tmp_path, "pread64,pwrite64",
                                  "spt_evil.spt", "case=multi", "blocks=7")
    assert (r.returncode, r.stdout) == (0, "OK multi\n"), r.stderr
    calls = [TRACE_RE.match(ln).groups() for ln in lines]
    assert calls == ([("pread64", "512", str(b * 512), "512")
                      for b in range(7)] +
                     [("pwrite64", "512", str(b * 512), "512")
                      for b in range(7, 14)] +
                     [("pread64", "512", str(b * 512), "512")
                      for b in range(7, 14)])
    assert read_stats(stats)[::2] == (7, 7)


def test_stats_written_on_guest_fault(build_spt, window_disk):
    # blkwin's "f" issues an hvt hypercall (an x86 `out`): in a process that
    # is a general-protection fault, i.e. SIGSEGV.
    disk, _, stats = window_disk
    r = _blkwin(build_spt, disk, stats, "r2,w1,r3,f")
    assert r.returncode == 255, (r.returncode, r.stderr)
    assert r.stderr == ("spt_tender: guest fault: killed by SIGSEGV; guest "
                        "aborted\n")
    assert read_stats(stats)[::2] == (3, 2)


def _children(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(x) for x in f.read().split()]


def _gone(pid):
    """Not running: absent, or a zombie nobody has reaped yet."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_is_forwarded_and_stats_written(build_spt, window_disk, sig):
    disk, _, stats = window_disk
    proc = _start_blkwin(build_spt, disk, stats, "r1,w1,r2,p30")
    (guest,) = _children(proc.pid)
    start = time.monotonic()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=20)
    assert time.monotonic() - start < 5
    assert proc.returncode == 128 + sig, err
    assert err == f"spt_tender: terminated by signal {int(sig)}\n"
    assert _gone(guest)
    assert read_stats(stats)[::2] == (2, 1)


def test_sigkilled_tender_takes_the_guest_along(build_spt, window_disk):
    disk, _, stats = window_disk
    proc = _start_blkwin(build_spt, disk, stats, "r1,p30")
    (guest,) = _children(proc.pid)
    proc.kill()
    proc.communicate(timeout=20)
    deadline = time.monotonic() + 5
    while not _gone(guest) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _gone(guest), "guest outlived its tender"


def test_one_pread_syscall_per_counted_read_and_no_clock_syscalls(build_spt,
                                                                  tmp_path):
    # Seen from the kernel (strace): the stats count real pread64 syscalls,
    # and the guest's clock reads stay in the vDSO (no clock_gettime).
    r, lines, stats = _strace_spt(build_spt, tmp_path,
                                  "pread64,pwrite64,clock_gettime",
                                  "blk_bench.spt", "reads=300")
    assert _blk(r)[0] == 300
    calls = [ln.split(None, 1)[1].split("(", 1)[0]
             for ln in lines if "(" in ln]
    assert calls.count("pread64") == 301 and calls.count("pwrite64") == 1
    assert "clock_gettime" not in calls
    assert read_stats(stats)[::2] == (300, 1)
