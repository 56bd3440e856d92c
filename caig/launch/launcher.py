"""Pick how to start a stage's ranks on the hardware the job sees, print the exact command, and run it.

Three plans, chosen from the node count and the GPUs visible on this node:

- ``single``: one process, one rank (CPU, or one GPU). DeepSpeed and HF still want a distributed
  environment, so the plan sets ``RANK=0/WORLD_SIZE=1/LOCAL_RANK=0``, and no MASTER_ADDR/MASTER_PORT: the
  rank's process group lives on an in-process store (``caig.launch.dist``) and takes no TCP port, so jobs
  running side by side cannot race for one.
- ``torchrun``: one node, N > 1 GPUs: ``python -m torch.distributed.run --standalone --nproc_per_node N``.
  Standalone torchrun starts its agent's store on a port the kernel assigns and holds, and its workers
  join that store (shared with them unless TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1, which the plan rules out).
- ``srun``: several nodes inside a Slurm allocation: ``srun`` starts one task per GPU on every node, and
  each task (``caig.launch.rank``) derives its rank and world from Slurm's variables with submitit and
  joins rank 0's store (``caig.launch.rendezvous``: a kernel-assigned port, published through a file in
  the shared working directory).

The launcher replaces itself with the planned command (``exec``), so Slurm's signals reach the ranks
directly; a rule should ``exec caig launch -- ...`` too, so that no shell sits between Snakemake's job
process and the ranks (a shell dies on SIGTERM and takes the job down while ranks are still saving).
SIGTERM (preemption, or profiles/slurm's ``--signal=TERM@900`` before a time limit) makes the ranks
checkpoint (``caig.launch.preemption``); torchrun gets ``--shutdown-timeout`` so it waits for that save
instead of killing its workers after 30 s. SIGUSR1, the other checkpoint request, is set to "ignore"
before the exec: ranks that checkpoint install their own handler, and torchrun or a rank that does not
checkpoint keeps running instead of dying.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, NoReturn

from caig.errors import ConfigError
from caig.logs import get_logger

Mode = Literal["single", "torchrun", "srun"]
# The variables a launched rank reads; none is inherited: a plan sets them, or leaves them to torchrun
# and caig.launch.rank (an inherited MASTER_PORT would invite a library to bind it).
DIST_VARS = ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")
# How long torchrun waits for workers to finish a checkpoint after SIGTERM before it kills them; the
# same 15 minutes as the early warning profiles/slurm asks Slurm for (--signal=TERM@900).
SHUTDOWN_GRACE_SECONDS = 900
# Present where an NVIDIA driver runs: its /proc entry on Linux, the paravirtual GPU device under WSL 2.
NVIDIA_DRIVER_MARKS = ("/proc/driver/nvidia/version", "/dev/dxg")



@dataclass(frozen=True)
class LaunchPlan:
    """What the launcher will run: the argv, the variables set on top of the inherited environment."""

    mode: Mode
    nodes: int
    gpus_per_node: int
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)

    @property
    def world_size(self) -> int:
        return self.nodes * max(self.gpus_per_node, 1)

    def shell(self) -> str:
        """The command as one line that can be pasted into a shell on the same node."""
        assignments = [f"{key}={shlex.quote(value)}" for key, value in self.env.items()]
        return " ".join([*assignments, shlex.join(self.argv)])


def nvidia_driver_loaded(marks: Sequence[str] = NVIDIA_DRIVER_MARKS) -> bool:
    """Whether this machine runs an NVIDIA driver (CUDA needs one): its /proc entry or WSL's GPU device."""
    return any(os.path.exists(mark) for mark in marks)


