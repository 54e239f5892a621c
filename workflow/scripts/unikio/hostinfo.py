"""Facts about the machine the pipeline runs on (for plans and provenance)."""

from __future__ import annotations

import fcntl
import os
import platform
import shutil
import subprocess

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
