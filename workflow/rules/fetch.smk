# Sources: Debian packages through a private apt state, or a verified tarball.


# The QEMU chain has no code= param: its outputs are checked by the lock file,
# and a param upstream of qemu_build would change its between-workflow cache key.


rule apt_index:
    output:
        directory(APT_INDEX),
    log:
        f"{LOGS}/apt_index.log",
    script:
        "../scripts/make_apt_index.py"


rule qemu_source:
    input:
        apt=lambda wc: APT_INDEX if config["qemu"]["source"] == "debian" else [],
    output:
        files=directory(QEMU_FILES),
        lock=QEMU_LOCK,
    log:
        f"{LOGS}/qemu_source.log",
    params:
        source=config["qemu"]["source"],
        version=config["qemu"]["debian_version"],
        url=config["qemu"]["tarball"]["url"],
        sha256=config["qemu"]["tarball"]["sha256"],
    script:
        "../scripts/fetch_qemu_source.py"


rule qemu_source_patched:
    input:
        files=QEMU_FILES,
        lock=QEMU_LOCK,
        patches=workflow_files("patches/qemu/*.patch"),
    output:
        directory(QEMU_SRC),
    log:
        f"{LOGS}/qemu_source_patched.log",
    script:
        "../scripts/patch_qemu_source.py"


rule debian_package:
    input:
        apt=APT_INDEX,
    output:
        deb=DEBIAN_DEB,
        lock=DEBIAN_DEB.replace("package.deb", "lock.json"),
    log:
        f"{LOGS}/debian_package_{{name}}_{{arch}}.log",
    params:
        package=lambda wc: debian_package(wc.name, wc.arch)[0],
        version=lambda wc: debian_package(wc.name, wc.arch)[1],
        key=lambda wc: debian_package(wc.name, wc.arch)[2],
        debian_arch=lambda wc: hostinfo.DEBIAN_ARCH[wc.arch],
    script:
        "../scripts/fetch_debian_package.py"


rule solo5_upstream_source:
    output:
        tree=directory(SOLO5_UPSTREAM_SRC),
        lock=SOLO5_UPSTREAM_LOCK,
    log:
        f"{LOGS}/solo5_upstream_source.log",
    params:
        source=SOLO5_UPSTREAM_SOURCE,
    script:
        "../scripts/fetch_solo5_upstream.py"


rule lwip_source:
    input:
        apt=APT_INDEX,
    output:
        tree=directory(LWIP_SRC),
        lock=LWIP_LOCK,
    log:
        f"{LOGS}/lwip_source.log",
    params:
        version=config["lwip"]["debian_version"],
    script:
        "../scripts/fetch_lwip_source.py"
