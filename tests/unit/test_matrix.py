import pytest
from unikio import hostinfo, matrix, providers

CONFIG = {
    "archs": ["x86_64", "aarch64"],
    "blk": {"platforms": ["host", "solo5-hvt", "qemu-linux-smp"]},
    "net": {"platforms": ["mirage-solo5", "lwip-solo5-spt"]},
    "solo5": {"providers": ["builtin"]},
}
BOTH = {**CONFIG, "solo5": {"providers": ["builtin", "upstream"]}}
KVM = (True, "usable")
NO_KVM = (False, "cannot open /dev/kvm: No such file or directory")


def by_label(combos):
    return {c.label: c for c in combos}


def test_aarch64_host_side_runs_in_the_emulated_testbed_on_x86_64():
    combos = by_label(matrix.plan(CONFIG, "x86_64", KVM))
    assert combos["blk/x86_64/host"].runnable and combos["blk/x86_64/host"].testbed == "native"
    for label in ("blk/aarch64/host", "blk/aarch64/solo5-hvt/builtin", "blk/aarch64/qemu-linux-smp",
                  "net/aarch64/lwip-solo5-spt/builtin"):
        assert combos[label].runnable and combos[label].testbed == "emulated", label


def test_native_aarch64_host_runs_its_own_arch_natively_and_cannot_host_x86_64():
    combos = by_label(matrix.plan(CONFIG, "aarch64", KVM))
    for label in ("blk/aarch64/host", "blk/aarch64/solo5-hvt/builtin"):
        assert combos[label].runnable and combos[label].testbed == "native", label
    assert not combos["blk/x86_64/host"].runnable and "x86_64 host" in combos["blk/x86_64/host"].reason
    assert combos["blk/x86_64/qemu-linux-smp"].runnable  # TCG, directly on the host
    assert combos["blk/x86_64/qemu-linux-smp"].testbed == "native"


def test_every_unikernel_platform_gets_one_row_per_provider_and_the_others_none():
    combos = matrix.plan(BOTH, "x86_64", KVM)
    assert [(c.platform, c.provider) for c in combos if c.experiment == "blk" and c.arch == "x86_64"] == [
        ("host", ""), ("solo5-hvt", "builtin"), ("solo5-hvt", "upstream"), ("qemu-linux-smp", "")]
    assert by_label(combos)["blk/x86_64/solo5-hvt/upstream"].row_label == "solo5-hvt (upstream)"
    assert by_label(combos)["blk/x86_64/host"].row_label == "host"


def test_upstream_provider_has_no_testbed_build():
    combos = by_label(matrix.plan(BOTH, "x86_64", KVM))
    assert combos["blk/x86_64/solo5-hvt/upstream"].runnable
    skipped = combos["blk/aarch64/solo5-hvt/upstream"]
    assert not skipped.runnable and "host arch only" in skipped.reason
    assert combos["blk/aarch64/solo5-hvt/builtin"].runnable


def test_an_unfetchable_upstream_source_skips_only_the_upstream_rows_with_its_reason():
    why = "the upstream Solo5 source cannot be fetched from solo5.upstream.git (no network)"
    combos = by_label(matrix.plan(BOTH, "x86_64", KVM, upstream=(False, why)))
    assert not combos["blk/x86_64/solo5-hvt/upstream"].runnable
    assert combos["blk/x86_64/solo5-hvt/upstream"].reason == why
    assert combos["net/x86_64/lwip-solo5-spt/upstream"].reason == why
    assert combos["blk/x86_64/solo5-hvt/builtin"].runnable and combos["net/x86_64/lwip-solo5-spt/builtin"].runnable


