"""Rule blk_qemu_run: one repetition of a Linux-guest row of the block experiment."""

import json
from pathlib import Path

from unikio import blk, conditions, guest, initramfs, job, results

sm = snakemake  # noqa: F821


def body(log):
    arch = sm.wildcards.arch
    accel = json.loads(Path(sm.input.probe).read_text(encoding="utf-8"))["accel"]
    row = blk.qemu_linux_row(
        Path(sm.input.qemu) / guest.QEMU_BINARY[arch], initramfs.kernel_image(Path(sm.input.kernel)),
        Path(sm.input.initramfs), arch, sm.wildcards.platform, accel, int(sm.wildcards.rep),
        sm.params.counts["reads"],  # the emulated count under TCG: see linux_guest_counts
        sm.params.block_size, sm.params.memory_mb, sm.params.timeout_s,
        Path(sm.output.row).with_name("console.log"), log, cpu=conditions.measure_cpu(sm.params.measure_cpu))
    results.write_row(Path(sm.output.row), row)
    log.write(f"row: {row}\n")


job.run(sm, body)
