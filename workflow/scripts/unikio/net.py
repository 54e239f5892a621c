"""The network experiment: our ICMP benchmark against a guest on a tap, in a private namespace.

One guest boot serves every data size and repetition of an (arch, platform):
the guest keeps no state between echo requests, and a Linux boot costs
seconds under emulation.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from . import conditions, guest, hostinfo, matrix, netns, procs, progress, results, solo5
from .errors import PipelineError

HOST_CIDR = "10.0.0.1/24"
GUEST_IP = "10.0.0.2"


def row(*, arch: str, platform: str, provider: str, accel: str, rep: int, result: dict[str, Any],
        testbed: str = "native", kvm_impl: str | None = None) -> dict[str, Any]:
    """One tidy row of net_runs.csv from an icmp_bench result (kvm_impl: see results.row_context)."""
    return {
        "arch": arch, "platform": platform, "provider": provider, "accel": accel, "testbed": testbed,
        "data_bytes": result["size"], "packets": result["packets"], "rep": rep,
        "avg_rtt_ns": result["avg_ns"], "min_rtt_ns": result["min_ns"], "max_rtt_ns": result["max_ns"],
        "pps": result["pps"], "lost": result["lost"], "host": hostinfo.cpu_model(),
        **results.row_context(accel, kvm_impl),
        "p50_rtt_ns": result["p50_ns"], "p90_rtt_ns": result["p90_ns"], "p99_rtt_ns": result["p99_ns"],
    }


ICMP_NO_ARP, ICMP_TOO_MANY_LOST = 3, 4
# icmp_bench's progress lines: often enough for a report every progress.EVERY_S.
BENCH_PROGRESS_S = 10


def job_progress(arch: str, platform: str, sizes: list[int], reps: int, packets: int,
                 log: IO[str]) -> progress.Progress:
    """The progress of a network job: every size and repetition, packets each."""
    return progress.Progress(f"net {arch}/{platform}", runs=reps * len(sizes), per_run=packets, unit="packets",
                             log=log)


def icmp_timeout_s(packets: int) -> float:
    """A bound on one icmp_bench run: each packet waits at most 1 s, ARP at most 5 s."""
    return packets * 1.1 + 30


def ping_all(ns: netns.NetNs, icmp_bench: Path, sizes: list[int], reps: int, packets: int, max_loss_pct: float,
             log: IO[str], make_row: Callable[[int, dict[str, Any]], dict[str, Any]],
             guest_gone: Callable[[], str | None] = lambda: None, cpu: int | None = None,
             report: progress.Progress | None = None) -> list[dict[str, Any]]:
    """icmp_bench inside the namespace for every size and repetition, pinned to cpu (measure.cpu).

    Repetition 1 of every size, then repetition 2 of every size, and so on, so
    a slow drift of the machine during the job does not land on one size.
    ``guest_gone`` says why the answering side has stopped (or None while it
    runs): icmp_bench is stopped as soon as it does, and the guest's end is
    reported rather than lost packets. Each row gets the conditions around
    its own icmp_bench run and the CPU it ran on. ``report`` gets icmp_bench's
    progress lines.
    """
    rows = []

    def watch() -> str | None:
        if report is not None:
            report.tick()  # between icmp_bench's own lines too
        return guest_gone()

    for rep in range(1, reps + 1):
        for size in sizes:
            argv = [*ns.exec_prefix(), *conditions.pinned(
                [str(icmp_bench), "--ifname", ns.tap, "--src-ip", HOST_CIDR.split("/")[0], "--dst-ip", GUEST_IP,
                 "--size", str(size), "--count", str(packets), "--max-loss-pct", str(max_loss_pct),
                 "--progress-s", str(BENCH_PROGRESS_S)], cpu)]
            log.write(f"$ {procs.command_line(argv)}\n")
            log.flush()
            if report is not None:
                report.begin_run(f"size {size} B, repetition {rep}/{reps}")
            try:
                with conditions.around() as cond:
                    proc = procs.run(argv, timeout_s=icmp_timeout_s(packets), watch=watch,
                                     on_stderr_line=report.bench_line if report is not None else None)
            except subprocess.TimeoutExpired:
                raise PipelineError(f"icmp_bench ran longer than {icmp_timeout_s(packets):g} s at size {size}, "
                                    f"repetition {rep}" + _because(guest_gone())) from None
            except procs.Stopped as stopped:
                raise PipelineError(f"icmp_bench was stopped at size {size}, repetition {rep}, because "
                                    f"{stopped}") from None
            log.write(proc.stdout + proc.stderr)
            if proc.returncode not in (0, ICMP_TOO_MANY_LOST):
                what = ("no ARP reply from the guest" if proc.returncode == ICMP_NO_ARP
                        else procs.exit_reason(proc.returncode, proc.stderr))
                raise PipelineError(f"icmp_bench failed at size {size}: {what}" + _because(guest_gone()))
            result = results.parse_net_result(proc.stdout)
            if proc.returncode == ICMP_TOO_MANY_LOST:
                raise PipelineError(f"icmp_bench lost {result['lost']} of {packets} packets at size {size}, "
                                    f"more than net.max_loss_pct={max_loss_pct}" + _because(guest_gone()))
            log.write(f"conditions: {cond.values}\n")
            rows.append({**make_row(rep, result), **cond.values, "pinned_cpu": cpu})
            if report is not None:
                report.end_run()
    return rows


def _because(gone: str | None) -> str:
    return f", because {gone}" if gone else ""


def solo5_rows(tender: Path, responder: Path, icmp_bench: Path, arch: str, platform: str, provider: str, mem_mb: int,
               sizes: list[int], reps: int, packets: int, max_loss_pct: float, console_log: Path,
               log: IO[str], cpu: int | None = None) -> list[dict[str, Any]]:
    """The platform's responder unikernel (ping_serve, or lwip_serve: lwIP's own stack) on its tender, answering
    on the namespace's tap; icmp_bench on cpu.

    The tender runs free here, as QEMU does for the Linux guest: pinned beside
    icmp_bench, every round trip would need a context switch on that one CPU.
    """
    with netns.tap_namespace("unikio-net", HOST_CIDR) as ns, open(console_log, "w", encoding="utf-8") as console:
        kind = matrix.TENDER[platform]
        argv, env = solo5.tender_command(provider, tender, responder, mem_mb, kind=kind, net=ns.tap,
                                         args=[f"ip={GUEST_IP}"])
        argv = [*ns.exec_prefix(), *argv]
        log.write(f"$ {procs.command_line(argv, env)}\n")
        proc = procs.start(argv, stdout=console, stderr=subprocess.STDOUT, env=env)

        def gone() -> str | None:
            if proc.poll() is None:
                return None
            console.flush()
            # Its own last words say why, unless a signal ended it.
            last = (console_log.read_text(errors="replace").strip().splitlines() or ["no message"])[-1]
            why = f": {last}" if proc.returncode > 0 else ""
            why = f": {killed}" if (killed := solo5.failure_reason(provider, kind, proc.returncode, proc.pid)) else why
            return f"the tender exited ({procs.exit_reason(proc.returncode)}){why} (console log: {console_log})"

        report = job_progress(arch, matrix.row_label(platform, provider), sizes, reps, packets, log)
        try:
            rows = ping_all(ns, icmp_bench, sizes, reps, packets, max_loss_pct, log,
                            lambda rep, res: row(arch=arch, platform=platform, provider=provider,
                                                 accel=solo5.accel(kind), rep=rep, result=res), guest_gone=gone,
                            cpu=cpu, report=report)
            ended = gone()
            if ended:
                raise PipelineError(f"the measurement ended, but {ended}")
        finally:
            with procs.uninterrupted():
                procs.stop(proc)
    return rows


def linux_rows(qemu: Path, kernel: Path, initrd: Path, icmp_bench: Path, arch: str, accel: str, sizes: list[int],
               reps: int, packets: int, max_loss_pct: float, memory_mb: int, timeout_s: float, console_log: Path,
               log: IO[str], cpu: int | None = None) -> list[dict[str, Any]]:
    """The Linux guest's kernel answering on virtio-net (vhost when the host has it); icmp_bench on cpu."""
    vhost = os.path.exists("/dev/vhost-net")
    log.write(f"vhost-net: {'on' if vhost else 'off (no /dev/vhost-net)'}\n")
    rows: list[dict[str, Any]] = []
    report = job_progress(arch, "qemu-linux", sizes, reps, packets, log)
    with netns.tap_namespace("unikio-net", HOST_CIDR) as ns:
        job = {"bench": "net", "ip": f"{GUEST_IP}/24", "net_timeout": int(timeout_s)}
        cmd = [*ns.exec_prefix(), *guest.linux_guest_command(
            arch=arch, platform="qemu-linux", accel=accel, qemu=qemu, kernel=kernel, initrd=initrd, job=job,
            memory_mb=memory_mb, cores=os.cpu_count() or 1, tap=ns.tap, vhost=vhost)]
        log.write(f"$ {procs.command_line(cmd)}\n")
        log.flush()

        def benchmark(send: Callable[[str], None], guest_gone: Callable[[], str | None]) -> None:
            try:
                rows.extend(ping_all(ns, icmp_bench, sizes, reps, packets, max_loss_pct, log,
                                     lambda rep, res: row(arch=arch, platform="qemu-linux", provider="",
                                                          accel=accel, rep=rep, result=res), guest_gone, cpu,
                                     report))
            finally:
                send("quit")

        res = guest.run_guest(cmd, console_log, timeout_s, on_begin=benchmark, report=report)
        log.write(f"boot to benchmark: {res.boot_s:.2f} s, whole run: {res.total_s:.2f} s\n")
    if len(rows) != len(sizes) * reps:
        raise PipelineError(f"the guest run ended before every size and repetition was measured ({console_log})")
    return rows
