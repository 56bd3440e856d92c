"""Survive Slurm preemptions and time limits: checkpoint on SIGTERM/SIGUSR1, resume on the rerun.

Convention: a rule whose output is ``OUT`` keeps its checkpoints in ``OUT.ckpt/checkpoint-<step>/``, a
folder that is NOT a declared Snakemake output, so Snakemake neither deletes it when the job fails nor
asks for it. When the job is signalled (SIGTERM at preemption, at the time limit, or as profiles/slurm's
early warning ``--signal=TERM@900``; SIGUSR1 where a site uses that instead), training stops at the next
step boundary, writes a checkpoint and exits with status 128 + signal. The rule must ``exec`` its command
(``exec caig launch -- ...``) so the job lives until the checkpoint is written. Snakemake's retry (or
the user's rerun) starts the rule again, the stage resumes from ``last_checkpoint(OUT)``, writes ``OUT``
and calls ``finish(OUT)``, which removes the folder.

- HF Trainer: ``TrainingArguments(output_dir=str(checkpoint_dir(OUT)), ...)``,
  ``callbacks=[PreemptionCallback()]``, ``trainer.train(resume_from_checkpoint=last_checkpoint(OUT))``.
- A hand-written loop: ``ResumableLoop`` (see its docstring).

All ranks stop at the same step: each step the ranks agree (all-reduce, max) on whether any was signalled.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
from collections.abc import Callable, Iterable
from pathlib import Path
from types import FrameType, TracebackType

import torch
import torch.distributed as dist
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from caig.errors import CaigError
from caig.io import atomic_path
from caig.launch.dist import current
from caig.logs import get_logger

PREEMPTION_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
CHECKPOINT_PATTERN = re.compile(r"checkpoint-(\d+)")
# A checkpoint is complete once its last file exists: HF Trainer writes trainer_state.json after the
# weights, optimizer and RNG states; ResumableLoop writes its marker inside an atomically renamed folder.
COMPLETE_MARKERS = ("trainer_state.json", "caig_checkpoint.json")

log = get_logger("launch")


class Preempted(SystemExit):
    """Raised after the checkpoint is written: ends the process with 128 + the signal number."""

    def __init__(self, signum: int, checkpoint: Path | None) -> None:
        self.signum = signum
        self.checkpoint = checkpoint
        super().__init__(128 + signum)


def checkpoint_dir(output: str | Path) -> Path:
    """``<output>.ckpt``: where the checkpoints of the job producing ``output`` live."""
    return Path(f"{os.fspath(output).rstrip('/')}.ckpt")


def checkpoints(output: str | Path) -> list[Path]:
    """Complete checkpoints for ``output``, oldest (lowest step) first."""
    folder = checkpoint_dir(output)
    if not folder.is_dir():
        return []
    found = []
    for child in folder.iterdir():
        match = CHECKPOINT_PATTERN.fullmatch(child.name)
        if match and child.is_dir() and any((child / marker).is_file() for marker in COMPLETE_MARKERS):
            found.append((int(match.group(1)), child))
    return [path for _, path in sorted(found)]


def last_checkpoint(output: str | Path) -> Path | None:
    """The newest complete checkpoint for ``output``, or None (start from scratch)."""
    found = checkpoints(output)
    return found[-1] if found else None


def finish(output: str | Path) -> None:
    """Remove ``<output>.ckpt`` once ``output`` is complete (on the main rank only).

    Refuses while ``output`` does not exist: removing the checkpoints first would lose the run.
    """
    if not Path(output).exists():
        raise CaigError(f"{output}: not written yet, keeping its checkpoints in {checkpoint_dir(output)}")
    if current().is_main:
        shutil.rmtree(checkpoint_dir(output), ignore_errors=True)


class PreemptionSignal:
    """Record SIGTERM/SIGUSR1 instead of dying, so training can stop at a step boundary and checkpoint."""

    def __init__(self, signals: Iterable[int] = PREEMPTION_SIGNALS) -> None:
        self.signals = tuple(signals)
        self.received: int | None = None
        self._previous: dict[int, signal.Handlers | Callable | int | None] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            log.info("received %s: checkpointing at the next step boundary", signal.Signals(signum).name)
        self.received = signum

    def install(self) -> None:
        for signum in self.signals:
            if signum not in self._previous:
                self._previous[signum] = signal.signal(signum, self._handle)

    def uninstall(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def agreed(self) -> int | None:
        """The signal if any rank received one, else None; a collective when a process group exists."""
        world = current()
        if world.backend is None:
            return self.received
        flag = torch.tensor([self.received or 0], dtype=torch.int64, device=world.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag.item()) or None


class PreemptionCallback(TrainerCallback):
    """HF Trainer callback: on a preemption signal, save a checkpoint at the step's end and exit non-zero.

    The Trainer's ``output_dir`` must be ``checkpoint_dir(output)`` so the checkpoint lands there.
    """

    def __init__(self, signals: Iterable[int] = PREEMPTION_SIGNALS) -> None:
        self.signal = PreemptionSignal(signals)
        self.stopping: int | None = None

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: object
    ) -> None:
        self.signal.install()

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: object
    ) -> TrainerControl:
        signum = self.signal.agreed()
        if signum is not None:
            self.stopping = signum
            control.should_save = True
            control.should_training_stop = True
        return control

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: object
    ) -> None:
        if self.stopping is not None:
            saved = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            log.info(
                "checkpoint saved at step %d to %s; exiting for the rerun to resume", state.global_step, saved
            )
            self.signal.uninstall()
            raise Preempted(self.stopping, saved)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: object
    ) -> None:
        self.signal.uninstall()


class ResumableLoop:
    """Checkpoint and resume for a hand-written training loop.

    ::

        with ResumableLoop(out, save_every=100) as loop:
            start = load(ckpt) if (ckpt := loop.resume_from()) else 0   # your loader returns the next step
            for step in range(start, total):
                train_one_step()
                loop.step_end(step + 1, save=lambda folder: save_state(folder, step + 1))
        write_output(out)
        finish(out)

    ``save(folder)`` writes the state into an empty folder on the main rank only (the loop renames it
    into place when complete); other ranks wait at a barrier. ``step_end`` saves every ``save_every``
    steps (keeping only the newest) and, when any rank was signalled, saves and raises ``Preempted``.
    """

    def __init__(
        self,
        output: str | Path,
        *,
        save_every: int | None = None,
        signals: Iterable[int] = PREEMPTION_SIGNALS,
    ) -> None:
        self.output = Path(output)
        self.save_every = save_every
        self.signal = PreemptionSignal(signals)

    def __enter__(self) -> ResumableLoop:
        self.signal.install()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.signal.uninstall()

    def resume_from(self) -> Path | None:
        """The checkpoint to resume from, or None for a fresh start."""
        found = last_checkpoint(self.output)
        if found is not None:
            log.info("resuming from %s", found)
        return found

    def save(self, step: int, save: Callable[[Path], None]) -> Path:
        """Write ``checkpoint-<step>`` atomically and drop older checkpoints; returns its path."""
        target = checkpoint_dir(self.output) / f"checkpoint-{step}"
        world = current()
        if world.is_main:
            with atomic_path(target) as folder:
                folder.mkdir()
                save(folder)
                (folder / "caig_checkpoint.json").write_text(json.dumps({"step": step}) + "\n")
            for older in checkpoints(self.output):
                if older != target:
                    shutil.rmtree(older, ignore_errors=True)
        if world.backend is not None:
            dist.barrier()
        return target

    def step_end(self, step: int, save: Callable[[Path], None]) -> None:
        """Call after each completed step (``step`` = steps done): periodic save; save and exit on a signal."""
        signum = self.signal.agreed()
        if signum is not None:
            saved = self.save(step, save)
            log.info("checkpoint saved at step %d to %s; exiting for the rerun to resume", step, saved)
            self.signal.uninstall()
            raise Preempted(signum, saved)
        if self.save_every and step % self.save_every == 0:
            self.save(step, save)
