"""Which (experiment, arch, platform, provider) combinations run on this host, and why not.

All arch logic lives here so a native aarch64 host and an x86_64 host go
through the same code; tests fake the host arch. A unikernel platform makes
one combination per Solo5 provider (solo5.providers), every other platform
one combination with provider "".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Unikernel platforms: the Solo5 tender each runs on (hvt: a KVM guest; spt: a
# seccomp-confined process) and the app answering the network experiment.
TENDER = {"solo5-hvt": "hvt", "solo5-spt": "spt", "lwip-solo5-hvt": "hvt", "lwip-solo5-spt": "spt"}
NET_APP = {"solo5-hvt": "ping_serve", "solo5-spt": "ping_serve", "lwip-solo5-hvt": "lwip_serve",
           "lwip-solo5-spt": "lwip_serve"}
BLK_APP = "blk_bench"
# Each experiment's unikernel platforms.
UNIKERNEL_PLATFORMS = {"blk": ("solo5-hvt", "solo5-spt"), "net": tuple(NET_APP)}


def app(experiment: str, platform: str) -> str:
    """The unikernel app a row of this unikernel platform runs."""
    return BLK_APP if experiment == "blk" else NET_APP[platform]

# Platforms this version of the pipeline can measure, per experiment.
IMPLEMENTED: dict[str, frozenset[str]] = {
    "blk": frozenset({"host", "solo5-hvt", "solo5-spt", "qemu-linux-smp", "qemu-linux-1core"}),
    "net": frozenset({"qemu-linux", "solo5-hvt", "solo5-spt", "lwip-solo5-hvt", "lwip-solo5-spt"}),
}
# Platforms that run a guest under KVM on this host (the hvt tenders have no TCG).
NEEDS_KVM = frozenset(p for p, t in TENDER.items() if t == "hvt")
# Platforms confined by a seccomp filter (no hardware virtualization).
NEEDS_SECCOMP = frozenset(p for p, t in TENDER.items() if t == "spt")
# Platforms whose guest QEMU can emulate (TCG) on a host of another arch.
EMULABLE = frozenset({"qemu-linux-smp", "qemu-linux-1core", "qemu-linux"})
# On a host of another arch, these platforms of this arch run inside an
# emulated machine of this arch (QEMU TCG with virtualization=on: KVM inside),
# the Linux guest under an arm64 build of our QEMU with that KVM, as on the
# study's ARM boards. TCG offers no nested virtualization for x86_64.
TESTBED_ARCH = "aarch64"
TESTBED_PLATFORMS = frozenset({"host", "qemu-linux-smp", "qemu-linux-1core", "qemu-linux", *TENDER})

UNAVAILABLE_REASONS = {
    "mirage-solo5": "MirageOS needs the opam repository, which is not reachable offline",
}
# What each platform is, for table notes and the report.
NOTES = {
    "solo5-spt": "the unikernel as a seccomp-confined process: no VM exits",
    "lwip-solo5-hvt": "full-stack unikernel (lwIP) on hvt, a stand-in for mirage-solo5",
    "lwip-solo5-spt": "full-stack unikernel (lwIP) on spt, a stand-in for mirage-solo5",
}
# The study's platform whose published values a row of ours sits beside.
STUDY_PLATFORM = {"lwip-solo5-hvt": "mirage-solo5", "lwip-solo5-spt": "mirage-solo5"}

READY = (True, "")


def row_label(platform: str, provider: str) -> str:
    """How tables name a row: 'solo5-hvt (upstream)', or the platform alone where there is no provider."""
    return f"{platform} ({provider})" if provider else platform


@dataclass(frozen=True)
class Combination:
    experiment: str
    arch: str
    platform: str
    runnable: bool
    reason: str = ""
    testbed: str = "native"
    provider: str = ""

    @property
    def row_label(self) -> str:
        return row_label(self.platform, self.provider)

    @property
    def label(self) -> str:
        row = f"{self.experiment}/{self.arch}/{self.platform}"
        return f"{row}/{self.provider}" if self.provider else row


def _decide(experiment: str, arch: str, platform: str, provider: str, host: str, abilities: dict[str, tuple[bool, str]]
            ) -> Combination:
    def skip(reason: str) -> Combination:
        return Combination(experiment, arch, platform, False, reason, provider=provider)

    if platform in UNAVAILABLE_REASONS:
        return skip(UNAVAILABLE_REASONS[platform])
    if platform not in IMPLEMENTED[experiment]:
        return skip("not implemented in this pipeline version yet")
    if arch != host and arch == TESTBED_ARCH and platform in TESTBED_PLATFORMS:
        if provider == "upstream":
            return skip(f"the upstream Solo5 toolchain builds for the host arch only; on the emulated {arch} testbed "
                        "only the builtin provider runs (or run on an aarch64 host)")
        # The testbed's own kernel (Debian's, with seccomp) and KVM serve these rows, not this host's.
        return Combination(experiment, arch, platform, True, testbed="emulated", provider=provider)
    if arch != host and platform not in EMULABLE:
        return skip(f"needs an {arch} host (only {TESTBED_ARCH} has an emulated testbed)")
    if provider == "upstream" and not abilities["upstream"][0]:
        return skip(abilities["upstream"][1])
    if platform in NEEDS_SECCOMP and not abilities["seccomp"][0]:
        return skip(f"needs seccomp filters: {abilities['seccomp'][1]}")
    if platform in NEEDS_KVM and not abilities["kvm"][0]:
        return skip(f"needs KVM: {abilities['kvm'][1]}")
    return Combination(experiment, arch, platform, True, provider=provider)


def plan(config: dict[str, Any], host: str, kvm: tuple[bool, str], *, seccomp: tuple[bool, str] = READY,
         upstream: tuple[bool, str] = READY) -> list[Combination]:
    """Every configured combination, runnable or with the reason it is skipped.

    kvm is hostinfo.kvm_status() of this host: (usable, reason); seccomp and
    upstream are providers.seccomp_status() and providers.upstream_status().
    """
    abilities = {"kvm": kvm, "seccomp": seccomp, "upstream": upstream}
    combos = []
    for experiment in ("blk", "net"):
        for arch in config["archs"]:
            for platform in config[experiment]["platforms"]:
                providers = config["solo5"]["providers"] if platform in TENDER else [""]
                combos += [_decide(experiment, arch, platform, p, host, abilities) for p in providers]
    return combos


def runnable(combos: list[Combination], experiment: str) -> list[Combination]:
    return [c for c in combos if c.experiment == experiment and c.runnable]


def skipped(combos: list[Combination]) -> list[Combination]:
    return [c for c in combos if not c.runnable]
