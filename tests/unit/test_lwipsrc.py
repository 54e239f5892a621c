"""lwipsrc: Debian's lwIP source fetched for real through a private apt index, verified, unpacked, locked;
corrupted files and other lwIP versions refused in one sentence."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from testkit import apt_index, fetch_lwip
from unikio import aptsrc, lwipsrc
from unikio.errors import PipelineError

VERSION = "2.1.3+dfsg1-2"
ORIG = "lwip_2.1.3+dfsg1.orig.tar.xz"
DSC = "lwip_2.1.3+dfsg1-2.dsc"
DEBIAN_TAR = "lwip_2.1.3+dfsg1-2.debian.tar.xz"
# From the Checksums-Sha256 of Debian 12's lwip_2.1.3+dfsg1-2.dsc.
ORIG_SHA256 = "0a8276d09fc4e97bbba2f953d74af2388fc2195ea156be9d7589e297a68fde24"
DEBIAN_TAR_SHA256 = "c5a48413d362cc757032cdd58f528f75eb64ee781ca46ca24f010b49b0e62a90"
N_SOURCES = 19


def _one_sentence(message: str) -> None:
    assert "\n" not in message
    assert not re.search(r"[.!?]\s+[A-Z]", message), message


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return apt_index(tmp_path_factory.mktemp("lwip-apt"))


@pytest.fixture(scope="module")
def fetched(index: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, str]]:
    out = tmp_path_factory.mktemp("lwip-src")
    tree = fetch_lwip(index, VERSION, out)
    yield tree, out / "lock.json", (out / "fetch.log").read_text()


# ---- the build lists (no network)


def test_sources_are_the_listed_files_inside_the_tree(tmp_path: Path) -> None:
    listed = (lwipsrc.NATIVE_LWIP / "sources.txt").read_text().split()
    assert len(listed) == N_SOURCES
    assert lwipsrc.sources(tmp_path) == [tmp_path / rel for rel in listed]
    assert lwipsrc.sources(tmp_path)[0] == tmp_path / "src/core/def.c"
    assert tmp_path / "src/core/ipv4/icmp.c" in lwipsrc.sources(tmp_path)


def test_include_dirs_are_lwip_headers_then_our_port(tmp_path: Path) -> None:
    dirs = lwipsrc.include_dirs(tmp_path)
    assert dirs == [tmp_path / "src/include", lwipsrc.REPO / "native/lwip"]
    for header in ("lwipopts.h", "arch/cc.h", "string.h", "stdlib.h", "lwip_solo5.h"):
        assert (dirs[1] / header).is_file()


# ---- anchors (a tree laid out like lwIP's, no network)


def _fake_tree(root: Path, major: str = "2", minor: str = "1", revision: str = "3") -> Path:
    for rel in lwipsrc.source_list():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("/* stand-in */\n")
    init_h = root / lwipsrc.INIT_H
    init_h.parent.mkdir(parents=True, exist_ok=True)
    init_h.write_text(
        "/** X.x.x: Major version of the stack */\n"
        f"#define LWIP_VERSION_MAJOR      {major}\n"
        f"#define LWIP_VERSION_MINOR      {minor}\n"
        f"#define LWIP_VERSION_REVISION   {revision}\n"
        "#define LWIP_VERSION_RC         LWIP_RC_RELEASE\n"
    )
    return root


def test_tree_with_the_expected_version_passes(tmp_path: Path) -> None:
    tree = _fake_tree(tmp_path)
    lwipsrc.check_tree(tree)
    assert lwipsrc.tree_version(tree) == "2.1.3"


@pytest.mark.parametrize("version", [("2", "1", "2"), ("2", "2", "0"), ("1", "4", "1")])
def test_tree_of_another_version_is_refused_in_one_sentence(tmp_path: Path, version: tuple[str, str, str]) -> None:
    tree = _fake_tree(tmp_path, *version)
    with pytest.raises(PipelineError) as err:
        lwipsrc.check_tree(tree)
    found = ".".join(version)
    assert str(err.value) == (
        f"src/include/lwip/init.h says lwIP {found}, but native/lwip is written for lwIP 2.1.3; "
        "set lwip.debian_version to a Debian lwip 2.1.3 source (e.g. 2.1.3+dfsg1-2)"
    )
    _one_sentence(str(err.value))


def test_tree_missing_a_compiled_file_is_refused_naming_it(tmp_path: Path) -> None:
    tree = _fake_tree(tmp_path)
    (tree / "src/core/ipv4/etharp.c").unlink()
    with pytest.raises(PipelineError) as err:
        lwipsrc.check_tree(tree)
    assert str(err.value).startswith("the lwIP source has no src/core/ipv4/etharp.c, which native/lwip/sources.txt")
    assert "lwip.debian_version" in str(err.value)
    _one_sentence(str(err.value))


def test_init_h_without_version_defines_is_refused(tmp_path: Path) -> None:
    tree = _fake_tree(tmp_path)
    (tree / lwipsrc.INIT_H).write_text("#define LWIP_VERSION_MAJOR 2\n")
    with pytest.raises(PipelineError, match=r"defines no LWIP_VERSION_MAJOR/MINOR/REVISION; check lwip.debian_version"):
        lwipsrc.check_tree(tree)


# ---- the real package through apt


def test_fetch_unpacks_checks_and_locks(fetched: tuple[Path, Path, str]) -> None:
    tree, lock, log = fetched
    data = json.loads(lock.read_text())
    assert data["source"] == "debian" and data["package"] == "lwip"
    assert data["version"] == VERSION
    assert data["lwip_version"] == "2.1.3"
    assert data["files"][ORIG] == ORIG_SHA256
    assert data["files"][DEBIAN_TAR] == DEBIAN_TAR_SHA256
    assert set(data["files"]) == {ORIG, DEBIAN_TAR, DSC}
    assert set(data["tree_files"]) == {lwipsrc.INIT_H, *lwipsrc.source_list()}
    for rel, digest in data["tree_files"].items():
        assert aptsrc.sha256_file(tree / rel) == digest, rel
    assert all(p.is_file() for p in lwipsrc.sources(tree))
    assert lwipsrc.tree_version(tree) == "2.1.3"
    # dpkg-source applied Debian's patches (one adds a Hurd port directory).
    assert (tree / "debian" / "patches" / "series").is_file() and (tree / "port").is_dir()
    # Nothing left beside the tree: downloads and staging went away.
    assert sorted(p.name for p in tree.parent.iterdir()) == ["fetch.log", "lock.json", "tree"]
    assert "apt-get" in log and "dpkg-source" in log


def test_fetch_again_replaces_the_tree(fetched: tuple[Path, Path, str], index: Path, tmp_path: Path) -> None:
    tree, lock = tmp_path / "tree", tmp_path / "lock.json"
    tree.mkdir()
    (tree / "stale").write_text("x")
    with open(tmp_path / "log", "w", encoding="utf-8") as log:
        lwipsrc.fetch(index, VERSION, tree, lock, log)
    assert not (tree / "stale").exists()
    assert json.loads(lock.read_text()) == json.loads(fetched[1].read_text())


def test_unknown_version_names_the_config_key(index: Path, tmp_path: Path) -> None:
    with open(tmp_path / "log", "w", encoding="utf-8") as log, pytest.raises(PipelineError) as err:
        lwipsrc.fetch(index, "2.1.3+dfsg1-99", tmp_path / "tree", tmp_path / "lock.json", log)
    assert str(err.value).startswith("Debian source lwip=2.1.3+dfsg1-99 is not in the archive any more; "
                                     "set lwip.debian_version to one of: ")
    assert VERSION in str(err.value)
    assert not (tmp_path / "tree").exists() and not (tmp_path / "lock.json").exists()


@pytest.fixture
def downloaded(index: Path, tmp_path: Path) -> Path:
    """The real source package files, as apt downloaded (and checked) them."""
    dest = tmp_path / "files"
    with open(tmp_path / "log", "w", encoding="utf-8") as log:
        aptsrc.PrivateApt(index).download_source("lwip", VERSION, dest, log, key=lwipsrc.KEY)
    return dest / DSC


def test_downloaded_files_match_the_dsc(downloaded: Path) -> None:
    assert lwipsrc.dsc_sha256(downloaded) == {ORIG: ORIG_SHA256, DEBIAN_TAR: DEBIAN_TAR_SHA256}
    assert [p.name for p in lwipsrc.verify_files(downloaded)] == [DSC, DEBIAN_TAR, ORIG]


@pytest.mark.parametrize("name, offset", [(ORIG, 0), (ORIG, 400_000), (DEBIAN_TAR, -1)])
def test_flipped_byte_is_refused_in_one_sentence(downloaded: Path, name: str, offset: int) -> None:
    path = downloaded.parent / name
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    bad = aptsrc.sha256_file(path)
    expected = ORIG_SHA256 if name == ORIG else DEBIAN_TAR_SHA256
    with pytest.raises(PipelineError) as err:
        lwipsrc.verify_files(downloaded)
    assert str(err.value) == (f"{name} has sha256 {bad}, not the {expected} {DSC} lists, so it is refused; "
                              "delete it and fetch lwip.debian_version again")
    _one_sentence(str(err.value))


def test_missing_listed_file_is_refused(downloaded: Path) -> None:
    (downloaded.parent / DEBIAN_TAR).unlink()
    with pytest.raises(PipelineError) as err:
        lwipsrc.verify_files(downloaded)
    assert str(err.value) == f"{DEBIAN_TAR}, listed in {DSC}, was not downloaded; fetch lwip.debian_version again"
