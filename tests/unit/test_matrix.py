import pytest
from unikio import hostinfo, matrix

CONFIG = {
    "archs": ["x86_64", "aarch64"],
    "blk": {"platforms": ["host", "solo5-hvt", "qemu-linux-smp"]},
    "net": {"platforms": ["mirage-solo5", "lwip-solo5"]},
    "solo5": {"provider": "builtin"},
}
KVM = (True, "usable")
NO_KVM = (False, "cannot open /dev/kvm: No such file or directory")


def by_label(combos):
    return {c.label: c for c in combos}


def test_aarch64_host_side_runs_in_the_emulated_testbed_on_x86_64():
    combos = by_label(matrix.plan(CONFIG, "x86_64", KVM))
    assert combos["blk/x86_64/host"].runnable and combos["blk/x86_64/host"].testbed == "native"
    for label in ("blk/aarch64/host", "blk/aarch64/solo5-hvt", "blk/aarch64/qemu-linux-smp"):
        assert combos[label].runnable and combos[label].testbed == "emulated", label


def test_native_aarch64_host_runs_its_own_arch_natively_and_cannot_host_x86_64():
    combos = by_label(matrix.plan(CONFIG, "aarch64", KVM))
    for label in ("blk/aarch64/host", "blk/aarch64/solo5-hvt"):
        assert combos[label].runnable and combos[label].testbed == "native", label
    assert not combos["blk/x86_64/host"].runnable and "x86_64 host" in combos["blk/x86_64/host"].reason
    assert combos["blk/x86_64/qemu-linux-smp"].runnable  # TCG, directly on the host
    assert combos["blk/x86_64/qemu-linux-smp"].testbed == "native"


def test_upstream_provider_has_no_testbed_build():
    config = {**CONFIG, "solo5": {"provider": "upstream"}}
    combos = by_label(matrix.plan(config, "x86_64", KVM))
    assert combos["blk/x86_64/solo5-hvt"].runnable
    skipped = combos["blk/aarch64/solo5-hvt"]
    assert not skipped.runnable and "solo5.provider" in skipped.reason


def test_unimplemented_and_unavailable_platforms_say_why():
    combos = by_label(matrix.plan(CONFIG, "x86_64", KVM))
    assert "not implemented" in combos["net/x86_64/lwip-solo5"].reason
    assert "opam" in combos["net/x86_64/mirage-solo5"].reason


def test_runnable_filters_by_experiment():
    combos = matrix.plan(CONFIG, "x86_64", KVM)
    assert [c.label for c in matrix.runnable(combos, "blk")] == [
        "blk/x86_64/host", "blk/x86_64/solo5-hvt", "blk/x86_64/qemu-linux-smp",
        "blk/aarch64/host", "blk/aarch64/solo5-hvt", "blk/aarch64/qemu-linux-smp"]
    assert matrix.runnable(combos, "net") == []


@pytest.mark.parametrize("machine,arch", [("x86_64", "x86_64"), ("AMD64", "x86_64"),
                                          ("aarch64", "aarch64"), ("arm64", "aarch64")])
def test_normalize_arch(machine, arch):
    assert hostinfo.normalize_arch(machine) == arch


def test_unknown_host_arch_is_an_error():
    with pytest.raises(ValueError, match="riscv64"):
        hostinfo.normalize_arch("riscv64")


def test_unikernel_needs_kvm_and_says_so():
    combos = by_label(matrix.plan(CONFIG, "x86_64", NO_KVM))
    assert combos["blk/x86_64/host"].runnable
    assert not combos["blk/x86_64/solo5-hvt"].runnable
    assert "/dev/kvm" in combos["blk/x86_64/solo5-hvt"].reason
