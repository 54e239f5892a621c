"""An arm64 build of our patched QEMU, cross-compiled on an x86_64 machine.

It is what the emulated ARM testbed needs to run the aarch64 Linux guest
under the testbed's own KVM.  The arm64 -dev packages come from the
pipeline's private apt state (``apt-get download``, no dpkg architecture is
added) and are unpacked with ``dpkg-deb -x`` into a sysroot directory; the
cross compiler is Debian's ``gcc-aarch64-linux-gnu`` with its own libc
(``libc6-dev-arm64-cross``), so the sysroot holds only the libraries QEMU
needs and the libc packages are never followed.  The binary is linked
statically, so it runs in the testbed's busybox initramfs as it is.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from . import progress, qemubuild
from .aptsrc import PrivateApt
from .errors import PipelineError

DEB_ARCH = "arm64"
TRIPLET = "aarch64-linux-gnu"
CROSS_PREFIX = TRIPLET + "-"
TARGETS = ("aarch64-softmmu",)
# What QEMU's configure and meson look for (glib, pixman, libfdt, zlib); the
# rest is their dependency closure.
ROOT_PACKAGES = ("libglib2.0-dev", "libpixman-1-dev", "libfdt-dev", "zlib1g-dev")
# Provided by the cross toolchain (libc6-dev-arm64-cross, linux-libc-dev-arm64-cross,
# libgcc-12-dev-arm64-cross): following them would put a second libc in the sysroot.
TOOLCHAIN_PACKAGES = frozenset({
    "libc6", "libc6-dev", "libc-dev", "linux-libc-dev", "libcrypt1", "libcrypt-dev", "libnsl2", "libnsl-dev",
    "libtirpc3", "libtirpc-dev", "libgcc-s1", "gcc-12-base",
})

_DEP_ATOM = re.compile(r"^\s*([a-z0-9][a-z0-9.+-]*)(?::[a-z0-9-]+)?\s*(?:\(\s*(<<|<=|=|>=|>>)\s*([^)\s]+)\s*\))?")


@dataclass(frozen=True)
class Relation:
    """One alternative of a Depends entry: ``name (op version)``."""

    name: str
    op: str = ""
    version: str = ""


def parse_depends(field: str) -> list[list[Relation]]:
    """A Depends field as a list of entries, each a list of alternatives (``a | b``)."""
    entries: list[list[Relation]] = []
    for entry in field.split(","):
        alternatives = []
        for alt in entry.split("|"):
            alt = re.sub(r"\[[^\]]*\]|<[^>]*>", "", alt).strip()
            if not alt:
                continue
            m = _DEP_ATOM.match(alt)
            if not m:
                raise ValueError(f"cannot parse dependency {alt!r}")
            alternatives.append(Relation(m.group(1), m.group(2) or "", m.group(3) or ""))
        if alternatives:
            entries.append(alternatives)
    return entries


def parse_control(text: str) -> dict[str, str]:
    """The first paragraph of ``apt-cache show`` output as {field: value} (continuations joined)."""
    fields: dict[str, str] = {}
    current = ""
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        if line[0].isspace():
            if current:
                fields[current] += " " + line.strip()
            continue
        key, _, value = line.partition(":")
        current = key.strip()
        fields[current] = value.strip()
    return fields


def follows(rel: Relation) -> bool:
    """Whether the sysroot needs this dependency of a package already in it.

    -dev packages carry the headers, static libraries and .pc files; the
    shared libraries a -dev package pins with ``=`` are kept too (their
    .so files, for a dynamic link).  Tools (``-bin``, pkg-config, python)
    and the toolchain's own libc are not followed.
    """
    if rel.name in TOOLCHAIN_PACKAGES:
        return False
    if rel.name.endswith("-dev"):
        return True
    return rel.op == "=" and not rel.name.endswith(("-bin", "-data", "-common"))


def closure(roots: Iterable[str], lookup: Callable[[str], Mapping[str, str]]) -> dict[str, str]:
    """{package: version} of the roots and every followed dependency.

    ``lookup(name)`` returns the arm64 candidate's control fields ({} if
    there is none).  Of an entry's alternatives the first followed one is
    taken.
    """
    found: dict[str, str] = {}
    todo = list(roots)
    while todo:
        name = todo.pop(0)
        if name in found:
            continue
        fields = lookup(name)
        if not fields.get("Version"):
            raise PipelineError(f"Debian package {name}:{DEB_ARCH} is not in the private apt index; "
                                "rerun the apt_index rule")
        found[name] = fields["Version"]
        for entry in parse_depends(fields.get("Pre-Depends", "")) + parse_depends(fields.get("Depends", "")):
            wanted = [rel for rel in entry if follows(rel)]
            if wanted:
                todo.append(wanted[0].name)
    return dict(sorted(found.items()))


def resolve_packages(apt: PrivateApt, log: IO[str], roots: Iterable[str] = ROOT_PACKAGES) -> dict[str, str]:
    """The sysroot's package list with the candidate versions of the private index."""
    def lookup(name: str) -> dict[str, str]:
        out = apt.run("apt-cache", ["show", "--no-all-versions", f"{name}:{DEB_ARCH}"], log)
        return parse_control(out)

    return closure(roots, lookup)


