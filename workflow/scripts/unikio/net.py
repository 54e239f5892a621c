"""The network experiment: our ICMP benchmark against a guest on a tap, in a private namespace.

One guest boot serves every data size and repetition of an (arch, platform):
the guest keeps no state between echo requests, and a Linux boot costs
seconds under emulation.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from . import guest, hostinfo, netns, results, solo5
from .errors import PipelineError

HOST_CIDR = "10.0.0.1/24"
GUEST_IP = "10.0.0.2"


def row(*, arch: str, platform: str, provider: str, accel: str, rep: int, result: dict[str, Any],
        testbed: str = "native") -> dict[str, Any]:
    """One tidy row of net_runs.csv from an icmp_bench result."""
    return {
        "arch": arch, "platform": platform, "provider": provider, "accel": accel, "testbed": testbed,
        "data_bytes": result["size"], "packets": result["packets"], "rep": rep,
        "avg_rtt_ns": result["avg_ns"], "min_rtt_ns": result["min_ns"], "max_rtt_ns": result["max_ns"],
        "pps": result["pps"], "lost": result["lost"], "host": hostinfo.cpu_model(),
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def ping_all(ns: netns.NetNs, icmp_bench: Path, sizes: list[int], reps: int, packets: int, max_loss_pct: float,
             log: IO[str], make_row: Callable[[int, dict[str, Any]], dict[str, Any]]) -> list[dict[str, Any]]:
    """icmp_bench inside the namespace for every size and repetition."""
    rows = []
    for size in sizes:
        for rep in range(1, reps + 1):
            argv = [*ns.exec_prefix(), str(icmp_bench), "--ifname", ns.tap, "--src-ip", HOST_CIDR.split("/")[0],
                    "--dst-ip", GUEST_IP, "--size", str(size), "--count", str(packets),
                    "--max-loss-pct", str(max_loss_pct)]
            log.write("$ " + " ".join(argv) + "\n")
            log.flush()
            # Each packet waits at most 1 s, ARP at most 5 s: bounded.
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=packets * 1.1 + 30, check=False)
            log.write(proc.stdout + proc.stderr)
            if proc.returncode not in (0, 4):
                raise PipelineError(f"icmp_bench failed with status {proc.returncode}: {proc.stderr.strip()}")
            result = results.parse_net_result(proc.stdout)
            if proc.returncode == 4:
                raise PipelineError(f"icmp_bench lost {result['lost']} of {packets} packets at size {size}, "
                                    f"more than net.max_loss_pct={max_loss_pct}")
            rows.append(make_row(rep, result))
    return rows


def solo5_rows(tender: Path, ping_serve: Path, icmp_bench: Path, arch: str, provider: str, mem_mb: int,
               sizes: list[int], reps: int, packets: int, max_loss_pct: float, console_log: Path,
               log: IO[str]) -> list[dict[str, Any]]:
    """ping_serve on the tender, answering on the namespace's tap."""
    with netns.tap_namespace("unikio-net", HOST_CIDR) as ns, open(console_log, "w", encoding="utf-8") as console:
        argv, env = solo5.tender_command(provider, tender, ping_serve, mem_mb, net=ns.tap, args=[f"ip={GUEST_IP}"])
        argv = [*ns.exec_prefix(), *argv]
        log.write("$ " + " ".join(argv) + "\n")
        proc = subprocess.Popen(argv, stdout=console, stderr=subprocess.STDOUT, env={**os.environ, **env})
        try:
            rows = ping_all(ns, icmp_bench, sizes, reps, packets, max_loss_pct, log,
                            lambda rep, res: row(arch=arch, platform="solo5-hvt", provider=provider, accel="kvm",
                                                 rep=rep, result=res))
            if proc.poll() is not None:
                raise PipelineError(f"the tender exited early with status {proc.returncode} ({console_log})")
        finally:
            proc.kill()
            proc.wait()
    return rows


def linux_rows(qemu: Path, kernel: Path, initrd: Path, icmp_bench: Path, arch: str, accel: str, sizes: list[int],
               reps: int, packets: int, max_loss_pct: float, memory_mb: int, timeout_s: float, console_log: Path,
               log: IO[str]) -> list[dict[str, Any]]:
    """The Linux guest's kernel answering on virtio-net (vhost when the host has it)."""
    vhost = os.path.exists("/dev/vhost-net")
    log.write(f"vhost-net: {'on' if vhost else 'off (no /dev/vhost-net)'}\n")
    rows: list[dict[str, Any]] = []
    with netns.tap_namespace("unikio-net", HOST_CIDR) as ns:
        append = guest.kernel_append(arch, {"bench": "net", "ip": f"{GUEST_IP}/24", "net_timeout": int(timeout_s)})
        cmd = [*ns.exec_prefix(), *guest.qemu_command(arch=arch, accel=accel, kernel=kernel, initrd=initrd,
                                                      append=append, qemu=str(qemu), memory_mb=memory_mb,
                                                      tap=ns.tap, vhost=vhost)]
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()

        def benchmark(send: Callable[[str], None]) -> None:
            try:
                rows.extend(ping_all(ns, icmp_bench, sizes, reps, packets, max_loss_pct, log,
                                     lambda rep, res: row(arch=arch, platform="qemu-linux", provider="",
                                                          accel=accel, rep=rep, result=res)))
            finally:
                send("quit")

        res = guest.run_guest(cmd, console_log, timeout_s, on_begin=benchmark)
        log.write(f"boot to benchmark: {res.boot_s:.2f} s, whole run: {res.total_s:.2f} s\n")
    if len(rows) != len(sizes) * reps:
        raise PipelineError(f"the guest run ended before every size and repetition was measured ({console_log})")
    return rows
