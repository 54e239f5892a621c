"""Rule kvm_probe: which accelerator the Linux guest of one arch runs under here."""

import json
from pathlib import Path

from unikio import guest, initramfs

sm = snakemake  # noqa: F821


def body(log):
    arch = sm.wildcards.arch
    qemu = Path(sm.input.qemu) / guest.QEMU_BINARY[arch]
    kernel = initramfs.kernel_image(Path(sm.input.kernel))
    accel, reason = guest.choose_accel(
        sm.params.policy,
        lambda: guest.probe_kvm(arch, str(qemu), kernel, sm.input.initramfs, timeout_s=sm.params.timeout_s,
                                console_log=sm.log[0]))
    verdict = {"arch": arch, "policy": sm.params.policy, "accel": accel, "reason": reason}
    Path(sm.output[0]).write_text(json.dumps(verdict, indent=2) + "\n", encoding="utf-8")
    print(f"{arch} Linux guest: {accel} ({reason})")


# The probe writes the console log itself; job.run would truncate it.
try:
    body(None)
except guest.PipelineError as e:
    raise SystemExit(f"ERROR in rule kvm_probe: {e} (log: {sm.log[0]})") from None
