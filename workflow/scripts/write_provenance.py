"""Rule provenance: results/provenance.json."""

from pathlib import Path

from unikio import job, matrix, provenance, qemubuild

sm = snakemake  # noqa: F821


def body(log):
    qemu_bin = Path(sm.input.qemu)
    record = provenance.collect(
        sm.params.config, [Path(p) for p in sm.input.locks],
        [qemu_bin / b for b in qemubuild.binaries(sm.params.config["qemu"]["targets"])],
        [matrix.Combination(**c) for c in sm.params.plan],
        [Path(p) for p in sm.input.probes],
    )
    provenance.write(Path(sm.output[0]), record)
    log.write(f"wrote {sm.output[0]}\n")


job.run(sm, body)
