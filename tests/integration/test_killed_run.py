"""A run killed whole resumes with the README's own command, and a second run never disturbs a live one.

Both go through `make demo` (README.md, Troubleshooting) on a small target set of the tiny preset: the data
stage, the data report and the VAM-style baseline (6 jobs, about a minute on 2 cores), in a working directory
of their own. Their metric and table files must be byte for byte those of the session's uninterrupted tiny
`all` (the same inputs and configs).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import BIN, REPO, run_snakemake, snakemake_workdir

pytestmark = pytest.mark.integration

SMALL_TARGETS = ("results/tiny/reward/vam/metrics.json", "results/tiny/reports/data.md")
COMPARED = ("reward/vam/metrics.json", "pairs/summary.json", "data/ingest_report.json", "reports/data.md")
# Logs that appear when a job starts: the first job, and the longest one (~20 s of training).
FIRST_JOB_LOG = "results/tiny/logs/sim_world.log"
LONG_JOB_LOG = "results/tiny/logs/baseline_train/vam.log"
RUN_SECONDS = 600


@pytest.fixture
def demo_workdir(tmp_path: Path) -> Path:
    """A working directory where `make demo` runs as in the repository (Makefile, setup script, .venv)."""
    if not (BIN.parent / ".caig-installed").is_file():
        pytest.skip(f"{BIN.parent} was not built by scripts/setup.sh, so `make demo` would rebuild it")
    workdir = snakemake_workdir(tmp_path / "work")
    for name in ("Makefile", "scripts", "pyproject.toml", "constraints.txt"):
        (workdir / name).symlink_to(REPO / name)
    (workdir / ".venv").symlink_to(BIN.parent)
    return workdir


def demo_command() -> list[str]:
    return ["make", "demo", f"TARGETS={' '.join(SMALL_TARGETS)}"]


def start_demo(workdir: Path, output: Path) -> subprocess.Popen[bytes]:
    """`make demo` in its own process group (as a terminal runs it), its output to ``output``."""
    with output.open("wb") as sink:
        return subprocess.Popen(
            demo_command(), cwd=workdir, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )


def run_demo(workdir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(demo_command(), cwd=workdir, capture_output=True, text=True, timeout=RUN_SECONDS)


def wait_for_job(run: subprocess.Popen[bytes], log: Path, output: Path) -> None:
    """Wait until the job writing ``log`` has started, while ``run`` is still going."""
    deadline = time.monotonic() + RUN_SECONDS
    while not log.exists():
        assert run.poll() is None, f"the run ended before {log.name} appeared:\n{output.read_text()[-4000:]}"
        assert time.monotonic() < deadline, f"{log} never appeared"
        time.sleep(0.2)


def planned_rules(log: str) -> set[str]:
    """The rules of a run's "Job stats" table (the jobs it had to run)."""
    assert "Job stats:" in log, log[-6000:]
    table = log.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    return {line.split()[0] for line in table.splitlines()[3:] if line.strip()} - {"total"}


def assert_same_files(run: Path, reference: Path) -> None:
    for name in COMPARED:
        assert (run / name).read_bytes() == (reference / name).read_bytes(), name


def test_a_run_killed_whole_resumes_with_the_same_command(demo_workdir, tiny_run, tmp_path):
    output = tmp_path / "killed.out"
    killed = start_demo(demo_workdir, output)
    try:
        wait_for_job(killed, demo_workdir / LONG_JOB_LOG, output)
        time.sleep(2)  # well inside the job
    finally:
        os.killpg(killed.pid, signal.SIGKILL)  # make, snakemake and every job, as the user did
        killed.wait(timeout=60)
    assert list((demo_workdir / ".snakemake" / "locks").glob("*.lock")), "no stale lock left to clear"
    assert not (demo_workdir / "results" / "tiny" / COMPARED[0]).exists(), "killed after the job had finished"

    resumed = run_demo(demo_workdir)
    log = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, log[-6000:]
    assert "stale Snakemake lock file(s)" in log, log[-6000:]
    rerun = planned_rules(log)
    assert "baseline_train" in rerun and not rerun & {"sim_world", "ingest", "pairs"}, rerun
    assert_same_files(demo_workdir / "results" / "tiny", tiny_run)


def test_a_second_run_stops_at_once_and_the_first_finishes_unharmed(demo_workdir, tiny_run, tmp_path):
    output = tmp_path / "first.out"
    first = start_demo(demo_workdir, output)
    try:
        wait_for_job(first, demo_workdir / FIRST_JOB_LOG, output)
        second = run_demo(demo_workdir)
        look = run_snakemake(demo_workdir, "-n", *SMALL_TARGETS, timeout=300)  # a dry run takes no lock
        assert first.poll() is None, "the first run ended before the others started: nothing was tested"
        holder = json.loads((demo_workdir / ".snakemake" / "caig-run.lock").read_text())
        assert first.wait(timeout=RUN_SECONDS) == 0, output.read_text()[-6000:]
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    refusal = second.stdout + second.stderr
    assert second.returncode != 0, refusal
    assert "another run of this working directory is going" in refusal, refusal
    assert f"ps -fp {holder['pid']}" in refusal, refusal
    assert "LockException" not in refusal, "Snakemake's own lock stopped it, not the run lock"
    assert look.returncode == 0, (look.stdout + look.stderr)[-4000:]
    assert_same_files(demo_workdir / "results" / "tiny", tiny_run)
