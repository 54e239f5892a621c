"""Fixtures for the native tender tests: out-of-tree builds into pytest
temp dirs and KVM availability checks."""
import os

import pytest
from tender_common import GUESTS, kvm_skip_reason, run_make


@pytest.fixture(scope="session")
def build_x86(tmp_path_factory):
    out = tmp_path_factory.mktemp("build-x86_64")
    r = run_make("x86_64", out)
    assert r.returncode == 0, r.stdout + r.stderr
    for name in ("evil", "blkwin"):
        r = run_make("x86_64", out, f"GUEST_SRC={GUESTS / (name + '.c')}",
                     f"GUEST_NAME={name}", "guest")
        assert r.returncode == 0, r.stdout + r.stderr
    return out


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
