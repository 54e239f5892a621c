"""The upstream Solo5 provider: fetch and its verification, our patches, command construction.

Nothing here needs the real Solo5 source except the last test, which builds and runs upstream hvt
from a local copy named by UNIKIO_SOLO5_SOURCE (a git directory or release tarball).
"""

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from unikio import patching, results, solo5upstream
from unikio.errors import PipelineError

URL = "https://github.com/Solo5/solo5.git"
PATCHES = sorted((Path(__file__).resolve().parents[2] / "patches" / "solo5").glob("*.patch"))
BLK = "tenders/hvt/hvt_module_blk.c"


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


def _reconstruction(tmp_path: Path) -> Path:
    """Solo5's tenders/hvt/hvt_module_blk.c reduced to what our patch relies on.

    The anchor lines sit at their v0.9.3 line numbers, the includes the inserted code uses come
    before the insertion point as upstream's do, and the calls the patch must reach come after it,
    at the read handler's line (103) among others. Every other line is a placeholder: no upstream
    text is kept in the repository.
    """
    lines = [f"/* upstream line {n} */" for n in range(1, 161)]
    for patch in PATCHES:
        for (path, n), text in patching.anchors(patch).items():
            assert path == BLK
            lines[n - 1] = text
    lines[31] = "#include <unistd.h>"
    lines[37] = '#include "../common/block_attach.h"'
    lines[24] = "#define _GNU_SOURCE"
    lines[25] = "#define _FILE_OFFSET_BITS 64"
    lines[27] = "#include <err.h>"
    lines[29] = "#include <stdio.h>"
    lines[30] = "#include <string.h>"
    lines[38] = '#include "hvt.h"'
    lines[70] = "ssize_t blk_write(int fd, const void *b, size_t n, off_t o) { return pwrite(fd, b, n, o); }"
    lines[102] = "ssize_t blk_read(int fd, void *b, size_t n, off_t o) { return pread(fd, b, n, o); }"
    lines[129] = "int blk_attach(const char *p, off_t *cap) { return block_attach(p, cap); }"
    tree = tmp_path / "tree"
    (tree / "tenders" / "hvt").mkdir(parents=True)
    (tree / "tenders" / "common").mkdir()
    (tree / BLK).write_text("\n".join(lines) + "\n")
    (tree / "tenders" / "hvt" / "hvt.h").write_text("#include <sys/types.h>\n")
    (tree / "tenders" / "common" / "block_attach.h").write_text(
        "#include <sys/types.h>\nint block_attach(const char *path, off_t *capacity_);\n")
    return tree


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
                     "tenders/hvt/solo5-hvt"}


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
    assert cmds.index(gen[0]) < min(i for i, c in enumerate(cmds) if c[0] == cc)
    with pytest.raises(PipelineError, match="arch"):
        solo5upstream.app_build_commands(tree, app, app / "manifest.json", out, "riscv64")


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


def test_manifests(repo):
    for app, device in (("blk_bench", {"name": "storage", "type": "BLOCK_BASIC"}),
                        ("ping_serve", {"name": "service", "type": "NET_BASIC"})):
        manifest = json.loads((repo / "native" / "unikernels" / app / "manifest.json").read_text())
        assert manifest == {"type": "solo5.manifest", "version": 1, "devices": [device]}
    assert solo5upstream.BLOCK_DEVICE == "storage" and solo5upstream.NET_DEVICE == "service"


# ---------------------------------------------------------------- end to end (real Solo5)

@pytest.mark.e2e
def test_upstream_hvt_builds_and_runs_blk_bench(tmp_path, repo):
    source = os.environ.get("UNIKIO_SOLO5_SOURCE", "")
    if not source:
        pytest.skip("upstream Solo5 source not configured (solo5.upstream.local)")
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        pytest.skip("needs /dev/kvm")
    cfg = _source(commit=os.environ.get("UNIKIO_SOLO5_COMMIT", "38e0c348be231a2a3c59510a5caabf562792679f"),
                  local=source)
    if Path(source).is_file():
        cfg["sha256"] = os.environ.get("UNIKIO_SOLO5_SHA256") or hashlib.sha256(Path(source).read_bytes()).hexdigest()
    log_path = tmp_path / "solo5.log"
    with open(log_path, "w") as log:
        tree = tmp_path / "solo5"
        solo5upstream.fetch(cfg, tree, log)
        solo5upstream.check_patch_targets(tree)
        patching.apply(tree, PATCHES, log, solo5upstream.MISFIT_HINT)
        solo5upstream.build(tree, log)
        arch = os.uname().machine
        app = repo / "native" / "unikernels" / "blk_bench"
        out = tmp_path / "blk_bench.hvt"
        solo5upstream.build_app(tree, app, app / "manifest.json", out, arch, log)
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(k * 7 % 251 for k in range(1 << 20)))
    stats = tmp_path / "pread.stats"
    for misalign in (0, 1):
        argv = solo5upstream.run_command(tree, out, 32, block=disk, args=["reads=1000", f"misalign={misalign}"])
        env = dict(os.environ, **solo5upstream.run_env(stats))
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr + log_path.read_text()[-3000:]
        result = results.parse_blk_result(proc.stdout)
        assert result["reads"] == 1000 and result["block_size"] == 512
        # The window: exactly the timed reads; before it, blk_bench's read of the block it rewrites.
        assert re.fullmatch(r"pread_calls=1000 pread_ns=\d+ setup_pread_calls=1 setup_pread_ns=\d+\n",
                            stats.read_text()), stats.read_text()
    assert disk.read_bytes() == bytes(k * 7 % 251 for k in range(1 << 20))  # the rewrite changed nothing
