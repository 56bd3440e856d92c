"""The tiny run every integration test reads: one `snakemake all` per test session, shared by the test files."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_snakemake, snakemake_workdir


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """``results/tiny`` of a finished tiny `all` in a scratch working directory (its parents[1])."""
    workdir = snakemake_workdir(tmp_path_factory.mktemp("tiny"))
    result = run_snakemake(workdir, "--cores", "2", "all")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    return workdir / "results" / "tiny"
