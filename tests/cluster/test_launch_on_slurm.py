"""caig.launch inside real Slurm jobs: srun tasks becoming a torch world, and the stripped jobstep env."""

from __future__ import annotations

import json
import sys

import pytest

from tests.cluster.conftest import LocalSlurm

pytestmark = pytest.mark.cluster
PYTHON = sys.executable


def test_rank_entry_turns_srun_tasks_into_one_torch_world(slurm: LocalSlurm):
    """What the multi-node plan runs on every task: submitit's Slurm env -> RANK/WORLD_SIZE/MASTER_*."""
    out = slurm.command(
        "srun",
        "--ntasks=2",
        "--mem=1000",
        "--time=2",
        PYTHON,
        "-m",
        "caig.launch.rank",
        "caig.launch.check",
        timeout=120,
    )
    reports = sorted(
        (json.loads(line) for line in out.splitlines() if line.startswith("{")), key=lambda r: r["rank"]
    )
    assert [(r["rank"], r["world_size"], r["all_reduce_sum"]) for r in reports] == [(0, 2, 3), (1, 2, 3)]


def test_launcher_asks_slurm_for_the_job_when_the_jobstep_stripped_its_env(slurm: LocalSlurm):
    """Snakemake's jobstep leaves only SLURM_JOB_ID; the launcher must still find nodes and CPUs."""
    probe = (
        "import os; from caig.launch.launcher import slurm_job; "
        "job = slurm_job(os.environ); print(job.nodes, job.cpus_per_node)"
    )
    script = f'env -i PATH="$PATH" SLURM_JOB_ID="$SLURM_JOB_ID" {PYTHON} -c "{probe}"'
    out = slurm.command(
        "srun", "--ntasks=1", "--cpus-per-task=4", "--mem=1000", "--time=2", "bash", "-c", script
    )
    assert out.split() == ["1", "4"]
