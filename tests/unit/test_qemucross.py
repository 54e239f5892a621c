import shlex
from pathlib import Path

import pytest
from unikio import qemubuild, qemucross
from unikio.errors import PipelineError

# Trimmed control fields of the arm64 candidates, as apt-cache show prints them.
SHOW = {
    "libglib2.0-dev": {
        "Version": "2.74.6-2+deb12u9",
        "Depends": "libffi-dev (>= 3.3), libglib2.0-0 (= 2.74.6-2+deb12u9), libglib2.0-bin (= 2.74.6-2+deb12u9), "
                   "libglib2.0-dev-bin (= 2.74.6-2+deb12u9), libmount-dev (>= 2.35.2-7~), libpcre2-dev, "
                   "libselinux1-dev, pkg-config, zlib1g-dev",
    },
    "libffi-dev": {"Version": "3.4.4-1", "Depends": "libffi8 (= 3.4.4-1)"},
    "libffi8": {"Version": "3.4.4-1", "Depends": "libc6 (>= 2.17)"},
    "libglib2.0-0": {"Version": "2.74.6-2+deb12u9", "Depends": "libc6 (>= 2.34), libffi8 (>= 3.4), libmount1"},
    "libmount-dev": {"Version": "2.38.1-5+deb12u3",
                     "Depends": "libblkid-dev, libc6-dev | libc-dev, libmount1 (= 2.38.1-5+deb12u3)"},
    "libmount1": {"Version": "2.38.1-5+deb12u3"},
    "libblkid-dev": {"Version": "2.38.1-5+deb12u3", "Depends": "libc6-dev | libc-dev"},
    "libpcre2-dev": {"Version": "10.42-1+deb12u2", "Depends": "libc-dev, libpcre2-8-0 (= 10.42-1+deb12u2)"},
    "libpcre2-8-0": {"Version": "10.42-1+deb12u2"},
    "libselinux1-dev": {"Version": "3.4-1+b6", "Depends": "libselinux1 (= 3.4-1+b6), libpcre2-dev"},
    "libselinux1": {"Version": "3.4-1+b6"},
    "zlib1g-dev": {"Version": "1:1.2.13.dfsg-1", "Depends": "zlib1g (= 1:1.2.13.dfsg-1), libc6-dev | libc-dev"},
    "zlib1g": {"Version": "1:1.2.13.dfsg-1"},
}


def test_parse_depends_alternatives_versions_and_arch_qualifiers():
    deps = qemucross.parse_depends("libc6-dev | libc-dev, zlib1g (= 1:1.2.13.dfsg-1), python3:any (>= 3.9) [amd64]")
    assert deps == [
        [qemucross.Relation("libc6-dev"), qemucross.Relation("libc-dev")],
        [qemucross.Relation("zlib1g", "=", "1:1.2.13.dfsg-1")],
        [qemucross.Relation("python3", ">=", "3.9")],
    ]
    assert qemucross.parse_depends("") == []


def test_parse_control_takes_the_first_paragraph_and_joins_continuations():
    text = "Package: a\nVersion: 1\nDepends: x,\n y\nDescription: d\n more\n\nPackage: a\nVersion: 0\n"
    fields = qemucross.parse_control(text)
    assert fields["Version"] == "1"
    assert qemucross.parse_depends(fields["Depends"]) == [[qemucross.Relation("x")], [qemucross.Relation("y")]]


@pytest.mark.parametrize(("rel", "followed"), [
    (qemucross.Relation("libffi-dev", ">=", "3.3"), True),
    (qemucross.Relation("uuid-dev"), True),
    (qemucross.Relation("libffi8", "=", "3.4.4-1"), True),
    (qemucross.Relation("zlib1g", "=", "1"), True),
    (qemucross.Relation("libglib2.0-bin", "=", "1"), False),
    (qemucross.Relation("libglib2.0-dev-bin", "=", "1"), False),
    (qemucross.Relation("pkg-config"), False),
    (qemucross.Relation("libmount1"), False),  # unpinned runtime dependency of a runtime library
    (qemucross.Relation("libc6-dev"), False),
    (qemucross.Relation("libc6", "=", "2.36"), False),
])
def test_follows(rel, followed):
    assert qemucross.follows(rel) is followed


def test_closure_follows_dev_packages_and_pinned_libraries_but_not_tools_or_libc():
    found = qemucross.closure(["libglib2.0-dev", "zlib1g-dev"], lambda name: SHOW.get(name, {}))
    assert found == {
        "libblkid-dev": "2.38.1-5+deb12u3",
        "libffi-dev": "3.4.4-1",
        "libffi8": "3.4.4-1",
        "libglib2.0-0": "2.74.6-2+deb12u9",
        "libglib2.0-dev": "2.74.6-2+deb12u9",
        "libmount-dev": "2.38.1-5+deb12u3",
        "libmount1": "2.38.1-5+deb12u3",
        "libpcre2-8-0": "10.42-1+deb12u2",
        "libpcre2-dev": "10.42-1+deb12u2",
        "libselinux1": "3.4-1+b6",
        "libselinux1-dev": "3.4-1+b6",
        "zlib1g": "1:1.2.13.dfsg-1",
        "zlib1g-dev": "1:1.2.13.dfsg-1",
    }
    assert list(found) == sorted(found)
    assert not set(found) & qemucross.TOOLCHAIN_PACKAGES


