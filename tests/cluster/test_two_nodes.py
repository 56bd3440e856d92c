"""A training step across two real Slurm nodes: the multi-node path of ``caig launch`` (srun tasks, the
file rendezvous, one gloo world), submitted through the Slurm profile.

The cluster is slurm_cluster.sh with CAIG_SLURM_NODES=2: nodes caig-n1 and caig-n2, each a host of its own
(network, UTS and mount namespaces) on this machine, on ports of their own so that the session's one-node
cluster can run at the same time. The rule asks for two nodes with the multi-node shape of
profiles/README.md (``mpi: srun``: the rule's ``caig launch`` calls srun itself), runs ``caig launch
--check``, then two optimiser steps of ``caig pretrain`` on the tiny preset, one rank per node.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.cluster.conftest import GPU_PARTITION, LocalSlurm, local_slurm, write_test_profile
from tests.conftest import run_snakemake, snakemake_workdir

pytestmark = pytest.mark.cluster
BIN = Path(sys.executable).parent
NODES = ("caig-n1", "caig-n2")
# Not the one-node cluster's ports (6817/6818): both clusters may be up at once.
TWO_NODE_ENV = {"CAIG_SLURM_NODES": "2", "CAIG_SLURM_CTLD_PORT": "6827", "CAIG_SLURM_SLURMD_PORT": "6828"}
MAX_STEPS = 2

TWO_NODE_SNAKEFILE = f"""
rule two_node_pretrain:
    input:
        data="world/data.jsonl",
        base="models/init",
    output:
        check="launch_check.jsonl",
        model=directory("models/pretrained"),
        metrics="pretrain/train_metrics.json",
    shell:
        "caig launch --check > {{output.check}} 2> launch_check.log && "
        "exec caig launch -- pretrain --data {{input.data}} --base {{input.base}} --out {{output.model}}"
        " --metrics {{output.metrics}} preset=tiny train.pretrain.max_steps={MAX_STEPS} 2> ranks.log"
"""

# The inputs of one pre-training step on the tiny preset, made on this host before the job: ~10 s.
PREPARE = (
    ("sim", "--out", "world", "preset=tiny"),
    (
        "pretrain-data",
        "--catalog",
        "world/catalog.parquet",
        "--descriptions",
        "world/reviewed_descriptions.parquet",
        "--out",
        "world",  # the records name their images relative to their folder, as the catalog does
        "preset=tiny",
    ),
    ("init-model", "--corpus", "world/corpus.txt", "--out", "models/init", "preset=tiny"),
)


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSlurm]:
    yield from local_slurm(tmp_path_factory.mktemp("slurm2"), TWO_NODE_ENV)


def two_node_profile(dest: Path) -> Path:
    """The test profile plus the rule's resources: profiles/README.md's multi-node shape, on two nodes."""
    path = write_test_profile(dest)
    profile = yaml.safe_load(path.read_text())
    profile["retries"] = 0  # a failure shows at once, not after two more attempts
    profile["set-resources"]["two_node_pretrain"] = {
        "slurm_partition": GPU_PARTITION,
        "nodes": 2,
        "gres": "gpu:8",
        "mpi": "srun",
        "tasks_per_node": 8,
        "cpus_per_task": 8,
        "mem_mb": 480000,
        "slurm_extra": "'--exclusive'",
        "runtime": 10,
    }
    path.write_text(yaml.safe_dump(profile, sort_keys=False))
    return path


def test_a_training_step_runs_as_one_world_across_two_nodes(two_nodes: LocalSlurm, tmp_path: Path):
    """Slurm gives the job both nodes; rank 0 runs on caig-n1 and rank 1 on caig-n2, in one gloo world
    (the check's all-reduce), and the two optimiser steps of the tiny pre-training finish there."""
    workdir = snakemake_workdir(tmp_path / "work")
    env = {**os.environ, **two_nodes.env, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    started = time.monotonic()
    for command in PREPARE:
        made = subprocess.run(
            [str(BIN / "caig"), *command], cwd=workdir, env=env, capture_output=True, text=True, timeout=300
        )
        assert made.returncode == 0, f"caig {command[0]} failed:\n{made.stderr[-3000:]}"
    (workdir / "Snakefile").write_text(TWO_NODE_SNAKEFILE)
    profile = two_node_profile(tmp_path / "profile")
    prepared = time.monotonic()

    result = run_snakemake(
        workdir, "--profile", str(profile.parent), "two_node_pretrain", timeout=300, env=two_nodes.env
    )
    logs = "\n".join(
        f"--- {path.name}\n{path.read_text()[-3000:]}"
        for path in [*workdir.glob("*.log"), *sorted((workdir / "logs").rglob("*.log"))]
    )
    assert result.returncode == 0, f"{(result.stdout + result.stderr)[-5000:]}\n{logs}"

    [job] = two_nodes.jobs(workdir)
    assert (job["NumNodes"], job["NodeList"], job["JobState"]) == ("2", "caig-n[1-2]", "COMPLETED"), job
    print(
        f"two nodes: cluster bring-up {two_nodes.bring_up_seconds:.1f} s, inputs {prepared - started:.1f} s, "
        f"snakemake {time.monotonic() - prepared:.1f} s, of which the Slurm job ran {job['RunTime']}"
    )

    checks = sorted(
        (json.loads(line) for line in (workdir / "launch_check.jsonl").read_text().splitlines()),
        key=lambda report: report["rank"],
    )
    assert [(r["rank"], r["world_size"], r["backend"], r["all_reduce_sum"]) for r in checks] == [
        (0, 2, "gloo", 3),
        (1, 2, "gloo", 3),
    ]
    ranks_log = (workdir / "ranks.log").read_text()
    hosts = dict(re.findall(r"rank (\d)/2 \(local 0\) on (\S+),", ranks_log))
    assert hosts == {"0": NODES[0], "1": NODES[1]}, ranks_log[-3000:]
    metrics = json.loads((workdir / "pretrain" / "train_metrics.json").read_text())
    assert metrics["global_step"] == MAX_STEPS
    assert (workdir / "models" / "pretrained" / "config.json").is_file()
