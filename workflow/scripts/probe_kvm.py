"""Rule kvm_probe: which accelerator the Linux guest of one arch runs under here."""

import json
from pathlib import Path

from unikio import guest, initramfs, job

sm = snakemake  # noqa: F821


def body(log):
    arch = sm.wildcards.arch
    qemu = Path(sm.input.qemu) / guest.QEMU_BINARY[arch]
    kernel = initramfs.kernel_image(Path(sm.input.kernel))
    accel, reason = guest.choose_accel(
        sm.params.policy,
        lambda: guest.probe_kvm(arch, str(qemu), kernel, sm.input.initramfs, timeout_s=sm.params.timeout_s,
                                console_log=Path(sm.output[0]).with_name("console.log")))
    verdict = {"arch": arch, "policy": sm.params.policy, "accel": accel, "reason": reason}
    Path(sm.output[0]).write_text(json.dumps(verdict, indent=2) + "\n", encoding="utf-8")
    log.write(f"{arch} Linux guest: {accel} ({reason})\n")
    print(f"{arch} Linux guest: {accel} ({reason})")


job.run(sm, body)
