# Configuration checks, the run plan and the paths of the output contract.
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake.utils import validate

sys.path.insert(0, str(Path(workflow.basedir) / "workflow" / "scripts"))

from unikio import config as unikio_config  # noqa: E402
from unikio import aptsrc, codehash, conditions, hostinfo, initramfs, matrix, qemubuild, startup, supervise, version  # noqa: E402

SCHEMA = Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"
_problem = unikio_config.explain_invalid(config, unikio_config.load_schema(SCHEMA))
if _problem:
    raise WorkflowError(_problem)
validate(config, SCHEMA)

PIPELINE = version.describe()
HOST_ARCH = hostinfo.host_arch()
KVM = hostinfo.kvm_status()
PLAN = matrix.plan(config, HOST_ARCH, KVM)
for _c in matrix.skipped(PLAN):
    logger.info(f"skipped {_c.label}: {_c.reason}")
_problem = startup.check_disk_room(config, PLAN)
if _problem:
    raise WorkflowError(_problem)
_problem = conditions.measure_cpu_problem(config["measure"]["cpu"])
if _problem:
    raise WorkflowError(_problem)


onstart:
    supervise.forward_cancellation()


# A measurement takes every core Snakemake may use, so the scheduler can place
# nothing beside it: no build, no fetch, no plot, no other measurement. Every
# rule in experiments.smk takes it (tests/workflow checks this on the DAG).
WHOLE_MACHINE = workflow.cores
if (workflow.resource_settings.max_threads or WHOLE_MACHINE) < WHOLE_MACHINE:
    raise WorkflowError(
        f"--max-threads {workflow.resource_settings.max_threads} is below --cores {WHOLE_MACHINE}, so measurements "
        "could run beside other jobs; drop --max-threads"
    )

# MEASUREMENT ORDER. Snakemake starts the ready jobs of highest priority first,
# and a measurement (all cores) only when nothing else runs. So every other job
# comes first (prepare_first): no measurement starts while a build that it or
# another platform needs is still to be made. Then the KVM probe, whose verdict
# the Linux-guest rows need; then block repetition 1 of every platform, then
# repetition 2 of every platform, and so on, so slow drift of the machine falls
# on every platform alike; then the rows made by one job each (network, the
# testbed, the exit floor: priority 0), which run all their repetitions in one
# boot (README, "Repetition order").
PRIORITY_PREPARE = 3000
PRIORITY_PROBE = 2500
PRIORITY_REP_1 = 2000  # repetition r gets 2001 - r; blk.repetitions is at most 1000, so all stay above 0


def rep_priority(wildcards):
    """Priority of a block repetition: the same for every platform, lower for each later repetition."""
    return PRIORITY_REP_1 + 1 - int(wildcards.rep)


def prepare_first(rules):
    """Give every rule outside experiments.smk PRIORITY_PREPARE (see MEASUREMENT ORDER)."""
    for r in rules:
        if Path(r.snakefile).name != "experiments.smk":
            r.priority = PRIORITY_PREPARE


wildcard_constraints:
    arch="x86_64|aarch64",
    name="kernel|busybox",
    rep=r"\d+",

APT_INDEX = "results/apt/index"
QEMU_FILES = "results/sources/qemu/files"
QEMU_LOCK = "results/sources/qemu/lock.json"
QEMU_SRC = "results/build/qemu/src"
QEMU_INSTALL = "results/build/qemu/install"
QEMU_BIN = "results/build/qemu/bin"
NATIVE_BENCH = "results/build/native/{arch}/blk_bench"
NATIVE_ICMP = "results/build/native/{arch}/icmp_bench"
SOLO5_BUILTIN = "results/build/solo5-builtin/{arch}"
SOLO5_UPSTREAM = "results/build/solo5-upstream/{arch}"
SOLO5_UPSTREAM_SRC = "results/sources/solo5/tree"
SOLO5_UPSTREAM_LOCK = "results/sources/solo5/lock.json"
DEBIAN_DEB = "results/sources/{name}-{arch}/package.deb"
DEBIAN_TREE = "results/build/{name}-{arch}/tree"
GUEST_BUILD = "results/build/guest/{arch}"
PROBE = "results/raw/probe/{arch}/verdict.json"
TESTBED_BASE = "results/build/testbed/{arch}/base.cpio.gz"
TESTBED_NESTED = "results/build/testbed/{arch}/with-linux-guest.cpio.gz"
QEMU_CROSS = "results/build/qemu-arm64"
BLK_TESTBED = "results/raw/blk/{arch}/{platform}/testbed"
NET_TESTBED = "results/raw/net/{arch}/{platform}/testbed"
# Archs whose host-side rows run in the emulated testbed on this host; a
# pattern that matches nothing when there is none.
EMULATED_ARCHS = sorted({c.arch for c in PLAN if c.runnable and c.testbed == "emulated"})
EMULATED_ARCH_RE = "|".join(EMULATED_ARCHS) or "(?!)"
FLOOR = "results/raw/floor/{arch}/floor.json"
OVERHEAD_TABLE = "results/tables/overhead_{arch}.{ext}"
BLK_RAW = "results/raw/blk/{arch}/{platform}/rep{rep}"
BLK_RUNS = "results/data/blk_runs.csv"
NET_RAW = "results/raw/net/{arch}/{platform}"
NET_RUNS = "results/data/net_runs.csv"
NET_TABLE = "results/tables/net_{arch}.{ext}"
NET_FIGURE = "results/figures/net_{arch}.{ext}"
BLK_TABLE = "results/tables/blk_{arch}.{ext}"
BLK_FIGURE = "results/figures/blk_{arch}.{ext}"
TABLE_EXTS = ["csv", "md", "tex"]
FIGURE_EXTS = ["png", "pdf"]
CLAIMS_TABLE = "results/tables/claims.{ext}"
COMPARE_TABLE = "results/tables/compare.{ext}"
COMPARE_FIGURE = "results/figures/compare.png"
REPORT = "results/report.html"
PROVENANCE = "results/provenance.json"
LOGS = "results/logs"


