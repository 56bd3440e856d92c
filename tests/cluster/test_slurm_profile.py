"""The workflow through profiles/slurm on a live local Slurm, checked against Slurm's own job records.

The test profile is profiles/slurm with only the site-specific keys changed (see ``write_test_profile``),
so what runs here is the request the real cluster gets: every CPU rule on the CPU partition with the
default resources, every rule named in set-resources on one full node with 8 GPUs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.conftest import LocalSlurm, write_test_profile
from tests.cluster.slurm_records import (
    expected_request,
    mismatches,
    recorded_request,
    rule_of,
    rule_threads,
    with_attempts,
)
from tests.conftest import run_snakemake, snakemake_workdir

pytestmark = pytest.mark.cluster
BIN = Path(sys.executable).parent

# A small workflow of its own: a rule that fails on its first attempt; a loop the test preempts with
# SIGTERM (as Slurm does at preemption or at the profile's --signal=TERM@900), which must checkpoint,
# fail, and resume on the retry; and a rule with a GPU rule's name (so the profile gives it a full node)
# that runs the launcher's distributed check inside the job. Rules `exec` their command, as GPU rules must.
SMALL_SNAKEFILE = """
rule all:
    input:
        "flaky.txt",
        "loop.json",
        "launch_check.json",


rule flaky:
    output:
        "flaky.txt",
    shell:
        "if [ -e flaky.failed-once ]; then echo ok > {output}; else touch flaky.failed-once; exit 1; fi"


rule resumable_loop:
    output:
        "loop.json",
    shell:
        "exec python resumable_loop.py {output} > {output}.log 2>&1"


rule pretrain:
    output:
        "launch_check.json",
    shell:
        "echo ${{CUDA_VISIBLE_DEVICES:-}} > visible_gpus.txt; exec caig launch --check > {output}"
"""

# 40 steps of 0.25 s; saving a checkpoint takes 3 s, so the test can see that the job outlives the signal.
RESUMABLE_LOOP = """
import json, sys, time
from pathlib import Path

from caig.io import write_json
from caig.launch.preemption import ResumableLoop, finish

output, total = Path(sys.argv[1]), 40


def save(folder, state):
    time.sleep(3)
    (folder / "state.json").write_text(json.dumps(state))


with ResumableLoop(output) as loop:
    start, acc = 0, 0
    if (checkpoint := loop.resume_from()) is not None:
        state = json.loads((checkpoint / "state.json").read_text())
        start, acc = state["step"], state["acc"]
    for step in range(start, total):
        acc += step
        time.sleep(0.25)
        Path("loop.progress").write_text(str(step + 1))
        loop.step_end(step + 1, save=lambda folder, s={"step": step + 1, "acc": acc}: save(folder, s))
write_json({"acc": acc, "resumed_at": start}, output)
finish(output)
"""
SAVE_SECONDS = 3


@dataclass(frozen=True)
class SmallRun:
    workdir: Path
    profile: dict[str, Any]
    log: str
    records: list[dict[str, str]]
    signalled_at: datetime


# The whole `all` through Slurm, every stage and table, on a small study: one reward variant (the full RM) and
# one baseline, one preference method for one epoch, each training job cut to a few optimiser steps (the local
# tiny `all` trains them in full). The same study runs once more on local cores, and both runs from scratch must
# write their metric files byte for byte the same: the executor changes nothing.
SMALL_STUDY = {
    "reward": {"variants": ["f_full"], "baselines": ["vam"]},
    "preference": {"methods": ["pcpo"], "epochs": 1},
    "overrides": {
        "vision-pretrain": ["model.vision_pretrain.steps=40", "model.vision_pretrain.ads=2048"],
        "pretrain": ["train.pretrain.max_steps=20"],
        "reward-train": ["train.reward.max_steps=6"],
        "baseline-train": ["train.baseline.max_steps=6"],
    },
}
SHARED_METRICS = (
    "reward/f_full/metrics.json",
    "reward/vam/metrics.json",
    "evaluate/match/start-pretrained/epoch0/metrics.json",
    "evaluate/match/pcpo/epoch1/metrics.json",
    "preference/start-pretrained-f_full/epoch1/judge/summary.json",
    "pretrain/summary.json",
    "pairs/summary.json",
    "data/ingest_report.json",
)


def write_small_study(root: Path) -> Path:
    study = root / "study.yaml"  # merged over config/config.yaml
    study.write_text(yaml.safe_dump(SMALL_STUDY))
    return study


@pytest.fixture(scope="module")
def slurm_study(slurm: LocalSlurm, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    root = tmp_path_factory.mktemp("study")
    profile_path = write_test_profile(root / "profile")
    workdir = snakemake_workdir(root / "work")
    started = time.monotonic()
    result = run_snakemake(
        workdir,
        "--profile",
        str(profile_path.parent),
        "--configfile",
        str(write_small_study(root)),
        "--",
        "all",
        timeout=1200,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-8000:]
    print(
        f"cluster bring-up {slurm.bring_up_seconds:.1f} s; "
        f"the small study's `all` through Slurm {time.monotonic() - started:.1f} s"
    )
    return workdir, yaml.safe_load(profile_path.read_text()), log


@pytest.fixture(scope="module")
def local_small_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``results/tiny`` of the same small study run on this machine's cores."""
    root = tmp_path_factory.mktemp("local-study")
    workdir = snakemake_workdir(root / "work")
    result = run_snakemake(
        workdir, "--cores", "2", "--configfile", str(write_small_study(root)), "--", "all", timeout=1200
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-8000:]
    return workdir / "results" / "tiny"


