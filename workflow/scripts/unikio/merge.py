"""Several machines, one study: the artifacts of several hosts, side by side.

Each machine runs the pipeline and `archive`; `merge` reads those
artifact.tar.gz files in memory (nothing is unpacked), checks that they
measured the same thing, and writes results/merged/: per experiment and arch
the study's table with one column group per host and per original host, the
figures of them all, the claims per host, the tidy runs tagged with their
column, a hosts table and provenance.

One definition of every number: a host's values are aggregate's table and
claims' verdicts computed from that artifact's own runs CSVs, exactly what the
host's run wrote (given the same pipeline version).

Hosts. A host is named by its identity in the artifact's provenance: CPU
model, cores, arch, kernel, KVM implementation, the Linux guests' accelerator
per arch and the accelerator and testbed of every row. Artifacts of the same
identity are runs of one host ("<label> run 1", "run 2"); merge.labels
overrides the label of one artifact (by path or sha256 prefix), and
artifacts sharing a label are runs of it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import shutil
import tarfile
import tempfile
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from . import aggregate, claims, matrix, version
from .errors import PipelineError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

ARTIFACTS_KEY = "merge.artifacts"
LABELS_KEY = "merge.labels"
ALLOW_KEY = "merge.allow_mismatch"
EXPERIMENTS = ("blk", "net")
RUNS_FILES = {"blk": "blk_runs.csv", "net": "net_runs.csv"}
PROVENANCE = "results/provenance.json"
COLUMN = "column"  # the column of the merged runs CSVs naming the column group a row belongs to
# Without these a runs CSV has no metric; older artifacts may lack the others (kept empty).
NEEDED = {"blk": ["arch", "platform", "accel", "testbed", "block_size", "reads", "total_ns", "pread_ns"],
          "net": ["arch", "platform", "accel", "testbed", "data_bytes", "packets", "pps", "avg_rtt_ns", "lost"]}

# --- what must agree ---------------------------------------------------------------------------------------------
# Config keys that describe the machine or the run, not what is measured: they may differ between hosts.
HOST_SPECIFIC_SECTIONS = ("measure", "conditions", "compare", "merge")
# Where a source was fetched from; what was fetched is pinned by the locks and hashes, which are compared.
SOURCE_LOCATIONS = ("qemu.tarball.url", "solo5.upstream.git", "solo5.upstream.local")
SOURCE_LOCK = re.compile(r"^results/sources/[^/]+/lock\.json$")
# Lock fields that say where a source came from, not what it is.
LOCK_LOCATIONS = frozenset({"source", "kind", "url"})

# --- the merged tables -------------------------------------------------------------------------------------------
# Per host: aggregate's columns, verbatim (what the figures need among them), and ratio_<original host>.
OUR_COLUMNS = {
    "blk": ["accel", "kvm_impl", "testbed", "runs", "reads", "block_size", "total_ms", "total_ci_low",
            "total_ci_high", "pread_ms", "guest_monitor_ms", "us_per_read", "cv_total", "note"],
    "net": ["accel", "kvm_impl", "testbed", "runs", "packets", "pps", "pps_ci_low", "pps_ci_high", "pps_cv",
            "avg_rtt_us", "lost_pct", "note"],
}
# The study's value per original host, as aggregate names it (<host>_<value>).
STUDY_VALUE = {"blk": "total_ms", "net": "pps"}
ROW_KEYS = {"blk": ["platform"], "net": ["platform", "data_bytes"]}
_INT_SUFFIXES = ("runs", "reads", "block_size", "packets", "data_bytes")
TITLES = {"blk": "Block reads", "net": "ICMP echo round trips"}
REFERENCES = {"blk": "config/reference/paper_blk_ms.csv", "net": "config/reference/paper_net_pps.csv"}
HOSTS_COLUMNS = ["column", "label", "run", "label_source", "artifact", "sha256", "cpu_model", "cores", "host_arch",
                 "kernel", "kvm_impl", "guest_accel", "pipeline_version", "mismatch"]


# --- reading artifacts -------------------------------------------------------------------------------------------

def artifact_paths(entries: Sequence[str]) -> list[str]:
    """merge.artifacts as files, a directory contributing its *.tar.gz sorted; PipelineError in one sentence."""
    if not entries:
        raise PipelineError(f"{ARTIFACTS_KEY} is empty: name the artifact.tar.gz files made by `archive` on each "
                            "machine, or a directory holding them, e.g. ./snakemake --cores 4 merge --config "
                            "'merge={\"artifacts\": [\"artifacts/\"]}'")
    paths: list[str] = []
    for entry in map(str, entries):
        path = Path(entry).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.glob("*.tar.gz") if p.is_file())
            if not found:
                raise PipelineError(f"{ARTIFACTS_KEY} names the directory {entry}, which holds no *.tar.gz")
            paths += [str(p) for p in found]
        elif path.is_file():
            paths.append(str(path))  # expanded: Snakemake takes it as an input as it is
        else:
            raise PipelineError(f"{ARTIFACTS_KEY} names {entry}, which does not exist")
    results = Path.cwd().resolve() / "results"
    seen: dict[Path, str] = {}
    for p in paths:
        resolved = Path(p).expanduser().resolve()
        if results in resolved.parents:
            # results/artifact.tar.gz is rebuilt by `archive`, which holds the merge: a cycle, and a moving target.
            raise PipelineError(f"{ARTIFACTS_KEY} names {p}, inside this run's own results/, which the run rewrites; "
                                "keep the artifacts out of results/ (e.g. move results/artifact.tar.gz to artifacts/)")
        if resolved in seen:
            raise PipelineError(f"{ARTIFACTS_KEY} names {p} twice (also as {seen[resolved]})")
        seen[resolved] = p
    return paths


@dataclass
class Artifact:
    """What merge reads of one artifact: its provenance, runs and the files that must agree between hosts."""

    path: str  # as merge.artifacts names it (a directory's entries: <directory>/<name>)
    sha256: str
    provenance: dict[str, Any]
    runs: dict[str, pd.DataFrame]
    files: dict[str, bytes] = field(default_factory=dict)  # patches/, native/, source locks, by path inside

    @property
    def config(self) -> dict[str, Any]:
        config = self.provenance.get("config")
        return config if isinstance(config, dict) else {}


def _wanted(rel: str) -> bool:
    return (rel in (PROVENANCE, version.VERSION_FILE) or rel.startswith(("results/data/", "patches/", "native/"))
            or bool(SOURCE_LOCK.match(rel)))


def _sha256_of_whole_stream(path: Path) -> str:
    """sha256 of the file, after decompressing all of it: gzip checks its CRC and length only at the end."""
    digest = hashlib.sha256()
    with open(path, "rb") as raw:
        for chunk in iter(lambda: raw.read(1 << 20), b""):
            digest.update(chunk)
    with gzip.open(path, "rb") as stream:
        while stream.read(1 << 20):
            pass
    return digest.hexdigest()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.rstrip(".")


def read_artifact(path: str) -> Artifact:
    """One artifact, read whole (a truncated or corrupted one is refused in one sentence naming it)."""
    try:
        sha256 = _sha256_of_whole_stream(Path(path).expanduser())
        with tarfile.open(Path(path).expanduser(), "r:gz") as tar:
            members = [m for m in tar.getmembers() if m.isfile()]
            roots = sorted((m.name[: -len(PROVENANCE)] for m in members
                            if m.name == PROVENANCE or m.name.endswith("/" + PROVENANCE)), key=lambda r: r.count("/"))
            if not roots:
                raise PipelineError(f"{ARTIFACTS_KEY} names {path}, which holds no {PROVENANCE}, so it was not made "
                                    "by `archive` (run ./snakemake --cores 4 archive on its machine)")
            files: dict[str, bytes] = {}
            for m in members:
                rel = m.name[len(roots[0]):]
                if m.name.startswith(roots[0]) and _wanted(rel):
                    f = tar.extractfile(m)
                    files[rel] = f.read() if f is not None else b""
    except (OSError, EOFError, zlib.error, tarfile.TarError) as exc:
        raise PipelineError(f"{ARTIFACTS_KEY} names {path}, which is truncated or corrupted ({_first_line(exc)}); "
                            "make it again with `archive` on its machine, or leave it out") from exc
    try:
        provenance = json.loads(files.pop(PROVENANCE))
    except (ValueError, UnicodeDecodeError) as exc:
        raise PipelineError(f"{ARTIFACTS_KEY} names {path}, whose {PROVENANCE} is not JSON ({_first_line(exc)})"
                            ) from exc
    if not isinstance(provenance, dict):
        raise PipelineError(f"{ARTIFACTS_KEY} names {path}, whose {PROVENANCE} is not a provenance record")
    runs = {experiment: _runs(files.pop(f"results/data/{name}", None), experiment, f"{path}: results/data/{name}")
            for experiment, name in RUNS_FILES.items()}
    if all(r.attrs.get("missing") for r in runs.values()):
        raise PipelineError(f"{ARTIFACTS_KEY} names {path}, which holds no runs CSV (results/data/blk_runs.csv or "
                            "net_runs.csv)")
    return Artifact(path=path, sha256=sha256, provenance=provenance, runs=runs, files=files)


def _runs(data: bytes | None, experiment: str, where: str) -> pd.DataFrame:
    """A runs CSV in the contract's columns (a column an older artifact lacks is empty)."""
    columns = aggregate.COLUMNS[experiment]
    if data is None:
        empty = pd.DataFrame(columns=columns)
        empty.attrs["missing"] = True
        return empty
    try:
        runs = pd.read_csv(io.BytesIO(data), keep_default_na=False, na_values=[""])
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise PipelineError(f"{ARTIFACTS_KEY}: {where} is not a runs CSV ({_first_line(exc)})") from exc
    missing = [c for c in NEEDED[experiment] if c not in runs.columns]
    if missing:
        raise PipelineError(f"{ARTIFACTS_KEY}: {where} lacks the column(s) {', '.join(missing)}")
    return runs.reindex(columns=columns + [c for c in runs.columns if c not in columns])


