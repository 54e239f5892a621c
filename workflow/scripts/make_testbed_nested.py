"""Rule testbed_nested_initramfs: the testbed image plus the arm64 QEMU and the Linux guest it runs."""

from pathlib import Path

from unikio import initramfs, job, testbed

sm = snakemake  # noqa: F821


def body(log):
    archive = testbed.nested_archive(Path(sm.input.qemu), initramfs.kernel_image(Path(sm.input.kernel)),
                                     Path(sm.input.guest_initramfs))
    testbed.append_archive(Path(sm.input.base), archive, Path(sm.output[0]))
    log.write(f"{Path(sm.output[0]).stat().st_size} bytes\n")


job.run(sm, body)
