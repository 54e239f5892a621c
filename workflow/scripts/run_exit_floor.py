"""Rule kvm_exit_floor_run: ns per minimal KVM exit round trip on this machine."""

import json
from pathlib import Path

from unikio import blk, conditions, job

sm = snakemake  # noqa: F821


def body(log):
    # On the tender's CPU: the floor is set against the tender's per-read overhead.
    floor = blk.exit_floor(Path(sm.input.floor), sm.params.exits, sm.params.timeout_s, log,
                           cpu=conditions.measure_cpu(sm.params.measure_cpu))
    Path(sm.output[0]).write_text(json.dumps(floor) + "\n", encoding="utf-8")


job.run(sm, body)
