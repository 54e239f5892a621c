"""Rows of the block experiment that run on this host: `host` and `solo5-hvt`.

Each repetition gets a fresh loop device over tmpfs (see loopdev), so O_DIRECT
works and the host side never measures a shared, noisy disk.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from . import guest, hostinfo, loopdev, results, solo5
from .errors import PipelineError

MIB = 1 << 20


def disk_bytes(reads: int, block_size: int) -> int:
    """Room for every read at its own offset, rounded up to whole MiB."""
    return max(MIB, -(-reads * block_size // MIB) * MIB)


def run_on_loop(argv_for: Callable[[str], tuple[list[str], dict[str, str]]], reads: int, block_size: int,
                timeout_s: float, log: IO[str]) -> str:
    """Run argv_for(/dev/loopN) = (argv, extra env) on a fresh loop device; its stdout, or a one-line error."""
    with loopdev.terminate_as_exit(), loopdev.tmpfs_loop(disk_bytes(reads, block_size)) as dev:
        argv, env = argv_for(dev)
        name = Path(argv[0]).name
        log.write(f"$ {' '.join(f'{k}={v}' for k, v in env.items())} {' '.join(argv)}\n")
        log.flush()
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False,
                                  env={**os.environ, **env})
        except subprocess.TimeoutExpired:
            raise PipelineError(
                f"{name} on {dev} ran longer than blk.timeout_s={timeout_s}s; raise it or lower blk.reads"
            ) from None
        log.write(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise PipelineError(f"{name} failed with status {proc.returncode}: {last}")
    return proc.stdout


def host_row(bench: Path, arch: str, rep: int, reads: int, block_size: int, timeout_s: float,
             log: IO[str]) -> dict[str, Any]:
    out = run_on_loop(lambda dev: ([str(bench), dev, str(reads), str(block_size)], {}),
                      reads, block_size, timeout_s, log)
    result = results.parse_blk_result(out)
    # The whole timed loop is pread calls: the study's host row shows total = pread.
    pread = {"pread_calls": result["reads"], "pread_ns": result["total_ns"]}
    return results.blk_row(arch=arch, platform="host", accel="none", testbed="native", rep=rep,
                           host=hostinfo.cpu_model(), result=result, pread=pread)


def solo5_row(tender: Path, guest: Path, arch: str, rep: int, reads: int, block_size: int,
              timeout_s: float, mem_mb: int, provider: str, log: IO[str]) -> dict[str, Any]:
    """blk_bench as a unikernel; the tender opens the device with O_DIRECT, as the study's patch did."""
    with tempfile.TemporaryDirectory(prefix="unikio-stats-") as tmp:
        stats = Path(tmp) / "pread.stats"
        out = run_on_loop(
            lambda dev: solo5.tender_command(provider, tender, guest, mem_mb, block=dev, args=[f"reads={reads}"],
                                             stats=stats),
            reads, block_size, timeout_s, log)
        pread = results.parse_pread_stats(stats.read_text(encoding="utf-8"))
    result = results.parse_blk_result(out)
    if result["block_size"] != block_size:
        raise PipelineError(f"the unikernel read {result['block_size']}-byte blocks, config asks "
                            f"blk.block_size={block_size}")
    return results.blk_row(arch=arch, platform="solo5-hvt", provider=provider, accel="kvm",
                           testbed="native", rep=rep, host=hostinfo.cpu_model(), result=result, pread=pread)


def exit_floor(floor_bin: Path, exits: int, timeout_s: float, log: IO[str]) -> dict[str, Any]:
    """The cost of the smallest KVM exit round trip on this machine."""
    argv = [str(floor_bin), str(exits)]
    log.write(f"$ {' '.join(argv)}\n")
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise PipelineError(f"kvm_exit_floor ran longer than {timeout_s}s; lower solo5.floor_exits") from None
    log.write(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise PipelineError(f"kvm_exit_floor failed with status {proc.returncode}: {proc.stderr.strip()}")
    return results.parse_exit_floor(proc.stdout)


def qemu_linux_row(qemu: Path, kernel: Path, initrd: Path, arch: str, platform: str, accel: str, rep: int,
                   reads: int, block_size: int, memory_mb: int, timeout_s: float, console_log: Path,
                   log: IO[str]) -> dict[str, Any]:
    """blk_bench inside the Linux guest on /dev/vda; pread totals from the patched QEMU.

    qemu-linux-smp gives the guest as many vCPUs as the host has cores;
    qemu-linux-1core runs the same guest with the whole QEMU process pinned
    to one core, as in the study.
    """
    append = guest.kernel_append(arch, {"bench": "blk", "dev": "/dev/vda", "reads": reads, "bs": block_size})
    with tempfile.TemporaryDirectory(prefix="unikio-stats-") as tmp:
        stats = Path(tmp) / "pread.stats"
        with loopdev.terminate_as_exit(), loopdev.tmpfs_loop(disk_bytes(reads, block_size)) as dev:
            cmd = guest.qemu_command(arch=arch, accel=accel, kernel=kernel, initrd=initrd, append=append,
                                     qemu=str(qemu), memory_mb=memory_mb, smp=os.cpu_count() or 1, drive=dev,
                                     pin_cpu=0 if platform == "qemu-linux-1core" else None)
            log.write("$ " + " ".join(cmd) + "\n")
            log.flush()
            res = guest.run_guest(cmd, console_log, timeout_s, env={**os.environ, "PREAD_STATS_FILE": str(stats)})
        log.write(f"boot to benchmark: {res.boot_s:.2f} s, whole run: {res.total_s:.2f} s\n")
        if not stats.exists():
            raise PipelineError(f"{qemu.name} wrote no pread statistics; is it our patched build? ({console_log})")
        pread = results.parse_pread_stats(stats.read_text(encoding="utf-8"))
    result = results.parse_blk_result("\n".join(res.lines))
    return results.blk_row(arch=arch, platform=platform, accel=accel, testbed="native", rep=rep,
                           host=hostinfo.cpu_model(), result=result, pread=pread)