def read_artifacts(paths: Sequence[str]) -> list[Artifact]:
    """Every artifact, read; the same file under two names is refused."""
    artifacts = [read_artifact(p) for p in paths]
    first: dict[str, str] = {}
    for a in artifacts:
        if a.sha256 in first:
            raise PipelineError(f"{ARTIFACTS_KEY} names {first[a.sha256]} and {a.path}, which are the same artifact "
                                f"(sha256 {a.sha256[:12]}); merge each run once")
        first[a.sha256] = a.path
    return artifacts


# --- host identity and labels ------------------------------------------------------------------------------------

MACHINE_FACTS = ("cpu_model", "cores", "arch", "kernel", "kvm_impl")


def identity(artifact: Artifact) -> dict[str, Any]:
    """Who measured: the machine's facts, the Linux guests' accelerator per arch, and per row (experiment, arch,
    platform) the accelerator, its KVM and the testbed it ran in."""
    host = artifact.provenance.get("host")
    host = host if isinstance(host, dict) else {}
    probes = artifact.provenance.get("guest_accel")
    guest = {str(p.get("arch")): str(p.get("accel")) for p in probes or [] if isinstance(p, dict)}
    rows: dict[str, str] = {}
    for experiment, runs in artifact.runs.items():
        if runs.empty:
            continue
        kinds = runs.assign(kvm_impl=runs["kvm_impl"].fillna("").astype(str))
        for (arch, platform), g in kinds.groupby(["arch", "platform"], sort=True):
            seen = sorted({f"{a}{f' ({k})' if k else ''}, {t}"
                           for a, k, t in zip(g["accel"], g["kvm_impl"], g["testbed"], strict=True)})
            rows[f"{experiment} {arch} {platform}"] = "; ".join(seen)
    return {**{k: host.get(k) for k in MACHINE_FACTS}, "guest_accel": dict(sorted(guest.items())),
            "rows": dict(sorted(rows.items()))}


