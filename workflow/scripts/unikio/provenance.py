"""results/provenance.json: where, with what, and under which config numbers came from."""

from __future__ import annotations

import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from . import conditions, hostinfo, version
from .matrix import Combination

# How measurement jobs are ordered (common.smk, MEASUREMENT ORDER; README, "Repetition order").
REPETITION_ORDER = ("blk: interleaved, repetition 1 of every platform, then repetition 2, and so on (one job per "
                    "repetition, ordered by Snakemake priority after every build and the KVM probe); net and "
                    "testbed rows: one job per platform (platforms not interleaved), every repetition and data "
                    "size in one guest boot, network runs repetition 1 of every size, then repetition 2, ...; "
                    "after the native block rows")
# Which processes measure.cpu pins (conditions.pinned); everything else runs free.
PINNED = ["blk_bench (host)", "tender (solo5-hvt block)", "kvm_exit_floor", "icmp_bench (network, both platforms)",
          "the whole QEMU of qemu-linux-1core"]


def method(config: dict[str, Any]) -> dict[str, Any]:
    """How this run measured: repetition order, the CPU the measurement processes ran on, the busy threshold."""
    return {
        "repetition_order": REPETITION_ORDER,
        "measure_cpu": config["measure"]["cpu"],
        "pinned_cpu": conditions.measure_cpu(config["measure"]["cpu"]),
        "pinned": PINNED,
        "busy_load_per_core": config["conditions"]["busy_load_per_core"],
    }


def collect(config: dict[str, Any], locks: list[Path], qemu_binaries: list[Path],
            combos: list[Combination], probes: list[Path]) -> dict[str, Any]:
    kvm_ok, kvm_reason = hostinfo.kvm_status()
    return {
        # Which pipeline ran: its commit, and if modified, the hash of the diff and the untracked files.
        "pipeline": version.describe(),
        "host": {
            "cpu_model": hostinfo.cpu_model(),
            "cores": os.cpu_count(),
            "arch": hostinfo.host_arch(),
            "kernel": platform.release(),
            "kernel_version": platform.version(),
            "kvm_usable": kvm_ok,
            "kvm_reason": kvm_reason,
            # kvm_pvm emulates guest kernel code: its kvm rows are not hardware-virtualization results.
            "kvm_impl": hostinfo.kvm_impl(),
            "vhost_net_present": os.path.exists("/dev/vhost-net"),
            # Governors, turbo, SMT, THP, kernel command line, isolated CPUs: read when this file is written.
            "conditions": conditions.host_conditions(),
        },
        "method": method(config),
        "tools": {
            "python": sys.version.split()[0],
            "snakemake": metadata.version("snakemake"),
            "gcc": hostinfo.tool_version(["gcc", "--version"]),
            "aarch64-linux-gnu-gcc": hostinfo.tool_version(["aarch64-linux-gnu-gcc", "--version"]),
            "meson": hostinfo.tool_version(["meson", "--version"]),
            "losetup": hostinfo.tool_version(["losetup", "--version"]),
            **{p.name: hostinfo.tool_version([str(p), "--version"]) for p in qemu_binaries},
        },
        "sources": {p.parent.name: json.loads(p.read_text(encoding="utf-8")) for p in locks},
        # Which accelerator each Linux guest arch got, and why (the KVM probe's verdict).
        "guest_accel": [json.loads(p.read_text(encoding="utf-8")) for p in probes],
        "plan": [
            {"combination": c.label, "runnable": c.runnable, "testbed": c.testbed, "reason": c.reason}
            for c in combos
        ],
        "config": config,
    }


def write(path: Path, record: dict[str, Any]) -> None:
    path.write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
