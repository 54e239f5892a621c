"""Facts about the machine the pipeline runs on (for plans and provenance)."""

from __future__ import annotations

import fcntl
import functools
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

KVM_GET_API_VERSION = 0xAE00
KVM_API_VERSION = 12

_ARCH_ALIASES = {"amd64": "x86_64", "x86_64": "x86_64", "arm64": "aarch64", "aarch64": "aarch64"}
DEBIAN_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


def normalize_arch(machine: str) -> str:
    """Map `uname -m`/Debian spellings to the pipeline's arch names."""
    try:
        return _ARCH_ALIASES[machine.lower()]
    except KeyError:
        raise ValueError(f"unsupported host architecture {machine!r}") from None


def host_arch() -> str:
    return normalize_arch(platform.machine())


def cpu_model() -> str:
    """The CPU model name as /proc/cpuinfo reports it (x86 and arm spellings)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return platform.processor() or "unknown"
    for key in ("model name", "Model", "CPU part"):
        for line in text.splitlines():
            name, _, value = line.partition(":")
            if name.strip() == key and value.strip():
                return value.strip()
    return "unknown"


def kvm_status(path: str = "/dev/kvm") -> tuple[bool, str]:
    """Whether KVM can be opened and speaks the stable API, with the reason."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        return False, f"cannot open {path}: {e.strerror}"
    try:
        version = fcntl.ioctl(fd, KVM_GET_API_VERSION)
    except OSError as e:
        return False, f"KVM_GET_API_VERSION on {path} failed: {e.strerror}"
    finally:
        os.close(fd)
    if version != KVM_API_VERSION:
        return False, f"{path} reports KVM API version {version}, expected {KVM_API_VERSION}"
    return True, f"{path} usable (API version {version})"


def tool_version(argv: list[str]) -> str:
    """First line of a tool's version output, or why there is none."""
    if shutil.which(argv[0]) is None and not os.path.exists(argv[0]):
        return "not installed"
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unavailable ({e})"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else f"exit status {out.returncode}"


# KVM implementations whose guests' kernel code runs emulated in software: their
# timings are not hardware-virtualization results.
SOFTWARE_KVM = ("kvm_pvm",)
# The kernel's KVM start-up line, old and new spellings: "Protected nVHE|hVHE mode", "Hyp mode",
# "Hyp nVHE|hVHE mode", "VHE mode" ... "initialized successfully".
_ARM64_MODE = re.compile(r"(Protected (?:[nh]VHE )?|Hyp (?:[nh]VHE )?|VHE )mode initialized")


def arm64_kvm_mode(kernel_log: str) -> str:
    """kvm_arm64-vhe / -nvhe / -hvhe / -pkvm from the kernel's KVM start-up line, or kvm_arm64 if it says none."""
    m = _ARM64_MODE.search(kernel_log)
    if m is None:
        return "kvm_arm64"
    words = m.group(1).split()
    if words[0] == "Protected":
        return "kvm_arm64-pkvm"
    if words[0] == "VHE":
        return "kvm_arm64-vhe"
    return "kvm_arm64-hvhe" if words[-1] == "hVHE" else "kvm_arm64-nvhe"


def _kernel_log() -> str:
    try:
        return subprocess.run(["dmesg"], capture_output=True, text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


@functools.cache
def current_kvm_impl() -> str:
    """kvm_impl() of this host, read once per job."""
    return kvm_impl()


def kvm_impl(root: Path = Path("/"), kernel_log: str | None = None) -> str:
    """Which KVM serves /dev/kvm: kvm_pvm, kvm_intel or kvm_amd (with -nested when this host is itself a
    guest), kvm_arm64-vhe/-nvhe/-pkvm, kvm (a kind we do not know), or none.

    root is the file system root to look under (/sys/module, /proc/cpuinfo,
    /dev/kvm); kernel_log the kernel's messages (dmesg when None), which only
    arm64 needs.
    """
    modules = root / "sys" / "module"
    if (modules / "kvm_pvm").is_dir():
        return "kvm_pvm"
    for vendor in ("kvm_intel", "kvm_amd"):
        if (modules / vendor).is_dir():
            try:
                cpuinfo = (root / "proc" / "cpuinfo").read_text(encoding="utf-8", errors="replace")
            except OSError:
                cpuinfo = ""
            flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines()
                          if line.startswith("flags")), [])
            return vendor + ("-nested" if "hypervisor" in flags else "")
    if not (root / "dev" / "kvm").exists() and not (modules / "kvm").is_dir():
        return "none"
    if (root / "proc" / "cpuinfo").is_file() and "CPU implementer" in (root / "proc" / "cpuinfo").read_text(
            encoding="utf-8", errors="replace"):
        return arm64_kvm_mode(_kernel_log() if kernel_log is None else kernel_log)
    return "kvm"
