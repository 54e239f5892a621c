"""Checks made before any job runs, so a run that cannot finish is refused in one sentence up front."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .loopdev import TMPFS_DIR, disk_bytes, reap_stale
from .matrix import Combination

MIB = 1 << 20
# Left free in /dev/shm beside the disk image, for everything else that uses it.
SHM_HEADROOM = 16 * MIB
# Testbed memory taken by its kernel, the unpacked initramfs (our programs, the
# arm64 QEMU, the guest's kernel and initramfs) and the page cache they need.
TESTBED_RESERVED_MB = 384


def check_disk_room(config: dict[str, Any], plan: Sequence[Combination], tmpfs: Path = TMPFS_DIR) -> str | None:
    """Why the block experiment's disk image cannot be made here (one sentence), or None.

    Measurements run one at a time and each deletes its image, so one image is the peak.
    """
    blk = [c for c in plan if c.runnable and c.experiment == "blk"]
    need = disk_bytes(config["blk"]["reads"], config["blk"]["block_size"])
    size = f"blk.reads x blk.block_size needs a {need // MIB} MiB disk image"
    if any(c.testbed == "native" for c in blk):
        if os.geteuid() == 0:
            reap_stale(tmpfs)  # images of jobs that were SIGKILLed count as free
        free = shutil.disk_usage(tmpfs).free
        if need + SHM_HEADROOM > free:
            return (f"{size} in {tmpfs}, which has {free // MIB} MiB free, and {SHM_HEADROOM // MIB} MiB must stay "
                    f"free beside it; lower blk.reads or blk.block_size, or free space in {tmpfs}")
    emulated = [c for c in blk if c.testbed == "emulated"]
    if emulated:
        need = disk_bytes(config["testbed"]["blk"]["reads"], config["blk"]["block_size"])
        guest_mb = config["guest"]["memory_mb"] if any(c.platform.startswith("qemu-linux") for c in emulated) else 0
        room_mb = config["testbed"]["memory_mb"] - TESTBED_RESERVED_MB - guest_mb
        if need // MIB > room_mb:
            return (f"testbed.blk.reads x blk.block_size needs a {need // MIB} MiB disk image, but the emulated "
                    f"testbed has room for {max(room_mb, 0)} MiB (testbed.memory_mb="
                    f"{config['testbed']['memory_mb']} less {TESTBED_RESERVED_MB} MiB for its system"
                    + (f" and guest.memory_mb={guest_mb}" if guest_mb else "")
                    + "); raise testbed.memory_mb or lower testbed.blk.reads")
    return None
