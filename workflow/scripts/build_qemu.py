"""Rule qemu_build: the patched QEMU, cached between workflows."""

from pathlib import Path

from unikio import job, qemubuild

sm = snakemake  # noqa: F821


def body(log):
    qemubuild.build(Path(sm.input[0]), Path(sm.output[0]), list(sm.params.targets),
                    list(sm.params.configure_flags), sm.threads, log)


job.run(sm, body)
