"""native/bench/blk_bench (host and Linux guests): the untimed read and
write-back of block 0 that marks the monitors' benchmark window, then the
timed reads, checked syscall by syscall."""
import os
import re
import shutil
import subprocess
import time

import pytest
from tender_common import NATIVE

SYSCALL_RE = re.compile(
    r"^(pread64|pwrite64)\(\d+, .*, (\d+), (\d+)\)\s+= (-?\d+)", re.M)
RESULT_RE = re.compile(
    r"^RESULT blk reads=(\d+) block_size=(\d+) total_ns=(\d+)\n$")


@pytest.fixture(scope="module")
def blk_bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench-blk")
    r = subprocess.run(["make", "-C", str(NATIVE / "bench"), f"O={out}"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return out / "blk_bench"


def _distinct_disk(path, blocks, bs):
    data = b"".join(bytes((i * 7 + b * 101) % 251 + 1 for i in range(bs))
                    for b in range(blocks))
    path.write_bytes(data)
    return data


@pytest.mark.parametrize("bs", [512, 4096])
def test_window_mark_then_exactly_the_timed_reads(blk_bench, tmp_path, bs):
    if not shutil.which("strace"):
        pytest.skip("strace not available")
    disk = tmp_path / "disk.img"
    before = _distinct_disk(disk, 4, bs)
    os.utime(disk, ns=(10**18, 10**18))
    trace = tmp_path / "trace.txt"
    r = subprocess.run(["strace", "-s", "0", "-e",
                        "trace=pread64,pwrite64", "-o", str(trace),
                        str(blk_bench), str(disk), "10", str(bs)],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0 and "O_DIRECT" in r.stderr:
        pytest.skip(f"filesystem of {disk} lacks O_DIRECT: {r.stderr}")
    assert r.returncode == 0, r.stderr
    m = RESULT_RE.match(r.stdout)
    assert m and (int(m[1]), int(m[2])) == (10, bs), r.stdout
    calls = [(c, int(n), int(off), int(ret))
             for c, n, off, ret in SYSCALL_RE.findall(trace.read_text())]
    # Block 0 read and written back, then 10 reads wrapping at 4 blocks.
    timed = [("pread64", bs, (i % 4) * bs, bs) for i in range(10)]
    assert calls == [("pread64", bs, 0, bs), ("pwrite64", bs, 0, bs)] + timed
    assert disk.read_bytes() == before
    assert disk.stat().st_mtime_ns > 10**18   # the write-back happened


def test_read_only_device_is_refused(blk_bench, tmp_path):
    if not shutil.which("losetup"):
        pytest.skip("losetup not available")
    disk = tmp_path / "disk.img"
    _distinct_disk(disk, 8, 512)
    p = subprocess.run(["losetup", "--read-only", "--find", "--show",
                        str(disk)], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot create loop device: {p.stderr.strip()}")
    dev = p.stdout.strip()
    try:
        r = subprocess.run([str(blk_bench), dev, "10", "512"],
                           capture_output=True, text=True, timeout=60)
    finally:
        subprocess.run(["losetup", "-d", dev])
    # Depending on the kernel, opening it read-write or the setup write
    # fails; either way before anything is timed.
    assert r.returncode == 1 and r.stdout == ""
    assert re.fullmatch(
        rf"blk_bench: (cannot open {dev} read-write with O_DIRECT|setup "
        r"write of block 0 returned -1): [^\n]+\n", r.stderr), r.stderr


# ---- progress lines on stderr (for the pipeline's "how far, ETA")

PROGRESS_RE = re.compile(r"progress (\d+)/(\d+) reads")


def _reads_lasting(blk_bench, disk, seconds):
    """READS for a run of about `seconds` here: read speed varies by machine
    and filesystem by orders of magnitude, so measure it first."""
    r = subprocess.run([str(blk_bench), str(disk), "5000", "512"],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0 and "O_DIRECT" in r.stderr:
        pytest.skip(f"filesystem of {disk} lacks O_DIRECT: {r.stderr}")
    assert r.returncode == 0, r.stderr
    per_read_ns = int(RESULT_RE.match(r.stdout)[3]) / 5000
    return max(4 * 1024, int(seconds * 1e9 / per_read_ns))


@pytest.fixture
def long_disk(tmp_path):
    disk = tmp_path / "disk.img"
    _distinct_disk(disk, 64, 512)
    return disk


def test_progress_lines_every_second_between_reads(blk_bench, long_disk):
    reads = _reads_lasting(blk_bench, long_disk, 2.5)
    start = time.monotonic()
    r = subprocess.run([str(blk_bench), str(long_disk), str(reads), "512",
                        "1"], capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - start
    assert r.returncode == 0, r.stderr
    m = RESULT_RE.match(r.stdout)
    assert m and int(m[1]) == reads, r.stdout
    # Nothing else on stderr, every line newline-terminated.
    assert r.stderr.endswith("\n"), f"{reads} reads in {elapsed:.2f} s"
    found = [PROGRESS_RE.fullmatch(ln) for ln in r.stderr[:-1].split("\n")]
    assert all(found), r.stderr
    assert {int(f[2]) for f in found} == {reads}
    done = [int(f[1]) for f in found]
    # Checked every 1024 reads, never after the last one, at most one a
    # second (not one per check).
    assert all(d % 1024 == 0 and 0 < d < reads for d in done), done
    assert done == sorted(set(done)), done
    assert len(done) <= elapsed, (done, elapsed)


@pytest.mark.parametrize("progress", [[], ["0"]], ids=["default-10s", "0"])
def test_no_progress_when_off_or_run_shorter_than_period(blk_bench, long_disk,
                                                         progress):
    reads = _reads_lasting(blk_bench, long_disk, 2.5)
    r = subprocess.run([str(blk_bench), str(long_disk), str(reads), "512",
                        *progress], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert RESULT_RE.match(r.stdout), r.stdout
    assert r.stderr == ""


@pytest.mark.parametrize("value", ["-1", "3601", "x", "", " 5", "1.5"])
def test_bad_progress_period_is_refused(blk_bench, long_disk, value):
    r = subprocess.run([str(blk_bench), str(long_disk), "10", "512", value],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == (f"blk_bench: PROGRESS_S must be an integer in "
                        f"0..3600, got '{value}'\n")


def test_five_arguments_or_more_is_usage(blk_bench, long_disk):
    r = subprocess.run([str(blk_bench), str(long_disk), "10", "512", "1", "1"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == "usage: blk_bench DEVICE READS BLOCK_SIZE [PROGRESS_S]\n"
