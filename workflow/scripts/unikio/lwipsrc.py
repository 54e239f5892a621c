"""lwIP's source for the lwip_serve unikernel: Debian's `lwip` source package, fetched, verified, unpacked, locked.

Fetch (`fetch`): download the source package named by `lwip.debian_version` through the pipeline's private apt
state (apt checks the .dsc against the signed archive index), check every file against the .dsc's
Checksums-Sha256 ourselves, unpack it with `dpkg-source -x` (Debian's patches applied), and check the anchors
native/lwip relies on: every file of native/lwip/sources.txt exists and src/include/lwip/init.h says lwIP 2.1.3.
The lock records the package version, lwIP's version and the sha256 of the package files and the compiled files.

Build inputs (`sources`, `include_dirs`): the same lists native/lwip/lwip.mk uses, for building lwip_serve with
another toolchain (upstream Solo5's: build_lwip_upstream.py, with our own C files, every .c in native/lwip).
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import IO

from . import procs
from .aptsrc import PrivateApt, sha256_file, write_lock
from .errors import PipelineError

REPO = Path(__file__).resolve().parents[3]
NATIVE_LWIP = REPO / "native" / "lwip"
SOURCES_LIST = NATIVE_LWIP / "sources.txt"

PACKAGE = "lwip"
KEY = "lwip.debian_version"
# The lwIP release native/lwip (lwipopts.h, arch port, netif) is written for.
LWIP_VERSION = "2.1.3"
INIT_H = "src/include/lwip/init.h"

_UNPACK_TIMEOUT_S = 300
_VERSION_RE = re.compile(r"^\s*#define\s+LWIP_VERSION_(MAJOR|MINOR|REVISION)\s+(\d+)\b", re.MULTILINE)


def source_list(sources_txt: Path = SOURCES_LIST) -> list[str]:
    """The lwIP files lwip_serve compiles, relative to the lwIP tree (native/lwip/sources.txt)."""
    return [line.strip() for line in sources_txt.read_text(encoding="utf-8").splitlines() if line.strip()]


def sources(tree: Path) -> list[Path]:
    """The lwIP C files lwip_serve compiles, inside `tree` (an unpacked lwIP source)."""
    return [Path(tree) / rel for rel in source_list()]


def include_dirs(tree: Path) -> list[Path]:
    """Include directories for those files and ours: lwIP's headers, then our port headers and libc shims."""
    return [Path(tree) / "src" / "include", NATIVE_LWIP]


def dsc_sha256(dsc: Path) -> dict[str, str]:
    """{file name: sha256} from a .dsc's Checksums-Sha256 field."""
    checksums: dict[str, str] = {}
    in_field = False
    for line in dsc.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("Checksums-Sha256:"):
            in_field = True
            continue
        if in_field:
            if not line.startswith(" "):
                break
            words = line.split()
            if len(words) == 3:
                checksums[words[2]] = words[0].lower()
    if not checksums:
        raise PipelineError(f"{dsc.name} has no Checksums-Sha256 field; fetch {KEY} again")
    return checksums


def verify_files(dsc: Path) -> list[Path]:
    """Check each file the .dsc lists against its sha256; returns the .dsc and those files."""
    files = [dsc]
    for name, expected in sorted(dsc_sha256(dsc).items()):
        path = dsc.parent / name
        if not path.is_file():
            raise PipelineError(f"{name}, listed in {dsc.name}, was not downloaded; fetch {KEY} again")
        actual = sha256_file(path)
        if actual != expected:
            raise PipelineError(
                f"{name} has sha256 {actual}, not the {expected} {dsc.name} lists, so it is refused; "
                f"delete it and fetch {KEY} again"
            )
        files.append(path)
    return files


def tree_version(tree: Path) -> str:
    """lwIP's version as src/include/lwip/init.h states it (MAJOR.MINOR.REVISION)."""
    init_h = Path(tree) / INIT_H
    parts = dict(_VERSION_RE.findall(init_h.read_text(encoding="utf-8", errors="replace")))
    if set(parts) != {"MAJOR", "MINOR", "REVISION"}:
        raise PipelineError(f"{init_h} defines no LWIP_VERSION_MAJOR/MINOR/REVISION; check {KEY}")
    return f"{parts['MAJOR']}.{parts['MINOR']}.{parts['REVISION']}"


def check_tree(tree: Path) -> None:
    """The anchors native/lwip relies on: the compiled files exist and init.h says LWIP_VERSION."""
    tree = Path(tree)
    for rel in [INIT_H, *source_list()]:
        if not (tree / rel).is_file():
            raise PipelineError(
                f"the lwIP source has no {rel}, which native/lwip/sources.txt needs; "
                f"set {KEY} to a Debian lwip {LWIP_VERSION} source (e.g. 2.1.3+dfsg1-2)"
            )
    found = tree_version(tree)
    if found != LWIP_VERSION:
        raise PipelineError(
            f"{INIT_H} says lwIP {found}, but native/lwip is written for lwIP {LWIP_VERSION}; "
            f"set {KEY} to a Debian lwip {LWIP_VERSION} source (e.g. 2.1.3+dfsg1-2)"
        )


def unpack(dsc: Path, dest: Path, log: IO[str]) -> None:
    """dpkg-source -x: the upstream tarball plus Debian's patches, into dest (which must not exist)."""
    argv = ["dpkg-source", "--no-copy", "-x", str(dsc), str(dest)]
    log.write("$ " + " ".join(argv) + "\n")
    proc = procs.run(argv, timeout_s=_UNPACK_TIMEOUT_S)
    log.write(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise PipelineError(f"dpkg-source -x {dsc.name} failed: {last}")


def fetch(apt_index: Path, version: str, tree: Path, lock: Path, log: IO[str]) -> None:
    """Fetch Debian's lwip `version` into `tree` (replaced) and write `lock`; every problem is a PipelineError."""
    tree, lock = Path(tree), Path(lock)
    tree.parent.mkdir(parents=True, exist_ok=True)
    # Downloads and the unpacking happen beside the tree, which appears only once checked.
    with tempfile.TemporaryDirectory(prefix=".lwip-fetch-", dir=tree.parent) as tmp:
        files_dir, staged = Path(tmp) / "files", Path(tmp) / "tree"
        PrivateApt(apt_index).download_source(PACKAGE, version, files_dir, log, key=KEY)
        dscs = sorted(files_dir.glob("*.dsc"))
        if len(dscs) != 1:
            raise PipelineError(f"apt-get source {PACKAGE}={version} gave {len(dscs)} .dsc files, expected 1")
        files = verify_files(dscs[0])
        unpack(dscs[0], staged, log)
        check_tree(staged)
        if tree.exists():
            shutil.rmtree(tree)
        staged.rename(tree)
        record = {
            "source": "debian",
            "package": PACKAGE,
            "version": version,
            "lwip_version": tree_version(tree),
            "tree_files": {rel: sha256_file(tree / rel) for rel in [INIT_H, *source_list()]},
        }
        write_lock(lock, record, files)
    log.write(json.dumps({"tree": str(tree), "lock": str(lock)}) + "\n")