def test_all_runs_through_the_slurm_profile_with_the_requested_resources(slurm: LocalSlurm, slurm_study):
    workdir, profile, log = slurm_study
    run = workdir / "results" / "tiny"
    for table in ("reward_ablation", "reward_comparison", "match_rate", "online_lift"):
        assert (run / "tables" / f"{table}.md").is_file(), table
    records = slurm.jobs(workdir)
    threads = rule_threads(log)
    assert {rule_of(r) for r in records} == set(threads), "every submitted rule ran as a Slurm job"
    gpu_rules = set(profile["set-resources"])
    assert gpu_rules <= {rule_of(r) for r in records}, "every GPU rule of the profile ran"
    assert mismatches(profile, records, threads) == []
    assert {r["JobState"] for r in records} == {"COMPLETED"}
    # Job logs land where the profile says users look for them.
    assert list((workdir / "logs" / "slurm").glob("rule_*/**/*.log"))


def test_two_runs_from_scratch_write_identical_metric_files(slurm_study, local_small_study, tiny_run):
    run = slurm_study[0] / "results" / "tiny"
    for name in SHARED_METRICS:
        assert (run / name).read_bytes() == (local_small_study / name).read_bytes(), name
    # The data stages take no override: their files are also those of the full tiny `all`.
    for name in ("pairs/summary.json", "data/ingest_report.json"):
        assert (run / name).read_bytes() == (tiny_run / name).read_bytes(), name


def signal_loop_mid_run(slurm: LocalSlurm, workdir: Path, deadline: float) -> datetime:
    """Wait until the loop's first attempt has done 8 steps, then SIGTERM its job steps as Slurm would."""
    progress = workdir / "loop.progress"
    while time.monotonic() < deadline:
        if progress.is_file() and int(progress.read_text() or 0) >= 8:
            (job,) = [r for r in slurm.jobs(workdir) if rule_of(r) == "resumable_loop"]
            signalled_at = datetime.now().replace(microsecond=0)
            slurm.command("scancel", "--signal=TERM", job["JobId"])
            return signalled_at
        time.sleep(0.2)
    raise AssertionError("the loop never reached step 8")


@pytest.fixture(scope="module")
def small_run(slurm: LocalSlurm, tmp_path_factory: pytest.TempPathFactory) -> SmallRun:
    root = tmp_path_factory.mktemp("small")
    profile_path = write_test_profile(root / "profile")
    workdir = root / "work"
    workdir.mkdir()
    (workdir / "Snakefile").write_text(SMALL_SNAKEFILE)
    (workdir / "resumable_loop.py").write_text(RESUMABLE_LOOP)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    started = time.monotonic()
    process = subprocess.Popen(
        [str(BIN / "snakemake"), "--profile", str(profile_path.parent), "all"],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        signalled_at = signal_loop_mid_run(slurm, workdir, deadline=started + 180)
        log, _ = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, log[-8000:]
    print(f"retry/preemption/GPU-rule workflow through Slurm {time.monotonic() - started:.1f} s")
    profile = yaml.safe_load(profile_path.read_text())
    return SmallRun(workdir, profile, log, slurm.jobs(workdir), signalled_at)


def test_every_job_got_what_the_profile_asked_for(small_run: SmallRun):
    assert mismatches(small_run.profile, small_run.records, rule_threads(small_run.log)) == []


def test_failed_job_is_retried_with_more_runtime(small_run: SmallRun):
    flaky = [(r, attempt) for r, attempt in with_attempts(small_run.records) if rule_of(r) == "flaky"]
    assert [(r["JobState"], attempt) for r, attempt in flaky] == [("FAILED", 1), ("COMPLETED", 2)]
    limits = [recorded_request(r).runtime_min for r, _ in flaky]
    assert limits == [
        expected_request(small_run.profile, "flaky", attempt, 1).runtime_min for _, attempt in flaky
    ]
    assert limits[1] > limits[0], limits
    assert (small_run.workdir / "flaky.txt").read_text().strip() == "ok"


def test_preempted_job_checkpoints_before_it_ends_and_the_retry_resumes(small_run: SmallRun):
    jobs = [r for r in small_run.records if rule_of(r) == "resumable_loop"]
    assert [r["JobState"] for r in jobs] == ["FAILED", "COMPLETED"]
    ended = datetime.fromisoformat(jobs[0]["EndTime"])
    assert (ended - small_run.signalled_at).total_seconds() >= SAVE_SECONDS - 1, "job ended before its save"
    result = json.loads((small_run.workdir / "loop.json").read_text())
    assert result["acc"] == sum(range(40)) and result["resumed_at"] >= 8
    assert not (small_run.workdir / "loop.json.ckpt").exists()


def test_gpu_rule_gets_a_full_node_and_the_launcher_runs_in_it(small_run: SmallRun):
    (gpu_job,) = [r for r in small_run.records if rule_of(r) == "pretrain"]
    request = recorded_request(gpu_job)
    assert request.gpus == 8 and request.nodes == 1 and request.exclusive
    assert len((small_run.workdir / "visible_gpus.txt").read_text().strip().split(",")) == 8
    check = json.loads((small_run.workdir / "launch_check.json").read_text().strip().splitlines()[-1])
    assert check["all_reduce_sum"] == check["expected"]  # the fake GPUs are not CUDA devices: one CPU rank
