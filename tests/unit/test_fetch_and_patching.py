import hashlib
import io
import subprocess

import pytest
from unikio import fetch, patching
from unikio.errors import PipelineError


def test_download_verified_keeps_a_matching_file(tmp_path):
    src = tmp_path / "src.tar"
    src.write_bytes(b"payload")
    dest = tmp_path / "out" / "src.tar"
    fetch.download_verified(src.as_uri(), hashlib.sha256(b"payload").hexdigest(), dest)
    assert dest.read_bytes() == b"payload"


def test_checksum_mismatch_fails_and_leaves_nothing(tmp_path):
    src = tmp_path / "src.tar"
    src.write_bytes(b"payload")
    out = tmp_path / "out"
    with pytest.raises(PipelineError, match="sha256"):
        fetch.download_verified(src.as_uri(), "0" * 64, out / "src.tar")
    assert list(out.iterdir()) == []


def test_unreachable_url_is_a_clear_error(tmp_path):
    with pytest.raises(PipelineError, match="cannot download"):
        fetch.download_verified((tmp_path / "missing").as_uri(), "0" * 64, tmp_path / "x")


def _tree(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.c").write_text("one\ntwo\n")
    return src


def test_add_only_patch_applies(tmp_path):
    src = _tree(tmp_path)
    patch = tmp_path / "0001.patch"
    patch.write_text("header prose\nanchor f.c:1: one\nanchor f.c:2: two\n--- a/f.c\n+++ b/f.c\n@@ -1,0 +2 @@\n"
                     "+inserted\n")
    patching.apply(src, [patch], io.StringIO(), "HINT")
    assert (src / "f.c").read_text() == "one\ninserted\ntwo\n"


def test_patch_whose_anchor_differs_is_refused_before_patching(tmp_path):
    src = _tree(tmp_path)
    patch = tmp_path / "0001.patch"
    patch.write_text("anchor f.c:1: one\nanchor f.c:2: zwei\n--- a/f.c\n+++ b/f.c\n@@ -1,0 +2 @@\n+inserted\n")
    with pytest.raises(PipelineError) as err:
        patching.apply(src, [patch], io.StringIO(), "set qemu.debian_version to the one it names")
    assert str(err.value) == ("0001.patch does not fit the fetched source: f.c:2 is 'two', the patch expects 'zwei'; "
                              "set qemu.debian_version to the one it names")
    assert (src / "f.c").read_text() == "one\ntwo\n"


def test_source_shorter_than_the_anchors_is_refused(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.c").write_text("one\n")
    patch = tmp_path / "0001.patch"
    patch.write_text("anchor f.c:1: one\nanchor f.c:2: two\n--- a/f.c\n+++ b/f.c\n@@ -1,0 +2 @@\n+inserted\n")
    with pytest.raises(PipelineError, match="f.c:2 is '\\(end of file\\)', the patch expects 'two'; HINT"):
        patching.apply(src, [patch], io.StringIO(), "HINT")


def test_patch_hunk_without_anchors_is_refused(tmp_path):
    src = _tree(tmp_path)
    patch = tmp_path / "0001.patch"
    patch.write_text("anchor f.c:1: one\n--- a/f.c\n+++ b/f.c\n@@ -1,0 +2 @@\n+inserted\n")
    with pytest.raises(PipelineError, match="no anchor line for f.c:2"):
        patching.apply(src, [patch], io.StringIO(), "HINT")


def test_shipped_patches_pin_every_hunk_with_anchors(repo):
    for patch in sorted(repo.glob("patches/*/*.patch")):
        pinned = patching.anchors(patch)
        for path, line in patching.insertion_points(patch):
            assert (path, line) in pinned and (path, line + 1) in pinned, (patch, path, line)


def test_patch_that_removes_lines_is_refused(tmp_path):
    patch = tmp_path / "p.patch"
    patch.write_text("--- a/f.c\n+++ b/f.c\n@@ -1 +1 @@\n-one\n+uno\n")
    with pytest.raises(PipelineError, match="removes a line"):
        patching.check_add_only(patch)


def test_patch_of_a_file_the_source_lacks_is_refused(tmp_path):
    src = _tree(tmp_path)
    patch = tmp_path / "p.patch"
    patch.write_text("--- a/missing.c\n+++ b/missing.c\n@@ -5,0 +6 @@\n+x\n")
    log = io.StringIO()
    with pytest.raises(PipelineError, match="missing.c, which the fetched source lacks; HINT"):
        patching.apply(src, [patch], log, "HINT")


def test_shipped_qemu_patches_are_zero_context_and_add_only(repo):
    patches = sorted((repo / "patches/qemu").glob("*.patch"))
    assert patches, "patches/qemu holds no patch"
    for p in patches:
        patching.check_add_only(p)


def test_unpack_tarball(tmp_path):
    top = tmp_path / "qemu-9.9"
    top.mkdir()
    (top / "configure").write_text("#!/bin/sh\n")
    files = tmp_path / "files"
    files.mkdir()
    subprocess.run(["tar", "-cf", str(files / "qemu-9.9.tar"), "-C", str(tmp_path), "qemu-9.9"], check=True)
    dest = tmp_path / "build" / "src"
    dest.parent.mkdir()
    patching.unpack(files, dest, io.StringIO())
    assert (dest / "configure").is_file()
