# Configuration checks, the run plan and the paths of the output contract.
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

from snakemake.common import async_run
from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake.utils import validate

sys.path.insert(0, str(Path(workflow.basedir) / "workflow" / "scripts"))

from unikio import config as unikio_config  # noqa: E402
from unikio import merge as unikio_merge  # noqa: E402
from unikio import aptsrc, codehash, conditions, counts, estimate, hostinfo, initramfs, matrix, progress, providers, qemubuild, solo5, startup, supervise, version  # noqa: E402

PROBE = "results/raw/probe/{arch}/verdict.json"
SCHEMA = Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"
_problem = unikio_config.explain_invalid(config, unikio_config.load_schema(SCHEMA))
if _problem:
    raise WorkflowError(_problem)
validate(config, SCHEMA)

PIPELINE = version.describe()
HOST_ARCH = hostinfo.host_arch()
KVM = hostinfo.kvm_status()
SOLO5_UPSTREAM_LOCK = "results/sources/solo5/lock.json"
# solo5.upstream, with $UNIKIO_SOLO5_SOURCE standing in for an empty local.
SOLO5_UPSTREAM_SOURCE = providers.upstream_source(config)
PLAN = matrix.plan(
    config, HOST_ARCH, KVM, seccomp=providers.seccomp_status(),
    # Asked only where some upstream row is configured: the answer may take git a while.
    upstream=(providers.upstream_status(SOLO5_UPSTREAM_SOURCE, Path(SOLO5_UPSTREAM_LOCK))
              if "upstream" in config["solo5"]["providers"]
              and any(p in matrix.TENDER for e in ("blk", "net") for p in config[e]["platforms"])
              else matrix.READY),
)
# One line per reason: an unreachable upstream Solo5 skips many rows for one cause.
_skipped = {}
for _c in matrix.skipped(PLAN):
    _skipped.setdefault(_c.reason, []).append(_c.label)
for _reason, _labels in _skipped.items():
    logger.info(f"skipped {', '.join(_labels)}: {_reason}")
_problem = startup.check_disk_room(config, PLAN)
if _problem:
    raise WorkflowError(_problem)
_problem = conditions.measure_cpu_problem(config["measure"]["cpu"])
if _problem:
    raise WorkflowError(_problem)

# The between-workflow cached QEMU builds and the rules upstream of them get no
# code param (add_code_params): it would change the cache key; their recipe
# params and the lock files of the fetched sources stand in. The cached ones
# cannot have a benchmark.tsv (Snakemake): their logs end with the job's time.
CACHED_RULES = {"qemu_build", "qemu_cross_build"}
CACHE_FED_RULES = CACHED_RULES | {"apt_index", "qemu_source", "qemu_source_patched", "qemu_cross_sysroot"}

# THE ESTIMATE (unikio.estimate): the run's cost from this machine's earlier
# results where they exist, else from the model kept in the repository.
COST_MODEL = Path(workflow.basedir) / "config" / "cost_model.yaml"
_model = estimate.fit(Path("results"), CACHED_RULES)
if COST_MODEL.is_file():
    _model = _model.merged_over(estimate.load_model(COST_MODEL))
LINUX_ACCEL = {
    arch: estimate.predict_linux_accel(config["accel"], arch, HOST_ARCH, KVM[0], hostinfo.current_kvm_impl(),
                                       Path(PROBE.format(arch=arch)))
    for arch in config["archs"]
}
MEASUREMENTS = estimate.Plan(estimate.planned_measurements(_model, PLAN, config, LINUX_ACCEL), _model.source)
logger.info(f"measurements: {len(MEASUREMENTS.items)} jobs, about {progress.duration(MEASUREMENTS.seconds)} if all run "
            f"(model: {MEASUREMENTS.source or 'none'}); the whole plan is printed when the run starts")
_problem = estimate.too_long(MEASUREMENTS, config)
if _problem:
    raise WorkflowError(_problem)
if workflow.workflow_settings.cache is None:
    logger.info("note: the between-workflow cache is off, so the QEMU builds are not shared with other checkouts; "
                "run ./snakemake, or add --cache with SNAKEMAKE_OUTPUT_CACHE set (README, Quick start)")
RUN_STARTED = {}


def planned_jobs():
    """The jobs this invocation will run, each with its expected cost (after the DAG is built)."""
    items = []
    needrun = list(workflow.dag.needrun_jobs())
    for job in needrun:
        cached = False
        if job.rule.name in CACHED_RULES and workflow.output_file_cache is not None:
            cached = async_run(workflow.output_file_cache.exists(job))
        items.append(estimate.estimate_job(_model, job.rule.name, dict(job.wildcards_dict), config, LINUX_ACCEL,
                                           cached))
    probing = {j.wildcards_dict["arch"] for j in needrun if j.rule.name == "kvm_probe"}
    # The Linux-guest block repetitions of an arch whose probe is still to run
    # are not in the DAG yet (a checkpoint); its network job is, waiting.
    waiting = [c for c in PLAN if c.arch in probing and c.experiment == "blk" and c.testbed == "native"]
    items += [i for i in estimate.planned_measurements(_model, waiting, config, LINUX_ACCEL) if i.rule == "blk_qemu_run"]
    return estimate.Plan(items, _model.source)


