"""Fixtures for the native tender tests: out-of-tree builds into pytest
temp dirs and KVM availability checks."""
import os

import pytest
from tender_common import GUESTS, SPT_TARGETS, distinct_disk, kvm_skip_reason, run_make


def _build(out, targets, guests, guest_target):
    """make targets (all if none) into out, then each test guest."""
    r = run_make("x86_64", out, *targets)
    assert r.returncode == 0, r.stdout + r.stderr
    for name in guests:
        r = run_make("x86_64", out, f"GUEST_SRC={GUESTS / (name + '.c')}",
                     f"GUEST_NAME={name}", guest_target)
        assert r.returncode == 0, r.stdout + r.stderr
    return out


@pytest.fixture(scope="session")
def build_x86(tmp_path_factory):
    return _build(tmp_path_factory.mktemp("build-x86_64"), (),
                  ("evil", "blkwin"), "guest")


@pytest.fixture(scope="session")
def build_spt(tmp_path_factory):
    """spt_tender, the spt apps and the spt test guests (no KVM needed)."""
    out = tmp_path_factory.mktemp("build-spt-x86_64")
    return _build(out, [str(out / t) for t in SPT_TARGETS],
                  ("spt_evil", "blkwin"), "guest-spt")


@pytest.fixture(scope="session")
def kvm():
    reason = kvm_skip_reason()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def disk(tmp_path):
    p = tmp_path / "disk.img"
    p.write_bytes(os.urandom(1 << 20))
    return p


@pytest.fixture
def window_disk(tmp_path):
    """An 8-block disk of distinct content, that content, and where the
    tender writes its stats."""
    disk = tmp_path / "disk.img"
    before = distinct_disk(disk, 8)
    return disk, before, tmp_path / "stats.txt"
