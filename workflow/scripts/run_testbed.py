"""Rules testbed_run and testbed_exit_floor_run: one boot of the emulated aarch64 host."""

import json
from pathlib import Path

from unikio import guest, initramfs, job, testbed

sm = snakemake  # noqa: F821


def body(log):
    arch, p = sm.wildcards.arch, sm.params
    bed = testbed.Testbed(qemu=Path(sm.input.qemu) / guest.QEMU_BINARY[arch],
                          kernel=initramfs.kernel_image(Path(sm.input.kernel)), base_initrd=Path(sm.input.base),
                          memory_mb=p.testbed["memory_mb"], smp=p.testbed["smp"],
                          boot_timeout_s=p.testbed["boot_timeout_s"])
    out = Path(sm.output[0])
    common = {"work_dir": out.parent, "console_log": out.with_name("console.log"), "timeout_s": p.testbed["timeout_s"],
              "log": log}
    platform = sm.wildcards.get("platform")
    if sm.rule == "testbed_exit_floor_run":
        result, run = testbed.exit_floor(bed, exits=p.exits, **common)
    elif sm.wildcards.experiment == "net" and platform == "qemu-linux":
        result, run = testbed.qemu_net(bed, sizes=list(p.settings["sizes"]), reps=p.settings["repetitions"],
                                       packets=p.settings["packets"], max_loss_pct=p.settings["max_loss_pct"],
                                       memory_mb=p.guest_memory_mb, **common)
    elif sm.wildcards.experiment == "net":
        # solo5-hvt, solo5-spt, lwip-solo5-hvt, lwip-solo5-spt (testbed.UNIKERNELS["net"]).
        result, run = testbed.tender_net(bed, sizes=list(p.settings["sizes"]), reps=p.settings["repetitions"],
                                         packets=p.settings["packets"], max_loss_pct=p.settings["max_loss_pct"],
                                         mem_mb=p.mem_mb, platform=platform, **common)
    elif platform.startswith("qemu-linux"):
        result, run = testbed.qemu_blk(bed, platform=platform, reads=p.settings["reads"],
                                       block_size=p.settings["block_size"], reps=p.settings["repetitions"],
                                       memory_mb=p.guest_memory_mb, **common)
    elif platform == "host":
        result, run = testbed.host_blk(bed, reads=p.settings["reads"], block_size=p.settings["block_size"],
                                       reps=p.settings["repetitions"], **common)
    else:
        # solo5-hvt, solo5-spt (testbed.UNIKERNELS["blk"]).
        result, run = testbed.tender_blk(bed, reads=p.settings["reads"], block_size=p.settings["block_size"],
                                         reps=p.settings["repetitions"], mem_mb=p.mem_mb, platform=platform,
                                         **common)
    log.write(f"testbed boot to job: {run.boot_s:.2f} s, whole run: {run.total_s:.2f} s\n")
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


job.run(sm, body)
