"""Helpers shared by the native tender tests (imported by conftest.py and
the test modules; kept out of conftest.py so a parent conftest can't shadow
it on import)."""
import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NATIVE = REPO / "native"
GUESTS = Path(__file__).resolve().parent / "guests"
CROSS_CC = "aarch64-linux-gnu-gcc"


def run_make(arch, outdir, *extra):
    """Build with the project Makefile; returns CompletedProcess."""
    cmd = ["make", "-C", str(NATIVE), f"ARCH={arch}", f"O={outdir}", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def kvm_skip_reason():
    if os.geteuid() != 0:
        return "needs root"
    if not os.path.exists("/dev/kvm"):
        return "/dev/kvm missing"
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
        os.close(fd)
    except OSError as e:
        return f"/dev/kvm unusable: {e}"
    if os.uname().machine != "x86_64":
        return "end-to-end tests only wired up for x86_64 hosts"
    return None


def tender(build, *args, env=None, timeout=120):
    return subprocess.run([str(build / "tender"), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout,
                          env=env)


def have_cross():
    return shutil.which(CROSS_CC) is not None
