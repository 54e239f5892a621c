"""The `merge` target in the DAG, by dry runs of the real workflow (no root, nothing is read or measured)."""

import json

import pytest
from testkit import copy_project, planned_jobs, snakemake


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return copy_project(tmp_path_factory.mktemp("project"))


def with_artifacts(*paths) -> str:
    return "merge: {artifacts: [" + ", ".join(json.dumps(str(p)) for p in paths) + "]}\n"


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """A directory of two files named like artifacts: a dry run plans from names, it reads nothing."""
    where = tmp_path_factory.mktemp("artifacts")
    for name in ("b.tar.gz", "a.tar.gz"):
        (where / name).write_bytes(b"\x1f\x8b")
    return where


def test_an_unset_merge_stops_before_any_job_in_one_sentence(project):
    proc = snakemake(project, "-n", "merge")
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "merge.artifacts is empty: name the artifact.tar.gz files made by `archive` on each machine" in text
    assert "Job stats" not in text


def test_merge_plans_only_the_merge_rules(project, artifacts):
    proc = snakemake(project, "-n", "merge", overrides=with_artifacts(artifacts))
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Nothing measured, fetched or built; the tables and figures are known once the checkpoint read the artifacts.
    assert planned_jobs(proc.stdout + proc.stderr) == {"merged_runs": 1, "merged_results": 1, "merge": 1}


@pytest.mark.parametrize("entry,message", [
    ("nowhere.tar.gz", "merge.artifacts names nowhere.tar.gz, which does not exist"),
    ("results/artifact.tar.gz", "merge.artifacts names results/artifact.tar.gz, inside this run's own results/"),
])
def test_an_unusable_artifact_list_is_one_sentence(project, entry, message):
    if entry.startswith("results/"):
        (project / "results").mkdir(exist_ok=True)
        (project / entry).write_bytes(b"\x1f\x8b")
    try:
        proc = snakemake(project, "-n", "merge", overrides=with_artifacts(entry))
    finally:
        (project / "results/artifact.tar.gz").unlink(missing_ok=True)
    assert proc.returncode != 0 and message in proc.stdout + proc.stderr


def test_the_report_merges_first_only_when_artifacts_are_named(project, artifacts):
    plain = planned_jobs(snakemake(project, "-n", "report").stdout)
    assert "report" in plain and not {"merged_runs", "merged_results", "merge"} & set(plain)
    proc = snakemake(project, "-n", "report", overrides=with_artifacts(artifacts))
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = planned_jobs(proc.stdout + proc.stderr)
    assert jobs.get("merged_runs") == 1 and jobs.get("merged_results") == 1 and jobs.get("report") == 1

