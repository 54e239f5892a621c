"""results/provenance.json: where, with what, and under which config numbers came from."""

from __future__ import annotations

import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from . import hostinfo, version
from .matrix import Combination


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
        },
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
