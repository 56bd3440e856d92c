"""The workflow stays lint-clean and snakefmt-formatted (the issue's bar for every rule file)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from tests.conftest import BIN, REPO, run_snakemake, snakemake_workdir


def test_snakemake_lint_is_clean(tmp_path):
    result = run_snakemake(snakemake_workdir(tmp_path), "--lint", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations" in result.stdout + result.stderr, result.stdout + result.stderr


def test_snakefmt_check_is_clean():
    result = subprocess.run(
        [str(BIN / "snakefmt"), "--check", "workflow"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def dry_run_jobs(workdir: Path) -> list[tuple[str, str, str]]:
    """(rule, inputs, outputs) of every job a dry run of the tiny `all` plans."""
    result = run_snakemake(workdir, "-n", "all", timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return re.findall(
        r"^rule (\w+):\n    input: (.*)\n    output: (.*)$", result.stdout + result.stderr, flags=re.MULTILINE
    )


def test_epoch1_candidates_are_sampled_once_per_initial_model_and_judged_once_per_judge(tmp_path):
    jobs = dry_run_jobs(snakemake_workdir(tmp_path))
    runs = {
        rule: sorted(
            re.search(r"preference/([\w-]+)/epoch1/", outputs)[1]
            for r, _, outputs in jobs
            if r == rule and "/epoch1/" in outputs
        )
        for rule in ("sample", "render", "judge")
    }
    assert runs["sample"] == runs["render"] == ["start-base", "start-pretrained"]
    assert runs["judge"] == [
        "start-base-f_full",
        "start-pretrained-cg4ctr",
        "start-pretrained-f_full",
        "start-pretrained-vam",
    ]
    judged = {
        re.search(r"preference/([\w-]+)/epoch1/judge", out)[1]: ins
        for r, ins, out in jobs
        if r == "judge" and "/epoch1/" in out
    }
    for judge_run, inputs in judged.items():
        init = "-".join(judge_run.split("-")[:2])
        assert f"preference/{init}/epoch1/render" in inputs, (judge_run, inputs)


def test_methods_that_share_candidates_must_sample_alike(tmp_path):
    tree = tmp_path / "config"
    shutil.copytree(REPO / "config", tree)
    dpo = tree / "preference" / "dpo.yaml"
    dpo.write_text(dpo.read_text() + "sample:\n  temperature: 0.7\n")
    result = run_snakemake(
        snakemake_workdir(tmp_path / "work"), "-n", "all", timeout=300, env={"CAIG_CONFIG_DIR": str(tree)}
    )
    text = result.stdout + result.stderr
    assert result.returncode != 0
    assert "share the epoch-1 candidates and ads (start-pretrained)" in text, text[-3000:]
    assert "preference.sample" in text and "'dpo'" in text, text[-3000:]
