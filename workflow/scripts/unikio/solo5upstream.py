"""The `upstream` Solo5 provider: real Solo5 (v0.9.3) fetched, verified, patched and built.

Fetch (`fetch`): from `solo5.upstream.git` (a shallow clone of `solo5.upstream.tag`), or from
`solo5.upstream.local` on offline machines (a git directory, or a release tarball verified against
`solo5.upstream.sha256`). A git source must be at the pinned `solo5.upstream.commit`. There is no
fallback to the builtin provider: every failure is a `PipelineError` naming the config keys.

Patch: `patching.apply` checks the anchors each zero-context patch in `patches/solo5/` names around its
insertion point (zero-context hunks carry no text `patch` could check) and applies it; `check_patch_targets`
checks that the calls the patch routes through its wrappers all come after that point.

Build: `build_commands` / `build` (`./configure.sh && make`), `app_build_commands` (manifest, compile
with the Solo5 `-cc` wrapper, link with `-ld -z solo5-abi=hvt`) and `run_command` (`solo5-hvt`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from . import procs
from .aptsrc import sha256_file
from .errors import PipelineError

REPO = Path(__file__).resolve().parents[3]
NATIVE_SOLO5 = REPO / "native" / "solo5"

TARBALL_SUFFIXES = (".tar.gz", ".tar.xz", ".tgz")
ARCHS = ("x86_64", "aarch64")
BLOCK_DEVICE = "storage"    # name in native/unikernels/blk_bench/manifest.json
NET_DEVICE = "service"      # name in native/unikernels/ping_serve/manifest.json

HVT_TENDER = Path("tenders/hvt/solo5-hvt")
ELFTOOL = Path("elftool/solo5-elftool")

# Guest C flags on top of what the Solo5 -cc wrapper adds (-ffreestanding, -fstack-protector-strong,
# its include paths): the same as the builtin provider's guests (native/Makefile), so both providers
# run the same guest code. -fno-tree-loop-distribute-patterns keeps native/solo5/util.c's memcpy and
# friends from being compiled into calls to themselves.
APP_CFLAGS = ("-std=gnu11", "-O2", "-g", "-Wall", "-Wextra", "-Werror", "-fno-tree-loop-distribute-patterns",
              "-fno-asynchronous-unwind-tables", "-mgeneral-regs-only")

# Calls that must come after the block our patch inserts (after line 43, pinned by the patch's anchors), so
# that the macros it defines there reach them.
PATCH_ROUTED_CALLS: dict[str, tuple[int, tuple[str, ...]]] = {
    "tenders/hvt/hvt_module_blk.c": (43, ("pread(", "pwrite(", "block_attach(")),
}
MISFIT_HINT = "fix solo5.upstream.commit/solo5.upstream.local or patches/solo5/"

_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_GIT_TIMEOUT_S = 900


# ---------------------------------------------------------------- running commands

def _run(argv: Sequence[str | Path], log: IO[str], cwd: Path | None = None,
         timeout_s: float | None = None) -> subprocess.CompletedProcess[str]:
    """Run argv with its output in the log; the caller decides what a failure means."""
    args = [str(a) for a in argv]
    log.write("$ " + " ".join(args) + (f"    (in {cwd})" if cwd else "") + "\n")
    log.flush()
    try:
        proc = procs.run(args, timeout_s=timeout_s, cwd=cwd, env={"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"},
                         stderr=subprocess.STDOUT)
    except subprocess.TimeoutExpired:
        log.write(f"\n[timed out after {timeout_s} s]\n")
        return subprocess.CompletedProcess(args, 124, "")
    log.write(proc.stdout)
    log.flush()
    return proc


def _git_head(tree: Path, log: IO[str]) -> str:
    proc = _run(["git", "-C", tree, "rev-parse", "HEAD"], log)
    return proc.stdout.strip().splitlines()[-1] if proc.returncode == 0 and proc.stdout.strip() else ""


# ---------------------------------------------------------------- fetch

def _pinned_commit(source: dict) -> str:
    commit = str(source.get("commit") or "").strip().lower()
    if not _COMMIT_RE.match(commit):
        raise PipelineError(f"solo5.upstream.commit is {commit!r}, not a full 40-hex-digit git commit; "
                            "set it to the commit of solo5.upstream.tag")
    return commit


def _fresh_tmp(dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.tmp-"))


def _install(tmp_tree: Path, dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    tmp_tree.rename(dest)


def _fetch_git(origin: str, source: dict, dest: Path, log: IO[str], local: bool) -> dict:
    commit = _pinned_commit(source)
    tag = str(source.get("tag") or "").strip()
    keys = "solo5.upstream.local" if local else "solo5.upstream.git"
    tmp = _fresh_tmp(dest)
    tree = tmp / "solo5"
    try:
        if local:
            # Any ref of the local repository may be checked out; the pinned commit is what counts.
            proc = _run(["git", "clone", "--quiet", "--no-checkout", origin, tree], log, timeout_s=_GIT_TIMEOUT_S)
            if proc.returncode != 0:
                raise PipelineError(f"cannot clone {origin} ({keys}); the git output is in the log, "
                                    "fix solo5.upstream.local or empty it to clone solo5.upstream.git")
            proc = _run(["git", "-C", tree, "-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach",
                         commit], log)
            if proc.returncode != 0:
                raise PipelineError(f"{origin} (solo5.upstream.local) does not contain the pinned commit {commit} "
                                    "(solo5.upstream.commit); point solo5.upstream.local at a Solo5 clone that has it")
        else:
            argv: list[str | Path] = ["git", "-c", "advice.detachedHead=false", "clone", "--quiet"]
            argv += ["--depth", "1", "--branch", tag] if tag else []
            proc = _run([*argv, origin, tree], log, timeout_s=_GIT_TIMEOUT_S)
            if proc.returncode != 0:
                at = f" at tag {tag} (solo5.upstream.tag)" if tag else ""
                raise PipelineError(f"cannot clone {origin} (solo5.upstream.git){at}; the git output is in the log, "
                                    "and on an offline machine set solo5.upstream.local to a local Solo5 git "
                                    "directory or release tarball")
            if not tag:
                proc = _run(["git", "-C", tree, "-c", "advice.detachedHead=false", "checkout", "--quiet",
                             "--detach", commit], log)
                if proc.returncode != 0:
                    raise PipelineError(f"{origin} (solo5.upstream.git) has no commit {commit} "
                                        "(solo5.upstream.commit); fix solo5.upstream.commit or solo5.upstream.git")
        head = _git_head(tree, log)
        if head != commit:
            ref = f"tag {tag}" if tag and not local else "checkout"
            raise PipelineError(f"{origin} ({keys}) {ref} is commit {head or '(none)'}, not the pinned {commit}; "
                                "fix solo5.upstream.commit or solo5.upstream.tag, or the source")
        # .git stays: Solo5 derives its version string from `git describe`.
        _install(tree, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"name": "solo5", "provider": "upstream", "kind": "local-git" if local else "git",
            "source": origin, "tag": tag, "commit": commit}


def _fetch_tarball(tarball: Path, source: dict, dest: Path, log: IO[str]) -> dict:
    want = str(source.get("sha256") or "").strip().lower()
    if not _SHA256_RE.match(want):
        raise PipelineError(f"solo5.upstream.local is the tarball {tarball} but solo5.upstream.sha256 is "
                            f"{want!r}; a tarball has no commit to verify, so set solo5.upstream.sha256 to its sha256")
    got = sha256_file(tarball)
    log.write(f"sha256 {tarball}: {got}\n")
    if got != want:
        raise PipelineError(f"sha256 of {tarball} (solo5.upstream.local) is {got}, solo5.upstream.sha256 says {want}; "
                            "fix one of them")
    tmp = _fresh_tmp(dest)
    try:
        try:
            with tarfile.open(tarball) as tf:
                tf.extractall(tmp, filter="data")
        except (tarfile.TarError, OSError) as e:
            raise PipelineError(f"cannot unpack {tarball} (solo5.upstream.local): {e}") from e
        tops = list(tmp.iterdir())
        if len(tops) != 1 or not tops[0].is_dir():
            raise PipelineError(f"{tarball} (solo5.upstream.local) does not unpack to one top directory")
        _install(tops[0], dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"name": "solo5", "provider": "upstream", "kind": "tarball", "source": str(tarball),
            "tag": str(source.get("tag") or ""), "sha256": got}


def fetch(source: dict, dest: Path, log: IO[str]) -> dict:
    """Fetch the Solo5 tree to dest (replacing it) and return the lock record of what was fetched.

    source is the `solo5.upstream` config: git, tag, commit, local, and sha256 for a local tarball.
    """
    local = str(source.get("local") or "").strip()
    if local:
        path = Path(local).expanduser()
        if path.is_dir():
            return _fetch_git(str(path.resolve()), source, dest, log, local=True)
        if path.is_file() and path.name.endswith(TARBALL_SUFFIXES):
            return _fetch_tarball(path.resolve(), source, dest, log)
        raise PipelineError(f"solo5.upstream.local is {local!r}, which is neither a git directory nor a "
                            f"{'/'.join(TARBALL_SUFFIXES)} tarball on this machine; fix it or empty it to clone "
                            "solo5.upstream.git")
    url = str(source.get("git") or "").strip()
    if not url:
        raise PipelineError("solo5.upstream.git and solo5.upstream.local are both empty; set one of them")
    return _fetch_git(url, source, dest, log, local=False)


# ---------------------------------------------------------------- patch targets

def check_patch_targets(tree: Path) -> None:
    """Refuse a tree in which our macros would not reach the calls they must route.

    The patch's anchors (checked by patching.apply) pin its insertion point;
    this checks what comes after it: every call it instruments is there, and
    none comes before.
    """
    for rel, (after, calls) in PATCH_ROUTED_CALLS.items():
        path = tree / rel
        if not path.is_file():
            raise PipelineError(f"{rel} is missing from the fetched Solo5 tree; {MISFIT_HINT}")
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        for call in calls:
            early = [n for n, line in enumerate(lines[:after], 1) if call in line]
            if early:
                raise PipelineError(f"{rel}:{early[0]} calls {call[:-1]}() before the patch's insertion point "
                                    f"(line {after}); {MISFIT_HINT}")
            if not any(call in line for line in lines[after:]):
                raise PipelineError(f"{rel} has no {call[:-1]}() call for the patch to instrument; {MISFIT_HINT}")


# ---------------------------------------------------------------- build

def build_commands(tree: Path) -> list[list[str]]:
    """Commands that build the tenders, elftool and the toolchain wrappers; run them with cwd=tree."""
    return [["./configure.sh"], ["make", f"-j{os.cpu_count() or 1}"]]


def toolchain_prefix(tree: Path, arch: str) -> Path:
    """tree/toolchain/bin/<arch>-solo5-none-static (append -cc, -ld, -objcopy)."""
    if arch not in ARCHS:
        raise PipelineError(f"arch {arch!r} is not one Solo5 builds for ({', '.join(ARCHS)}); fix archs")
    return tree / "toolchain" / "bin" / f"{arch}-solo5-none-static"


def build_products(tree: Path, arch: str) -> list[Path]:
    prefix = toolchain_prefix(tree, arch)
    return [Path(f"{prefix}-{tool}") for tool in ("cc", "ld", "objcopy")] + [tree / ELFTOOL, tree / HVT_TENDER]


def build(tree: Path, log: IO[str], arch: str | None = None) -> None:
    """./configure.sh && make in tree; every expected product must exist afterwards."""
    for argv in build_commands(tree):
        proc = _run(argv, log, cwd=tree)
        if proc.returncode != 0:
            raise PipelineError(f"Solo5 `{' '.join(argv)}` failed with status {proc.returncode}; its output is in "
                                "the log (build needs make, cc, pkg-config and libseccomp-dev)")
    missing = [str(p.relative_to(tree)) for p in build_products(tree, arch or os.uname().machine) if not p.exists()]
    if missing:
        raise PipelineError(f"the Solo5 build finished without {', '.join(missing)}; see the log")


def app_build_commands(tree: Path, app_src: Path, manifest_json: Path, out: Path, arch: str, *,
                       util_dir: Path = NATIVE_SOLO5) -> list[list[str]]:
    """Commands that build one of our unikernels (app_src: a .c file or a directory of them) as out (.hvt).

    Intermediate files go to <out without suffix>.obj/. Only our freestanding helper header is put on
    the include path (copied into that directory), so `solo5.h` is always upstream's, from the wrapper.
    """
    prefix = toolchain_prefix(tree, arch)
    cc, ld = f"{prefix}-cc", f"{prefix}-ld"
    sources = sorted(app_src.glob("*.c")) if app_src.is_dir() else [app_src]
    if not sources:
        raise PipelineError(f"no C sources in {app_src}")
    work = out.with_suffix(".obj") if out.suffix else out.parent / f"{out.name}.obj"
    include = work / "include"
    manifest_c, manifest_o = work / "manifest.c", work / "manifest.o"
    cflags = [*APP_CFLAGS, "-I", str(include)]
    cmds: list[list[str]] = [
        ["mkdir", "-p", str(include)],
        ["cp", str(util_dir / "include" / "solo5_util.h"), str(include / "solo5_util.h")],
        [str(tree / ELFTOOL), "gen-manifest", str(manifest_json), str(manifest_c)],
    ]
    objs: list[str] = []
    for src in [*sources, util_dir / "util.c"]:
        obj = work / (f"app-{src.stem}.o" if src in sources else f"unikio-{src.stem}.o")
        cmds.append([cc, *cflags, "-c", str(src), "-o", str(obj)])
        objs.append(str(obj))
    # The generated manifest is upstream's code: no -Werror/-Wextra on it.
    cmds.append([cc, "-std=gnu11", "-O2", "-c", str(manifest_c), "-o", str(manifest_o)])
    cmds.append([ld, "-z", "solo5-abi=hvt", *objs, str(manifest_o), "-o", str(out)])
    return cmds


def build_app(tree: Path, app_src: Path, manifest_json: Path, out: Path, arch: str, log: IO[str]) -> None:
    for argv in app_build_commands(tree, app_src, manifest_json, out, arch):
        proc = _run(argv, log)
        if proc.returncode != 0:
            raise PipelineError(f"building {out.name} with the upstream Solo5 toolchain failed at `{argv[0]}`; "
                                "its output is in the log")


def run_command(tree: Path, app: Path, mem_mb: int, block: Path | str | None = None, net: str | None = None,
                args: Sequence[str] = (), block_size: int | None = None) -> list[str]:
    """solo5-hvt --mem=MB [--block:storage=PATH [--block-sector-size:storage=N]] [--net:service=TAP] app [args].

    block_size None leaves the tender's default sector size (512 bytes).
    """
    if isinstance(mem_mb, bool) or not isinstance(mem_mb, int) or mem_mb < 1:
        raise PipelineError(f"solo5.mem_mb must be a positive integer, got {mem_mb!r}")
    argv = [str(tree / HVT_TENDER), f"--mem={mem_mb}"]
    if block is not None:
        argv.append(f"--block:{BLOCK_DEVICE}={block}")
        if block_size is not None:
            if block_size < 512 or block_size > 32768 or block_size & (block_size - 1):
                raise PipelineError(f"blk.block_size={block_size} is not a sector size Solo5 hvt accepts "
                                    "(a power of two from 512 to 32768)")
            argv.append(f"--block-sector-size:{BLOCK_DEVICE}={block_size}")
    if net is not None:
        argv.append(f"--net:{NET_DEVICE}={net}")
    return [*argv, str(app), *map(str, args)]


def run_env(stats_file: Path | None = None, direct: bool = True) -> dict[str, str]:
    """Environment additions for the patched tender: pread statistics file and O_DIRECT block devices."""
    env: dict[str, str] = {}
    if stats_file is not None:
        env["PREAD_STATS_FILE"] = str(stats_file)
    if direct:
        env["SOLO5_BLOCK_DIRECT"] = "1"
    return env
