"""Which (experiment, arch, platform) combinations run on this host, and why not.

All arch logic lives here so a native aarch64 host and an x86_64 host go
through the same code; tests fake the host arch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

BLK_PLATFORMS = ("host", "solo5-hvt", "qemu-linux-smp", "qemu-linux-1core")
NET_PLATFORMS = ("qemu-linux", "solo5-hvt", "lwip-solo5", "mirage-solo5")

# Platforms this version of the pipeline can measure, per experiment.
IMPLEMENTED: dict[str, frozenset[str]] = {
    "blk": frozenset({"host", "solo5-hvt", "qemu-linux-smp", "qemu-linux-1core"}),
    "net": frozenset({"qemu-linux", "solo5-hvt"}),
}
# Platforms that run a guest under KVM on this host (the tender has no TCG).
NEEDS_KVM = frozenset({"solo5-hvt"})
# Platforms whose guest QEMU can emulate (TCG) on a host of another arch.
EMULABLE = frozenset({"qemu-linux-smp", "qemu-linux-1core", "qemu-linux"})
# On a host of another arch, these platforms of this arch run inside an
# emulated machine of this arch (QEMU TCG with virtualization=on: KVM inside),
# the Linux guest under an arm64 build of our QEMU with that KVM, as on the
# study's ARM boards. TCG offers no nested virtualization for x86_64.
TESTBED_ARCH = "aarch64"
TESTBED_PLATFORMS = frozenset({"host", "solo5-hvt", "qemu-linux-smp", "qemu-linux-1core", "qemu-linux"})

UNAVAILABLE_REASONS = {
    "mirage-solo5": "MirageOS needs the opam repository, which is not reachable offline",
}


@dataclass(frozen=True)
class Combination:
    experiment: str
    arch: str
    platform: str
    runnable: bool
    reason: str = ""
    testbed: str = "native"

    @property
    def label(self) -> str:
        return f"{self.experiment}/{self.arch}/{self.platform}"


def _decide(experiment: str, arch: str, platform: str, host: str, kvm: tuple[bool, str],
            provider: str) -> Combination:
    if platform in UNAVAILABLE_REASONS:
        return Combination(experiment, arch, platform, False, UNAVAILABLE_REASONS[platform])
    if platform not in IMPLEMENTED[experiment]:
        return Combination(
            experiment, arch, platform, False, "not implemented in this pipeline version yet"
        )
    if arch != host and arch == TESTBED_ARCH and platform in TESTBED_PLATFORMS:
        if platform == "solo5-hvt" and provider != "builtin":
            return Combination(experiment, arch, platform, False,
                               f"the upstream Solo5 toolchain builds for the host arch only; on the emulated {arch} "
                               "testbed set solo5.provider: builtin, or run on an aarch64 host")
        return Combination(experiment, arch, platform, True, testbed="emulated")
    if arch != host and platform not in EMULABLE:
        return Combination(
            experiment,
            arch,
            platform,
            False,
            f"needs an {arch} host (only {TESTBED_ARCH} has an emulated testbed)",
        )
    if platform in NEEDS_KVM and not kvm[0]:
        return Combination(experiment, arch, platform, False, f"needs KVM: {kvm[1]}")
    return Combination(experiment, arch, platform, True)


def plan(config: dict[str, Any], host: str, kvm: tuple[bool, str]) -> list[Combination]:
    """Every configured combination, runnable or with the reason it is skipped.

    kvm is hostinfo.kvm_status() of this host: (usable, reason).
    """
    combos = []
    for experiment in ("blk", "net"):
        for arch in config["archs"]:
            for platform in config[experiment]["platforms"]:
                combos.append(_decide(experiment, arch, platform, host, kvm, config["solo5"]["provider"]))
    return combos


def runnable(combos: list[Combination], experiment: str) -> list[Combination]:
    return [c for c in combos if c.experiment == experiment and c.runnable]


def skipped(combos: list[Combination]) -> list[Combination]:
    return [c for c in combos if not c.runnable]
