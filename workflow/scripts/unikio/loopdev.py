"""Loop devices over tmpfs files: created for one measurement, always removed.

The block experiment reads from a loop device backed by a file in /dev/shm, so
O_DIRECT works and the host side never measures a shared, noisy disk.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from . import procs
from .errors import PipelineError

TMPFS_DIR = Path("/dev/shm")
PREFIX = "unikio-blk-"
MIB = 1 << 20


def disk_bytes(reads: int, block_size: int) -> int:
    """The disk image of a block row: room for every read at its own offset, rounded up to whole MiB."""
    return max(MIB, -(-reads * block_size // MIB) * MIB)


def _losetup(args: list[str]) -> str:
    proc = subprocess.run(["losetup", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise PipelineError(f"losetup {' '.join(args)} failed: {proc.stderr.strip() or proc.returncode}")
    return proc.stdout.strip()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _devices_of(backing: Path) -> list[str]:
    """The loop devices attached to backing."""
    proc = subprocess.run(["losetup", "--noheadings", "-O", "NAME", "-j", str(backing)], capture_output=True,
                          text=True, check=False)
    return proc.stdout.split() if proc.returncode == 0 else []


def reap_stale(tmpfs: Path = TMPFS_DIR) -> list[str]:
    """Detach loop devices and delete files left by crashed earlier runs."""
    removed = []
    owner = re.compile(re.escape(str(tmpfs / PREFIX)) + r"(\d+)-")
    try:
        listing = json.loads(_losetup(["--json", "--list"]) or '{"loopdevices": []}')
    except PipelineError:
        listing = {"loopdevices": []}
    for dev in listing.get("loopdevices", []):
        back = (dev.get("back-file") or "").replace(" (deleted)", "")
        m = owner.match(back)
        if m and not pid_alive(int(m.group(1))):
            subprocess.run(["losetup", "--detach", dev["name"]], capture_output=True, check=False)
            removed.append(dev["name"])
    for path in tmpfs.glob(PREFIX + "*"):
        m = owner.match(str(path))
        if m and not pid_alive(int(m.group(1))):
            path.unlink(missing_ok=True)
            removed.append(str(path))
    return removed


def _fill(path: Path, size: int) -> None:
    # Distinct, non-zero content per block so nothing can short-cut the reads.
    block = bytes(range(256)) * 16
    try:
        with open(path, "wb") as f:
            written = 0
            counter = 0
            while written < size:
                chunk = (counter.to_bytes(8, "little") + block[8:])[: min(len(block), size - written)]
                f.write(chunk)
                written += len(chunk)
                counter += 1
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
        raise PipelineError(f"{path.parent} has no room for the {size >> 20} MiB disk image "
                            "(blk.reads x blk.block_size); free space there or lower blk.reads") from None


@contextlib.contextmanager
def tmpfs_loop(size_bytes: int, tmpfs: Path = TMPFS_DIR) -> Iterator[str]:
    """Yield /dev/loopN over a fresh tmpfs file of size_bytes; detach and delete after."""
    if os.geteuid() != 0:
        raise PipelineError("loop devices need root; run the pipeline as root (e.g. sudo ./snakemake ...)")
    reap_stale(tmpfs)
    fd, name = tempfile.mkstemp(dir=tmpfs, prefix=f"{PREFIX}{os.getpid()}-", suffix=".img")
    os.close(fd)
    backing = Path(name)
    device = None
    try:
        _fill(backing, size_bytes)
        device = _losetup(["--find", "--show", str(backing)])
        yield device
    finally:
        with procs.uninterrupted():
            # By the backing file: an attach cut short may have made a device we never heard of.
            for dev in _devices_of(backing) or ([device] if device else []):
                subprocess.run(["losetup", "--detach", dev], capture_output=True, check=False)
            backing.unlink(missing_ok=True)