def build_sysroot(apt: PrivateApt, packages: Mapping[str, str], sysroot: Path, debs: Path, log: IO[str]) -> list[Path]:
    """Download every package's arm64 .deb into debs and unpack it into sysroot; returns the .debs."""
    sysroot.mkdir(parents=True, exist_ok=True)
    files = []
    report = progress.Progress("arm64 sysroot", runs=1, per_run=len(packages), unit="packages", log=log)
    report.phase("downloading and unpacking")
    for name, version in sorted(packages.items()):
        deb = debs / deb_filename(name, version)
        if not deb.is_file():
            deb = apt.download_binary(name, version, DEB_ARCH, debs, log, key=f"qemu cross sysroot ({name})")
        argv = ["dpkg-deb", "-x", str(deb), str(sysroot)]
        log.write("$ " + shlex.join(argv) + "\n")
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise PipelineError(f"dpkg-deb -x {deb.name} failed: {proc.stderr.strip() or proc.returncode}")
        files.append(deb)
        report.set_done(len(files))
    relink_absolute_symlinks(sysroot)
    return files


def deb_filename(name: str, version: str, arch: str = DEB_ARCH) -> str:
    """The file name apt-get download gives a package (an epoch's colon is written %3a)."""
    return f"{name}_{version.replace(':', '%3a')}_{arch}.deb"


def relink_absolute_symlinks(sysroot: Path) -> list[Path]:
    """Point absolute symlinks (libz.so -> /lib/...) into the sysroot, relatively; returns those changed."""
    root = Path(sysroot).resolve()
    changed = []
    for link in sorted(p for p in root.rglob("*") if p.is_symlink()):
        target = os.readlink(link)
        if target.startswith("/"):
            link.unlink()
            link.symlink_to(os.path.relpath(root / target.lstrip("/"), link.parent))
            changed.append(link)
    return changed


def pkg_config_env(sysroot: Path) -> dict[str, str]:
    """pkg-config variables that see only the sysroot's arm64 .pc files, with paths under it."""
    s = Path(sysroot).resolve()
    return {
        "PKG_CONFIG_LIBDIR": f"{s}/usr/lib/{TRIPLET}/pkgconfig:{s}/usr/share/pkgconfig",
        "PKG_CONFIG_SYSROOT_DIR": str(s),
        "PKG_CONFIG_PATH": "",
    }


def pkg_config_wrapper(sysroot: Path) -> str:
    """A shell script that runs pkg-config on the sysroot (meson reruns keep seeing the same)."""
    lines = ["#!/bin/sh", "# Generated by unikio.qemucross: pkg-config for the arm64 sysroot."]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in pkg_config_env(sysroot).items()]
    lines.append('exec pkg-config "$@"')
    return "\n".join(lines) + "\n"