def workflow_files(*patterns):
    """Files of this checkout matching the glob patterns, relative to it: a moved or copied checkout keeps its records."""
    base = Path(workflow.basedir)
    return sorted({str(p.relative_to(base)) for pattern in patterns for p in base.glob(pattern) if p.is_file()})


def add_code_params(rules, keyed_by_recipe):
    """Give every script rule a `code` param over the unikio modules its script imports (see unikio.codehash).

    Rules in keyed_by_recipe are left out: they feed the between-workflow
    cache, whose key a param would change; their recipe param and the lock
    files of what they fetch stand in.
    """
    for r in rules:
        if r.script and r.name not in keyed_by_recipe:
            r.set_params(code=codehash.code_hash(Path(r.snakefile).parent / r.script))


def blk_row_paths():
    """Row files of every runnable block combination: one per repetition natively, one per testbed boot."""
    paths = []
    for c in matrix.runnable(PLAN, "blk"):
        if c.testbed == "emulated":
            paths.append(f"{BLK_TESTBED.format(arch=c.arch, platform=c.platform)}/rows.json")
        else:
            paths += [
                f"{BLK_RAW.format(arch=c.arch, platform=c.platform, rep=rep)}/row.json"
                for rep in range(1, config["blk"]["repetitions"] + 1)
            ]
    return paths


def debian_package(name, arch):
    """(package, version, config key of the version) of a Debian binary package we use."""
    deb_arch = hostinfo.DEBIAN_ARCH[arch]
    if name == "kernel":
        return (f"{config['guest']['kernel_package']}-{deb_arch}", config["guest"]["kernel_version"],
                "guest.kernel_version")
    return ("busybox-static", config["guest"]["busybox_version"], "guest.busybox_version")


def solo5_unikernel(app):
    """Input function: the tender (our binary or the built upstream tree) and one app, for the configured provider."""

    def inputs(wc):
        if config["solo5"]["provider"] == "upstream":
            base = SOLO5_UPSTREAM.format(arch=wc.arch)
            return {"tender": f"{base}/tree", "guest": f"{base}/{app}.hvt"}
        base = SOLO5_BUILTIN.format(arch=wc.arch)
        return {"tender": f"{base}/tender", "guest": f"{base}/{app}.elf"}

    return inputs


def runnable_archs(experiment, platform):
    return [c.arch for c in matrix.runnable(PLAN, experiment) if c.platform == platform]


def testbed_image(wc):
    """The testbed's image: with the arm64 QEMU and the Linux guest only for the Linux-guest rows."""
    if wc.get("platform", "").startswith("qemu-linux"):
        return TESTBED_NESTED.format(arch=wc.arch)
    return TESTBED_BASE.format(arch=wc.arch)


def net_row_paths():
    """Row files of every runnable network combination (one job covers all sizes and repetitions)."""
    return [
        f"{(NET_TESTBED if c.testbed == 'emulated' else NET_RAW).format(arch=c.arch, platform=c.platform)}/rows.json"
        for c in matrix.runnable(PLAN, "net")
    ]


def net_archs():
    """Archs with a network table: every configured arch, once the experiment has platforms."""
    return config["archs"] if config["net"]["platforms"] else []


def linux_guest_archs():
    """Archs on which some Linux-guest platform runs (they need kernels, initramfs, a probe)."""
    return sorted(
        {c.arch for c in PLAN if c.runnable and c.platform.startswith("qemu-linux") and c.testbed == "native"}
    )


def skipped_reasons(experiment, arch):
    return {
        c.platform: c.reason
        for c in PLAN
        if c.experiment == experiment and c.arch == arch and not c.runnable
    }
