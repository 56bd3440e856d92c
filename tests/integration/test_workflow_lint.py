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


def test_a_method_that_samples_differently_gets_its_own_epoch1_and_epoch0_folders(tmp_path):
    tree = tmp_path / "config"
    shutil.copytree(REPO / "config", tree)
    dpo = tree / "preference" / "dpo.yaml"
    dpo.write_text(dpo.read_text() + "sample:\n  temperature: 0.7\n")
    result = run_snakemake(
        snakemake_workdir(tmp_path / "work"), "-n", "all", timeout=300, env={"CAIG_CONFIG_DIR": str(tree)}
    )
    text = result.stdout + result.stderr
    assert result.returncode == 0, text[-3000:]
    outputs = re.findall(r"^    output: (.*)$", text, flags=re.MULTILINE)
    sampled = {
        re.search(r"preference/([\w-]+)/epoch1/sample", o)[1] for o in outputs if "/epoch1/sample/" in o
    }
    judged = {re.search(r"preference/([\w-]+)/epoch1/judge", o)[1] for o in outputs if "/epoch1/judge/" in o}
    evaluated = {
        re.search(r"match/([\w-]+)/epoch0", o)[1] for o in outputs if re.search(r"match/[\w-]+/epoch0", o)
    }
    assert sampled == {"dpo", "start-pretrained", "start-base"}
    assert judged == {
        "dpo",
        "start-pretrained-f_full",
        "start-pretrained-vam",
        "start-pretrained-cg4ctr",
        "start-base-f_full",
    }
    # dpo evaluates alone; pcpo, the other method evaluated on 3 ads a product (preference.study), is then alone
    # in its group too; the 2-ad rows keep sharing start-pretrained
    assert evaluated == {"dpo", "pcpo", "start-pretrained", "start-base"}
    # dpo's own epoch-1 sample starts from the pre-trained model with its own temperature
    command = next(
        line for line in text.splitlines() if "sample --model" in line and "preference/dpo/epoch1" in line
    )
    assert "--model results/tiny/models/pretrained" in command and "preference=dpo" in command


def test_a_method_that_judges_differently_shares_the_candidates_but_judges_and_evaluates_itself(tmp_path):
    tree = tmp_path / "config"
    shutil.copytree(REPO / "config", tree)
    dpo = tree / "preference" / "dpo.yaml"
    dpo.write_text(dpo.read_text() + "judge:\n  caption: false\n")  # read by judge and evaluate-match
    result = run_snakemake(
        snakemake_workdir(tmp_path / "work"),
        "-n",
        "-p",
        "all",
        timeout=300,
        env={"CAIG_CONFIG_DIR": str(tree)},
    )
    text = result.stdout + result.stderr
    assert result.returncode == 0, text[-3000:]
    commands = {
        re.search(r"--out (\S+)", line)[1]: line
        for line in text.splitlines()
        if line.startswith("Shell command: caig evaluate-match")
    }
    match = "results/tiny/evaluate/match"
    epoch0 = {out: c for out, c in commands.items() if out.endswith("/epoch0")}
    runs = ("dpo", "pcpo", "start-pretrained", "start-base")
    assert set(epoch0) == {f"{match}/{run}/epoch0" for run in runs}
    assert "preference=dpo" in epoch0[f"{match}/dpo/epoch0"]
    # the shared folder composes the config of the first method that evaluates alike (the 2-ad rows)
    assert "preference=pcpo_no_textual " in epoch0[f"{match}/start-pretrained/epoch0"]
    assert f"--baseline {match}/dpo/epoch0" in commands[f"{match}/dpo/epoch1"]
    assert f"--baseline {match}/pcpo/epoch0" in commands[f"{match}/pcpo/epoch1"]
    assert f"--baseline {match}/start-pretrained/epoch0" in commands[f"{match}/pcpo_no_visual/epoch2"]
    assert f"{match}/pcpo_no_visual/epoch1" not in commands  # the 2-epoch rows evaluate epochs 0 and 2 only
    samples = {
        re.search(r"preference/([\w-]+)/epoch1/sample", line)[1]
        for line in text.splitlines()
        if "caig launch -- sample" in line and "--epoch 1 " in line
    }
    assert samples == {"start-pretrained", "start-base"}  # dpo still shares the epoch-1 candidates
    judge = next(
        line for line in text.splitlines() if "judge --ads" in line and "preference/dpo/epoch1/judge" in line
    )
    assert "--ads results/tiny/preference/start-pretrained/epoch1/render/ads.parquet" in judge
    assert "preference=dpo" in judge