def include_dirs(sysroot: Path) -> list[Path]:
    s = Path(sysroot).resolve()
    return [s / "usr/include", s / "usr/include" / TRIPLET]


def lib_dirs(sysroot: Path) -> list[Path]:
    s = Path(sysroot).resolve()
    return [s / "usr/lib" / TRIPLET, s / "lib" / TRIPLET]


def cc(sysroot: Path) -> str:
    """The cross C compiler as configure's --cc, with ``-B`` the sysroot's library directory.

    meson's ``find_library`` (libfdt, and every library in a static build)
    searches only the directories the compiler lists in
    ``-print-search-dirs``: -L in the link flags is not looked at, and a
    cross gcc ignores LIBRARY_PATH.  ``-B dir/`` adds dir to that list.
    """
    return f"{CROSS_PREFIX}gcc -B{lib_dirs(sysroot)[0]}/"


def configure_flags(sysroot: Path, *, static: bool = True,
                    base: Iterable[str] = qemubuild.CONFIGURE_FLAGS) -> list[str]:
    """The x86_64 build's flags plus the cross compiler and the sysroot's headers and libraries."""
    cflags = " ".join(f"-I{d}" for d in include_dirs(sysroot))
    ldflags = " ".join(f"-L{d}" for d in lib_dirs(sysroot))
    flags = [*base, f"--cross-prefix={CROSS_PREFIX}", f"--cc={cc(sysroot)}", f"--extra-cflags={cflags}",
             f"--extra-ldflags={ldflags}"]
    if static:
        # A static PIE of this size overflows the small-model GOT that Debian's
        # arm64 libc.a (libc-start.o) was built for: link a plain static binary.
        flags += ["--static", "--disable-pie"]
    return flags


def configure_env(pkg_config: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment of configure and make: system PATH (Debian's meson), C locale, our pkg-config."""
    env = dict(os.environ if base is None else base)
    env.update({"LC_ALL": "C", "PATH": qemubuild.SYSTEM_PATH, "PKG_CONFIG": str(pkg_config)})
    for key in ("PKG_CONFIG_PATH", "PKG_CONFIG_LIBDIR", "PKG_CONFIG_SYSROOT_DIR", "LIBRARY_PATH", "CC", "CFLAGS",
                "LDFLAGS"):
        env.pop(key, None)
    return env


def build(src: Path, sysroot: Path, install: Path, jobs: int, log: IO[str], *, static: bool = True,
          strip: bool = True) -> dict[str, float]:
    """Configure and build the arm64 qemu-system-aarch64 out of tree; copy it to install/bin.

    The source tree is not written to.  Returns the seconds configure and
    make took.  With ``strip`` the installed binary has no debug symbols.
    """
    src = Path(src).resolve()
    bindir = Path(install) / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    with tempfile.TemporaryDirectory(dir=Path(install).parent, prefix=".qemu-cross-") as tmp:
        wrapper = Path(tmp) / f"{CROSS_PREFIX}pkg-config"
        wrapper.write_text(pkg_config_wrapper(sysroot), encoding="utf-8")
        wrapper.chmod(0o755)
        build_dir = Path(tmp) / "build"
        build_dir.mkdir()
        env = configure_env(wrapper)
        names = qemubuild.binaries(list(TARGETS))
        steps = [("configure", qemubuild.configure_argv(src, list(TARGETS), configure_flags(sysroot, static=static))),
                 ("make", ["make", f"-j{jobs}", *names])]
        for what, argv in steps:
            times[what] = qemubuild.run_step(what, argv, product="the arm64 QEMU", cwd=build_dir, env=env, log=log)
        for name in names:
            out = bindir / name
            shutil.copy2(build_dir / name, out)
            if strip:
                subprocess.run([CROSS_PREFIX + "strip", str(out)], check=True)
    return times
