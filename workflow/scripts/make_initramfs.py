"""Rule guest_initramfs: our init, blk_bench, busybox and the virtio modules."""

from pathlib import Path

from unikio import initramfs, job

sm = snakemake  # noqa: F821


def body(log):
    plan = initramfs.build_initramfs(
        Path(sm.output.initramfs), Path(sm.input.kernel), list(sm.params.modules), Path(sm.input.init),
        extra_files={"/bin/blk_bench": Path(sm.input.blk_bench)},
        busybox=Path(sm.input.busybox) / "bin" / "busybox",
    )
    order = "\n".join(plan.load_order) + "\n"
    Path(sm.output.modules).write_text(f"# kernel {plan.kernel_release}\n" + order, encoding="utf-8")
    log.write(order)


job.run(sm, body)
