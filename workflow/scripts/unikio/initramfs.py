"""Deterministic initramfs builder for the benchmark Linux guest.

The archive is a gzip-compressed ``newc`` cpio (the format the kernel
unpacks into its rootfs).  Everything is written in pure Python so that the
same inputs always give byte-identical output: fixed mtime, uid/gid 0,
entries sorted by path, inode numbers assigned in that order, gzip header
without timestamp or file name.

Kernel modules are taken from an extracted Debian ``linux-image-*`` package
(``dpkg-deb -x pkg.deb DIR``).  Their dependencies come from
``lib/modules/<release>/modules.dep``.  Debian's packages do not ship that
file (``depmod`` creates it when the package is installed), so when it is
missing the same information is read from each module's ``.modinfo`` ELF
section (the ``depends=`` field that depmod itself uses).
"""

from __future__ import annotations

import gzip
import lzma
import os
import stat
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import PipelineError

NEWC_MAGIC = b"070701"
TRAILER = "TRAILER!!!"
DEFAULT_MTIME = 0
LOAD_ORDER_PATH = "lib/modules/load.order"
BUSYBOX_APPLETS = ("sh", "ls", "cat", "ip", "mount")
DEFAULT_MODULES = ("virtio_pci", "virtio_mmio", "virtio_blk", "virtio_net")
_MODULE_SUFFIXES = (".ko.xz", ".ko.gz", ".ko.zst", ".ko")


class InitramfsError(PipelineError):
    """Raised for any problem while resolving modules or building the archive."""


# --------------------------------------------------------------------- cpio


@dataclass(frozen=True)
class CpioEntry:
    """One archive member; ``data`` is the link target for symlinks."""

    path: str
    mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)


