"""Scattered generation through profiles/slurm: the K shards of a step go in as K plain Slurm jobs, a shard that
fails reruns alone, and the real workflow's K = 3 epoch writes the bytes of the local K = 1 run. The plugin's job
arrays stay off in the profile (profiles/slurm/profile.yaml says why: upstream snakemake-executor-plugin-slurm#447).
"""

from __future__ import annotations

import shutil
import pytest
import yaml

from tests.cluster.conftest import LocalSlurm, write_test_profile
from tests.cluster.slurm_records import rule_of, with_attempts
from tests.conftest import run_snakemake, snakemake_workdir
from tests.integration.test_scatter_gather import OUTPUTS, SMALL_CHUNKS, files_of, generate

pytestmark = pytest.mark.cluster
K = 3

# A step scattered as in preference.smk: shards of a rule named like a GPU step (the profile's GPU job shape),
# gathered by a CPU rule; shard 2 fails on its first attempt.
SCATTER_SNAKEFILE = f"""
scattergather:
    generation={K},


rule all:
    input:
        "render/ads.txt",


rule render:
    output:
        shard=temp(directory("render.shards/{{scatteritem}}")),
    shell:
        "if [ {{wildcards.scatteritem}} = 2-of-{K} ] && [ ! -e shard2.failed-once ]; then touch shard2.failed-once; "
        "exit 1; fi; mkdir -p {{output.shard}}; echo {{wildcards.scatteritem}} > {{output.shard}}/part.txt"


rule render_gather:
    input:
        gather.generation("render.shards/{{scatteritem}}"),
    output:
        "render/ads.txt",
    shell:
        "cat $(for d in {{input}}; do echo $d/part.txt; done) > {{output}}"
"""


def test_shards_go_in_as_plain_jobs_and_a_failed_shard_reruns_alone(slurm: LocalSlurm, tmp_path):
    profile_path = write_test_profile(tmp_path / "profile")
    assert "slurm-array-jobs" not in yaml.safe_load(profile_path.read_text())
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "Snakefile").write_text(SCATTER_SNAKEFILE)
    result = run_snakemake(workdir, "--profile", str(profile_path.parent), "all", timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-8000:]
    assert (workdir / "render" / "ads.txt").read_text().split() == [f"{i}-of-{K}" for i in range(1, K + 1)]
    shards = [(record, attempt) for record, attempt in with_attempts(slurm.jobs(workdir)) if rule_of(record) == "render"]
    assert not [record for record, _ in shards if "ArrayJobId" in record]
    states = sorted((record["Comment"].split("_wildcards_")[-1], attempt, record["JobState"]) for record, attempt in shards)
    assert states == [
        ("1-of-3", 1, "COMPLETED"), ("2-of-3", 1, "FAILED"), ("2-of-3", 2, "COMPLETED"), ("3-of-3", 1, "COMPLETED")
    ]
    assert not list(workdir.glob("render.shards/*"))  # gathered, then removed


def test_a_scattered_epoch_through_slurm_writes_the_bytes_of_one_local_job(slurm: LocalSlurm, tiny_run, tmp_path):
    workdir = snakemake_workdir(tmp_path / "work")
    shutil.copytree(tiny_run, workdir / "results" / "tiny", symlinks=True)
    (workdir / "study.yaml").write_text(
        yaml.safe_dump({"overrides": {name: SMALL_CHUNKS for name in ("sample", "render", "judge")}})
    )
    whole = generate(workdir, 1)  # on local cores
    run = workdir / "results" / "tiny"
    for output in OUTPUTS:
        shutil.rmtree(run / output)
    profile_path = write_test_profile(tmp_path / "profile")
    target = "results/tiny/preference/start-pretrained-f_full/epoch1/judge/preferences.parquet"
    result = run_snakemake(
        workdir, target, "--profile", str(profile_path.parent), "--rerun-triggers", "mtime",
        "--configfile", "study.yaml", "--set-scatter", f"generation={K}", timeout=1200,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-8000:]
    assert {output: files_of(run / output) for output in OUTPUTS} == whole
    records = slurm.jobs(workdir)
    for step in ("sample", "render", "judge"):
        jobs = [record for record in records if rule_of(record) == step]
        assert len(jobs) == K and {record["JobState"] for record in jobs} == {"COMPLETED"}, step

