"""Rule qemu_source_patched: unpack the fetched QEMU source and apply patches/qemu/."""

from pathlib import Path

from unikio import job, patching

sm = snakemake  # noqa: F821


def body(log):
    dest = Path(sm.output[0])
    patching.unpack(Path(sm.input.files), dest, log)
    qemu = sm.config["qemu"]
    key, value = (("qemu.debian_version", qemu["debian_version"]) if qemu["source"] == "debian"
                  else ("qemu.tarball.url", qemu["tarball"]["url"]))
    patching.apply(dest, [Path(p) for p in sm.input.patches], log,
                   misfit_hint=f"{key} is {value!r}: use the QEMU version the patch's description names, "
                               "or update the patch's lines and anchors")


job.run(sm, body)
