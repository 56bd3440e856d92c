"""profiles/slurm as Snakemake reads it (a dry run; no cluster needed), and the record-checking helpers.

The dry run proves that the profile parses (YAML anchors included), that each GPU rule gets one full
node, and that Snakemake evaluates the ``attempt`` expressions; the live tests check what Slurm recorded.
"""

from __future__ import annotations

import re

import pytest
import yaml

from tests.cluster.conftest import SLURM_PROFILE
from tests.cluster.slurm_records import (
    evaluate,
    expected_request,
    gpu_count,
    megabytes,
    minutes,
    mismatches,
    parse_scontrol_record,
    rule_threads,
)
from tests.conftest import run_snakemake

PROFILE = yaml.safe_load(SLURM_PROFILE.read_text())
GPU_RULES = sorted(PROFILE["set-resources"])


def dry_run_snakefile(rules: list[str]) -> str:
    lines = ["rule all:", "    input:", *(f'        "{name}.out",' for name in rules), ""]
    for name in rules:
        lines += [
            f"rule {name}:",
            "    output:",
            f'        "{name}.out",',
            "    shell:",
            '        "touch {output}"',
            "",
        ]
    return "\n".join(lines)


def test_gpu_rules_are_the_stages_that_train_or_generate():
    assert GPU_RULES == sorted(
        [
            "pretrain",
            "reward_train",
            "reward_eval",
            "baseline_train",
            "sample",
            "render",
            "judge",
            "preference_train",
            "evaluate_match",
        ]
    )


def test_dry_run_shows_every_gpu_rule_on_one_full_node_and_cpu_rules_on_defaults(tmp_path):
    rules = [*GPU_RULES, "ingest"]
    (tmp_path / "Snakefile").write_text(dry_run_snakefile(rules))
    result = run_snakemake(
        tmp_path, "--profile", str(SLURM_PROFILE.parent), "--workflow-profile", "none", "-n", timeout=120
    )
    assert result.returncode == 0, result.stderr[-4000:]
    printed = {}
    for block in re.split(r"\n(?=\[)", result.stdout + result.stderr):
        rule = re.search(r"^rule (\w+):", block, re.M)
        resources = re.search(r"^\s+resources: (.*)$", block, re.M)
        if rule and resources:
            printed[rule.group(1)] = dict(item.split("=", 1) for item in resources.group(1).split(", "))
    printed.pop("all")  # the target rule, run locally
    assert set(printed) == set(rules)
    for rule in rules:
        want = expected_request(PROFILE, rule, attempt=1, threads=1)
        got = printed[rule]
        assert got["slurm_partition"] == want.partition
        assert int(got["mem_mb"]) == want.mem_mb
        assert int(got["runtime"]) == want.runtime_min  # "N * attempt" evaluated by Snakemake at attempt 1
        if rule in GPU_RULES:
            assert (int(got["gpu"]), int(got["nodes"]), int(got["tasks_per_gpu"])) == (want.gpus, 1, 0)
            assert int(got["cpus_per_task"]) == want.cpus_per_task
            # every GPU rule but the small baselines and the one-process evaluation takes a whole 8-GPU node
            one_gpu = rule in ("baseline_train", "evaluate_match") and want.gpus == 1 and not want.exclusive
            assert (want.gpus == 8 and want.exclusive) or one_gpu
        else:
            assert "gpu" not in got and want.gpus == 0


@pytest.mark.parametrize("rule", [*GPU_RULES, "ingest"])
def test_runtime_grows_on_retry(rule):
    limits = [expected_request(PROFILE, rule, attempt, threads=1).runtime_min for attempt in (1, 2, 3)]
    assert limits[0] < limits[1] <= limits[2]  # pretrain's is capped at the partition's MaxTime


def test_slurm_value_parsers():
    assert minutes("01:30:00") == 90 and minutes("1-00:00:00") == 1440 and minutes("05:00") == 5
    assert megabytes("480000M") == 480000 and megabytes("16G") == 16384
    assert gpu_count("gpu:a100:8(IDX:0-7)") == 8 and gpu_count("gres:gpu:8") == 8 and gpu_count("(null)") == 0
    assert evaluate("60 * attempt", 3) == 180 and evaluate("'--exclusive'", 1) == "--exclusive"
    assert evaluate("gpu", 1) == "gpu"


def test_mismatch_check_flags_a_job_that_got_less_than_asked():
    profile = {
        "default-resources": {"slurm_partition": "cpu", "mem_mb": 1000, "runtime": "10 * attempt"},
        "set-resources": {
            "pretrain": {"slurm_partition": "gpu", "gpu": 8, "cpus_per_task": 16, "mem_mb": 9000}
        },
    }
    line = (
        "JobId={id} JobState=COMPLETED Partition={part} NumNodes=1 CPUs/Task={cpus} MinMemoryNode={mem} "
        "TimeLimit={limit} OverSubscribe=OK Comment=rule_{rule} JOB_GRES={gres}"
    )
    good = [
        line.format(id=1, part="cpu", cpus=2, mem="1000M", limit="00:10:00", rule="ingest", gres="(null)"),
        line.format(id=2, part="cpu", cpus=2, mem="1000M", limit="00:20:00", rule="ingest", gres="(null)"),
        line.format(
            id=3, part="gpu", cpus=16, mem="9000M", limit="00:10:00", rule="pretrain", gres="gpu:a100:8"
        ),
    ]
    threads = {"ingest": 2, "pretrain": 1}
    assert mismatches(profile, [parse_scontrol_record(r) for r in good], threads) == []
    short_of_gpus = good[2].replace("gpu:a100:8", "gpu:a100:4")
    problems = mismatches(profile, [parse_scontrol_record(r) for r in [*good[:2], short_of_gpus]], threads)
    assert len(problems) == 1 and "rule pretrain" in problems[0]
    same_limit_on_retry = good[1].replace("00:20:00", "00:10:00")
    problems = mismatches(
        profile, [parse_scontrol_record(r) for r in [good[0], same_limit_on_retry]], threads
    )
    assert len(problems) == 1 and "attempt 2" in problems[0]


def test_rule_threads_read_from_snakemake_job_blocks():
    log = (
        "rule sim_world:\n    output: a\n    jobid: 1\n    threads: 4\n    resources: x=1\n\nlocalrule all:\n"
    )
    log += "    input: a\n\nrule pairs:\n    output: b\n\n"
    assert rule_threads(log) == {"sim_world": 4, "pairs": 1}
