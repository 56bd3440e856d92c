"""Scattered generation through profiles/slurm: the K shards of a step go in as one Slurm job array (the profile's
slurm-array-jobs), checked against Slurm's records, a shard that fails reruns alone as a plain job, and the real
workflow's K = 3 epoch writes the bytes of the local K = 1 run.
"""

from __future__ import annotations

import shutil
import pytest
import yaml

from tests.cluster.conftest import LocalSlurm, write_test_profile
from tests.cluster.slurm_records import rule_of
from tests.conftest import run_snakemake, snakemake_workdir
from tests.integration.test_scatter_gather import OUTPUTS, SMALL_CHUNKS, files_of, generate

pytestmark = pytest.mark.cluster
K = 3

# A step scattered as in preference.smk: shards of a rule named like a GPU step (the profile puts it in an array),
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


def test_shards_go_in_as_one_array_and_a_failed_shard_reruns_alone(slurm: LocalSlurm, tmp_path):
    profile_path = write_test_profile(tmp_path / "profile")
    assert "render" in yaml.safe_load(profile_path.read_text())["slurm-array-jobs"]
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "Snakefile").write_text(SCATTER_SNAKEFILE)
    result = run_snakemake(workdir, "--profile", str(profile_path.parent), "all", timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-8000:]
    assert (workdir / "render" / "ads.txt").read_text().split() == [f"{i}-of-{K}" for i in range(1, K + 1)]
    shards = [record for record in slurm.jobs(workdir) if rule_of(record) == "render"]
    # an array's tasks share its first comment; the first array submitted holds the K shards
    first = min(int(record["ArrayJobId"]) for record in shards if "ArrayJobId" in record)
    tasks = [record for record in shards if record.get("ArrayJobId") == str(first)]
    assert sorted(int(record["ArrayTaskId"]) for record in tasks) == list(range(1, K + 1))
    assert sorted(record["JobState"] for record in tasks) == ["COMPLETED"] * (K - 1) + ["FAILED"]
    retries = [record for record in shards if record.get("ArrayJobId") != str(first)]
    assert [record["JobState"] for record in retries] == ["COMPLETED"]  # shard 2 alone (a one-task array or a job)
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
        tasks = [record for record in records if rule_of(record) == step]
        assert len(tasks) == K and len({record.get("ArrayJobId") for record in tasks}) == 1, step
        assert {record["JobState"] for record in tasks} == {"COMPLETED"}, step

