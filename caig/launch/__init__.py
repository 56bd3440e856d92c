"""Distributed launch for the GPU stages: one launcher every GPU rule uses, process-group setup and teardown,
and checkpoint/resume across Slurm preemptions and time limits.

- ``caig launch [--nodes N] [--gpus-per-node auto|N] -- <command> [args]`` (``launcher``): one rank on CPU,
  one rank per GPU with torchrun on one node, ``srun`` with one task per GPU across several nodes.
- ``caig.launch.dist``: stage code joins the launcher's process group and always leaves it at exit.
- ``caig.launch.preemption``: save a checkpoint on SIGTERM/SIGUSR1 to ``<output>.ckpt/`` and resume from it.
"""

from __future__ import annotations

from caig.launch.launcher import LaunchPlan, launch, plan_launch

__all__ = ["LaunchPlan", "launch", "plan_launch"]