onstart:
    supervise.forward_cancellation()
    _plan = planned_jobs()
    RUN_STARTED.update(t=time.monotonic(), estimate=_plan.seconds)
    logger.info(_plan.summary())
    for _item in _plan.slowest():
        logger.info(f"  {progress.duration(_item.seconds):>12}  {_item.label}")


onsuccess:
    if RUN_STARTED:
        _took = time.monotonic() - RUN_STARTED["t"]
        logger.info(f"the run took {progress.duration(_took)} (estimated {progress.duration(RUN_STARTED['estimate'])})")
        _off = estimate.verdict(RUN_STARTED["estimate"], _took)
        if _off:
            logger.warning(_off)


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


BENCHMARKS = "results/benchmarks"


def add_benchmarks(rules, cached):
    """A benchmark.tsv (BENCHMARKS/RULE.WILDCARD....tsv) for every rule that makes files and has none.

    The cached QEMU builds cannot have one (Snakemake): their logs end with the
    time the job took (unikio.job), which the runtime table reads.
    """
    for r in rules:
        if r.benchmark or r.name in cached or not r.output:
            continue
        r.benchmark_modifier = workflow.modifier.path_modifier  # what a benchmark: directive would set
        r.benchmark = f"{BENCHMARKS}/{r.name}" + "".join(f".{{{w}}}" for w in sorted(r.wildcard_names)) + ".tsv"


def prepare_first(rules):
    """Give every rule outside experiments.smk PRIORITY_PREPARE (see MEASUREMENT ORDER)."""
    for r in rules:
        if Path(r.snakefile).name != "experiments.smk":
            r.priority = PRIORITY_PREPARE


wildcard_constraints:
    arch="x86_64|aarch64",
    name="kernel|busybox",
    rep=r"\d+",
    provider="builtin|upstream",

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
LWIP_SRC = "results/sources/lwip/tree"
LWIP_LOCK = "results/sources/lwip/lock.json"
LWIP_BUILTIN = "results/build/lwip-builtin/{arch}"
LWIP_UPSTREAM = "results/build/lwip-upstream/{arch}"
DEBIAN_DEB = "results/sources/{name}-{arch}/package.deb"
DEBIAN_TREE = "results/build/{name}-{arch}/tree"
GUEST_BUILD = "results/build/guest/{arch}"
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
# A unikernel row's files: one directory per Solo5 provider.
BLK_UNIKERNEL_RAW = "results/raw/blk/{arch}/{platform}/{provider}/rep{rep}"
NET_UNIKERNEL_RAW = "results/raw/net/{arch}/{platform}/{provider}"
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
# merge: the parts are made in MERGING, then published together as MERGED (merge.smk).
MERGED = "results/merged"
MERGING = "results/merging"
MERGING_PROVENANCE = f"{MERGING}/provenance.json"
MERGING_RUNS = f"{MERGING}/data/{{experiment}}_runs.csv"
MERGING_TABLE = f"{MERGING}/tables/{{experiment}}_{{arch}}.{{ext}}"
MERGING_FIGURE = f"{MERGING}/figures/{{experiment}}_{{arch}}.{{ext}}"
MERGING_CLAIMS = f"{MERGING}/tables/claims.{{ext}}"
MERGING_HOSTS = f"{MERGING}/hosts.{{ext}}"
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


# The testbed machine's own settings: without its rows' counts, so a change of
# testbed.blk reruns no network or exit-floor boot.
TESTBED_SETTINGS = {k: v for k, v in config["testbed"].items() if k not in counts.EMULATED_KEYS}


def probe_file(arch):
    """The KVM probe's verdict for arch, once it ran (a checkpoint: what asks for it before waits)."""
    return checkpoints.kvm_probe.get(arch=arch).output[0]


def probe_verdict(wildcards):
    """Input function: probe_file of the job's arch."""
    return probe_file(wildcards.arch)


def probe_accel(arch):
    """The accelerator the KVM probe chose for the Linux guest of arch."""
    return json.loads(Path(probe_file(arch)).read_text(encoding="utf-8"))["accel"]


def linux_guest_counts(experiment, keys):
    """Params function: the counts (keys) a Linux-guest job uses; the emulated ones where the probe chose TCG.

    Only those keys: a change of another count does not rerun the job, a change of one of them does.
    """
    return lambda wc: {
        k: counts.settings(config, experiment, probe_accel(wc.arch) == "tcg")[k] for k in keys
    }


