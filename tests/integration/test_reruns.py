"""Reruns after the finished tiny `all`: one target reruns only its own missing or outdated jobs, and an edit of
one ablation's config reruns exactly the jobs that read it. Every check is a dry run whose jobs are counted.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import REPO, run_snakemake

pytestmark = pytest.mark.integration


def planned_jobs(workdir: Path, *args: str, env: dict[str, str] | None = None) -> Counter[str]:
    """Jobs per rule of a dry run (Snakemake's "Job stats" table); empty when there is nothing to do."""
    result = run_snakemake(workdir, "--cores", "2", "-n", *args, timeout=300, env=env)
    text = result.stdout + result.stderr
    assert result.returncode == 0, text[-4000:]
    if "Nothing to be done" in text:
        return Counter()
    table = text.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    rows = re.findall(r"^(\w+)\s+(\d+)$", table, flags=re.MULTILINE)
    return Counter({rule: int(n) for rule, n in rows if rule != "total"})


@pytest.fixture
def moved_away(tiny_run):
    """Moves a file of the finished run aside for one test and puts it back afterwards."""
    moved: list[tuple[Path, Path]] = []

    def move(relative: str) -> None:
        path = tiny_run / relative
        aside = path.with_name(path.name + ".aside")
        path.rename(aside)
        moved.append((aside, path))

    yield move
    for aside, path in moved:
        aside.rename(path)


ROW_TARGETS = [
    "reward/c_cls_head/metrics.json",
    "reward/vam/metrics.json",
    "evaluate/match/pcpo/epoch2",  # a directory() output: the folder is the target
    "tables/reward_ablation.md",
    "tables/match_rate.md",
    "tables/online_lift.md",
    "figures/match_rate.png",
]


@pytest.mark.parametrize("target", ROW_TARGETS)
def test_a_finished_row_target_has_nothing_to_do(tiny_run, target):
    assert (tiny_run / target).exists(), f"{target} is not a path of the tiny run"
    assert planned_jobs(tiny_run.parents[1], f"results/tiny/{target}") == Counter()


def test_a_missing_row_reruns_only_its_own_job(tiny_run, moved_away):
    moved_away("reward/c_cls_head/metrics.json")
    workdir = tiny_run.parents[1]
    assert planned_jobs(workdir, "results/tiny/reward/c_cls_head/metrics.json") == Counter(reward_eval=1)


@pytest.fixture
def edited(tiny_run):
    """Changes a file of the finished run for one test (new content, newer time), then restores both: Snakemake
    9 compares checksums, so a file touched without a change in content would rerun nothing."""
    restored: list[tuple[Path, bytes, tuple[int, int]]] = []

    def edit(relative: str) -> None:
        path = tiny_run / relative
        stat = path.stat()
        restored.append((path, path.read_bytes(), (stat.st_atime_ns, stat.st_mtime_ns)))
        path.write_bytes(path.read_bytes() + b"\n")
        later = time.time_ns() + 10**9
        os.utime(path, ns=(later, later))

    yield edit
    for path, content, times in restored:
        path.write_bytes(content)
        os.utime(path, ns=times)


def test_an_updated_metric_file_rebuilds_only_its_tables(tiny_run, edited):
    edited("reward/c_cls_head/metrics.json")
    assert planned_jobs(tiny_run.parents[1], "tables") == Counter(reward_tables=1, tables=1)


def test_tables_rebuild_from_metric_files_alone(tiny_run, moved_away):
    moved_away("tables/match_rate.md")
    moved_away("tables/online_lift.md")
    assert planned_jobs(tiny_run.parents[1], "tables") == Counter(
        preference_report=1, online_table=1, tables=1
    )


def test_editing_one_ablation_reruns_exactly_its_dependents(tiny_run, tmp_path):
    tree = tmp_path / "config"
    shutil.copytree(REPO / "config", tree)
    variant = tree / "reward" / "c_cls_head.yaml"
    variant.write_text(variant.read_text() + "loss:\n  cls_weight: 0.9\n")
    planned = planned_jobs(tiny_run.parents[1], "all", env={"CAIG_CONFIG_DIR": str(tree)})
    # (c)'s training and evaluation, and what reads its predictions or metrics (training_curves: its training
    # metrics); no other variant, nothing upstream, nothing of the preference stage (it is judged by (f))
    assert planned == Counter(
        reward_train=1, reward_eval=1, pair_ceiling=1, reward_tables=1, training_curves=1, benchmark_summary=1,
        all=1,
    )
