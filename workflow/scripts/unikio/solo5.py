"""How to start a unikernel on either tender (hvt, spt) of either Solo5 provider.

`builtin` is ours (native/tender: hvt; native/spt: spt); `upstream` is Solo5
v0.9's solo5-hvt and solo5-spt with our patches (see solo5upstream). All report
pread totals in the same `pread_calls=<N> pread_ns=<T>` line and open block
devices with O_DIRECT.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from . import matrix, solo5upstream

PROVIDERS = ("builtin", "upstream")
TENDERS = ("hvt", "spt")
# The builtin provider's files (native/Makefile): each tender's binary, its guests' suffix.
BUILTIN_TENDER = {"hvt": "tender", "spt": "spt_tender"}
BUILTIN_GUEST_SUFFIX = {"hvt": "elf", "spt": "spt"}


def builtin_files(experiment: str, platform: str) -> tuple[str, str]:
    """(tender binary, guest file) of a unikernel row on our tenders; ValueError for another platform."""
    if platform not in matrix.UNIKERNEL_PLATFORMS[experiment]:
        raise ValueError(f"not a unikernel {experiment} platform: {platform!r}")
    kind = matrix.TENDER[platform]
    return BUILTIN_TENDER[kind], f"{matrix.app(experiment, platform)}.{BUILTIN_GUEST_SUFFIX[kind]}"


def tender_command(provider: str, tender: Path, guest: Path, mem_mb: int, *, kind: str = "hvt",
                   block: str | None = None, block_size: int | None = None, net: str | None = None,
                   args: Sequence[str] = (), stats: Path | None = None) -> tuple[list[str], dict[str, str]]:
    """(argv, extra environment) that run guest; tender is our binary (hvt or spt, same command line) or the
    built upstream tree, kind which of its tenders (hvt or spt).

    block_size sets the sector size the tender gives the block device (the
    size of each read of our blk_bench); None keeps the tender's default.
    """
    if kind not in TENDERS:
        raise ValueError(f"unknown Solo5 tender {kind!r}")
    if provider == "upstream":
        argv = solo5upstream.run_command(tender, guest, mem_mb, block=block, net=net, args=args,
                                         block_size=block_size, tender=kind)
        return argv, solo5upstream.run_env(stats, direct=block is not None)
    if provider != "builtin":
        raise ValueError(f"unknown Solo5 provider {provider!r}")
    argv = [str(tender), f"--mem={mem_mb}"]
    if block is not None:
        argv.append(f"--block:{solo5upstream.BLOCK_DEVICE}={block}")
        if block_size is not None:
            argv.append(f"--block-sector-size:{solo5upstream.BLOCK_DEVICE}={block_size}")
        argv.append("--block-direct")
    if net is not None:
        argv.append(f"--net:{solo5upstream.NET_DEVICE}={net}")
    if stats is not None:
        argv.append(f"--stats={stats}")
    return [*argv, str(guest), *args], {}


def accel(kind: str) -> str:
    """What a row of this tender records as its accelerator: hvt guests run under KVM, spt ones as processes."""
    return "kvm" if kind == "hvt" else "none"



def failure_reason(provider: str, kind: str, returncode: int, pid: int | None) -> str | None:
    """Why a tender run failed, where its stderr cannot say: upstream spt's guest killed by its seccomp filter
    (named from the kernel's audit record). Our spt_tender names the system call on stderr itself."""
    if provider == "upstream" and kind == "spt":
        return solo5upstream.seccomp_kill_reason(returncode, pid)
    return None
