"""The workflow stays lint-clean and snakefmt-formatted (the issue's bar for every rule file)."""

from __future__ import annotations

import subprocess

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
