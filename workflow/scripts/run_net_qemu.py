"""Rule net_qemu_run: the Linux guest's kernel answers our ICMP benchmark."""

import json
from pathlib import Path

from unikio import conditions, guest, initramfs, job, net

sm = snakemake  # noqa: F821


def body(log):
    arch = sm.wildcards.arch
    accel = json.loads(Path(sm.input.probe).read_text(encoding="utf-8"))["accel"]
    p = sm.params
    # Under TCG the row is emulated, with the emulated counts (testbed.net): see linux_guest_counts.
    reps, packets = p.counts["repetitions"], p.counts["packets"]
    rows = net.linux_rows(Path(sm.input.qemu) / guest.QEMU_BINARY[arch], initramfs.kernel_image(Path(sm.input.kernel)),
                          Path(sm.input.initramfs), Path(sm.input.icmp_bench), arch, accel, list(p.sizes),
                          reps, packets, p.max_loss_pct, p.memory_mb,
                          sm.params.timeout_s, Path(sm.output.rows).with_name("console.log"), log,
                          cpu=conditions.measure_cpu(sm.params.measure_cpu))
    Path(sm.output.rows).write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")


job.run(sm, body)
