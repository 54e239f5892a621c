"""The `upstream` Solo5 provider: real Solo5 (v0.9.3) fetched, verified, patched and built.

Fetch (`fetch`): from `solo5.upstream.git` (a shallow clone of `solo5.upstream.tag`), or from
`solo5.upstream.local` on offline machines (a git directory, or a release tarball verified against
`solo5.upstream.sha256`). A git source must be at the pinned `solo5.upstream.commit`. There is no
fallback to the builtin provider: every failure is a `PipelineError` naming the config keys.

Patch: `patching.apply` checks the anchors each zero-context patch in `patches/solo5/` names around its
insertion point (zero-context hunks carry no text `patch` could check) and applies it; `check_patch_targets`
checks that the calls the patch routes through its wrappers all come after that point.

Build: `build_commands` / `build` (`./configure.sh && make`: tenders solo5-hvt and solo5-spt), `app_build_commands`
(manifest, compile with the Solo5 `-cc` wrapper, link with `-ld -z solo5-abi=hvt|spt`) and `run_command`
(`solo5-hvt` or `solo5-spt`, the same options).

Both tenders take PREAD_STATS_FILE and SOLO5_BLOCK_DIRECT (`run_env`) and write the same statistics line to that
file: hvt from the tender (0001), spt from the guest through a descriptor the tender opens before its seccomp
filter (0002). `seccomp_kill_reason` says which system call upstream's spt filter killed a guest for.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
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
SPT_TENDER = Path("tenders/spt/solo5-spt")
TENDERS = {"hvt": HVT_TENDER, "spt": SPT_TENDER}   # also the `-z solo5-abi=` of their guests
ELFTOOL = Path("elftool/solo5-elftool")

# Guest C flags on top of what the Solo5 -cc wrapper adds (-ffreestanding, -fstack-protector-strong,
# its include paths): the same as the builtin provider's guests (native/Makefile), so both providers
# run the same guest code. -fno-tree-loop-distribute-patterns keeps native/solo5/util.c's memcpy and
# friends from being compiled into calls to themselves.
APP_CFLAGS = ("-std=gnu11", "-O2", "-g", "-Wall", "-Wextra", "-Werror", "-fno-tree-loop-distribute-patterns",
              "-fno-asynchronous-unwind-tables", "-mgeneral-regs-only")
# Third-party guest sources (extra_sources: lwIP and the like): not our code, so no warning may fail the build.
THIRD_PARTY_CFLAGS = ("-std=gnu11", "-O2", "-g", "-fno-asynchronous-unwind-tables", "-mgeneral-regs-only")

# Calls that must come after the block a patch inserts (after the line given, pinned by its anchors), so that
# the macros it defines there reach them: 0001 for hvt, 0002 for spt (tender and guest bindings).
PATCH_ROUTED_CALLS: dict[str, tuple[int, tuple[str, ...]]] = {
    "tenders/hvt/hvt_module_blk.c": (43, ("pread(", "pwrite(", "block_attach(")),
    "tenders/spt/spt_module_block.c": (38, ("block_attach(",)),
    "bindings/spt/block.c": (23, ("sys_pread64(", "sys_pwrite64(")),
}
MISFIT_HINT = "fix solo5.upstream.commit/solo5.upstream.local or patches/solo5/"

_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_GIT_TIMEOUT_S = 900
_KERNEL_LOG_WAIT_S = 2.0


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
    return [Path(f"{prefix}-{tool}") for tool in ("cc", "ld", "objcopy")] + [tree / ELFTOOL, tree / HVT_TENDER,
                                                                            tree / SPT_TENDER]


def build(tree: Path, log: IO[str], arch: str | None = None) -> None:
    """./configure.sh && make in tree; every expected product must exist afterwards."""
    for argv in build_commands(tree):
        proc = _run(argv, log, cwd=tree)
        if proc.returncode != 0:
            raise PipelineError(f"Solo5 `{' '.join(argv)}` failed with status {proc.returncode}; its output is in "
                                "the log (build needs make, cc, pkg-config and libseccomp-dev)")
    missing = [str(p.relative_to(tree)) for p in build_products(tree, arch or os.uname().machine) if not p.exists()]
    if missing:
        raise PipelineError(f"the Solo5 build finished without {', '.join(missing)}; see the log (configure.sh "
                            "leaves out solo5-spt without libseccomp-dev and pkg-config)")


def _tender(tender: str) -> Path:
    if tender not in TENDERS:
        raise PipelineError(f"Solo5 tender {tender!r} is not one upstream builds ({', '.join(TENDERS)})")
    return TENDERS[tender]


def app_build_commands(tree: Path, app_src: Path, manifest_json: Path, out: Path, arch: str, *,
                       util_dir: Path = NATIVE_SOLO5, abi: str = "hvt", extra_sources: Sequence[Path] = (),
                       include_dirs: Sequence[Path] = ()) -> list[list[str]]:
    """Commands that build one of our unikernels (app_src: a .c file or a directory of them) as out.

    abi is the tender it is for (`-z solo5-abi=hvt|spt`). extra_sources are third-party C files compiled
    without our warning flags (THIRD_PARTY_CFLAGS); include_dirs are searched by every compile, as system
    directories (-isystem) so that third-party headers cannot fail our -Werror, after Solo5's own. Intermediate
    files go to <out>.obj/. Only our freestanding helper header is put on the include path (copied into that
    directory), so `solo5.h` is always upstream's, from the wrapper; an include dir holding a solo5.h is refused.
    """
    _tender(abi)
    prefix = toolchain_prefix(tree, arch)
    cc, ld = f"{prefix}-cc", f"{prefix}-ld"
    sources = sorted(app_src.glob("*.c")) if app_src.is_dir() else [app_src]
    if not sources:
        raise PipelineError(f"no C sources in {app_src}")
    for d in include_dirs:
        if (Path(d) / "solo5.h").exists():
            raise PipelineError(f"include dir {d} has a solo5.h, which would stand in for upstream's")
    work = out.parent / f"{out.name}.obj"   # per output: blk_bench.hvt and blk_bench.spt share a directory
    include = work / "include"
    manifest_c, manifest_o = work / "manifest.c", work / "manifest.o"
    search = ["-I", str(include)] + [a for d in include_dirs for a in ("-isystem", str(d))]
    cmds: list[list[str]] = [
        ["mkdir", "-p", str(include)],
        ["cp", str(util_dir / "include" / "solo5_util.h"), str(include / "solo5_util.h")],
        [str(tree / ELFTOOL), "gen-manifest", str(manifest_json), str(manifest_c)],
    ]
    objs: list[str] = []
    for src in [*sources, util_dir / "util.c"]:
        obj = work / (f"app-{src.stem}.o" if src in sources else f"unikio-{src.stem}.o")
        cmds.append([cc, *APP_CFLAGS, *search, "-c", str(src), "-o", str(obj)])
        objs.append(str(obj))
    for n, src in enumerate(extra_sources):
        obj = work / f"extra-{n:03d}-{Path(src).stem}.o"   # numbered: third-party trees repeat file names
        cmds.append([cc, *THIRD_PARTY_CFLAGS, *search, "-c", str(src), "-o", str(obj)])
        objs.append(str(obj))
    # The generated manifest is upstream's code: no -Werror/-Wextra on it.
    cmds.append([cc, "-std=gnu11", "-O2", "-c", str(manifest_c), "-o", str(manifest_o)])
    cmds.append([ld, "-z", f"solo5-abi={abi}", *objs, str(manifest_o), "-o", str(out)])
    return cmds


def build_app(tree: Path, app_src: Path, manifest_json: Path, out: Path, arch: str, log: IO[str], *,
              abi: str = "hvt", extra_sources: Sequence[Path] = (), include_dirs: Sequence[Path] = ()) -> None:
    """Run app_build_commands; a failing step is an error naming it."""
    for argv in app_build_commands(tree, app_src, manifest_json, out, arch, abi=abi, extra_sources=extra_sources,
                                   include_dirs=include_dirs):
        proc = _run(argv, log)
        if proc.returncode != 0:
            raise PipelineError(f"building {out.name} with the upstream Solo5 toolchain failed at `{argv[0]}`; "
                                "its output is in the log")


def run_command(tree: Path, app: Path, mem_mb: int, block: Path | str | None = None, net: str | None = None,
                args: Sequence[str] = (), block_size: int | None = None, tender: str = "hvt") -> list[str]:
    """solo5-<tender> --mem=MB [--block:storage=PATH [--block-sector-size:storage=N]] [--net:service=TAP] app [args].

    hvt and spt take the same options. block_size None leaves the tender's default sector size (512 bytes).
    """
    binary = _tender(tender)
    if isinstance(mem_mb, bool) or not isinstance(mem_mb, int) or mem_mb < 1:
        raise PipelineError(f"solo5.mem_mb must be a positive integer, got {mem_mb!r}")
    argv = [str(tree / binary), f"--mem={mem_mb}"]
    if block is not None:
        argv.append(f"--block:{BLOCK_DEVICE}={block}")
        if block_size is not None:
            if block_size < 512 or block_size > 32768 or block_size & (block_size - 1):
                raise PipelineError(f"blk.block_size={block_size} is not a sector size Solo5 {tender} accepts "
                                    "(a power of two from 512 to 32768)")
            argv.append(f"--block-sector-size:{BLOCK_DEVICE}={block_size}")
    if net is not None:
        argv.append(f"--net:{NET_DEVICE}={net}")
    return [*argv, str(app), *map(str, args)]


def run_env(stats_file: Path | None = None, direct: bool = True) -> dict[str, str]:
    """Environment additions for the patched tenders: pread statistics file and O_DIRECT block devices.

    The same for hvt and spt: both patched tenders read these variables, and the statistics line lands in
    stats_file either way (spt: written by the guest, through a descriptor the tender opened).
    """
    env: dict[str, str] = {}
    if stats_file is not None:
        env["PREAD_STATS_FILE"] = str(stats_file)
    if direct:
        env["SOLO5_BLOCK_DIRECT"] = "1"
    return env


# ---------------------------------------------------------------- spt confinement

# The kernel's audit record of a seccomp action (AUDIT_SECCOMP: type 1326 in dmesg, type=SECCOMP in audit.log).
_SECCOMP_RECORD = re.compile(r"\btype=(?:1326|SECCOMP)\b.*?\spid=(?P<pid>\d+)\s.*?\ssig=(?P<sig>\d+)\s+"
                             r"arch=(?P<arch>[0-9a-f]+)\s+syscall=(?P<nr>\d+)\b")
AUDIT_LOG = Path("/var/log/audit/audit.log")
_AUDIT_TAIL_BYTES = 1 << 20


def syscall_name(number: int, arch_token: int = 0) -> str | None:
    """The name of system call number (arch_token: an AUDIT_ARCH_* value, 0 for this machine), from libseccomp."""
    lib = ctypes.util.find_library("seccomp")
    if lib is None:
        return None
    try:
        resolve = ctypes.CDLL(lib).seccomp_syscall_resolve_num_arch
    except (OSError, AttributeError):
        return None
    resolve.restype = ctypes.c_void_p   # a malloc()ed string: read it, then free it
    resolve.argtypes = (ctypes.c_uint32, ctypes.c_int)
    ptr = resolve(arch_token, number)
    if not ptr:
        return None
    name = ctypes.string_at(ptr).decode()
    libc = ctypes.CDLL(None)
    libc.free.argtypes = (ctypes.c_void_p,)
    libc.free(ptr)
    return name


def _kernel_log() -> str:
    """dmesg, then the end of auditd's log: where the kernel's audit records go with and without auditd."""
    text = ""
    try:
        proc = subprocess.run(["dmesg"], capture_output=True, text=True, errors="replace", timeout=30, check=False)
        text = proc.stdout if proc.returncode == 0 else ""
    except (OSError, subprocess.TimeoutExpired):
        pass
    try:
        with open(AUDIT_LOG, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - _AUDIT_TAIL_BYTES))
            text += "\n" + f.read().decode(errors="replace")
    except OSError:
        pass
    return text


def seccomp_kill_reason(returncode: int, pid: int | None, kernel_log: str | None = None) -> str | None:
    """One sentence on why a solo5-spt guest died of SIGSYS (its seccomp filter), or None for any other end.

    The system call is named from the kernel's last audit record for pid (kernel_log: that text; None reads
    `dmesg`); without one, the sentence names the signal only.
    """
    if returncode not in (-signal.SIGSYS, 128 + signal.SIGSYS):
        return None
    records: list[re.Match[str]] = []
    # Without auditd, a kernel thread prints the record: it may come a moment after the process is gone.
    deadline = time.monotonic() + (_KERNEL_LOG_WAIT_S if kernel_log is None and pid is not None else 0)
    while pid is not None:
        text = _kernel_log() if kernel_log is None else kernel_log
        records = [m for m in _SECCOMP_RECORD.finditer(text) if int(m["pid"]) == pid and int(m["sig"]) == signal.SIGSYS]
        if records or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    if not records:
        which = f"pid {pid}" if pid is not None else "the guest"
        return (f"the guest was killed by SIGSYS, upstream spt's seccomp filter refusing a system call "
                f"(the kernel log has no audit record for {which} to name it)")
    last = records[-1]
    nr = int(last["nr"])
    name = syscall_name(nr, int(last["arch"], 16)) or f"number {nr}"
    return (f"the guest was killed by upstream spt's seccomp filter for the system call {name} "
            f"(syscall={nr} in the kernel's audit record for pid {pid})")
