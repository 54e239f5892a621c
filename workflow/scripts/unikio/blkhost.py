"""The `host` row of the block experiment: our benchmark straight on a loop device."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import IO, Any

from . import hostinfo, loopdev, results
from .errors import PipelineError

MIB = 1 << 20


def disk_bytes(reads: int, block_size: int) -> int:
    """Room for every read at its own offset, rounded up to whole MiB."""
    return max(MIB, -(-reads * block_size // MIB) * MIB)


def run(bench: Path, arch: str, rep: int, reads: int, block_size: int,
        timeout_s: float, log: IO[str]) -> dict[str, Any]:
    with loopdev.terminate_as_exit(), loopdev.tmpfs_loop(disk_bytes(reads, block_size)) as dev:
        argv = [str(bench), dev, str(reads), str(block_size)]
        log.write(f"$ {' '.join(argv)}\n")
        log.flush()
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise PipelineError(
                f"blk_bench on {dev} ran longer than blk.timeout_s={timeout_s}s; raise it or lower blk.reads"
            ) from None
        log.write(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise PipelineError(f"blk_bench failed with status {proc.returncode}: {proc.stderr.strip()}")
    result = results.parse_blk_result(proc.stdout)
    # On the host the whole timed loop is pread calls: the study's host row
    # shows total = pread.
    pread = {"pread_calls": result["reads"], "pread_ns": result["total_ns"]}
    return results.blk_row(
        arch=arch, platform="host", accel="none", testbed="native", rep=rep,
        host=hostinfo.cpu_model(), result=result, pread=pread,
    )
