"""Common frame for Snakemake script jobs: log file, one-line errors."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import IO, Any

from .errors import PipelineError


def run(snakemake: Any, body: Callable[[IO[str]], None]) -> None:
    """Run body(log); a PipelineError becomes one stderr line naming the log."""
    log_path = snakemake.log[0]
    with open(log_path, "w", encoding="utf-8") as log:
        try:
            body(log)
        except (PipelineError, ValueError) as e:
            log.write(f"ERROR: {e}\n")
            print(f"ERROR in rule {snakemake.rule}: {e} (log: {log_path})", file=sys.stderr)
            sys.exit(1)
