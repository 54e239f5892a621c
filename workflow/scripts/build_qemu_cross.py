"""Rule qemu_cross_build: our patched QEMU for arm64 hosts (static), cached between workflows."""

from pathlib import Path

from unikio import job, qemucross

sm = snakemake  # noqa: F821


def body(log):
    times = qemucross.build(Path(sm.input.src), Path(sm.input.sysroot).resolve(),
                              Path(sm.output[0]).resolve(), sm.threads, log)
    log.write(f"configure {times['configure']:.1f} s, make {times['make']:.1f} s\n")


job.run(sm, body)