def test_closure_names_a_package_missing_from_the_index():
    with pytest.raises(PipelineError, match=r"libfdt-dev:arm64 is not in the private apt index"):
        qemucross.closure(["libfdt-dev"], lambda name: {})


def test_pkg_config_wrapper_sees_only_the_sysroot(tmp_path):
    env = qemucross.pkg_config_env(tmp_path)
    assert env["PKG_CONFIG_SYSROOT_DIR"] == str(tmp_path.resolve())
    assert env["PKG_CONFIG_LIBDIR"].split(":") == [f"{tmp_path.resolve()}/usr/lib/aarch64-linux-gnu/pkgconfig",
                                                   f"{tmp_path.resolve()}/usr/share/pkgconfig"]
    assert env["PKG_CONFIG_PATH"] == ""
    script = qemucross.pkg_config_wrapper(tmp_path)
    assert script.startswith("#!/bin/sh\n")
    assert script.rstrip().endswith('exec pkg-config "$@"')
    for key, value in env.items():
        assert f"export {key}={shlex.quote(value)}" in script


def test_configure_flags_cross_static_and_sysroot_dirs(tmp_path):
    s = tmp_path.resolve()
    flags = qemucross.configure_flags(tmp_path)
    assert flags[: len(qemubuild.CONFIGURE_FLAGS)] == list(qemubuild.CONFIGURE_FLAGS)
    assert "--cross-prefix=aarch64-linux-gnu-" in flags
    assert f"--cc=aarch64-linux-gnu-gcc -B{s}/usr/lib/aarch64-linux-gnu/" in flags
    assert f"--extra-cflags=-I{s}/usr/include -I{s}/usr/include/aarch64-linux-gnu" in flags
    assert f"--extra-ldflags=-L{s}/usr/lib/aarch64-linux-gnu -L{s}/lib/aarch64-linux-gnu" in flags
    assert flags[-2:] == ["--static", "--disable-pie"]
    assert not {"--static", "--disable-pie"} & set(qemucross.configure_flags(tmp_path, static=False))
    argv = qemubuild.configure_argv(Path("/src"), list(qemucross.TARGETS), flags)
    assert argv[:2] == ["/src/configure", "--target-list=aarch64-softmmu"]


def test_configure_env_uses_the_system_path_and_our_pkg_config():
    base = {"PATH": "/venv/bin:/usr/bin", "PKG_CONFIG_PATH": "/x", "LIBRARY_PATH": "/y", "CC": "clang", "HOME": "/h"}
    env = qemucross.configure_env(Path("/w/aarch64-linux-gnu-pkg-config"), base)
    assert env["PATH"] == qemubuild.SYSTEM_PATH
    assert env["PKG_CONFIG"] == "/w/aarch64-linux-gnu-pkg-config"
    assert env["LC_ALL"] == "C"
    assert env["HOME"] == "/h"
    assert not {"PKG_CONFIG_PATH", "LIBRARY_PATH", "CC"} & set(env)
    assert base["PATH"] == "/venv/bin:/usr/bin"  # the caller's mapping is not changed


def test_deb_filename_encodes_the_epoch():
    assert qemucross.deb_filename("zlib1g-dev", "1:1.2.13.dfsg-1") == "zlib1g-dev_1%3a1.2.13.dfsg-1_arm64.deb"
    assert qemucross.deb_filename("libfdt1", "1.6.1-4+b1") == "libfdt1_1.6.1-4+b1_arm64.deb"


def test_relink_absolute_symlinks_stays_inside_the_sysroot(tmp_path):
    (tmp_path / "lib/aarch64-linux-gnu").mkdir(parents=True)
    (tmp_path / "lib/aarch64-linux-gnu/libz.so.1").write_bytes(b"elf")
    libdir = tmp_path / "usr/lib/aarch64-linux-gnu"
    libdir.mkdir(parents=True)
    (libdir / "libz.so").symlink_to("/lib/aarch64-linux-gnu/libz.so.1")
    (libdir / "libfdt.so").symlink_to("libfdt.so.1")
    changed = qemucross.relink_absolute_symlinks(tmp_path)
    assert [p.name for p in changed] == ["libz.so"]
    assert (libdir / "libz.so").readlink() == Path("../../../lib/aarch64-linux-gnu/libz.so.1")
    assert (libdir / "libz.so").read_bytes() == b"elf"
    assert (libdir / "libfdt.so").readlink() == Path("libfdt.so.1")