def visible_gpus(env: Mapping[str, str] | None = None, *, driver: Callable[[], bool] = nvidia_driver_loaded) -> int:
    """GPUs this process can use: torch's CUDA device count (which honours CUDA_VISIBLE_DEVICES).

    A CPU build of torch, or a node whose devices are not real (the test cluster's fake GPUs), counts 0
    even when Slurm set CUDA_VISIBLE_DEVICES; the launcher then plans CPU ranks. Without an NVIDIA driver
    the count is 0 without asking torch, whose import (~1.3 s) every launched job would pay twice.
    """
    env = os.environ if env is None else env
    count = 0
    if driver():
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    listed = [d for d in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    if listed and count == 0:
        get_logger("launch").info(
            "CUDA_VISIBLE_DEVICES lists %d device(s) but no CUDA device is usable; running on CPU",
            len(listed),
        )
    return count


@dataclass(frozen=True)
class SlurmJob:
    """The surrounding Slurm allocation, as far as the launcher needs it."""

    job_id: str
    nodes: int
    cpus_per_node: int | None


def slurm_job(env: Mapping[str, str]) -> SlurmJob | None:
    """The Slurm job this process runs in, or None outside one.

    Inside a step Slurm sets SLURM_JOB_NUM_NODES and SLURM_CPUS_ON_NODE; Snakemake's jobstep strips every
    SLURM_* variable except SLURM_JOB_ID before it runs a rule, so then ask slurmctld about that job.
    """
    job_id = env.get("SLURM_JOB_ID")
    if not job_id:
        return None
    if env.get("SLURM_JOB_NUM_NODES"):
        cpus = env.get("SLURM_CPUS_ON_NODE")
        return SlurmJob(job_id, int(env["SLURM_JOB_NUM_NODES"]), int(cpus) if cpus else None)
    try:
        out = subprocess.run(
            ["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as err:
        raise ConfigError(
            f"cannot ask Slurm about job {job_id} (pass --nodes and --gpus-per-node): {err}"
        ) from err
    fields = dict(item.split("=", 1) for item in out.split() if "=" in item)
    if "NumNodes" not in fields:
        raise ConfigError(f"scontrol shows no NumNodes for job {job_id} (pass --nodes)")
    nodes = int(fields["NumNodes"].split("-")[0])
    cpus = fields.get("NumCPUs", "")
    return SlurmJob(job_id, nodes, int(cpus) // nodes if cpus.isdigit() else None)


def plan_launch(
    target: Sequence[str],
    *,
    nodes: int | None = None,
    gpus_per_node: int | None = None,
    env: Mapping[str, str] | None = None,
    python: str = sys.executable,
    count_gpus: Callable[[Mapping[str, str]], int] = visible_gpus,
) -> LaunchPlan:
    """Plan the launch of ``python -m <target...>`` (e.g. ``["caig", "pretrain", "preset=paper"]``).

    ``nodes`` and ``gpus_per_node`` default to what the environment shows (the Slurm job's node count,
    the CUDA devices torch sees); ``env`` and ``count_gpus`` are injectable for tests.
    """
    if not target:
        raise ConfigError("caig launch: no command to launch (expected: caig launch -- <command> [args])")
    env = os.environ if env is None else env
    job = slurm_job(env)
    if nodes is None:
        nodes = job.nodes if job else 1
    if nodes < 1:
        raise ConfigError(f"caig launch: --nodes must be >= 1, got {nodes}")
    if gpus_per_node is None:
        gpus_per_node = count_gpus(env)
    if gpus_per_node < 0:
        raise ConfigError(f"caig launch: --gpus-per-node must be >= 0, got {gpus_per_node}")
    module_argv = ["-m", *target]

    if nodes > 1:
        if job is None:
            raise ConfigError(f"caig launch: --nodes {nodes} needs a Slurm allocation (no SLURM_JOB_ID)")
        tasks_per_node = max(gpus_per_node, 1)
        argv = [
            "srun",
            f"--jobid={job.job_id}",
            f"--nodes={nodes}",
            f"--ntasks={nodes * tasks_per_node}",
            f"--ntasks-per-node={tasks_per_node}",
        ]
        if job.cpus_per_node:
            argv.append(f"--cpus-per-task={max(job.cpus_per_node // tasks_per_node, 1)}")
        argv += ["--kill-on-bad-exit=1", python, "-m", "caig.launch.rank", *target]
        return LaunchPlan("srun", nodes, gpus_per_node, argv)

    if gpus_per_node > 1:
        argv = [
            *(python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus_per_node}"),
            f"--shutdown-timeout={SHUTDOWN_GRACE_SECONDS}",
        ]
        shared_store = {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "0"}  # workers join the agent's held port
        return LaunchPlan("torchrun", 1, gpus_per_node, [*argv, *module_argv], shared_store)

    single_env = {
        "RANK": "0",
        "WORLD_SIZE": "1",
        "LOCAL_RANK": "0",
        "LOCAL_WORLD_SIZE": "1",
    }
    return LaunchPlan("single", 1, gpus_per_node, [python, *module_argv], single_env)


def launch(target: Sequence[str], *, nodes: int | None = None, gpus_per_node: int | None = None) -> NoReturn:
    """Plan, print the exact command, and replace this process with it."""
    plan = plan_launch(target, nodes=nodes, gpus_per_node=gpus_per_node)
    get_logger("launch").info(
        "%s plan, %d node(s) x %d GPU(s), world size %d: %s",
        plan.mode,
        plan.nodes,
        plan.gpus_per_node,
        plan.world_size,
        plan.shell(),
    )
    env = {key: value for key, value in os.environ.items() if key not in DIST_VARS}
    env.update(plan.env)
    sys.stdout.flush()
    sys.stderr.flush()
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    os.execvpe(plan.argv[0], plan.argv, env)