def same_host(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """The same machine facts, and no accelerator or testbed that differs where both ran a row (or a guest)."""
    if any(a.get(k) != b.get(k) for k in MACHINE_FACTS):
        return False
    return all(a[part][k] == b[part][k] for part in ("guest_accel", "rows") for k in a[part].keys() & b[part].keys())


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def derived_label(ident: dict[str, Any]) -> str:
    """A short, stable label: the CPU model's words without trade marks and clock, cores, the KVM."""
    cpu = str(ident.get("cpu_model") or "unknown")
    cpu = re.sub(r"\((?:R|TM)\)", " ", cpu, flags=re.I)
    cpu = re.sub(r"@.*$", " ", cpu)
    cpu = re.sub(r"\b(?:CPU|Processor|\d+-Core)\b", " ", cpu, flags=re.I)
    words = _slug(cpu)[:24].strip("-") or "cpu"
    cores = f"-{ident['cores']}c" if ident.get("cores") else ""
    return f"{words}{cores}-{_slug(str(ident.get('kvm_impl') or 'no kvm'))}"


def _identity_hash(ident: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class Column:
    """One column group of the merged tables: one artifact, under its host's label."""

    name: str
    label: str
    run: int | None  # its run number when its label has several artifacts
    label_source: str  # "derived" or LABELS_KEY
    artifact: Artifact
    identity: dict[str, Any]
    mismatch: list[str] = field(default_factory=list)


def mismatch_note(keys: Sequence[str]) -> str:
    """'mismatch: blk.reads, ...' (at most three keys named), or nothing."""
    if not keys:
        return ""
    more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
    return "mismatch: " + ", ".join(keys[:3]) + more


def _names_artifact(key: str, artifact: Artifact) -> bool:
    text = key.strip()
    if re.fullmatch(r"[0-9a-fA-F]{6,64}", text) and artifact.sha256.startswith(text.lower()):
        return True
    return Path(text).expanduser().resolve() == Path(artifact.path).expanduser().resolve()


def label_overrides(artifacts: Sequence[Artifact], labels: dict[str, str]) -> dict[int, str]:
    """{artifact index: label} from merge.labels; a key naming no artifact, or several, is one sentence."""
    chosen: dict[int, str] = {}
    for key, label in labels.items():
        hits = [i for i, a in enumerate(artifacts) if _names_artifact(str(key), a)]
        if not hits:
            raise PipelineError(f"{LABELS_KEY} names {key}, which is none of the merged artifacts (give its path as "
                                f"{ARTIFACTS_KEY} lists it, or at least 6 hex digits of its sha256)")
        if len(hits) > 1:
            raise PipelineError(f"{LABELS_KEY} key {key} matches several artifacts "
                                f"({', '.join(artifacts[i].path for i in hits)}); give more of the sha256")
        if hits[0] in chosen and chosen[hits[0]] != str(label):
            raise PipelineError(f"{LABELS_KEY} gives {artifacts[hits[0]].path} two labels "
                                f"({chosen[hits[0]]} and {label})")
        chosen[hits[0]] = str(label)
    return chosen


def columns(artifacts: Sequence[Artifact], labels: dict[str, str] | None = None) -> list[Column]:
    """The column groups, in the order of the artifacts: same-identity artifacts share a derived label."""
    idents = [identity(a) for a in artifacts]
    host_of: list[int] = []  # the index of the first artifact of each artifact's host
    for i, ident in enumerate(idents):
        host_of.append(next((h for h in dict.fromkeys(host_of) if same_host(idents[h], ident)), i))
    derived = {h: derived_label(idents[h]) for h in dict.fromkeys(host_of)}
    # Different hosts with one derived label (say, two kernels on one CPU): each gets a hash of its identity.
    clashes = Counter(derived.values())
    derived = {h: f"{lbl}-{_identity_hash(idents[h])[:6]}" if clashes[lbl] > 1 else lbl for h, lbl in derived.items()}
    overrides = label_overrides(artifacts, labels or {})
    final = [overrides.get(i, derived[host_of[i]]) for i in range(len(artifacts))]
    counts, runs = Counter(final), Counter()
    out = []
    for i, (artifact, label) in enumerate(zip(artifacts, final, strict=True)):
        runs[label] += 1
        run = runs[label] if counts[label] > 1 else None
        out.append(Column(name=label if run is None else f"{label} run {run}", label=label, run=run,
                          label_source=LABELS_KEY if i in overrides else "derived", artifact=artifact,
                          identity=idents[i]))
    names = Counter(c.name for c in out)
    taken = next((c for c in out if names[c.name] > 1), None)
    if taken is not None:
        raise PipelineError(f"{LABELS_KEY}: two column groups would be called {taken.name!r} (one of them "
                            f"{taken.artifact.path}); choose labels unlike each other and unlike '<label> run N'")
    return out


# --- compatibility -----------------------------------------------------------------------------------------------

def host_specific(key: str) -> bool:
    """Whether a config key may differ between the merged hosts (the machine's, not what is measured)."""
    return (key.split(".")[0] in HOST_SPECIFIC_SECTIONS or key.rsplit(".", 1)[-1].endswith("timeout_s")
            or key in SOURCE_LOCATIONS)


def _flatten(value: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    """(dotted key, leaf value) of nested mappings; a list or an empty mapping is one value."""
    if isinstance(value, dict) and value:
        for k in sorted(value, key=str):
            yield from _flatten(value[k], f"{prefix}.{k}" if prefix and not prefix.endswith(":") else f"{prefix}{k}")
    else:
        yield prefix, value


MISSING = "(missing)"


def checked(artifact: Artifact) -> dict[str, Any]:
    """Everything that must agree, by key, in the order differences are named: the config's measured settings,
    then patches, source locks and benchmark sources (file hashes; a lock field by field)."""
    out: dict[str, Any] = {k: v for k, v in _flatten(artifact.config, "") if k and not host_specific(k)}
    files = artifact.files
    for rel in sorted(r for r in files if r.startswith("patches/")):
        out[rel] = "sha256 " + hashlib.sha256(files[rel]).hexdigest()[:12]
    for rel in sorted(r for r in files if SOURCE_LOCK.match(r)):
        try:
            lock = json.loads(files[rel])
        except ValueError:
            lock = "sha256 " + hashlib.sha256(files[rel]).hexdigest()[:12]
        # Where it was fetched from (a git URL, a local copy, a tarball's URL) belongs to the machine;
        # what was fetched (version, commit, sha256) must agree.
        out.update((k, v) for k, v in _flatten(lock, f"{rel}:") if k.rsplit(":", 1)[-1] not in LOCK_LOCATIONS)
    for rel in sorted(r for r in files if r.startswith("native/")):
        out[rel] = "sha256 " + hashlib.sha256(files[rel]).hexdigest()[:12]
    return out


def _check_order(key: str) -> tuple[int, str]:
    """Config keys first, then patches, source locks, benchmark sources; by name within each."""
    if key.startswith("patches/"):
        return 1, key
    if SOURCE_LOCK.match(key.split(":", 1)[0]):
        return 2, key
    return (3 if key.startswith("native/") else 0), key


def differences(reference: Artifact, other: Artifact) -> list[tuple[str, Any, Any]]:
    """(key, value in reference, value in other) of every key that differs: config, patches, locks, sources.

    A source lock present in one artifact only is no difference: which sources a run fetches depends on the
    machine (a Linux guest's kernel per arch where it runs natively).
    """
    ref, oth = checked(reference), checked(other)
    lock_files = {k.split(":", 1)[0] for k in ref} & {k.split(":", 1)[0] for k in oth}
    out = []
    for key in sorted(ref.keys() | oth.keys(), key=_check_order):
        if SOURCE_LOCK.match(key.split(":", 1)[0]) and key.split(":", 1)[0] not in lock_files:
            continue
        a, b = ref.get(key, MISSING), oth.get(key, MISSING)
        if a != b:
            out.append((key, a, b))
    return out


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def check(cols: Sequence[Column], allow_mismatch: bool) -> None:
    """Refuse, in one sentence naming the artifact and the first differing key, an artifact that measured
    something else than the first one; with allow_mismatch, note every differing key on its column instead."""
    reference = cols[0].artifact
    for col in cols[1:]:
        found = differences(reference, col.artifact)
        if found and not allow_mismatch:
            key, there, here = found[0]
            raise PipelineError(
                f"{ARTIFACTS_KEY}: {col.artifact.path} did not measure what {reference.path} did, first at {key} "
                f"({_shown(here)} against {_shown(there)}); merge runs made with the same settings, or set "
                f"{ALLOW_KEY}: true to merge it with its columns marked")
        col.mismatch = [key for key, _, _ in found]


# --- the merge record (merged/provenance.json) -------------------------------------------------------------------

def _union(lists: Iterable[Iterable[Any]]) -> list[Any]:
    return list(dict.fromkeys(v for values in lists for v in values))


def record(cols: Sequence[Column], allow_mismatch: bool, entries: Sequence[str], labels: dict[str, str]
           ) -> dict[str, Any]:
    """merged/provenance.json: who merged what, the settings the hosts agree on, and every column's host."""
    configs = [c.artifact.config for c in cols]
    archs = _union(c.get("archs", []) for c in configs)
    platforms = {e: _union((c.get(e) or {}).get("platforms", []) for c in configs) for e in EXPERIMENTS}
    return {
        "merged_by": {"pipeline": version.describe(),
                      "merge": {"artifacts": list(entries), "allow_mismatch": allow_mismatch, "labels": labels}},
        "settings": {k: v for k, v in checked(cols[0].artifact).items()},
        "tables": {e: {"archs": archs if platforms[e] else [], "platforms": platforms[e]} for e in EXPERIMENTS},
        "hosts": [{
            "column": c.name, "label": c.label, "run": c.run, "label_source": c.label_source,
            "artifact": c.artifact.path, "artifact_path": str(Path(c.artifact.path).expanduser().resolve()),
            "sha256": c.artifact.sha256, "pipeline_version": pipeline_version(c.artifact.provenance),
            "identity": c.identity, "mismatch": c.mismatch, "provenance": c.artifact.provenance,
        } for c in cols],
    }


def pipeline_version(provenance: dict[str, Any]) -> str:
    """The label of the pipeline that made the artifact (12 hex digits, +dirty... when modified)."""
    pipeline = provenance.get("pipeline")
    if isinstance(pipeline, dict) and "commit" in pipeline:
        return version.label(pipeline)
    return "unknown"


def merged_runs(cols: Sequence[Column]) -> dict[str, pd.DataFrame]:
    """Per experiment, every column's runs, tagged with the column (first)."""
    out = {}
    for experiment in EXPERIMENTS:
        parts = [c.artifact.runs[experiment].assign(**{COLUMN: c.name}) for c in cols]
        runs = pd.concat([p for p in parts if len(p)] or [parts[0]], ignore_index=True)
        out[experiment] = runs[[COLUMN] + [c for c in runs.columns if c != COLUMN]]
    return out


def read(entries: Sequence[str], labels: dict[str, str] | None = None, allow_mismatch: bool = False
         ) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    """(merged provenance record, merged runs) of the artifacts merge.artifacts names, checked."""
    labels = {str(k): str(v) for k, v in (labels or {}).items()}
    cols = columns(read_artifacts(artifact_paths(entries)), labels)
    check(cols, allow_mismatch)
    return record(cols, allow_mismatch, entries, labels), merged_runs(cols)


def write_record(rec: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(rec, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")


def write_runs(runs: pd.DataFrame, path: Path) -> None:
    runs.to_csv(path, index=False)


def read_runs(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


# --- per-host values (aggregate's and claims' own code) ----------------------------------------------------------

def host_runs(runs: pd.DataFrame, column: str, experiment: str) -> pd.DataFrame:
    """One column's runs, as its own runs CSV read them."""
    mine = runs[runs[COLUMN] == column].drop(columns=[COLUMN]).reset_index(drop=True)
    return mine.reindex(columns=aggregate.COLUMNS[experiment] + [c for c in mine.columns
                                                                  if c not in aggregate.COLUMNS[experiment]])


def _skipped(host: dict[str, Any], experiment: str, arch: str) -> dict[str, str]:
    """Why the host's plan skipped a platform of this experiment and arch (the table's 'not measured' note)."""
    out = {}
    for entry in host["provenance"].get("plan") or []:
        exp, _, rest = str(entry.get("combination", "")).partition("/")
        c_arch, _, row = rest.partition("/")
        platform, _, provider = row.partition("/")  # a unikernel row names its provider
        if exp == experiment and c_arch == arch and not entry.get("runnable", True):
            out[matrix.row_label(platform, provider)] = str(entry.get("reason", ""))
    return out


def _busy(host: dict[str, Any]) -> aggregate.Busy:
    """The busy mark as the host's own tables set it: its threshold, its cores."""
    config = host["provenance"].get("config") or {}
    per_core = (config.get("conditions") or {}).get("busy_load_per_core")
    cores = (host["provenance"].get("host") or {}).get("cores")
    if per_core is None or not cores:
        return aggregate.NO_BUSY_FLAG
    return aggregate.Busy(float(per_core), int(cores))


def host_table(rec: dict[str, Any], host: dict[str, Any], runs: pd.DataFrame, reference: pd.DataFrame,
               experiment: str, arch: str) -> pd.DataFrame:
    """The host's table for one experiment and arch, as its own run made it (aggregate.blk_table/net_table)."""
    return aggregate.TABLES[experiment](host_runs(runs, host["column"], experiment), reference, arch,
                                        list(rec["tables"][experiment]["platforms"]),
                                        _skipped(host, experiment, arch), _busy(host))


def _row_key(experiment: str, row: pd.Series) -> tuple:
    # The row label: platform and, for a unikernel, its provider (measured or not).
    key: tuple = (str(row["platform"]),)
    if experiment == "net":
        key += (None if pd.isna(row["data_bytes"]) else int(row["data_bytes"]),)
    return key


def merged_table(rec: dict[str, Any], runs: pd.DataFrame, reference: pd.DataFrame, experiment: str,
                 arch: str) -> pd.DataFrame:
    """The study's layout for one experiment and arch: platforms (and data sizes) as rows; per host a column
    group "<column>: <aggregate column>", then per original host "study <host>: <value>"."""
    study_hosts = list(dict.fromkeys(reference.loc[reference["arch"] == arch, "host"]))
    value = STUDY_VALUE[experiment]
    rows: dict[tuple, dict[str, Any]] = {}
    study: dict[tuple, dict[str, Any]] = {}
    for host in rec["hosts"]:
        table = host_table(rec, host, runs, reference, experiment, arch)
        seen: Counter = Counter()
        note = mismatch_note(host["mismatch"])
        for _, row in table.iterrows():
            key = _row_key(experiment, row)
            seen[key] += 1
            key += (seen[key],)  # the n-th row of one platform (rows of one platform that differ in accel)
            rec_row = rows.setdefault(key, {"platform": row["platform"]} | (
                {"data_bytes": row["data_bytes"]} if experiment == "net" else {}))
            for column in OUR_COLUMNS[experiment]:
                rec_row[f"{host['column']}: {column}"] = row.get(column)
            own_note = "" if pd.isna(row.get("note")) else str(row.get("note"))
            rec_row[f"{host['column']}: note"] = "; ".join(n for n in (note, own_note) if n)
            for h in study_hosts:
                rec_row[f"{host['column']}: ratio_{h}"] = row.get(f"ratio_{h}")
                if pd.notna(row.get(f"{h}_{value}")):
                    study.setdefault(key, {})[f"study {h}: {value}"] = row[f"{h}_{value}"]
    ordered = [*ROW_KEYS[experiment]]
    for host in rec["hosts"]:
        ordered += [f"{host['column']}: {c}" for c in OUR_COLUMNS[experiment]]
        ordered += [f"{host['column']}: ratio_{h}" for h in study_hosts]
    ordered += [f"study {h}: {value}" for h in study_hosts]
    table = pd.DataFrame.from_records([rows[k] | study.get(k, {}) for k in rows], columns=ordered)
    return table.astype({c: "Int64" for c in table.columns if c.rsplit(": ", 1)[-1] in _INT_SUFFIXES})


def group(table: pd.DataFrame, column: str, experiment: str) -> pd.DataFrame:
    """One column group of a merged table, under aggregate's column names (the row keys first)."""
    prefix = f"{column}: "
    mine = [c for c in table.columns if c.startswith(prefix)]
    return table[ROW_KEYS[experiment] + mine].rename(columns={c: c[len(prefix):] for c in mine})


def caption(rec: dict[str, Any], experiment: str, arch: str) -> str:
    hosts = rec["hosts"]
    listed = "; ".join(f"{h['column']} = {Path(h['artifact']).name} (sha256 {h['sha256'][:12]}, pipeline "
                       f"{h['pipeline_version']})" for h in hosts)
    marked = [f"{h['column']} ({mismatch_note(h['mismatch'])})" for h in hosts if h["mismatch"]]
    what = {"blk": "total, pread and guest + monitor in ms for the row's reads, us_per_read, ratio_<original host> "
                   "per read", "net": "packets per second per data size with its 95% CI, round trip, losses, "
                                      "ratio_<original host>"}[experiment]
    return (f"{TITLES[experiment]} on {arch}, {len(hosts)} merged runs side by side: one column group per run "
            f"(<column>: ...), each that artifact's runs through this pipeline's aggregation ({what}; accel, "
            "testbed and note say which rows are not performance results), then the original study's hosts "
            f"(study <host>: ...). Columns: {listed}."
            + (f" Merged despite differing settings: {'; '.join(marked)}." if marked else ""))


def write_table(table: pd.DataFrame, stem: Path, text: str) -> None:
    """stem.csv, .md and .tex, as aggregate writes its tables."""
    aggregate.write_table(table, stem, text)


# --- figures -----------------------------------------------------------------------------------------------------

def _panels(rec: dict[str, Any], table: pd.DataFrame, experiment: str
            ) -> tuple[list[tuple[str, pd.DataFrame]], pd.DataFrame]:
    """Per column: its native rows, and its emulated-testbed rows in a panel of their own; and every column's
    rows together, each platform named with its column (for the figure's title and footnote)."""
    panels, every = [], []
    for host in rec["hosts"]:
        rows = group(table, host["column"], experiment)
        rows = rows.assign(note=rows["note"].astype(object).fillna("").astype(str))  # read back: empty is NaN
        note = mismatch_note(host["mismatch"])
        title = host["column"] + (f"\n[{note}]" if note else "")
        value = "us_per_read" if experiment == "blk" else "pps"
        emulated = rows["testbed"].eq("emulated")
        native, testbed = rows[~emulated & rows[value].notna()], rows[emulated & rows[value].notna()]
        if len(native) or not len(testbed):
            panels.append((title, native))
        if len(testbed):
            panels.append((f"{title}: emulated testbed\n(not performance results)", testbed))
        every.append(rows.assign(platform=rows["platform"].astype(str) + f" on {host['column']}"))
    return panels, pd.concat(every, ignore_index=True)


def figure(rec: dict[str, Any], table: pd.DataFrame, reference: pd.DataFrame, experiment: str, arch: str,
           stem: Path) -> Figure:
    """aggregate's figure of the experiment, with a panel per merged column beside the original hosts."""
    panels, every = _panels(rec, table, experiment)
    return aggregate.FIGURES[experiment](every, reference, arch, stem, panels=panels)


# --- claims and hosts --------------------------------------------------------------------------------------------

def claims_table(rec: dict[str, Any], runs: dict[str, pd.DataFrame], claim_list: list[claims.Claim]) -> pd.DataFrame:
    """The claims on each column's runs (claims.table), one block of rows per column."""
    parts = []
    for host in rec["hosts"]:
        mine = {e: host_runs(runs[e], host["column"], e) for e in claims.EXPERIMENTS}
        table = claims.table(claim_list, mine)
        table.insert(0, "host", host["column"])
        table.insert(1, "mismatch", mismatch_note(host["mismatch"]))
        parts.append(table)
    return pd.concat(parts, ignore_index=True)


CLAIMS_CAPTION = ("The study's claims on each merged run (host = its column group): " + claims.CAPTION
                  + " mismatch: settings in which that run differs from the first one (merge.allow_mismatch).")


def write_claims(table: pd.DataFrame, stem: Path) -> None:
    """stem.csv (every column); stem.md and .tex: the readable verdict table, host first."""
    table.to_csv(stem.with_suffix(".csv"), index=False)
    short = claims.readable(table)
    short.insert(0, "host", table["host"].to_numpy())
    if table["mismatch"].fillna("").astype(bool).any():
        short.insert(1, "mismatch", table["mismatch"].fillna("").to_numpy())
    stem.with_suffix(".md").write_text(f"{CLAIMS_CAPTION}\n\n{short.to_markdown(index=False)}\n", encoding="utf-8")
    stem.with_suffix(".tex").write_text(short.to_latex(index=False, caption=CLAIMS_CAPTION, escape=True),
                                        encoding="utf-8")


HOSTS_CAPTION = ("The merged runs: column group, host label (derived from the host's identity, or set by "
                 "merge.labels), run number among the artifacts of one label, the artifact and its sha256, the "
                 "host as its provenance names it, the pipeline that measured, and the settings in which a run "
                 "differs from the first (merge.allow_mismatch).")


def hosts_table(rec: dict[str, Any]) -> pd.DataFrame:
    rows = []
    for h in rec["hosts"]:
        ident = h["identity"]
        rows.append({
            "column": h["column"], "label": h["label"], "run": h["run"], "label_source": h["label_source"],
            "artifact": h["artifact"], "sha256": h["sha256"], "cpu_model": ident.get("cpu_model"),
            "cores": ident.get("cores"), "host_arch": ident.get("arch"), "kernel": ident.get("kernel"),
            "kvm_impl": ident.get("kvm_impl"),
            "guest_accel": "; ".join(f"{a}: {v}" for a, v in ident.get("guest_accel", {}).items()),
            "pipeline_version": h["pipeline_version"], "mismatch": ", ".join(h["mismatch"]),
        })
    return pd.DataFrame.from_records(rows, columns=HOSTS_COLUMNS).astype({"run": "Int64"})


def write_hosts(table: pd.DataFrame, csv: Path, md: Path) -> None:
    table.to_csv(csv, index=False)
    readable = table.assign(sha256=table["sha256"].str[:12]).astype(object).where(table.notna(), "")
    md.write_text(f"{HOSTS_CAPTION}\n\n{readable.to_markdown(index=False, disable_numparse=True)}\n",
                  encoding="utf-8")


# --- results/merged, all at once --------------------------------------------------------------------------------

def part_names(rec: dict[str, Any]) -> list[str]:
    """Every file of results/merged/, relative to it."""
    names = ["provenance.json", "hosts.csv", "hosts.md", "data/blk_runs.csv", "data/net_runs.csv"]
    names += [f"tables/claims.{ext}" for ext in ("csv", "md", "tex")]
    for experiment in EXPERIMENTS:
        for arch in rec["tables"][experiment]["archs"]:
            names += [f"tables/{experiment}_{arch}.{ext}" for ext in ("csv", "md", "tex")]
            names += [f"figures/{experiment}_{arch}.{ext}" for ext in ("png", "pdf")]
    return names


def publish(parts: Iterable[Path], staging: Path, out: Path) -> None:
    """Copy the parts (paths under staging) into out, which appears whole or not at all: built in a temporary
    directory beside it and renamed at the end."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        for part in parts:
            dest = tmp / Path(part).relative_to(staging)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(part, dest)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_all(rec: dict[str, Any], runs: dict[str, pd.DataFrame], staging: Path, references: dict[str, Path],
              claims_path: Path) -> None:
    """Every part of results/merged/ into staging (what the workflow's rules make one by one)."""
    for sub in ("data", "tables", "figures"):
        (staging / sub).mkdir(parents=True, exist_ok=True)
    write_record(rec, staging / "provenance.json")
    for experiment, r in runs.items():
        write_runs(r, staging / f"data/{experiment}_runs.csv")
    # Read back as every later rule does, so the values are those of the CSVs.
    runs = {e: read_runs(staging / f"data/{e}_runs.csv") for e in EXPERIMENTS}
    write_hosts(hosts_table(rec), staging / "hosts.csv", staging / "hosts.md")
    write_claims(claims_table(rec, runs, claims.load(claims_path)), staging / "tables/claims")
    for experiment in EXPERIMENTS:
        reference = pd.read_csv(references[experiment])
        for arch in rec["tables"][experiment]["archs"]:
            stem = staging / f"tables/{experiment}_{arch}"
            write_table(merged_table(rec, runs[experiment], reference, experiment, arch), stem,
                        caption(rec, experiment, arch))
            table = read_runs(stem.with_suffix(".csv"))
            figure(rec, table, reference, experiment, arch, staging / f"figures/{experiment}_{arch}")


def merge(entries: Sequence[str], out: Path, references: dict[str, Path], claims_path: Path,
          labels: dict[str, str] | None = None, allow_mismatch: bool = False) -> dict[str, Any]:
    """The whole merge in one call (the workflow runs it as rules): out appears complete, or not at all."""
    rec, runs = read(entries, labels, allow_mismatch)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-staging-", dir=out.parent))
    try:
        write_all(rec, runs, staging, references, claims_path)
        publish([staging / name for name in part_names(rec)], staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return rec
