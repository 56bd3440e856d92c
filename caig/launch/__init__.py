"""Distributed launch for the GPU stages: one launcher every GPU rule uses, process-group setup and teardown,
and checkpoint/resume across Slurm preemptions and time limits.

- ``caig launch [--nodes N] [--gpus-per-node auto|N] -- <command> [args]`` (``launcher``): one rank on CPU,
  one rank per GPU with torchrun on one node, ``srun`` with one task per GPU across several nodes.
- ``caig.launch.dist``: stage code joins the launcher's process group and always leaves it at exit.
- ``caig.launch.rendezvous``: the ranks of a multi-node job meet on rank 0's store, bound to a port the
  kernel assigned (no port is chosen ahead of time, so jobs sharing a node never race for one).
- ``caig.launch.preemption``: save a checkpoint on SIGTERM/SIGUSR1 to ``<output>.ckpt/`` and resume from it.
- ``caig.launch.runlock``: one workflow run per working directory; a killed run's stale Snakemake lock is
  cleared by the next run (``workflow/Snakefile`` calls it).
"""

from __future__ import annotations

from caig.launch.launcher import LaunchPlan, launch, plan_launch

__all__ = ["LaunchPlan", "launch", "plan_launch"]
