import json

import pytest
from unikio import aptsrc
from unikio.errors import PipelineError

DEB822 = """\
Types: deb
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main

Types: deb
URIs: https://vendor.example/apt
Suites: nodistro
Components: main
"""

ONE_LINE = """\
# comment
deb [signed-by=/k.gpg arch=amd64] http://mirror.example/debian bookworm main contrib
deb-src http://mirror.example/debian bookworm main
deb http://other.example/repo stable main
"""


def test_deb822_entries_become_binary_and_source_for_both_archs():
    text = aptsrc.derive_sources({"/etc/apt/sources.list.d/debian.sources": DEB822}, "bookworm")
    paragraphs = text.strip().split("\n\n")
    assert len(paragraphs) == 2  # the vendor entry is dropped
    for p in paragraphs:
        assert "Types: deb deb-src" in p
        assert "Architectures: amd64 arm64" in p
    assert "Suites: bookworm bookworm-updates" in paragraphs[0]
    assert "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" in paragraphs[0]
    assert "vendor.example" not in text


def test_one_line_format_keeps_signed_by_and_components():
    text = aptsrc.derive_sources({"/etc/apt/sources.list": ONE_LINE}, "bookworm")
    assert text.count("Types:") == 1
    assert "Components: main contrib" in text
    assert "Signed-By: /k.gpg" in text


def test_no_debian_entry_is_a_clear_error():
    with pytest.raises(PipelineError, match="no Debian 'bookworm' entry"):
        aptsrc.derive_sources({"/etc/apt/sources.list": "deb http://x.example/repo stable main\n"}, "bookworm")


def test_disabled_deb822_entry_is_ignored():
    text = DEB822.replace("Components: main\nSigned-By", "Enabled: no\nComponents: main\nSigned-By", 1)
    out = aptsrc.derive_sources({"a.sources": text}, "bookworm")
    assert "bookworm-updates" not in out


def test_private_apt_options_never_touch_system_state(tmp_path):
    opts = aptsrc.PrivateApt(tmp_path).options()
    values = [o.split("=", 1)[1] for o in opts[1::2] if o.startswith("Dir::")]
    assert values and all(v == "" or v.startswith(str(tmp_path)) for v in values)


def test_lock_records_sha256_of_every_file(tmp_path):
    (tmp_path / "a.dsc").write_bytes(b"abc")
    lock = tmp_path / "lock.json"
    aptsrc.write_lock(lock, {"version": "1"}, [tmp_path / "a.dsc"])
    data = json.loads(lock.read_text())
    assert data["files"]["a.dsc"] == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert data["version"] == "1"
