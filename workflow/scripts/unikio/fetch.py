"""Downloads verified against a pinned sha256, written atomically."""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from pathlib import Path

from .errors import PipelineError


def download_verified(url: str, sha256: str, dest: Path, timeout_s: float = 60) -> None:
    """Fetch url to dest only if its sha256 matches; never leave a partial file."""
    if not url or not sha256:
        raise PipelineError("qemu.source is tarball but qemu.tarball.url or qemu.tarball.sha256 is empty; set both")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".part-")
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout_s) as response:
                    for chunk in iter(lambda: response.read(1 << 20), b""):
                        h.update(chunk)
                        out.write(chunk)
            except OSError as e:
                raise PipelineError(f"cannot download {url}: {e}; check qemu.tarball.url") from e
        if h.hexdigest() != sha256.lower():
            raise PipelineError(
                f"sha256 of {url} is {h.hexdigest()}, config says {sha256}; "
                "fix qemu.tarball.sha256 or the URL"
            )
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
