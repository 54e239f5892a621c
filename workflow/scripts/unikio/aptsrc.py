"""A private apt state for fetching Debian source and binary packages.

The machine's apt configuration is never changed: the pipeline derives its own
sources from the system's Debian entries (source types added, arm64 next to
amd64) and keeps lists and downloads under its own directory.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from . import procs
from .errors import PipelineError

PACKAGE_ARCHS = ("amd64", "arm64")


@dataclass
class SourceEntry:
    uris: list[str]
    suites: list[str]
    components: list[str]
    signed_by: str = ""
    options: dict[str, str] = field(default_factory=dict)


def _parse_deb822(text: str) -> list[SourceEntry]:
    entries = []
    for para in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        current = None
        for line in para.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if line[0].isspace() and current:
                fields[current] += "\n" + line.strip()
                continue
            key, _, value = line.partition(":")
            current = key.strip().lower()
            fields[current] = value.strip()
        if not fields or fields.get("enabled", "yes").lower() == "no":
            continue
        if "deb" not in fields.get("types", "").split():
            continue
        entries.append(
            SourceEntry(
                uris=fields.get("uris", "").split(),
                suites=fields.get("suites", "").split(),
                components=fields.get("components", "").split(),
                signed_by=fields.get("signed-by", ""),
            )
        )
    return entries


def _parse_one_line(text: str) -> list[SourceEntry]:
    entries = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        signed_by = ""
        options = re.match(r"deb\s+\[([^\]]*)\]\s+(.*)", line)
        rest = line[4:].strip()
        if options:
            rest = options.group(2)
            for opt in options.group(1).split():
                key, _, value = opt.partition("=")
                if key == "signed-by":
                    signed_by = value
        words = rest.split()
        if len(words) < 2:
            continue
        entries.append(SourceEntry([words[0]], [words[1]], words[2:], signed_by))
    return entries


def _is_debian_archive(entry: SourceEntry, codename: str) -> bool:
    # Third-party repositories rarely carry sources or arm64; keep Debian's own.
    uri_ok = any(re.search(r"/debian(-security)?/?$", u) for u in entry.uris)
    suite_ok = any(s == codename or s.startswith(codename + "-") for s in entry.suites)
    return uri_ok and suite_ok


def derive_sources(system_files: dict[str, str], codename: str) -> str:
    """deb822 text with the system's Debian entries, binary+source, amd64+arm64."""
    entries: list[SourceEntry] = []
    for name, text in sorted(system_files.items()):
        if name.endswith(".sources"):
            entries += _parse_deb822(text)
        elif name.endswith(".list"):
            entries += _parse_one_line(text)
    entries = [e for e in entries if _is_debian_archive(e, codename)]
    if not entries:
        raise PipelineError(
            f"no Debian '{codename}' entry found in the system's apt sources "
            "(/etc/apt/sources.list, /etc/apt/sources.list.d); add one so the "
            "pipeline can fetch Debian packages"
        )
    paragraphs = []
    for e in entries:
        lines = [
            "Types: deb deb-src",
            f"URIs: {' '.join(e.uris)}",
            f"Suites: {' '.join(e.suites)}",
            f"Components: {' '.join(e.components)}",
            f"Architectures: {' '.join(PACKAGE_ARCHS)}",
        ]
        if e.signed_by:
            lines.append(f"Signed-By: {e.signed_by}")
        paragraphs.append("\n".join(lines))
    return "\n\n".join(paragraphs) + "\n"


def read_system_sources(etc_apt: Path = Path("/etc/apt")) -> dict[str, str]:
    files = {}
    main = etc_apt / "sources.list"
    if main.is_file():
        files[str(main)] = main.read_text(encoding="utf-8", errors="replace")
    for path in sorted((etc_apt / "sources.list.d").glob("*")):
        if path.suffix in (".list", ".sources") and path.is_file():
            files[str(path)] = path.read_text(encoding="utf-8", errors="replace")
    return files


def os_codename(os_release: Path = Path("/etc/os-release")) -> str:
    for line in os_release.read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition("=")
        if key == "VERSION_CODENAME" and value.strip('"'):
            return value.strip('"')
    raise PipelineError(f"{os_release} names no VERSION_CODENAME; this pipeline needs Debian 12")