def test_spt_needs_seccomp_and_hvt_does_not():
    config = {**CONFIG, "blk": {"platforms": ["solo5-hvt", "solo5-spt"]}}
    combos = by_label(matrix.plan(config, "x86_64", KVM, seccomp=(False, "this kernel has no seccomp filters")))
    assert combos["blk/x86_64/solo5-spt/builtin"].reason == "needs seccomp filters: this kernel has no seccomp filters"
    assert combos["blk/x86_64/solo5-hvt/builtin"].runnable
    # spt needs no KVM at all.
    combos = by_label(matrix.plan(config, "x86_64", NO_KVM))
    assert combos["blk/x86_64/solo5-spt/builtin"].runnable and not combos["blk/x86_64/solo5-hvt/builtin"].runnable


def test_unavailable_platforms_say_why():
    combos = by_label(matrix.plan(CONFIG, "x86_64", KVM))
    assert combos["net/x86_64/mirage-solo5"].reason == matrix.UNAVAILABLE_REASONS["mirage-solo5"]
    assert "opam" in combos["net/x86_64/mirage-solo5"].reason


def test_runnable_filters_by_experiment():
    combos = matrix.plan(CONFIG, "x86_64", KVM)
    assert [c.label for c in matrix.runnable(combos, "blk")] == [
        "blk/x86_64/host", "blk/x86_64/solo5-hvt/builtin", "blk/x86_64/qemu-linux-smp",
        "blk/aarch64/host", "blk/aarch64/solo5-hvt/builtin", "blk/aarch64/qemu-linux-smp"]
    assert [c.label for c in matrix.runnable(combos, "net")] == [
        "net/x86_64/lwip-solo5-spt/builtin", "net/aarch64/lwip-solo5-spt/builtin"]


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
    assert not combos["blk/x86_64/solo5-hvt/builtin"].runnable
    assert "/dev/kvm" in combos["blk/x86_64/solo5-hvt/builtin"].reason


# ---------------------------------------------------------------- providers


SOURCE = {"git": "https://example.invalid/solo5.git", "tag": "v0.9.3", "local": "", "sha256": ""}


def test_upstream_status_prefers_a_fetched_copy_then_a_local_one(tmp_path):
    lock = tmp_path / "lock.json"
    lock.write_text("{}")
    assert providers.upstream_status(SOURCE, lock)[0]
    copy = tmp_path / "solo5.git"
    copy.mkdir()
    assert providers.upstream_status({**SOURCE, "local": str(copy)}, tmp_path / "none.json") == (
        True, f"local copy {copy}")
    ok, why = providers.upstream_status({**SOURCE, "local": str(tmp_path / "gone")}, tmp_path / "none.json")
    assert not ok and why.startswith(f"solo5.upstream.local (or $UNIKIO_SOLO5_SOURCE) names {tmp_path / 'gone'}")


def test_an_unreachable_git_url_is_one_sentence_naming_the_keys(tmp_path):
    ok, why = providers.upstream_status({**SOURCE, "git": str(tmp_path / "no-such-repo")}, tmp_path / "none.json")
    assert not ok
    assert why.startswith("the upstream Solo5 source cannot be fetched from solo5.upstream.git (")
    assert why.endswith("set solo5.upstream.local or $UNIKIO_SOLO5_SOURCE to a local git copy or release tarball")
    assert "\n" not in why


def test_the_environment_fills_an_empty_local_only(monkeypatch):
    config = {"solo5": {"upstream": dict(SOURCE)}}
    monkeypatch.setenv("UNIKIO_SOLO5_SOURCE", "/srv/solo5")
    assert providers.upstream_source(config)["local"] == "/srv/solo5"
    config["solo5"]["upstream"]["local"] = "/mine"
    assert providers.upstream_source(config)["local"] == "/mine"


def test_seccomp_status_reads_the_kernel_actions(tmp_path):
    actions = tmp_path / "actions_avail"
    assert providers.seccomp_status(actions) == (False, f"this kernel has no seccomp filters ({actions} is missing)")
    actions.write_text("kill_process errno allow\n")
    assert providers.seccomp_status(actions) == (False, "this kernel's seccomp lacks the action(s) kill_thread, trap")
    actions.write_text("kill_process kill_thread trap errno user_notif trace log allow\n")
    assert providers.seccomp_status(actions)[0]
