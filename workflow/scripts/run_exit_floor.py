"""Rule kvm_exit_floor_run: ns per minimal KVM exit round trip on this machine."""

import json
from pathlib import Path

from unikio import blk, job

sm = snakemake  # noqa: F821


def body(log):
    floor = blk.exit_floor(Path(sm.input.floor), sm.params.exits, sm.params.timeout_s, log)
    Path(sm.output[0]).write_text(json.dumps(floor) + "\n", encoding="utf-8")


job.run(sm, body)
