"""The upstream Solo5 provider: fetch and its verification, our patches, command construction.

Nothing here needs the real Solo5 source except the e2e tests at the end, which build upstream hvt and
spt from a local copy named by UNIKIO_SOLO5_SOURCE (a git directory or release tarball) and run our
unikernels on them: blk_bench with its pread window, ping_serve answering pings over a tap, and a guest
that upstream's spt filter kills.
"""

import ctypes.util
import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import tarfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from unikio import netns, patching, results, solo5upstream
from unikio.errors import PipelineError

URL = "https://github.com/Solo5/solo5.git"
REPO = Path(__file__).resolve().parents[2]
PATCHES = sorted((REPO / "patches" / "solo5").glob("*.patch"))
SPT_PATCH = "0002-spt-pread-accounting.patch"
BLK = "tenders/hvt/hvt_module_blk.c"
SPT_BLK = "tenders/spt/spt_module_block.c"
SPT_BINDINGS_BLK = "bindings/spt/block.c"


def _git(cwd: Path, *args: str) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.invalid", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@example.invalid", GIT_CONFIG_GLOBAL="/dev/null")
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def origin(tmp_path):
    """A local git repository: a tagged commit, then one more commit on top (HEAD moved on)."""
    repo = tmp_path / "origin"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    (repo / "configure.sh").write_text("#!/bin/sh\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "release")
    _git(repo, "tag", "-a", "v0.9.3", "-m", "v0.9.3")
    tagged = _git(repo, "rev-parse", "HEAD")
    (repo / "later.txt").write_text("after the release\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "later")
    return repo, tagged


def _source(**kw):
    return {"git": URL, "tag": "v0.9.3", "commit": "0" * 40, "local": "", **kw}


def _one_sentence(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg and not re.search(r"\. [A-Z]", msg), msg
    return msg


# ---------------------------------------------------------------- fetch: git

def test_fetch_from_local_git_checks_out_and_verifies_the_pinned_commit(tmp_path, origin):
    repo, tagged = origin
    dest = tmp_path / "out" / "solo5"
    lock = solo5upstream.fetch(_source(commit=tagged, local=str(repo)), dest, io.StringIO())
    assert lock["commit"] == tagged and lock["kind"] == "local-git" and lock["source"] == str(repo)
    assert _git(dest, "rev-parse", "HEAD") == tagged
    assert (dest / "configure.sh").is_file() and not (dest / "later.txt").exists()
    assert (dest / ".git").exists()   # Solo5's build derives its version from git describe
    assert [p.name for p in dest.parent.iterdir()] == ["solo5"]   # no temporary left behind


def test_fetch_replaces_an_existing_tree(tmp_path, origin):
    repo, tagged = origin
    dest = tmp_path / "solo5"
    dest.mkdir()
    (dest / "stale").write_text("x")
    solo5upstream.fetch(_source(commit=tagged, local=str(repo)), dest, io.StringIO())
    assert not (dest / "stale").exists()


def test_local_git_without_the_pinned_commit_names_the_keys(tmp_path, origin):
    repo, _ = origin
    with pytest.raises(PipelineError) as e:
        solo5upstream.fetch(_source(commit="1" * 40, local=str(repo)), tmp_path / "solo5", io.StringIO())
    msg = _one_sentence(e)
    assert "solo5.upstream.local" in msg and "solo5.upstream.commit" in msg
    assert not (tmp_path / "solo5").exists()


def test_malformed_commit_is_refused_before_cloning(tmp_path, origin):
    repo, _ = origin
    with pytest.raises(PipelineError, match="solo5.upstream.commit"):
        solo5upstream.fetch(_source(commit="v0.9.3", local=str(repo)), tmp_path / "solo5", io.StringIO())


def test_clone_by_tag_from_a_url_is_verified(tmp_path, origin):
    repo, tagged = origin
    lock = solo5upstream.fetch(_source(git=repo.as_uri(), commit=tagged), tmp_path / "solo5", io.StringIO())
    assert lock["kind"] == "git" and lock["commit"] == tagged and lock["tag"] == "v0.9.3"
    assert _git(tmp_path / "solo5", "rev-parse", "HEAD") == tagged


def test_tag_at_another_commit_than_pinned_is_an_error(tmp_path, origin):
    repo, tagged = origin
    later = _git(repo, "rev-parse", "HEAD")
    with pytest.raises(PipelineError) as e:
        solo5upstream.fetch(_source(git=repo.as_uri(), commit=later), tmp_path / "solo5", io.StringIO())
    msg = _one_sentence(e)
    assert tagged in msg and "solo5.upstream.commit" in msg and "solo5.upstream.tag" in msg
    assert not (tmp_path / "solo5").exists()


def test_unreachable_url_is_an_error_that_points_at_the_local_key(tmp_path):
    log = io.StringIO()
    with pytest.raises(PipelineError) as e:
        solo5upstream.fetch(_source(git="file:///nonexistent"), tmp_path / "solo5", log)
    msg = _one_sentence(e)
    assert "solo5.upstream.git" in msg and "solo5.upstream.local" in msg
    assert "git" in log.getvalue() and not (tmp_path / "solo5").exists()


def test_missing_local_path_and_empty_source_are_errors(tmp_path):
    with pytest.raises(PipelineError, match="solo5.upstream.local"):
        solo5upstream.fetch(_source(local=str(tmp_path / "nowhere")), tmp_path / "solo5", io.StringIO())
    with pytest.raises(PipelineError, match="solo5.upstream.git and solo5.upstream.local"):
        solo5upstream.fetch(_source(git=""), tmp_path / "solo5", io.StringIO())


# ---------------------------------------------------------------- fetch: tarball

@pytest.fixture
def tarball(tmp_path):
    top = tmp_path / "solo5-v0.9.3"
    (top / "tenders").mkdir(parents=True)
    (top / "configure.sh").write_text("#!/bin/sh\n")
    path = tmp_path / "solo5-v0.9.3.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        tf.add(top, arcname=top.name)
    shutil.rmtree(top)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_fetch_from_local_tarball_with_matching_sha256(tmp_path, tarball):
    path, sha = tarball
    dest = tmp_path / "solo5"
    lock = solo5upstream.fetch(_source(local=str(path), sha256=sha), dest, io.StringIO())
    assert lock["kind"] == "tarball" and lock["sha256"] == sha and "commit" not in lock
    assert (dest / "configure.sh").is_file() and (dest / "tenders").is_dir()


def test_tarball_with_wrong_sha256_is_refused(tmp_path, tarball):
    path, _ = tarball
    with pytest.raises(PipelineError) as e:
        solo5upstream.fetch(_source(local=str(path), sha256="0" * 64), tmp_path / "solo5", io.StringIO())
    assert "solo5.upstream.sha256" in _one_sentence(e) and "solo5.upstream.local" in str(e.value)
    assert not (tmp_path / "solo5").exists()


def test_tarball_needs_a_sha256(tmp_path, tarball):
    path, _ = tarball
    with pytest.raises(PipelineError, match="solo5.upstream.sha256"):
        solo5upstream.fetch(_source(local=str(path)), tmp_path / "solo5", io.StringIO())


# ---------------------------------------------------------------- patches

def test_there_are_solo5_patches_and_they_are_zero_context_add_only():
    assert PATCHES
    for patch in PATCHES:
        patching.check_add_only(patch)
        text = patch.read_text(encoding="utf-8").splitlines()
        hunks = [i for i, line in enumerate(text) if line.startswith("@@")]
        assert hunks
        for i in hunks:
            m = re.fullmatch(r"@@ -(\d+),0 \+(\d+)(?:,(\d+))? @@", text[i])
            assert m, text[i]
            count = int(m.group(3) or 1)
            body = text[i + 1:i + 1 + count]
            assert len(body) == count and all(line.startswith("+") for line in body)


# Lines of the reconstruction that are not anchors: (file) -> {line: text}. For hvt, the includes the
# inserted code relies on come before the insertion point, as upstream's do (the harness below compiles
# it); for every file, the calls a patch routes come after its insertion point, at their v0.9.3 lines.
# All text here is ours: no upstream line is kept in the repository.
RECONSTRUCTED = {
    BLK: {25: "#define _GNU_SOURCE", 26: "#define _FILE_OFFSET_BITS 64", 28: "#include <err.h>",
          30: "#include <stdio.h>", 31: "#include <string.h>", 32: "#include <unistd.h>",
          38: '#include "../common/block_attach.h"', 39: '#include "hvt.h"',
          71: "ssize_t blk_write(int fd, const void *b, size_t n, off_t o) { return pwrite(fd, b, n, o); }",
          103: "ssize_t blk_read(int fd, void *b, size_t n, off_t o) { return pread(fd, b, n, o); }",
          130: "int blk_attach(const char *p, off_t *cap) { return block_attach(p, cap); }"},
    SPT_BLK: {72: "        int fd = block_attach(path, &capacity);"},
    SPT_BINDINGS_BLK: {65: "    long nbytes = sys_pread64(e->b.hostfd, (char *)buf, size, offset);",
                       89: "    long nbytes = sys_pwrite64(e->b.hostfd, (const char *)buf, size, offset);"},
}


def _reconstruction(tmp_path: Path) -> Path:
    """The Solo5 files our patches touch, reduced to what the patches rely on.

    The anchor lines sit at their v0.9.3 line numbers, RECONSTRUCTED adds the lines above, and every
    other line is a placeholder.
    """
    files: dict[str, dict[int, str]] = {path: dict(lines) for path, lines in RECONSTRUCTED.items()}
    for patch in PATCHES:
        for (path, n), text in patching.anchors(patch).items():
            files.setdefault(path, {})[n] = text
    tree = tmp_path / "tree"
    for path, pinned in files.items():
        length = max(pinned) + 20
        (tree / path).parent.mkdir(parents=True, exist_ok=True)
        (tree / path).write_text("\n".join(pinned.get(n, f"/* upstream line {n} */") for n in range(1, length + 1))
                                 + "\n")
    (tree / "tenders" / "hvt" / "hvt.h").write_text("#include <sys/types.h>\n")
    (tree / "tenders" / "common").mkdir(parents=True, exist_ok=True)
    (tree / "tenders" / "common" / "block_attach.h").write_text(
        "#include <sys/types.h>\nint block_attach(const char *path, off_t *capacity_);\n")
    return tree


def test_the_spt_patch_touches_the_spt_tender_and_bindings_only():
    spt = next(p for p in PATCHES if p.name == SPT_PATCH)
    assert {path for path, _ in patching.insertion_points(spt)} == {
        "include/spt_abi.h", "tenders/spt/spt.h", "tenders/spt/spt_core.c", SPT_BLK, "bindings/spt/bindings.h",
        SPT_BINDINGS_BLK, "bindings/spt/platform.c"}
    assert {path for p in PATCHES if p.name != SPT_PATCH for path, _ in patching.insertion_points(p)} == {BLK}
    # Every routed file of PATCH_ROUTED_CALLS is one a patch inserts into, right after the line it names.
    points = {pt for p in PATCHES for pt in patching.insertion_points(p)}
    assert {(rel, after) for rel, (after, _) in solo5upstream.PATCH_ROUTED_CALLS.items()} <= points


def _hunks(patch: Path) -> dict[str, list[tuple[int, list[str]]]]:
    """file -> [(line inserted after, inserted lines)] of a zero-context, add-only patch."""
    out: dict[str, list[tuple[int, list[str]]]] = {}
    path = ""
    for line in patch.read_text(encoding="utf-8").split("--- a/", 1)[1].splitlines():
        if line.startswith("+++ "):
            path = line[len("+++ b/"):]
        elif line.startswith("@@"):
            out.setdefault(path, []).append((int(line.split()[1][1:].split(",")[0]), []))
        elif line.startswith("+"):
            out[path][-1][1].append(line[1:])
    return out


def test_spt_patch_lands_at_its_anchors(tmp_path):
    tree = _reconstruction(tmp_path)
    spt = next(p for p in PATCHES if p.name == SPT_PATCH)
    hunks = _hunks(spt)
    before = {rel: (tree / rel).read_text().splitlines() for rel in hunks}
    solo5upstream.check_patch_targets(tree)
    patching.apply(tree, PATCHES, io.StringIO(), solo5upstream.MISFIT_HINT)
    for rel, inserted in hunks.items():
        expected = list(before[rel])
        for after_line, lines in reversed(inserted):
            expected[after_line:after_line] = lines
        assert (tree / rel).read_text().splitlines() == expected, rel   # only these insertions, nothing else
    assert {rel: [n for n, _ in h] for rel, h in hunks.items()} == {
        "include/spt_abi.h": [58, 59], "tenders/spt/spt.h": [54], "tenders/spt/spt_core.c": [210], SPT_BLK: [38],
        "bindings/spt/bindings.h": [87], SPT_BINDINGS_BLK: [23, 27], "bindings/spt/platform.c": [45]}
    tender = "\n".join(hunks[SPT_BLK][0][1])
    assert "#define block_attach(" in tender and "DECLARE_MODULE(unikio" in tender and "PREAD_STATS_FILE" in tender
    assert "SCMP_SYS(write)" in tender and "O_DIRECT" in tender
    guest = "\n".join(hunks[SPT_BINDINGS_BLK][0][1])
    assert "#define sys_pread64(" in guest and "#define sys_pwrite64(" in guest and "SYS_CLOCK_MONOTONIC" in guest
    assert hunks[SPT_BINDINGS_BLK][1][1] == ["    unikio_block_init(bi);"]
    # The two calls into the inserted code: at guest exit and when the tender fills in the boot info.
    assert [line.split(";")[0] for line in hunks["bindings/spt/platform.c"][0][1]] == ["    unikio_spt_exit()"]
    assert [line.split(";")[0] for line in hunks["tenders/spt/spt_core.c"][0][1]] == ["    unikio_spt_boot_info(bi)"]
    assert "#define UNIKIO_SPT_MAGIC 0x6b696e75U" in hunks["include/spt_abi.h"][1][1]


def test_a_tree_that_does_not_fit_the_spt_patch_is_refused(tmp_path):
    tree = _reconstruction(tmp_path)
    lines = (tree / SPT_BINDINGS_BLK).read_text().splitlines()
    (tree / SPT_BINDINGS_BLK).write_text("\n".join(["/* one more line */", *lines]) + "\n")
    with pytest.raises(PipelineError) as e:
        patching.apply(tree, PATCHES, io.StringIO(), solo5upstream.MISFIT_HINT)
    msg = _one_sentence(e)
    assert msg == (f"{SPT_PATCH} does not fit the fetched source: {SPT_BINDINGS_BLK}:23 is '/* upstream line 22 */', "
                   f"the patch expects 'static const struct mft *mft;'; {solo5upstream.MISFIT_HINT}")


def test_spt_patch_targets_refuse_an_early_or_missing_call(tmp_path):
    tree = _reconstruction(tmp_path)
    lines = (tree / SPT_BINDINGS_BLK).read_text().splitlines()
    early = lines.copy()
    early[9] = "static long early(void *b) { return sys_pwrite64(3, b, 512, 0); }"
    (tree / SPT_BINDINGS_BLK).write_text("\n".join(early) + "\n")
    with pytest.raises(PipelineError) as e:
        solo5upstream.check_patch_targets(tree)
    assert _one_sentence(e) == (f"{SPT_BINDINGS_BLK}:10 calls sys_pwrite64() before the patch's insertion point "
                                f"(line 23); {solo5upstream.MISFIT_HINT}")
    (tree / SPT_BINDINGS_BLK).write_text("\n".join(lines) + "\n")
    tender = (tree / SPT_BLK).read_text().replace("block_attach(path", "attach_block(path")
    (tree / SPT_BLK).write_text(tender)
    with pytest.raises(PipelineError, match=f"^{SPT_BLK} has no block_attach\\(\\) call for the patch to instrument"):
        solo5upstream.check_patch_targets(tree)
    shutil.rmtree(tree / "bindings")
    (tree / SPT_BLK).write_text(tender.replace("attach_block(path", "block_attach(path"))
    with pytest.raises(PipelineError, match=f"^{SPT_BINDINGS_BLK} is missing from the fetched Solo5 tree"):
        solo5upstream.check_patch_targets(tree)


def test_patch_targets_are_checked_then_the_patch_lands_after_the_anchor(tmp_path):
    tree = _reconstruction(tmp_path)
    before = (tree / BLK).read_text().splitlines()
    solo5upstream.check_patch_targets(tree)
    patching.apply(tree, PATCHES, io.StringIO(), solo5upstream.MISFIT_HINT)
    after = (tree / BLK).read_text().splitlines()
    added = len(after) - len(before)
    assert added > 0
    assert after[:43] == before[:43] and after[43 + added:] == before[43:]   # only insertions, at line 44
    inserted = "\n".join(after[43:43 + added])
    assert "#define pread(" in inserted and "#define pwrite(" in inserted and "#define block_attach(" in inserted
    assert "PREAD_STATS_FILE" in inserted and "SOLO5_BLOCK_DIRECT" in inserted and "O_DIRECT" in inserted


def test_patch_targets_refuse_a_different_tree(tmp_path):
    tree = _reconstruction(tmp_path)
    lines = (tree / BLK).read_text().splitlines()
    (tree / BLK).write_text("\n".join(["/* one more line */", *lines]) + "\n")
    misfit = r"hvt_module_blk.c:43 is '/\* upstream line 42 \*/'.*solo5.upstream.commit"
    with pytest.raises(PipelineError, match=misfit):
        patching.apply(tree, PATCHES, io.StringIO(), solo5upstream.MISFIT_HINT)
    lines[20] = "static ssize_t early(int f, void *b) { return pread(f, b, 1, 0); }"
    (tree / BLK).write_text("\n".join(lines) + "\n")
    with pytest.raises(PipelineError, match="before the patch's insertion point"):
        solo5upstream.check_patch_targets(tree)
    with pytest.raises(PipelineError, match="missing"):
        solo5upstream.check_patch_targets(tmp_path / "empty")


HARNESS = r"""
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
/* (pread) below: the harness's own reference reads bypass the patch's macro */
ssize_t blk_read(int fd, void *b, size_t n, off_t o);
ssize_t blk_write(int fd, const void *b, size_t n, off_t o);
int blk_attach(const char *p, off_t *cap);
int (block_attach)(const char *path, off_t *cap)
{
    int fd = open(path, O_RDWR);
    *cap = lseek(fd, 0, SEEK_END);
    return fd;
}
static unsigned char mem[3 * 4096] __attribute__((aligned(4096)));
int main(int argc, char **argv)
{
    off_t cap;
    int fd = blk_attach(argv[1], &cap), ref = open(argv[1], O_RDONLY);
    unsigned reads = (unsigned)atoi(argv[2]), later = (unsigned)atoi(argv[3]);
    unsigned char want[512];
    for (unsigned i = 0; i < reads; i++) {
        size_t mis = (size_t[]){0, 1, 100, 511, 512, 4095}[i % 6];
        off_t off = (off_t)(i % 16) * 512;
        if (blk_read(fd, mem + mis, 512, off) != 512 || (pread)(ref, want, 512, off) != 512
                || memcmp(want, mem + mis, 512) != 0)
            return 10;
    }
    memset(mem + 3, 0xab, 512);                 /* misaligned buffer */
    if (blk_write(fd, mem + 3, 512, 1024) != 512 || (pread)(ref, want, 512, 1024) != 512 || want[0] != 0xab
            || want[511] != 0xab)
        return 11;
    memset(mem, 0xcd, 10);                      /* misaligned offset and length: read-modify-write */
    if (blk_write(fd, mem, 10, 2048 + 7) != 10 || (pread)(ref, want, 512, 2048) != 512 || want[6] != 6
            || want[7] != 0xcd || want[16] != 0xcd || want[17] != 17)
        return 12;
    /* After the last write: the benchmark window. */
    for (unsigned i = 0; i < later; i++)
        if (blk_read(fd, mem + 1, 512, (off_t)i * 512) != 512)
            return 13;
    return (fcntl(fd, F_GETFL) & O_DIRECT) ? 0 : 1;
}
"""


def test_patched_code_compiles_counts_reads_and_bounces_unaligned_direct_io(tmp_path):
    """The inserted C, on the reconstruction above, with our harness standing in for the hypercalls."""
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc")
    tree = _reconstruction(tmp_path)
    patching.apply(tree, PATCHES, io.StringIO(), solo5upstream.MISFIT_HINT)
    hvt = tree / "tenders" / "hvt"
    (hvt / "harness.c").write_text('#include "hvt_module_blk.c"\n' + HARNESS)
    exe = tmp_path / "harness"
    subprocess.run(["gcc", "-std=c11", "-O2", "-D_FORTIFY_SOURCE=2", "-Wall", "-Wextra", "-Werror",
                    "-Wno-unused-parameter", "-Wno-unused-variable", str(hvt / "harness.c"), "-o", str(exe)],
                   check=True)
    disk = tmp_path / "disk.img"
    stats = tmp_path / "pread.stats"
    for direct in ("", "1"):
        disk.write_bytes(bytes(k % 256 for k in range(64 * 1024)))
        env = {k: v for k, v in os.environ.items() if k not in ("PREAD_STATS_FILE", "SOLO5_BLOCK_DIRECT")}
        env["PREAD_STATS_FILE"] = str(stats)
        if direct:
            env["SOLO5_BLOCK_DIRECT"] = direct
        proc = subprocess.run([str(exe), str(disk), "60", "7"], env=env, capture_output=True, text=True,
                              check=False)
        if direct and "cannot set O_DIRECT" in proc.stderr:
            pytest.skip(f"{tmp_path} does not support O_DIRECT")
        assert proc.returncode == (0 if direct else 1), proc.stderr
        text = stats.read_text()
        # Reads before the last write are setup; the 7 after it are the window (one syscall each).
        assert re.fullmatch(r"pread_calls=7 pread_ns=\d+ setup_pread_calls=60 setup_pread_ns=\d+\n", text), text
        assert results.parse_pread_stats(text)["pread_ns"] > 0
    del env["PREAD_STATS_FILE"]
    stats.unlink()
    subprocess.run([str(exe), str(disk), "6", "1"], env=env, check=True)
    assert not stats.exists()


# ---------------------------------------------------------------- commands

def test_build_commands_configure_then_make(tmp_path):
    cmds = solo5upstream.build_commands(tmp_path)
    assert cmds[0] == ["./configure.sh"] and cmds[1][0] == "make" and len(cmds) == 2
    names = {p.relative_to(tmp_path).as_posix() for p in solo5upstream.build_products(tmp_path, "x86_64")}
    assert names == {"toolchain/bin/x86_64-solo5-none-static-cc", "toolchain/bin/x86_64-solo5-none-static-ld",
                     "toolchain/bin/x86_64-solo5-none-static-objcopy", "elftool/solo5-elftool",
                     "tenders/hvt/solo5-hvt", "tenders/spt/solo5-spt"}


def test_app_build_commands(tmp_path, repo):
    tree = tmp_path / "solo5"
    app = repo / "native" / "unikernels" / "blk_bench"
    out = tmp_path / "out" / "blk_bench.hvt"
    cmds = solo5upstream.app_build_commands(tree, app, app / "manifest.json", out, "x86_64")
    cc = str(tree / "toolchain/bin/x86_64-solo5-none-static-cc")
    ld = str(tree / "toolchain/bin/x86_64-solo5-none-static-ld")
    gen = [c for c in cmds if c[0] == str(tree / "elftool/solo5-elftool")]
    assert gen and gen[0][1:3] == ["gen-manifest", str(app / "manifest.json")]
    compiled = [c[c.index("-c") + 1] for c in cmds if c[0] == cc]
    assert str(app / "blk_bench.c") in compiled and str(repo / "native/solo5/util.c") in compiled
    assert gen[0][3] in compiled   # the generated manifest.c
    # Only our helper header is on the include path: solo5.h must come from upstream's wrapper.
    for c in cmds:
        if c[0] == cc:
            includes = [c[i + 1] for i, a in enumerate(c) if a == "-I"]
            assert str(repo / "native/solo5/include") not in includes
    assert ["cp", str(repo / "native/solo5/include/solo5_util.h")] == cmds[1][:2]
    link = cmds[-1]
    assert link[:3] == [ld, "-z", "solo5-abi=hvt"] and link[-2:] == ["-o", str(out)]
    objs = [c[c.index("-o") + 1] for c in cmds if c[0] == cc]
    assert sorted(link[3:-2]) == sorted(objs)
    assert all(Path(o).parent == tmp_path / "out" / "blk_bench.hvt.obj" for o in objs)
    assert cmds.index(gen[0]) < min(i for i, c in enumerate(cmds) if c[0] == cc)
    with pytest.raises(PipelineError, match="arch"):
        solo5upstream.app_build_commands(tree, app, app / "manifest.json", out, "riscv64")


def test_app_build_commands_for_spt_with_third_party_sources(tmp_path, repo):
    tree = tmp_path / "solo5"
    app = repo / "native" / "unikernels" / "ping_serve"
    out = tmp_path / "out" / "lwip_serve.spt"
    extra = [tmp_path / "lwip/src/core/ipv4/ip4.c", tmp_path / "lwip/src/core/ipv6/ip6.c",
             tmp_path / "lwip/src/core/ip.c", tmp_path / "lwip/src/api/ip.c"]   # two ip.c: objects must differ
    dirs = [tmp_path / "lwip/src/include", tmp_path / "glue"]
    cmds = solo5upstream.app_build_commands(tree, app, app / "manifest.json", out, "aarch64", abi="spt",
                                            extra_sources=extra, include_dirs=dirs)
    cc = str(tree / "toolchain/bin/aarch64-solo5-none-static-cc")
    compiles = {c[c.index("-c") + 1]: c for c in cmds if c[0] == cc}
    search = ["-isystem", str(dirs[0]), "-isystem", str(dirs[1])]
    for src in extra:
        c = compiles[str(src)]
        assert c[1:1 + len(solo5upstream.THIRD_PARTY_CFLAGS)] == list(solo5upstream.THIRD_PARTY_CFLAGS)
        assert not {"-Werror", "-Wextra", "-Wall"} & set(c)
        assert search == c[c.index("-isystem"):c.index("-isystem") + 4]
    ours = compiles[str(app / "ping_serve.c")]
    assert "-Werror" in ours and "-Wextra" in ours and search == ours[ours.index("-isystem"):ours.index("-isystem") + 4]
    link = cmds[-1]
    assert link[:3] == [str(tree / "toolchain/bin/aarch64-solo5-none-static-ld"), "-z", "solo5-abi=spt"]
    objs = [c[c.index("-o") + 1] for c in cmds if c[0] == cc]
    assert len(set(objs)) == len(objs) == 3 + len(extra) and sorted(link[3:-2]) == sorted(objs)
    assert [Path(o).name for o in objs if "extra-" in o] == ["extra-000-ip4.o", "extra-001-ip6.o", "extra-002-ip.o",
                                                            "extra-003-ip.o"]
    with pytest.raises(PipelineError, match=r"^Solo5 tender .virtio. is not one upstream builds \(hvt, spt\)$"):
        solo5upstream.app_build_commands(tree, app, app / "manifest.json", out, "x86_64", abi="virtio")
    # Our own solo5.h (the builtin provider's) must never stand in for upstream's.
    with pytest.raises(PipelineError) as e:
        solo5upstream.app_build_commands(tree, app, app / "manifest.json", out, "x86_64",
                                         include_dirs=[repo / "native/solo5/include"])
    assert _one_sentence(e) == (f"include dir {repo / 'native/solo5/include'} has a solo5.h, which would stand in "
                                "for upstream's")


def test_run_command(tmp_path):
    tree, app = tmp_path / "solo5", tmp_path / "blk_bench.hvt"
    hvt = str(tree / "tenders/hvt/solo5-hvt")
    assert solo5upstream.run_command(tree, app, 32, block="/dev/loop3", args=["reads=10"]) == [
        hvt, "--mem=32", "--block:storage=/dev/loop3", str(app), "reads=10"]
    assert solo5upstream.run_command(tree, app, 64, net="tap0") == [hvt, "--mem=64", "--net:service=tap0", str(app)]
    assert "--block-sector-size:storage=4096" in solo5upstream.run_command(tree, app, 8, block="d", block_size=4096)
    with pytest.raises(PipelineError, match="blk.block_size"):
        solo5upstream.run_command(tree, app, 8, block="d", block_size=1536)
    with pytest.raises(PipelineError, match="solo5.mem_mb"):
        solo5upstream.run_command(tree, app, 0)
    assert solo5upstream.run_env(tmp_path / "s") == {"PREAD_STATS_FILE": str(tmp_path / "s"), "SOLO5_BLOCK_DIRECT": "1"}
    assert solo5upstream.run_env(direct=False) == {}


def test_run_command_for_spt(tmp_path):
    tree, app = tmp_path / "solo5", tmp_path / "blk_bench.spt"
    spt = str(tree / "tenders/spt/solo5-spt")
    assert solo5upstream.run_command(tree, app, 32, block="/dev/loop3", block_size=512, args=["reads=10"],
                                     tender="spt") == [
        spt, "--mem=32", "--block:storage=/dev/loop3", "--block-sector-size:storage=512", str(app), "reads=10"]
    assert solo5upstream.run_command(tree, app, 16, net="tap0", args=["ip=10.0.0.2"], tender="spt") == [
        spt, "--mem=16", "--net:service=tap0", str(app), "ip=10.0.0.2"]
    with pytest.raises(PipelineError, match="Solo5 spt accepts"):
        solo5upstream.run_command(tree, app, 8, block="d", block_size=65536, tender="spt")
    # The spt patch reads the same variables as hvt's, and the guest writes the same line to the same file.
    # One environment for both tenders: each patched tender reads the same variables.
    assert solo5upstream.run_env(tmp_path / "s") == {"PREAD_STATS_FILE": str(tmp_path / "s"), "SOLO5_BLOCK_DIRECT": "1"}
    with pytest.raises(PipelineError) as e:
        solo5upstream.run_command(tree, app, 8, tender="virtio")
    assert _one_sentence(e) == "Solo5 tender 'virtio' is not one upstream builds (hvt, spt)"


def test_manifests(repo):
    for app, device in (("blk_bench", {"name": "storage", "type": "BLOCK_BASIC"}),
                        ("ping_serve", {"name": "service", "type": "NET_BASIC"})):
        manifest = json.loads((repo / "native" / "unikernels" / app / "manifest.json").read_text())
        assert manifest == {"type": "solo5.manifest", "version": 1, "devices": [device]}
    assert solo5upstream.BLOCK_DEVICE == "storage" and solo5upstream.NET_DEVICE == "service"


# ---------------------------------------------------------------- spt confinement: why a guest was killed

# As the kernel prints them (dmesg without auditd) and as auditd writes them; values from a real kill on x86_64.
DMESG_KILL = ('[36222.071206] audit: type=1326 audit(1795727088.562:2): auid=4294967295 uid=0 gid=0 '
              'ses=4294967295 pid=22019 comm="solo5-spt" exe="/tmp/s5b/tenders/spt/solo5-spt" sig=31 '
              'arch=c000003e syscall=39 compat=0 ip=0x1029a7 code=0x0')
AUDIT_KILL = ('type=SECCOMP msg=audit(1795727090.100:7): auid=4294967295 uid=0 gid=0 ses=4294967295 '
              'subj=unconfined pid=4711 comm="solo5-spt" exe="/x/solo5-spt" sig=31 arch=c00000b7 syscall=172 '
              'compat=0 ip=0x10a2c0 code=0x0')
NEEDS_LIBSECCOMP = pytest.mark.skipif(ctypes.util.find_library("seccomp") is None,
                                      reason="names system calls with libseccomp, which is not installed")


@NEEDS_LIBSECCOMP
def test_syscall_names_come_from_libseccomp():
    assert solo5upstream.syscall_name(39, 0xc000003e) == "getpid"      # x86_64
    assert solo5upstream.syscall_name(172, 0xc00000b7) == "getpid"     # aarch64
    assert solo5upstream.syscall_name(99999, 0xc000003e) is None


@NEEDS_LIBSECCOMP
def test_seccomp_kill_reason_names_the_system_call_of_that_pid():
    log = "\n".join(["[1.0] loop0: detected capacity change from 0 to 8", DMESG_KILL,
                     DMESG_KILL.replace("pid=22019", "pid=22020").replace("syscall=39", "syscall=2"), AUDIT_KILL])
    assert solo5upstream.seccomp_kill_reason(-signal.SIGSYS, 22019, log) == (
        "the guest was killed by upstream spt's seccomp filter for the system call getpid "
        "(syscall=39 in the kernel's audit record for pid 22019)")
    assert solo5upstream.seccomp_kill_reason(-signal.SIGSYS, 22020, log).endswith("system call open "
                                                                                 "(syscall=2 in the kernel's audit "
                                                                                 "record for pid 22020)")
    # auditd's format, another architecture; a shell reports the signal as 128 + 31.
    assert solo5upstream.seccomp_kill_reason(128 + signal.SIGSYS, 4711, log) == (
        "the guest was killed by upstream spt's seccomp filter for the system call getpid "
        "(syscall=172 in the kernel's audit record for pid 4711)")


def test_seccomp_kill_reason_without_a_record_names_the_signal():
    logged_only = DMESG_KILL.replace("sig=31", "sig=0")   # SECCOMP_RET_LOG: the call was allowed
    for pid, log in ((22019, logged_only), (1, DMESG_KILL), (None, DMESG_KILL)):
        reason = solo5upstream.seccomp_kill_reason(-signal.SIGSYS, pid, log)
        which = "the guest" if pid is None else f"pid {pid}"
        assert reason == ("the guest was killed by SIGSYS, upstream spt's seccomp filter refusing a system call "
                          f"(the kernel log has no audit record for {which} to name it)")
        assert "\n" not in reason and not re.search(r"\. [A-Z]", reason)
    for returncode in (0, 1, -signal.SIGKILL, -signal.SIGSEGV):
        assert solo5upstream.seccomp_kill_reason(returncode, 22019, DMESG_KILL) is None


# ---------------------------------------------------------------- end to end (real Solo5)

def _kvm_skip() -> str | None:
    return None if os.access("/dev/kvm", os.R_OK | os.W_OK) else "upstream hvt needs a usable /dev/kvm"


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    """Real Solo5 fetched from UNIKIO_SOLO5_SOURCE, patched and built once, with our guests for hvt and spt."""
    source = os.environ.get("UNIKIO_SOLO5_SOURCE", "")
    if not source:
        pytest.skip("upstream Solo5 source not configured: set UNIKIO_SOLO5_SOURCE to a Solo5 git directory or "
                    "release tarball (solo5.upstream.local)")
    top = tmp_path_factory.mktemp("upstream")
    cfg = _source(commit=os.environ.get("UNIKIO_SOLO5_COMMIT", "38e0c348be231a2a3c59510a5caabf562792679f"),
                  local=source)
    if Path(source).is_file():
        cfg["sha256"] = os.environ.get("UNIKIO_SOLO5_SHA256") or hashlib.sha256(Path(source).read_bytes()).hexdigest()
    log_path = top / "solo5.log"
    tree, out = top / "solo5", top / "out"
    apps = REPO / "native" / "unikernels"
    arch = os.uname().machine
    t0 = time.monotonic()
    with open(log_path, "w") as log:
        solo5upstream.fetch(cfg, tree, log)
        solo5upstream.check_patch_targets(tree)
        patching.apply(tree, PATCHES, log, solo5upstream.MISFIT_HINT)
        solo5upstream.build(tree, log)
        build_s = time.monotonic() - t0
        for app in ("blk_bench", "ping_serve"):
            for abi in ("hvt", "spt"):
                solo5upstream.build_app(tree, apps / app, apps / app / "manifest.json", out / f"{app}.{abi}", arch, log,
                                        abi=abi)
        # A guest outside the Solo5 API: one raw system call that spt's filter does not allow.
        evil = top / "evil"
        evil.mkdir()
        (evil / "manifest.json").write_text('{"type": "solo5.manifest", "version": 1, "devices": []}\n')
        (evil / "evil.c").write_text(EVIL_GUEST)
        if arch == "x86_64":
            solo5upstream.build_app(tree, evil / "evil.c", evil / "manifest.json", out / "evil.spt", arch, log,
                                    abi="spt")
    print(f"upstream Solo5 fetched, patched and built in {build_s:.1f} s, guests in {time.monotonic() - t0:.1f} s")
    return SimpleNamespace(tree=tree, out=out, log=log_path, arch=arch, build_s=build_s)


EVIL_GUEST = r"""
#include "solo5.h"

/* getpid(2), made directly: no Solo5 call needs it, so spt's filter must kill us here. */
int solo5_app_main(const struct solo5_start_info *si)
{
    long ret;

    (void)si;
    __asm__ __volatile__("syscall" : "=a"(ret) : "a"(39L) : "rcx", "r11", "memory");
    solo5_console_write("evil: still alive\n", 18);
    return (int)ret;
}
"""


@pytest.mark.e2e
def test_upstream_builds_both_tenders_with_our_spt_module(upstream):
    for product in solo5upstream.build_products(upstream.tree, upstream.arch):
        assert product.is_file(), product
    for abi in ("hvt", "spt"):
        for app in ("blk_bench", "ping_serve"):
            assert (upstream.out / f"{app}.{abi}").is_file()
    proc = subprocess.run([str(upstream.tree / solo5upstream.SPT_TENDER), "--help"], capture_output=True, text=True,
                          timeout=30, check=False)
    modules = next(line for line in proc.stderr.splitlines() if line.startswith("Compiled-in modules:"))
    assert sorted(modules.split(":", 1)[1].split()) == ["block", "core", "net", "unikio"]
    # The guest bindings carry the accounting: the spt guest has the wrappers, the hvt guest does not.
    syms = {abi: subprocess.run(["nm", str(upstream.out / f"blk_bench.{abi}")], capture_output=True, text=True,
                                check=True).stdout for abi in ("hvt", "spt")}
    assert "unikio_spt_exit" in syms["spt"] and "unikio_spt_exit" not in syms["hvt"]


def _pattern(n: int) -> bytes:
    return bytes(k * 7 % 251 for k in range(n))


@pytest.mark.e2e
@pytest.mark.parametrize("tender", ["hvt", "spt"])
def test_upstream_runs_blk_bench_with_the_pread_window(upstream, tmp_path, tender):
    if tender == "hvt" and _kvm_skip():
        pytest.skip(_kvm_skip())
    disk = tmp_path / "disk.img"
    disk.write_bytes(_pattern(1 << 20))
    stats = tmp_path / "pread.stats"
    guest = upstream.out / f"blk_bench.{tender}"
    for misalign in (0, 1):
        argv = solo5upstream.run_command(upstream.tree, guest, 32, block=disk,
                                         args=["reads=1000", f"misalign={misalign}"], tender=tender)
        env = dict(os.environ, **solo5upstream.run_env(stats))
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        result = results.parse_blk_result(proc.stdout)
        assert result["reads"] == 1000 and result["block_size"] == 512
        # The window: exactly the timed reads; before it, blk_bench's read of the block it rewrites.
        text = stats.read_text()
        assert re.fullmatch(r"pread_calls=1000 pread_ns=\d+ setup_pread_calls=1 setup_pread_ns=\d+\n", text), text
        assert 0 < results.parse_pread_stats(text)["pread_ns"] < result["total_ns"]
        assert "pread_calls=" not in proc.stdout   # the file, not the console
    # The rewrite (through the bounce buffer for misalign=1) changed nothing.
    assert disk.read_bytes() == _pattern(1 << 20)
    # Without the variables: no file, and no O_DIRECT needed.
    stats.unlink()
    argv = solo5upstream.run_command(upstream.tree, guest, 32, block=disk, args=["reads=10", "misalign=3"],
                                     tender=tender)
    env = {k: v for k, v in os.environ.items() if k not in ("PREAD_STATS_FILE", "SOLO5_BLOCK_DIRECT")}
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0 and results.parse_blk_result(proc.stdout)["reads"] == 10, proc.stdout + proc.stderr
    assert not stats.exists()


def _losetup(*args: str) -> str:
    return subprocess.run(["losetup", *args], capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.e2e
def test_upstream_spt_direct_io_on_a_4k_sector_device(upstream, tmp_path):
    """spt's filter allows whole blocks only: 512-byte blocks of a 4096-byte-sector device are refused up front."""
    if os.geteuid() != 0 or shutil.which("losetup") is None:
        pytest.skip("needs root and losetup for a loop device")
    backing = _backing_file(tmp_path)
    backing.write_bytes(_pattern(1 << 20))
    dev = _losetup("--find", "--show", "--sector-size", "4096", str(backing))
    try:
        stats = tmp_path / "pread.stats"
        env = dict(os.environ, **solo5upstream.run_env(stats))
        guest = upstream.out / "blk_bench.spt"
        argv = solo5upstream.run_command(upstream.tree, guest, 32, block=dev, args=["reads=100"], tender="spt")
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1] == (
            "solo5-spt: SOLO5_BLOCK_DIRECT=1: storage needs 4096-byte aligned direct I/O, more than its 512-byte "
            "blocks"), proc.stderr
        assert stats.read_text() == ""   # opened at start-up, never written
        argv = solo5upstream.run_command(upstream.tree, guest, 32, block=dev, block_size=4096,
                                         args=["reads=300", "misalign=8"], tender="spt")
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert results.parse_blk_result(proc.stdout)["block_size"] == 4096
        assert re.fullmatch(r"pread_calls=300 pread_ns=\d+ setup_pread_calls=1 setup_pread_ns=\d+\n",
                            stats.read_text())
    finally:
        subprocess.run(["losetup", "--detach", dev], capture_output=True, check=False)
        backing.unlink(missing_ok=True)


def _backing_file(tmp_path: Path) -> Path:
    """A loop device's backing file, on tmpfs when there is one (as the block experiment's)."""
    shm = Path("/dev/shm")
    return shm / f"unikio-test-{os.getpid()}-{tmp_path.name}.img" if shm.is_dir() else tmp_path / "backing.img"


@pytest.fixture(scope="module")
def icmp_bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    subprocess.run(["make", "-C", str(REPO / "native" / "bench"), f"O={out}", f"{out}/icmp_bench"],
                   check=True, capture_output=True, text=True, timeout=300)
    return out / "icmp_bench"


@pytest.mark.e2e
@pytest.mark.parametrize("tender", ["hvt", "spt"])
def test_upstream_ping_serve_answers_pings_over_a_tap(upstream, icmp_bench, tmp_path, tender):
    if tender == "hvt" and _kvm_skip():
        pytest.skip(_kvm_skip())
    if os.geteuid() != 0 or shutil.which("ip") is None or not os.path.exists("/dev/net/tun"):
        pytest.skip("needs root, iproute2 and /dev/net/tun for a tap in a network namespace")
    console = tmp_path / "console.log"
    with netns.tap_namespace("unikio-s5test", "10.0.0.1/24") as ns, open(console, "w") as out:
        argv = solo5upstream.run_command(upstream.tree, upstream.out / f"ping_serve.{tender}", 32, net=ns.tap,
                                         args=["ip=10.0.0.2"], tender=tender)
        proc = subprocess.Popen([*ns.exec_prefix(), *argv], stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while "ping_serve: ready" not in console.read_text() and proc.poll() is None:
                assert time.monotonic() < deadline, console.read_text()
                time.sleep(0.05)
            assert proc.poll() is None, console.read_text()
            for size in (1, 1472):
                bench = subprocess.run([*ns.exec_prefix(), str(icmp_bench), "--ifname", ns.tap, "--src-ip", "10.0.0.1",
                                        "--dst-ip", "10.0.0.2", "--size", str(size), "--count", "300"],
                                       capture_output=True, text=True, timeout=400, check=False)
                assert bench.returncode == 0, bench.stdout + bench.stderr + console.read_text()
                res = results.parse_net_result(bench.stdout)
                # Every echo answered, checksums and payload intact (icmp_bench counts anything else as lost).
                assert (res["size"], res["packets"], res["lost"]) == (size, 300, 0), res
            assert proc.poll() is None, console.read_text()
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.mark.e2e
def test_upstream_spt_filter_kills_a_guest_outside_the_api(upstream, tmp_path):
    if upstream.arch != "x86_64":
        pytest.skip("the guest's raw system call is written for x86_64")
    stats = tmp_path / "pread.stats"
    argv = solo5upstream.run_command(upstream.tree, upstream.out / "evil.spt", 16, tender="spt")
    proc = subprocess.Popen(argv, env=dict(os.environ, **solo5upstream.run_env(stats)),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGSYS, out
    assert "evil: still alive" not in out and "Solo5: Bindings version" in out
    assert stats.read_text() == ""   # killed before its exit path: no statistics line
    reason = solo5upstream.seccomp_kill_reason(proc.returncode, proc.pid)
    assert reason is not None and "\n" not in reason
    if "audit record" in reason and "no audit record" not in reason:
        assert reason == ("the guest was killed by upstream spt's seccomp filter for the system call getpid "
                          f"(syscall=39 in the kernel's audit record for pid {proc.pid})")
    else:   # the kernel logged nothing we can read (no root for dmesg, rate limit, audit off)
        assert reason.startswith("the guest was killed by SIGSYS")