def blk_repetitions(c):
    """Repetitions of a native block row: the emulated count where the Linux guest runs under TCG."""
    tcg = c.platform.startswith("qemu-linux") and probe_accel(c.arch) == "tcg"
    return counts.settings(config, "blk", tcg)["repetitions"]


def blk_row_paths(guest_rows):
    """Row files of the runnable block combinations: one per repetition natively, one per testbed boot.

    guest_rows: the native Linux-guest rows (False: every other row), whose
    repetitions wait for the KVM probe (see blk_repetitions); a separate input
    function, so the other rows are planned at once.
    """
    paths = []
    for c in matrix.runnable(PLAN, "blk"):
        if c.testbed == "emulated":
            if not guest_rows:
                paths.append(f"{BLK_TESTBED.format(arch=c.arch, platform=c.platform)}/rows.json")
        elif c.platform.startswith("qemu-linux") == guest_rows:
            raw = BLK_UNIKERNEL_RAW if c.provider else BLK_RAW
            paths += [
                f"{raw.format(arch=c.arch, platform=c.platform, provider=c.provider, rep=rep)}/row.json"
                for rep in range(1, blk_repetitions(c) + 1)
            ]
    return paths


def debian_package(name, arch):
    """(package, version, config key of the version) of a Debian binary package we use."""
    deb_arch = hostinfo.DEBIAN_ARCH[arch]
    if name == "kernel":
        return (f"{config['guest']['kernel_package']}-{deb_arch}", config["guest"]["kernel_version"],
                "guest.kernel_version")
    return ("busybox-static", config["guest"]["busybox_version"], "guest.busybox_version")


def unikernel_files(experiment):
    """Input function of a unikernel row: its tender (our binary, or the built upstream tree) and its guest, by
    the job's platform (which tender, which app) and provider."""

    def inputs(wc):
        app = matrix.app(experiment, wc.platform)
        if wc.provider == "upstream":
            where = LWIP_UPSTREAM if app == "lwip_serve" else SOLO5_UPSTREAM
            return {"tender": f"{SOLO5_UPSTREAM.format(arch=wc.arch)}/tree",
                    "guest": f"{where.format(arch=wc.arch)}/{app}.{matrix.TENDER[wc.platform]}"}
        where = LWIP_BUILTIN if app == "lwip_serve" else SOLO5_BUILTIN
        tender, guest = solo5.builtin_files(experiment, wc.platform)
        return {"tender": f"{SOLO5_BUILTIN.format(arch=wc.arch)}/{tender}", "guest": f"{where.format(arch=wc.arch)}/{guest}"}

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
    def row_dir(c):
        if c.testbed == "emulated":
            return NET_TESTBED.format(arch=c.arch, platform=c.platform)
        return (NET_UNIKERNEL_RAW if c.provider else NET_RAW).format(arch=c.arch, platform=c.platform,
                                                                       provider=c.provider)

    return [f"{row_dir(c)}/rows.json" for c in matrix.runnable(PLAN, "net")]


def net_archs():
    """Archs with a network table: every configured arch, once the experiment has platforms."""
    return config["archs"] if config["net"]["platforms"] else []


def linux_guest_archs():
    """Archs on which some Linux-guest platform runs (they need kernels, initramfs, a probe)."""
    return sorted(
        {c.arch for c in PLAN if c.runnable and c.platform.startswith("qemu-linux") and c.testbed == "native"}
    )


def merged_parts(wc):
    """Input function of merged_results: every staged part of a merge (merge.smk); which tables and figures
    there are is known once the checkpoint merged_runs has read the artifacts."""
    record = json.loads(Path(checkpoints.merged_runs.get().output.provenance).read_text(encoding="utf-8"))
    return [f"{MERGING}/{name}" for name in unikio_merge.part_names(record)]


def skipped_reasons(experiment, arch):
    """{row label: why it is skipped} of an experiment on arch (a unikernel's label names its provider)."""
    return {
        c.row_label: c.reason
        for c in PLAN
        if c.experiment == experiment and c.arch == arch and not c.runnable
    }


def unikernel_source_locks():
    """Lock files of the sources the planned unikernel rows are built from: lwIP, upstream Solo5."""
    locks = [LWIP_LOCK] if any(lwip_rows(arch) for arch in config["archs"]) else []
    return locks + ([SOLO5_UPSTREAM_LOCK] if any(c.runnable and c.provider == "upstream" for c in PLAN) else [])


def lwip_rows(arch):
    """Whether an lwIP row of arch runs (its guests are built, and go into the testbed's image)."""
    return any(c.runnable and c.arch == arch and c.platform.startswith("lwip-") for c in PLAN)
