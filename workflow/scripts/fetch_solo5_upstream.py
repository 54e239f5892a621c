"""Rule solo5_upstream_source: real Solo5 from git or a local copy, commit or sha256 verified."""

import json
from pathlib import Path

from unikio import job, solo5upstream

sm = snakemake  # noqa: F821


def body(log):
    lock = solo5upstream.fetch(dict(sm.params.source), Path(sm.output.tree), log)
    Path(sm.output.lock).write_text(json.dumps(lock, indent=2, sort_keys=True) + "\n", encoding="utf-8")


job.run(sm, body)
