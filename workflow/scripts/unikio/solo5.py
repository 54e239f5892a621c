"""How to start a unikernel on the tender of either Solo5 provider.

`builtin` is our tender (native/tender); `upstream` is Solo5 v0.9's solo5-hvt
with our patches (see solo5upstream). Both report pread totals in the same
`pread_calls=<N> pread_ns=<T>` line and open block devices with O_DIRECT.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from . import solo5upstream

PROVIDERS = ("builtin", "upstream")


def tender_command(provider: str, tender: Path, guest: Path, mem_mb: int, *, block: str | None = None,
                   block_size: int | None = None, net: str | None = None, args: Sequence[str] = (),
                   stats: Path | None = None) -> tuple[list[str], dict[str, str]]:
    """(argv, extra environment) that run guest; tender is our binary or the built upstream tree.

    block_size sets the sector size the tender gives the block device (the
    size of each read of our blk_bench); None keeps the tender's default.
    """
    if provider == "upstream":
        argv = solo5upstream.run_command(tender, guest, mem_mb, block=block, net=net, args=args,
                                         block_size=block_size)
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
