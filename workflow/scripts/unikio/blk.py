"""Rows of the block experiment that run on this host: `host` and the unikernel tenders (`solo5-*`).

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

from . import conditions, guest, hostinfo, loopdev, matrix, procs, progress, results, solo5
from .errors import PipelineError


def run_on_loop(argv_for: Callable[[str], tuple[list[str], dict[str, str]]], reads: int, block_size: int,
                timeout_s: float, log: IO[str], cpu: int | None = None,
                explain: Callable[[int, int], str | None] | None = None) -> tuple[str, dict[str, Any]]:
    """Run argv_for(/dev/loopN) = (argv, extra env) on a fresh loop device, on CPU cpu (any CPU for None).

    Returns its stdout and the conditions around it (load and runnable tasks
    just before and after the program), or raises a one-line error: explain's
    (returncode, pid), where it has one, else the exit status and stderr's last line.
    """
    with loopdev.tmpfs_loop(loopdev.disk_bytes(reads, block_size)) as dev:
        argv, env = argv_for(dev)
        name = Path(argv[0]).name
        argv = conditions.pinned(argv, cpu)
        log.write(f"$ {procs.command_line(argv, env)}\n")
        log.flush()
        try:
            with conditions.around() as cond:
                proc = procs.run(argv, timeout_s=timeout_s, env=env)
        except subprocess.TimeoutExpired:
            raise PipelineError(
                f"{name} on {dev} ran longer than blk.timeout_s={timeout_s:g} s; raise it or lower blk.reads"
            ) from None
        log.write(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        why = explain(proc.returncode, proc.pid) if explain is not None else None
        raise PipelineError(f"{name} failed: {why or procs.exit_reason(proc.returncode, proc.stderr)}")
    log.write(f"conditions: {cond.values}\n")
    return proc.stdout, cond.values


def read_stats(stats: Path, monitor: str, log: IO[str]) -> dict[str, int]:
    """The monitor's pread statistics (copied into the log), or a one-line error when it wrote none."""
    try:
        text = stats.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PipelineError(f"{monitor} wrote no pread statistics to {stats}; is it our patched build?") from None
    log.write(f"{monitor} pread statistics: {text}")
    return results.parse_pread_stats(text)


def host_row(bench: Path, arch: str, rep: int, reads: int, block_size: int, timeout_s: float,
             log: IO[str], cpu: int | None = None) -> dict[str, Any]:
    """blk_bench on the loop device, pinned to cpu (measure.cpu)."""
    out, cond = run_on_loop(lambda dev: ([str(bench), dev, str(reads), str(block_size)], {}),
                            reads, block_size, timeout_s, log, cpu)
    result = results.parse_blk_result(out)
    # The whole timed loop is pread calls: the study's host row shows total = pread.
    pread = {"pread_calls": result["reads"], "pread_ns": result["total_ns"]}
    row = results.blk_row(arch=arch, platform="host", accel="none", testbed="native", rep=rep,
                          host=hostinfo.cpu_model(), result=result, pread=pread, conditions=cond)
    return {**row, "pinned_cpu": cpu}


def solo5_row(tender: Path, guest: Path, arch: str, platform: str, rep: int, reads: int, block_size: int,
              timeout_s: float, mem_mb: int, provider: str, log: IO[str], cpu: int | None = None) -> dict[str, Any]:
    """blk_bench as a unikernel on platform's tender, pinned to cpu; it opens the device with O_DIRECT, as the
    study's patch did."""
    kind = matrix.TENDER[platform]
    with tempfile.TemporaryDirectory(prefix="unikio-stats-") as tmp:
        stats = Path(tmp) / "pread.stats"
        out, cond = run_on_loop(
            lambda dev: solo5.tender_command(provider, tender, guest, mem_mb, kind=kind, block=dev,
                                             args=[f"reads={reads}"], stats=stats, block_size=block_size),
            reads, block_size, timeout_s, log, cpu,
            explain=lambda returncode, pid: solo5.failure_reason(provider, kind, returncode, pid))
        pread = read_stats(stats, f"the {provider} {kind} tender", log)
    result = results.parse_blk_result(out)
    if result["block_size"] != block_size:
        raise PipelineError(f"the unikernel read {result['block_size']}-byte blocks, config asks "
                            f"blk.block_size={block_size}")
    row = results.blk_row(arch=arch, platform=platform, provider=provider, accel=solo5.accel(kind), testbed="native",
                          rep=rep, host=hostinfo.cpu_model(), result=result, pread=pread, conditions=cond)
    return {**row, "pinned_cpu": cpu}


def exit_floor(floor_bin: Path, exits: int, timeout_s: float, log: IO[str], cpu: int | None = None
               ) -> dict[str, Any]:
    """The cost of the smallest KVM exit round trip on this machine, on the tender's CPU (measure.cpu)."""
    argv = conditions.pinned([str(floor_bin), str(exits)], cpu)
    log.write(f"$ {procs.command_line(argv)}\n")
    try:
        proc = procs.run(argv, timeout_s=timeout_s)
    except subprocess.TimeoutExpired:
        raise PipelineError(f"kvm_exit_floor ran longer than {timeout_s:g} s; lower solo5.floor_exits") from None
    log.write(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise PipelineError(f"kvm_exit_floor failed: {procs.exit_reason(proc.returncode, proc.stderr)}")
    return results.parse_exit_floor(proc.stdout)


def qemu_linux_row(qemu: Path, kernel: Path, initrd: Path, arch: str, platform: str, accel: str, rep: int,
                   reads: int, block_size: int, memory_mb: int, timeout_s: float, console_log: Path,
                   log: IO[str], cpu: int = 0) -> dict[str, Any]:
    """blk_bench inside the Linux guest on /dev/vda; pread totals from the patched QEMU.

    qemu-linux-1core runs the whole QEMU on cpu (measure.cpu); qemu-linux-smp runs free.
    """
    job = {"bench": "blk", "dev": "/dev/vda", "reads": reads, "bs": block_size}
    with tempfile.TemporaryDirectory(prefix="unikio-stats-") as tmp:
        stats = Path(tmp) / "pread.stats"
        with loopdev.tmpfs_loop(loopdev.disk_bytes(reads, block_size)) as dev:
            cmd = guest.linux_guest_command(arch=arch, platform=platform, accel=accel, qemu=qemu, kernel=kernel,
                                            initrd=initrd, job=job, memory_mb=memory_mb, cores=os.cpu_count() or 1,
                                            drive=dev, one_core_cpu=cpu)
            log.write(f"$ {procs.command_line(cmd, {'PREAD_STATS_FILE': str(stats)})}\n")
            log.flush()
            # The guest's boot is inside: block rows boot once per repetition, and QEMU reports at exit.
            with conditions.around() as cond:
                res = guest.run_guest(cmd, console_log, timeout_s, env={"PREAD_STATS_FILE": str(stats)},
                                      report=progress.Progress(f"blk {arch}/{platform} repetition {rep}", runs=1,
                                                               per_run=reads, unit="reads", log=log))
        log.write(f"boot to benchmark: {res.boot_s:.2f} s, whole run: {res.total_s:.2f} s\n")
        log.write(f"conditions: {cond.values}\n")
        pread = read_stats(stats, qemu.name, log)
    result = results.parse_blk_result("\n".join(res.lines))
    row = results.blk_row(arch=arch, platform=platform, accel=accel, testbed="native", rep=rep,
                          host=hostinfo.cpu_model(), result=result, pread=pread, conditions=cond.values)
    return {**row, "pinned_cpu": cpu if platform == "qemu-linux-1core" else None}
