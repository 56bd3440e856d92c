"""Scatter/gather through Snakemake: an epoch's sample, render and judge as K = 3 shards and a gather each write the
same bytes as one job each (K = 1), and the shards are gone once gathered (temp outputs).

Both runs work in one copy of the finished tiny run (its upstream: world, catalog, models, reward models), so the
absolute image paths of the preference set are the same; chunks of 16 products give 4 chunks, so the shards hold
1, 1 and 2 of them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tests.conftest import run_snakemake, snakemake_workdir

pytestmark = pytest.mark.integration

EPOCH1 = "preference/start-pretrained/epoch1"
JUDGED = "preference/start-pretrained-f_full/epoch1"
OUTPUTS = (f"{EPOCH1}/sample", f"{EPOCH1}/render", f"{JUDGED}/judge")
SMALL_CHUNKS = ["preference.chunk_products=16"]


def files_of(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by relative name (Snakemake's own timestamp file left out)."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".snakemake_timestamp"
    }


def generate(workdir: Path, shards: int) -> dict[str, dict[str, bytes]]:
    """Remake the epoch's three outputs with ``shards`` shards; their files, then removed for the next run."""
    run = workdir / "results" / "tiny"
    for output in OUTPUTS:
        shutil.rmtree(run / output)
    target = f"results/tiny/{JUDGED}/judge/preferences.parquet"
    result = run_snakemake(
        workdir, target, "--cores", "2", "--rerun-triggers", "mtime", "--configfile", "study.yaml",
        "--set-scatter", f"generation={shards}", timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    log = result.stdout + result.stderr
    assert log.count("--shard ") == (3 * shards if shards > 1 else 0)  # three steps, each as its shards
    assert ("rule judge_gather:" in log) == (shards > 1)
    assert not list(run.glob("preference/*/epoch1/*.shards/*"))  # temp(): removed once gathered
    return {output: files_of(run / output) for output in OUTPUTS}


def test_three_shards_write_the_bytes_of_one_job(tiny_run, tmp_path):
    workdir = snakemake_workdir(tmp_path / "work")
    shutil.copytree(tiny_run, workdir / "results" / "tiny", symlinks=True)
    (workdir / "study.yaml").write_text(
        yaml.safe_dump({"overrides": {name: SMALL_CHUNKS for name in ("sample", "render", "judge")}})
    )
    whole = generate(workdir, 1)
    sharded = generate(workdir, 3)
    assert whole[f"{EPOCH1}/render"]  # the ads are among the files compared
    assert sharded == whole
