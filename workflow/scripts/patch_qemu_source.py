"""Rule qemu_source_patched: unpack the fetched QEMU source and apply patches/qemu/."""

from pathlib import Path

from unikio import job, patching

sm = snakemake  # noqa: F821


def body(log):
    dest = Path(sm.output[0])
    patching.unpack(Path(sm.input.files), dest, log)
    patching.apply(dest, [Path(p) for p in sm.input.patches], log)


job.run(sm, body)
