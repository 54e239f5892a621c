"""results/artifact.tar.gz: everything a reader needs to check or rerun the study."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from . import version

# Project inputs (sources, patches, config) and what the run produced.
PROJECT_PATHS = ("README.md", "Makefile", "Snakefile", "snakemake", "config", "workflow",
                 "patches", "native", "envs", "tests")
RESULT_PATHS = ("results/raw", "results/data", "results/tables", "results/figures",
                "results/provenance.json", "results/report.html", "results/sources", "results/merged")
SKIP_PARTS = {"__pycache__", ".pytest_cache"}
# Fetched source archives are large and named with their sha256 in the locks.
SKIP_SUFFIXES = (".tar.xz", ".tar.gz", ".tar.bz2", ".deb")


def _keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    parts = set(Path(info.name).parts)
    if parts & SKIP_PARTS or info.name.endswith(SKIP_SUFFIXES):
        return None
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def write(root: Path, out: Path, prefix: str = "unikio-artifact") -> list[str]:
    """Write the archive; return the top-level paths it holds."""
    included = []
    tmp = out.with_name(out.name + ".part")
    # Unpacked outside git, the artifact still names the commit it came from (version.describe reads it).
    with tarfile.open(tmp, "w:gz") as tar:
        data = version.record(root).encode()
        info = _keep(tarfile.TarInfo(f"{prefix}/{version.VERSION_FILE}"))
        assert info is not None
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        included.append(version.VERSION_FILE)
        for rel in PROJECT_PATHS + RESULT_PATHS:
            path = root / rel
            if path.exists():
                tar.add(path, arcname=f"{prefix}/{rel}", filter=_keep)
                included.append(rel)
    tmp.replace(out)
    return included
