"""The DAG and the start-up checks, by dry runs of the real workflow (no root needed)."""

import platform

import pytest
from testkit import copy_project, planned_jobs, snakemake


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return copy_project(tmp_path_factory.mktemp("project"))


def test_fresh_project_plans_the_whole_chain(project):
    proc = snakemake(project, "-n")
    assert proc.returncode == 0, proc.stderr
    jobs = planned_jobs(proc.stdout + proc.stderr)
    for rule in ("apt_index", "qemu_source", "qemu_source_patched", "qemu_build", "blk_runs_csv",
                 "provenance", "all"):
        assert jobs.get(rule) == 1, (rule, jobs)
    assert jobs["native_bench"] == 2  # both archs are cross-built
    assert jobs["blk_table"] == 2 and jobs["blk_figure"] == 2
    host_reps = 3 if platform.machine() in ("x86_64", "aarch64") else 0
    assert jobs.get("blk_host_run", 0) == host_reps  # only the host's own arch is measured


def test_skipped_combinations_are_announced(project):
    out = snakemake(project, "-n", overrides="net: {platforms: [qemu-linux, mirage-solo5]}\n")
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-2000:]
    for arch in ("x86_64", "aarch64"):
        assert f"skipped net/{arch}/mirage-solo5: MirageOS needs the opam repository" in text


@pytest.mark.parametrize("override,named", [
    ("blk={'reads': 'many'}", "blk.reads"),
    ("archs=['riscv64']", "archs"),
    ("blk={'platforms': ['xen']}", "blk.platforms"),
    ("qemu={'source': 'ftp'}", "qemu.source"),
    ("typo_key=1", "typo_key"),
])
def test_bad_config_stops_before_any_job_with_one_sentence(project, override, named):
    proc = snakemake(project, "-n", "--config", override)
    assert proc.returncode != 0
    errors = [ln for ln in (proc.stdout + proc.stderr).splitlines() if named in ln]
    assert errors, proc.stderr
    assert not (project / "results" / "data").exists()


# Software comes from envs/ (Debian packages and the pinned venv), not conda or
# containers, which these machines cannot fetch; that one lint is expected.
SOFTWARE_LINT = "Specify a conda environment or container for each rule."


def test_lint_is_clean_apart_from_software_deployment(project):
    proc = snakemake(project, "--lint")
    text = proc.stdout + proc.stderr
    assert "Lints for snakefile" not in text
    titles = {line.strip()[2:].rstrip(":") for line in text.splitlines() if line.startswith("    * ")}
    assert titles <= {SOFTWARE_LINT}, titles


def test_unreachable_upstream_solo5_stops_with_one_sentence_and_no_fallback(project):
    overrides = ("solo5: {provider: upstream, upstream: {git: 'file:///nonexistent/solo5.git'}}\n"
                 "archs: [x86_64]\nblk: {platforms: [solo5-hvt]}\nnet: {platforms: []}\n")
    proc = snakemake(project, "results/data/blk_runs.csv", overrides=overrides)
    assert proc.returncode != 0
    errors = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.startswith("ERROR in rule")]
    assert len(errors) == 1 and "solo5.upstream.git" in errors[0] and "solo5.upstream.local" in errors[0]
    assert not (project / "results/sources/solo5").exists()
    assert not (project / "results/build/solo5-builtin").exists()