def _norm_path(path: str) -> str:
    parts = [p for p in str(path).split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise InitramfsError(f"invalid archive path: {path!r}")
    return "/".join(parts)


def _pad4(n: int) -> int:
    return (4 - n % 4) % 4


def newc_header(
    *,
    ino: int,
    mode: int,
    nlink: int,
    filesize: int,
    namesize: int,
    mtime: int = DEFAULT_MTIME,
    rdev: tuple[int, int] = (0, 0),
) -> bytes:
    """Return the 110-byte ``newc`` header (uid, gid and check are 0)."""
    fields = (
        ino,
        mode,
        0,
        0,
        nlink,
        mtime,
        filesize,
        0,
        0,
        rdev[0],
        rdev[1],
        namesize,
        0,
    )
    for value in fields:
        if not 0 <= value <= 0xFFFFFFFF:
            raise InitramfsError(f"cpio header field out of range: {value}")
    return NEWC_MAGIC + b"".join(b"%08X" % v for v in fields)


def _newc_member(entry: CpioEntry, ino: int, mtime: int) -> bytes:
    name = entry.path.encode() + b"\0"
    nlink = 2 if stat.S_ISDIR(entry.mode) else 1
    head = newc_header(
        ino=ino,
        mode=entry.mode,
        nlink=nlink,
        filesize=len(entry.data),
        namesize=len(name),
        mtime=mtime,
        rdev=entry.rdev,
    )
    out = head + name + b"\0" * _pad4(len(head) + len(name))
    return out + entry.data + b"\0" * _pad4(len(entry.data))


def write_newc(entries: Iterable[CpioEntry], mtime: int = DEFAULT_MTIME) -> bytes:
    """Serialise entries (in the given order) plus the trailer as newc cpio."""
    chunks = [_newc_member(e, ino, mtime) for ino, e in enumerate(entries, start=1)]
    chunks.append(_newc_member(CpioEntry(TRAILER, 0), 0, 0))
    return b"".join(chunks)


@dataclass
class Archive:
    """An in-memory file tree; parents are created implicitly as 0755 dirs."""

    entries: dict[str, CpioEntry] = field(default_factory=dict)

    def _add(self, entry: CpioEntry) -> None:
        parts = entry.path.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            existing = self.entries.get(parent)
            if existing is None:
                self.entries[parent] = CpioEntry(parent, stat.S_IFDIR | 0o755)
            elif not stat.S_ISDIR(existing.mode):
                raise InitramfsError(f"{parent} is not a directory in the archive")
        old = self.entries.get(entry.path)
        if old is not None and not (stat.S_ISDIR(old.mode) and stat.S_ISDIR(entry.mode)):
            raise InitramfsError(f"duplicate archive path: {entry.path}")
        self.entries[entry.path] = entry

    def add_dir(self, path: str, perm: int = 0o755) -> None:
        """Add a directory."""
        self._add(CpioEntry(_norm_path(path), stat.S_IFDIR | perm))

    def add_file(self, path: str, data: bytes, perm: int = 0o644) -> None:
        """Add a regular file with the given contents and permission bits."""
        self._add(CpioEntry(_norm_path(path), stat.S_IFREG | perm, bytes(data)))

    def add_symlink(self, path: str, target: str) -> None:
        """Add a symbolic link pointing at ``target``."""
        self._add(CpioEntry(_norm_path(path), stat.S_IFLNK | 0o777, target.encode()))

    def add_chardev(self, path: str, major: int, minor: int, perm: int = 0o600) -> None:
        """Add a character device node."""
        self._add(CpioEntry(_norm_path(path), stat.S_IFCHR | perm, b"", (major, minor)))

    def to_cpio(self, mtime: int = DEFAULT_MTIME) -> bytes:
        """Uncompressed newc archive, entries sorted by path components."""
        ordered = sorted(self.entries.values(), key=lambda e: e.path.split("/"))
        return write_newc(ordered, mtime)

    def to_cpio_gz(self, mtime: int = DEFAULT_MTIME) -> bytes:
        """Gzip-compressed archive with a fixed (zero) gzip timestamp."""
        return gzip.compress(self.to_cpio(mtime), compresslevel=9, mtime=0)


def file_perm(src: Path) -> int:
    """0755 for executable sources, 0644 otherwise (normalises umask noise)."""
    return 0o755 if os.stat(src).st_mode & 0o111 else 0o644


# ------------------------------------------------------------------ modules


@dataclass(frozen=True)
class ResolvedModule:
    """A module to ship: its source file and its (uncompressed) archive path."""

    name: str
    source: Path
    dest: str


@dataclass(frozen=True)
class ModulePlan:
    """Result of module resolution, in load order (dependencies first)."""

    kernel_release: str
    modules: tuple[ResolvedModule, ...]
    builtin: tuple[str, ...]

    @property
    def load_order(self) -> list[str]:
        """Paths relative to / as written to ``lib/modules/load.order``."""
        return [m.dest for m in self.modules]


def module_name(path: str) -> str:
    """Kernel module name of a file: basename without .ko[.xz], '-' -> '_'."""
    base = path.rsplit("/", 1)[-1]
    for suffix in _MODULE_SUFFIXES:
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    return base.replace("-", "_")


def _modules_root(kernel_tree: Path) -> Path:
    for cand in (
        kernel_tree / "lib" / "modules",
        kernel_tree / "usr" / "lib" / "modules",
    ):
        if cand.is_dir():
            return cand
    raise InitramfsError(f"no lib/modules directory in kernel tree {kernel_tree}")


def find_kernel_release(kernel_tree: Path) -> str:
    """The single kernel release directory name under lib/modules."""
    releases = sorted(p.name for p in _modules_root(kernel_tree).iterdir() if p.is_dir())
    if len(releases) != 1:
        raise InitramfsError(f"expected exactly one kernel release in {kernel_tree}, found {releases}")
    return releases[0]


def kernel_image(kernel_tree: Path, kernel_release: str | None = None) -> Path:
    """Path of ``boot/vmlinuz-<release>`` inside the extracted package."""
    release = kernel_release or find_kernel_release(kernel_tree)
    image = kernel_tree / "boot" / f"vmlinuz-{release}"
    if not image.is_file():
        raise InitramfsError(f"kernel image not found: {image}")
    return image


def parse_modules_dep(text: str) -> dict[str, list[str]]:
    """Parse modules.dep (``path: dep1 dep2``) into {path: [dep paths]}."""
    deps: dict[str, list[str]] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        path, sep, rest = line.partition(":")
        if not sep or not path.strip():
            raise InitramfsError(f"modules.dep line {lineno} is malformed: {raw!r}")
        deps[path.strip()] = rest.split()
    return deps


def parse_modules_builtin(text: str) -> set[str]:
    """Module names listed in modules.builtin (one path per line)."""
    return {module_name(line.strip()) for line in text.splitlines() if line.strip()}


def read_module_bytes(path: Path) -> bytes:
    """Module contents, decompressed if the file is .ko.xz or .ko.gz."""
    data = path.read_bytes()
    name = path.name
    try:
        if name.endswith(".ko.xz"):
            return lzma.decompress(data)
        if name.endswith(".ko.gz"):
            return gzip.decompress(data)
    except (lzma.LZMAError, OSError, EOFError) as exc:
        raise InitramfsError(f"cannot decompress module {path}: {exc}") from exc
    if name.endswith(".ko.zst"):
        raise InitramfsError(f"zstd-compressed modules are not supported: {path}")
    return data


def elf_section(data: bytes, wanted: str) -> bytes | None:
    """Contents of the named section of an ELF file (32/64-bit, LE/BE)."""
    if data[:4] != b"\x7fELF" or len(data) < 64:
        raise InitramfsError("not an ELF file")
    cls, endian = data[4], data[5]
    if cls not in (1, 2) or endian not in (1, 2):
        raise InitramfsError("unsupported ELF class or byte order")
    e = "<" if endian == 1 else ">"
    try:
        if cls == 2:
            shoff = struct.unpack_from(e + "Q", data, 0x28)[0]
            shentsize, shnum, shstrndx = struct.unpack_from(e + "HHH", data, 0x3A)
            shfmt, off_fields = e + "IIQQQQ", (4, 5)
        else:
            shoff = struct.unpack_from(e + "I", data, 0x20)[0]
            shentsize, shnum, shstrndx = struct.unpack_from(e + "HHH", data, 0x2E)
            shfmt, off_fields = e + "IIIIII", (4, 5)
        headers = [struct.unpack_from(shfmt, data, shoff + i * shentsize) for i in range(shnum)]
        str_off, str_size = (headers[shstrndx][i] for i in off_fields)
        names = data[str_off : str_off + str_size]
        for h in headers:
            end = names.find(b"\0", h[0])
            if names[h[0] : end].decode(errors="replace") == wanted:
                off, size = h[off_fields[0]], h[off_fields[1]]
                return data[off : off + size]
    except (struct.error, IndexError) as exc:
        raise InitramfsError(f"truncated or corrupt ELF file: {exc}") from exc
    return None


def modinfo_depends(data: bytes) -> list[str]:
    """Names from the ``depends=`` entry of a module's .modinfo section."""
    section = elf_section(data, ".modinfo")
    if section is None:
        raise InitramfsError("module has no .modinfo section")
    for item in section.split(b"\0"):
        if item.startswith(b"depends="):
            value = item[len(b"depends=") :].decode()
            return [d.replace("-", "_") for d in value.split(",") if d]
    return []


def _module_index(moddir: Path) -> dict[str, str]:
    """{module name: path relative to moddir} for all module files in the tree."""
    index: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(moddir):
        dirnames.sort()
        for fname in sorted(filenames):
            if fname.endswith(_MODULE_SUFFIXES):
                rel = os.path.relpath(os.path.join(dirpath, fname), moddir)
                index.setdefault(module_name(fname), rel.replace(os.sep, "/"))
    return index


def _modinfo_dep_graph(moddir: Path) -> tuple[set[str], Callable[[str], list[str]]]:
    """Known module paths and a dependency lookup built from .modinfo sections."""
    index = _module_index(moddir)
    cache: dict[str, list[str]] = {}

    def deps_of(rel: str) -> list[str]:
        if rel not in cache:
            try:
                names = modinfo_depends(read_module_bytes(moddir / rel))
            except InitramfsError as exc:
                raise InitramfsError(f"{moddir / rel}: {exc}") from exc
            missing = [n for n in names if n not in index]
            if missing:
                raise InitramfsError(f"{rel} depends on {missing}, which have no module file")
            cache[rel] = [index[n] for n in names]
        return cache[rel]

    return set(index.values()), deps_of


def resolve_modules(kernel_tree: Path, wanted: Sequence[str], kernel_release: str | None = None) -> ModulePlan:
    """Resolve module names to files in dependency order (deps first, no dups).

    Built-in modules are skipped; a name that is neither a module file in
    modules.dep nor built-in raises :class:`InitramfsError`.
    """
    kernel_tree = Path(kernel_tree)
    release = kernel_release or find_kernel_release(kernel_tree)
    moddir = _modules_root(kernel_tree) / release
    if not moddir.is_dir():
        raise InitramfsError(f"no modules for release {release} in {kernel_tree}")

    builtin_file = moddir / "modules.builtin"
    builtin = parse_modules_builtin(builtin_file.read_text()) if builtin_file.is_file() else set()

    dep_file = moddir / "modules.dep"
    if dep_file.is_file():
        graph = parse_modules_dep(dep_file.read_text())
        known, deps_of = set(graph), graph.__getitem__
    else:
        known, deps_of = _modinfo_dep_graph(moddir)
    by_name = {module_name(p): p for p in sorted(known)}

    order: list[str] = []
    done: set[str] = set()
    skipped: list[str] = []

    def visit(rel: str, chain: tuple[str, ...]) -> None:
        if rel in done:
            return
        if rel in chain:
            raise InitramfsError("module dependency cycle: " + " -> ".join(chain + (rel,)))
        if rel not in known:
            raise InitramfsError(f"dependency {rel} is not listed in modules.dep")
        # modprobe loads the listed dependencies last-to-first
        for dep in reversed(deps_of(rel)):
            visit(dep, chain + (rel,))
        done.add(rel)
        order.append(rel)

    for raw in wanted:
        name = raw.replace("-", "_")
        if name in by_name:
            visit(by_name[name], ())
        elif name in builtin:
            if name not in skipped:
                skipped.append(name)
        else:
            raise InitramfsError(
                f"kernel module {raw!r} is neither in modules.dep nor in modules.builtin of {release} ({moddir})"
            )

    resolved = []
    for rel in order:
        src = moddir / rel
        if not src.is_file():
            raise InitramfsError(f"module file listed in modules.dep is missing: {src}")
        dest_rel = rel
        for suffix in (".ko.xz", ".ko.gz", ".ko.zst"):
            if dest_rel.endswith(suffix):
                dest_rel = dest_rel[: -len(suffix)] + ".ko"
        dest = f"lib/modules/{release}/{dest_rel}"
        resolved.append(ResolvedModule(module_name(rel), src, dest))
    return ModulePlan(release, tuple(resolved), tuple(skipped))


# ---------------------------------------------------------------- initramfs


def build_archive(
    plan: ModulePlan,
    init_binary: Path,
    extra_files: Mapping[str, Path] | None = None,
    busybox: Path | None = None,
) -> Archive:
    """Assemble the in-memory tree: /init, modules + load.order, extras, busybox."""
    arc = Archive()
    for d in ("bin", "dev", "proc", "sys", "tmp", "lib/modules"):
        arc.add_dir(d)
    # Lets the kernel give PID 1 a console before /dev is mounted.
    arc.add_chardev("dev/console", 5, 1)
    arc.add_file("init", Path(init_binary).read_bytes(), 0o755)
    for mod in plan.modules:
        arc.add_file(mod.dest, read_module_bytes(mod.source), 0o644)
    arc.add_file(LOAD_ORDER_PATH, "".join(p + "\n" for p in plan.load_order).encode())
    if busybox is not None:
        arc.add_file("bin/busybox", Path(busybox).read_bytes(), 0o755)
        for applet in BUSYBOX_APPLETS:
            arc.add_symlink(f"bin/{applet}", "busybox")
    for dest, src in sorted((extra_files or {}).items()):
        arc.add_file(dest, Path(src).read_bytes(), file_perm(Path(src)))
    return arc


def build_initramfs(
    out_path: Path,
    kernel_tree: Path,
    modules: Sequence[str],
    init_binary: Path,
    extra_files: Mapping[str, Path] | None = None,
    busybox: Path | None = None,
    kernel_release: str | None = None,
) -> ModulePlan:
    """Write a gzip'd newc initramfs to ``out_path`` and return the module plan.

    ``extra_files`` maps archive destinations (e.g. ``/bin/blk_bench``) to
    host source files.  The output is written atomically.
    """
    plan = resolve_modules(Path(kernel_tree), modules, kernel_release)
    data = build_archive(plan, Path(init_binary), extra_files, busybox).to_cpio_gz()
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, out)
    return plan
