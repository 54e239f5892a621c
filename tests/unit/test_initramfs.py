"""Tests for unikio.initramfs: newc writer, module resolution, archive layout."""

from __future__ import annotations

import gzip
import lzma
import shutil
import stat
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest
from unikio import initramfs
from unikio.initramfs import Archive, InitramfsError

RELEASE = "6.1.0-99-cloud-amd64"


# ------------------------------------------------------------ test helpers


def read_newc(data: bytes) -> list[dict[str, Any]]:
    """Minimal independent newc reader (stops at the trailer)."""
    out: list[dict[str, Any]] = []
    pos = 0
    names = ("ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check").split()
    while True:
        assert data[pos : pos + 6] == b"070701", f"bad magic at {pos}"
        fields = {n: int(data[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i, n in enumerate(names)}
        name_start = pos + 110
        name = data[name_start : name_start + fields["namesize"] - 1].decode()
        assert data[name_start + fields["namesize"] - 1] == 0
        pos = name_start + fields["namesize"]
        pos += (4 - pos % 4) % 4
        body = data[pos : pos + fields["filesize"]]
        pos += fields["filesize"]
        pos += (4 - pos % 4) % 4
        if name == "TRAILER!!!":
            assert pos == len(data)
            return out
        out.append({"name": name, "data": body, **fields})


def make_elf(sections: dict[str, bytes]) -> bytes:
    """A tiny little-endian ELF64 file holding only the given sections."""
    names = b"\0"
    name_off = {}
    for sec in [*sections, ".shstrtab"]:
        name_off[sec] = len(names)
        names += sec.encode() + b"\0"
    body = b""
    offsets = {}
    for sec, content in [*sections.items(), (".shstrtab", names)]:
        offsets[sec] = 64 + len(body)
        body += content
    shoff = 64 + len(body)
    nsec = len(sections) + 2  # null section + ours + shstrtab
    ident = b"\x7fELF" + bytes([2, 1, 1]) + b"\0" * 9
    header = ident + struct.pack("<HHIQQQIHHHHHH", 1, 62, 1, 0, 0, shoff, 0, 64, 0, 0, 64, nsec, nsec - 1)
    shdrs = b"\0" * 64
    for sec, content in [*sections.items(), (".shstrtab", names)]:
        shdrs += struct.pack("<IIQQQQIIQQ", name_off[sec], 1, 0, 0, offsets[sec], len(content), 0, 0, 1, 0)
    return header + body + shdrs


def fake_module(name: str, depends: str) -> bytes:
    modinfo = f"license=GPL\0depends={depends}\0name={name}\0".encode()
    return make_elf({".text": b"\x90" * 8, ".modinfo": modinfo})


# Layout modelled on a real Debian cloud kernel (6.1): virtio_blk needs
# virtio + virtio_ring; virtio_net also needs net_failover -> failover.
FAKE_MODULES = {
    "kernel/drivers/virtio/virtio.ko": "",
    "kernel/drivers/virtio/virtio_ring.ko": "",
    "kernel/drivers/virtio/virtio_pci_modern_dev.ko": "",
    "kernel/drivers/virtio/virtio_pci.ko": "virtio_pci_modern_dev,virtio_ring,virtio",
    "kernel/drivers/virtio/virtio_mmio.ko.xz": "virtio,virtio_ring",
    "kernel/drivers/block/virtio_blk.ko": "virtio,virtio_ring",
    "kernel/net/core/failover.ko": "",
    "kernel/drivers/net/net_failover.ko": "failover",
    "kernel/drivers/net/virtio_net.ko": "net_failover,virtio,virtio_ring",
    "kernel/drivers/char/hw_random/virtio-rng.ko": "virtio,virtio_ring",
}
MODULES_DEP = """\
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_modern_dev.ko \
kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/virtio/virtio_mmio.ko.xz: kernel/drivers/virtio/virtio_ring.ko \
kernel/drivers/virtio/virtio.ko
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio_ring.ko \
kernel/drivers/virtio/virtio.ko
kernel/net/core/failover.ko:
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko \
kernel/net/core/failover.ko kernel/drivers/virtio/virtio_ring.ko \
kernel/drivers/virtio/virtio.ko
kernel/drivers/char/hw_random/virtio-rng.ko: kernel/drivers/virtio/virtio_ring.ko \
kernel/drivers/virtio/virtio.ko
""".replace("\\\n", "")


def fake_tree(root: Path, with_dep: bool = True) -> Path:
    moddir = root / "lib" / "modules" / RELEASE
    for rel, deps in FAKE_MODULES.items():
        path = moddir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        content = fake_module(initramfs.module_name(rel), deps)
        path.write_bytes(lzma.compress(content) if rel.endswith(".xz") else content)
    (moddir / "modules.builtin").write_text("kernel/drivers/block/loop.ko\nkernel/fs/ext4/ext4.ko\n")
    if with_dep:
        (moddir / "modules.dep").write_text(MODULES_DEP)
    (root / "boot").mkdir()
    (root / "boot" / f"vmlinuz-{RELEASE}").write_bytes(b"kernel")
    return root


def names_of(plan: initramfs.ModulePlan) -> list[str]:
    return [m.name for m in plan.modules]


def assert_deps_first(plan: initramfs.ModulePlan) -> None:
    pos = {m.name: i for i, m in enumerate(plan.modules)}
    for rel, deps in FAKE_MODULES.items():
        name = initramfs.module_name(rel)
        if name in pos:
            for dep in filter(None, deps.split(",")):
                assert pos[dep] < pos[name], f"{dep} must load before {name}"


# -------------------------------------------------------------------- cpio


def test_newc_roundtrip_and_alignment() -> None:
    arc = Archive()
    arc.add_file("bin/tool", b"abc", 0o755)
    arc.add_file("etc/x", b"12345")
    arc.add_symlink("bin/sh", "busybox")
    arc.add_chardev("dev/console", 5, 1)
    data = arc.to_cpio()
    assert len(data) % 4 == 0
    entries = read_newc(data)
    by_name = {e["name"]: e for e in entries}
    assert [e["name"] for e in entries] == [
        "bin",
        "bin/sh",
        "bin/tool",
        "dev",
        "dev/console",
        "etc",
        "etc/x",
    ]
    assert by_name["bin/tool"]["data"] == b"abc"
    assert by_name["bin/tool"]["mode"] == stat.S_IFREG | 0o755
    assert by_name["etc/x"]["mode"] == stat.S_IFREG | 0o644
    assert by_name["bin/sh"]["mode"] == stat.S_IFLNK | 0o777
    assert by_name["bin/sh"]["data"] == b"busybox"
    assert by_name["bin"]["mode"] == stat.S_IFDIR | 0o755
    assert by_name["bin"]["nlink"] == 2
    assert by_name["dev/console"]["mode"] == stat.S_IFCHR | 0o600
    assert (by_name["dev/console"]["rdevmajor"], by_name["dev/console"]["rdevminor"]) == (
        5,
        1,
    )
    for e in entries:
        assert (e["uid"], e["gid"], e["mtime"]) == (0, 0, 0)
    assert sorted(e["ino"] for e in entries) == list(range(1, len(entries) + 1))


def test_parent_before_child_with_tricky_names() -> None:
    arc = Archive()
    arc.add_file("lib-x", b"")
    arc.add_file("lib/a", b"")
    arc.add_file("lib.b/c", b"")
    order = [e["name"] for e in read_newc(arc.to_cpio())]
    assert order.index("lib") < order.index("lib/a")
    assert order.index("lib.b") < order.index("lib.b/c")


def test_gzip_output_is_deterministic() -> None:
    def build() -> bytes:
        arc = Archive()
        arc.add_file("/init", b"\x7fELF...", 0o755)
        arc.add_file("/a/b/c", b"x" * 1000)
        return arc.to_cpio_gz()

    first, second = build(), build()
    assert first == second
    assert first[:2] == b"\x1f\x8b"
    assert first[4:8] == b"\0\0\0\0"  # no gzip timestamp
    assert read_newc(gzip.decompress(first))[0]["name"] == "a"


@pytest.mark.skipif(shutil.which("cpio") is None, reason="cpio tool not installed")
def test_cpio_tool_lists_archive() -> None:
    arc = Archive()
    arc.add_file("init", b"#!", 0o755)
    arc.add_symlink("bin/sh", "busybox")
    out = subprocess.run(
        ["cpio", "-t", "--quiet"],
        input=arc.to_cpio(),
        capture_output=True,
        check=True,
    ).stdout.decode()
    assert out.split() == ["bin", "bin/sh", "init"]


@pytest.mark.parametrize("bad", ["", "/", "a/../b", ".."])
def test_invalid_paths_rejected(bad: str) -> None:
    with pytest.raises(InitramfsError):
        Archive().add_file(bad, b"")


def test_duplicates_and_file_as_parent_rejected() -> None:
    arc = Archive()
    arc.add_file("bin/x", b"")
    with pytest.raises(InitramfsError, match="duplicate"):
        arc.add_file("/bin/x", b"")
    with pytest.raises(InitramfsError, match="not a directory"):
        arc.add_file("bin/x/y", b"")
    arc.add_dir("bin")  # re-adding a directory is fine


def test_header_field_range_checked() -> None:
    with pytest.raises(InitramfsError):
        initramfs.newc_header(ino=1, mode=0, nlink=1, filesize=1 << 32, namesize=2)


# ----------------------------------------------------------------- modules


def test_module_name_normalisation() -> None:
    assert initramfs.module_name("kernel/a/virtio-rng.ko") == "virtio_rng"
    assert initramfs.module_name("virtio_mmio.ko.xz") == "virtio_mmio"


def test_parse_modules_dep_and_errors() -> None:
    deps = initramfs.parse_modules_dep("a.ko: b.ko c.ko\n\nb.ko:\n# comment\n")
    assert deps == {"a.ko": ["b.ko", "c.ko"], "b.ko": []}
    with pytest.raises(InitramfsError, match="line 1"):
        initramfs.parse_modules_dep("no colon here\n")


@pytest.mark.parametrize("with_dep", [True, False], ids=["modules.dep", "modinfo"])
def test_resolve_dependency_order(tmp_path: Path, with_dep: bool) -> None:
    tree = fake_tree(tmp_path, with_dep)
    plan = initramfs.resolve_modules(tree, initramfs.DEFAULT_MODULES)
    assert plan.kernel_release == RELEASE
    names = names_of(plan)
    assert len(names) == len(set(names))
    assert set(names) == {
        "virtio",
        "virtio_ring",
        "virtio_pci_modern_dev",
        "virtio_pci",
        "virtio_mmio",
        "virtio_blk",
        "failover",
        "net_failover",
        "virtio_net",
    }
    assert_deps_first(plan)
    # compressed module is shipped uncompressed under a .ko name
    mmio = next(m for m in plan.modules if m.name == "virtio_mmio")
    assert mmio.source.name == "virtio_mmio.ko.xz"
    assert mmio.dest == f"lib/modules/{RELEASE}/kernel/drivers/virtio/virtio_mmio.ko"
    assert all(p.endswith(".ko") for p in plan.load_order)


def test_resolve_is_stable_and_honours_dash_names(tmp_path: Path) -> None:
    tree = fake_tree(tmp_path)
    a = initramfs.resolve_modules(tree, ["virtio-rng", "virtio_blk", "virtio_rng"])
    b = initramfs.resolve_modules(tree, ["virtio-rng", "virtio_blk", "virtio_rng"])
    assert a == b
    assert names_of(a)[-2:] == ["virtio_rng", "virtio_blk"]


def test_builtin_modules_are_skipped(tmp_path: Path) -> None:
    plan = initramfs.resolve_modules(fake_tree(tmp_path), ["loop", "virtio_blk", "ext4"])
    assert plan.builtin == ("loop", "ext4")
    assert sorted(names_of(plan)) == ["virtio", "virtio_blk", "virtio_ring"]
    assert names_of(plan)[-1] == "virtio_blk"
    assert_deps_first(plan)


def test_unknown_module_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InitramfsError, match="nosuchmod.*modules.dep.*modules.builtin"):
        initramfs.resolve_modules(fake_tree(tmp_path), ["virtio_blk", "nosuchmod"])


def test_missing_module_file_is_an_error(tmp_path: Path) -> None:
    tree = fake_tree(tmp_path)
    (tree / "lib/modules" / RELEASE / "kernel/drivers/virtio/virtio.ko").unlink()
    with pytest.raises(InitramfsError, match="missing"):
        initramfs.resolve_modules(tree, ["virtio_blk"])


def test_dependency_outside_modules_dep_is_an_error(tmp_path: Path) -> None:
    tree = fake_tree(tmp_path)
    (tree / "lib/modules" / RELEASE / "modules.dep").write_text("a.ko: b.ko\n")
    with pytest.raises(InitramfsError, match="b.ko"):
        initramfs.resolve_modules(tree, ["a"])


def test_modinfo_dependency_without_file_is_an_error(tmp_path: Path) -> None:
    tree = fake_tree(tmp_path, with_dep=False)
    path = tree / "lib/modules" / RELEASE / "kernel/extra/odd.ko"
    path.parent.mkdir(parents=True)
    path.write_bytes(fake_module("odd", "ghost"))
    with pytest.raises(InitramfsError, match="ghost"):
        initramfs.resolve_modules(tree, ["odd"])


def test_dependency_cycle_detected(tmp_path: Path) -> None:
    tree = fake_tree(tmp_path)
    (tree / "lib/modules" / RELEASE / "modules.dep").write_text("a.ko: b.ko\nb.ko: a.ko\n")
    with pytest.raises(InitramfsError, match="cycle"):
        initramfs.resolve_modules(tree, ["a"])


def test_kernel_release_must_be_unique(tmp_path: Path) -> None:
    tree = fake_tree(tmp_path)
    (tree / "lib/modules/5.10.0-1-amd64").mkdir()
    with pytest.raises(InitramfsError, match="exactly one"):
        initramfs.find_kernel_release(tree)
    plan = initramfs.resolve_modules(tree, ["virtio"], kernel_release=RELEASE)
    assert names_of(plan) == ["virtio"]


def test_kernel_image_path(tmp_path: Path) -> None:
    tree = fake_tree(tmp_path)
    assert initramfs.kernel_image(tree) == tree / "boot" / f"vmlinuz-{RELEASE}"


def test_elf_section_rejects_garbage() -> None:
    with pytest.raises(InitramfsError):
        initramfs.elf_section(b"not an elf" * 10, ".modinfo")
    assert initramfs.elf_section(make_elf({".text": b"x"}), ".modinfo") is None
    with pytest.raises(InitramfsError, match="no .modinfo"):
        initramfs.modinfo_depends(make_elf({".text": b"x"}))


# --------------------------------------------------------------- initramfs


def test_build_initramfs_layout(tmp_path: Path) -> None:
    tree = fake_tree(tmp_path / "tree")
    init = tmp_path / "init"
    init.write_bytes(b"\x7fELF-init")
    busybox = tmp_path / "busybox"
    busybox.write_bytes(b"\x7fELF-bb")
    bench = tmp_path / "blk_bench"
    bench.write_bytes(b"\x7fELF-bench")
    bench.chmod(0o775)
    out = tmp_path / "out" / "initrd.cpio.gz"

    plan = initramfs.build_initramfs(out, tree, ["virtio_blk", "virtio_mmio"], init, {"/bin/blk_bench": bench}, busybox)
    entries = {e["name"]: e for e in read_newc(gzip.decompress(out.read_bytes()))}

    assert entries["init"]["data"] == b"\x7fELF-init"
    assert entries["init"]["mode"] == stat.S_IFREG | 0o755
    assert entries["bin/blk_bench"]["mode"] == stat.S_IFREG | 0o755
    assert entries["bin/busybox"]["data"] == b"\x7fELF-bb"
    for applet in ("sh", "ls", "cat", "ip", "mount"):
        assert entries[f"bin/{applet}"]["mode"] == stat.S_IFLNK | 0o777
        assert entries[f"bin/{applet}"]["data"] == b"busybox"
    for d in ("dev", "proc", "sys"):
        assert stat.S_ISDIR(int(entries[d]["mode"]))
    load_order = entries["lib/modules/load.order"]["data"].decode()
    assert load_order.splitlines() == plan.load_order
    for path in plan.load_order:
        data = entries[path]["data"]
        assert isinstance(data, bytes) and data.startswith(b"\x7fELF")  # decompressed
    assert not any(name.endswith(".xz") for name in entries)
    assert not (out.parent / "initrd.cpio.gz.tmp").exists()

    out2 = tmp_path / "again.cpio.gz"
    initramfs.build_initramfs(out2, tree, ["virtio_blk", "virtio_mmio"], init, {"/bin/blk_bench": bench}, busybox)
    assert out.read_bytes() == out2.read_bytes()


def test_build_without_busybox_or_extras(tmp_path: Path) -> None:
    tree = fake_tree(tmp_path / "tree")
    init = tmp_path / "init"
    init.write_bytes(b"i")
    out = tmp_path / "i.cpio.gz"
    initramfs.build_initramfs(out, tree, ["loop"], init)
    entries = {e["name"]: e for e in read_newc(gzip.decompress(out.read_bytes()))}
    assert "bin/busybox" not in entries
    assert entries["lib/modules/load.order"]["data"] == b""
