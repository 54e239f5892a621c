"""Rule testbed_initramfs: the emulated aarch64 host's base image (our init, busybox, benchmarks, tender)."""

from pathlib import Path

from unikio import job, testbed

sm = snakemake  # noqa: F821


def body(log):
    # solo5: the builtin build's files (tender ... ping_serve.spt), all in one dir; lwip: both lwIP guests
    # when a lwIP row is planned.
    lwip = sm.input.get("lwip")
    binaries = testbed.Binaries.from_build(Path(sm.input.init), Path(sm.input.busybox) / "bin" / "busybox",
                                           Path(sm.input.native[0]).parent, Path(sm.input.solo5[0]).parent,
                                           Path(lwip[0]).parent if lwip else None)
    plan = testbed.build_base_initramfs(Path(sm.output[0]), Path(sm.input.kernel), binaries)
    log.write("modules: " + " ".join(plan.load_order) + "\n")


job.run(sm, body)
