"""Shared test helpers: repository paths and a scratch Snakemake working directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_FIXTURES = REPO.parent / "shared" / "fixtures"
BIN = Path(sys.executable).parent


def snakemake_workdir(root: Path) -> Path:
    """A working directory that sees the repository's workflow, config and profiles but writes its own results."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("workflow", "config", "profiles"):
        link = root / name
        if not link.exists():
            link.symlink_to(REPO / name)
    return root


def run_snakemake(
    workdir: Path, *args: str, timeout: float = 1200, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run snakemake in ``workdir`` with the venv's tools first on PATH (plus ``env``); never hangs past
    ``timeout``."""
    env = {**os.environ, **(env or {}), "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(
        [str(BIN / "snakemake"), *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def caig_tiny_fixture() -> Path:
    """The real CAIG product inputs in ../shared/fixtures/caig_tiny; skips when ../shared is absent."""
    path = SHARED_FIXTURES / "caig_tiny"
    if not (path / "tiny_dataset" / "tiny.json").is_file():
        pytest.skip(f"real CAIG fixture not found at {path} (../shared is absent)")
    return path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """``results/tiny`` of a finished tiny `all` in a scratch working directory (its parents[1]); one run per
    test session, read by the integration tests and compared with the Slurm run by the cluster tests."""
    reuse = os.environ.get("CAIG_TEST_TINY_RUN")
    if reuse:  # a developer's finished run (a working directory like snakemake_workdir's): no half-hour wait
        workdir = Path(reuse).resolve()
        if not (workdir / "results" / "tiny").is_dir():
            pytest.fail(f"CAIG_TEST_TINY_RUN={reuse} holds no results/tiny of a finished tiny `all`")
        return workdir / "results" / "tiny"
    workdir = snakemake_workdir(tmp_path_factory.mktemp("tiny"))
    result = run_snakemake(workdir, "--cores", "2", "all", timeout=3000)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    return workdir / "results" / "tiny"