class PrivateApt:
    """apt-get and apt-cache bound to a state directory of the pipeline's own."""

    def __init__(self, root: Path):
        self.root = Path(root).resolve()

    def options(self) -> list[str]:
        r = self.root
        opts = {
            "Dir::Etc::SourceList": r / "etc/sources.list",
            "Dir::Etc::SourceParts": r / "etc/sources.list.d",
            "Dir::Etc::Preferences": r / "etc/preferences",
            "Dir::Etc::PreferencesParts": r / "etc/preferences.d",
            "Dir::State": r / "state",
            "Dir::State::status": r / "state/status",
            "Dir::Cache": r / "cache",
            # Binary caches would be rewritten by every reader; the lists suffice.
            "Dir::Cache::pkgcache": "",
            "Dir::Cache::srcpkgcache": "",
            "APT::Sandbox::User": "root",
        }
        out = []
        for key, value in opts.items():
            out += ["-o", f"{key}={value}"]
        for arch in PACKAGE_ARCHS:
            out += ["-o", f"APT::Architectures::={arch}"]
        return out

    def create(self, sources_text: str) -> None:
        for sub in ("etc/sources.list.d", "etc/preferences.d", "state/lists/partial", "cache"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "etc/sources.list").write_text("", encoding="utf-8")
        (self.root / "etc/sources.list.d/debian.sources").write_text(sources_text, encoding="utf-8")
        (self.root / "state/status").write_text("", encoding="utf-8")

    def run(self, tool: str, args: list[str], log: IO[str], cwd: Path | None = None) -> str:
        argv = [tool, *self.options(), *args]
        log.write("$ " + " ".join(argv) + "\n")
        log.flush()
        proc = procs.run(argv, timeout_s=None, cwd=cwd)
        log.write(proc.stdout + proc.stderr)
        log.flush()
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise PipelineError(f"{tool} {' '.join(args)} failed: {last}")
        return proc.stdout

    def update(self, log: IO[str]) -> None:
        self.run("apt-get", ["-q", "update"], log)

    def source_versions(self, package: str, log: IO[str]) -> list[str]:
        out = self.run("apt-cache", ["showsrc", package], log)
        return sorted(
            {line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Version:")}
        )

    def download_source(self, package: str, version: str, dest: Path, log: IO[str], key: str) -> list[Path]:
        """Download a source package's files into dest; `key` names the config key."""
        available = self.source_versions(package, log)
        if version not in available:
            raise PipelineError(
                f"Debian source {package}={version} is not in the archive any more; "
                f"set {key} to one of: {', '.join(available) or 'none found'}"
            )
        dest.mkdir(parents=True, exist_ok=True)
        self.run("apt-get", ["-q", "source", "--download-only", f"{package}={version}"], log, cwd=dest)
        return sorted(p for p in dest.iterdir() if p.is_file())

    def download_binary(self, package: str, version: str, arch: str, dest: Path, log: IO[str], key: str) -> Path:
        """Download one binary .deb (any arch, no dpkg change) into dest."""
        spec = f"{package}:{arch}"
        out = self.run("apt-cache", ["madison", spec], log)
        available = [line.split("|")[1].strip() for line in out.splitlines() if "|" in line]
        if version not in available:
            raise PipelineError(
                f"Debian package {spec}={version} is not in the archive any more; "
                f"set {key} to one of: {', '.join(sorted(set(available))) or 'none found'}"
            )
        dest.mkdir(parents=True, exist_ok=True)
        before = set(dest.iterdir())
        self.run("apt-get", ["-q", "download", f"{spec}={version}"], log, cwd=dest)
        new = [p for p in dest.iterdir() if p not in before and p.suffix == ".deb"]
        if len(new) != 1:
            raise PipelineError(f"apt-get download {spec}={version} produced {len(new)} .deb files, expected 1")
        return new[0]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_lock(path: Path, record: dict, files: list[Path]) -> None:
    """Record what was fetched: identity plus the sha256 of every file."""
    lock = dict(record)
    lock["files"] = {p.name: sha256_file(p) for p in sorted(files)}
    path.write_text(json.dumps(lock, indent=2, sort_keys=True) + "\n", encoding="utf-8")
