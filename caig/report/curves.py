"""``caig training-curves --run PANEL/LINE[/EPOCH]=OUTPUT ... --out PNG``: the loss curves of the training jobs,
one figure, read from their TensorBoard event files.

Each ``--run`` names a training job by its output (``caig reward-train --out``, ``caig preference-train --out``,
...); its curve is the ``--tag`` scalar (default ``train/loss``) of the event files in
``caig.logs.event_dir(OUTPUT)``. Runs are drawn as lines of their panel, panels in the order first named; runs
of one line with an ``EPOCH`` (the preference epochs of a method) are joined in epoch order on an epoch axis,
each epoch's steps spread over its unit interval. A job without event files (``train.report_to`` without
tensorboard, or a run from before the curves) is named in its panel instead of drawn. The pre-training curves
are ``caig pretrain-report``'s (figures/pretrain_loss.png, beside the vision tower's probes), not drawn here.
"""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from caig.cli import named_path
from caig.errors import CaigError
from caig.io import atomic_path
from caig.logs import event_dir, get_logger

log = get_logger("training-curves")

DEFAULT_TAG = "train/loss"


@dataclass(frozen=True)
class RunName:
    """Where one job's curve goes: a panel, a line of it, and for joined runs the epoch."""

    panel: str
    line: str
    epoch: int | None = None

    @classmethod
    def parse(cls, name: str) -> RunName:
        parts = name.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise argparse.ArgumentTypeError(f"expected PANEL/LINE or PANEL/LINE/EPOCH, got {name!r}")
        if len(parts) == 2:
            return cls(parts[0], parts[1])
        if not parts[2].isdigit():
            raise argparse.ArgumentTypeError(f"{name!r}: the epoch must be a whole number, got {parts[2]!r}")
        return cls(parts[0], parts[1], int(parts[2]))


def run_option(value: str) -> tuple[RunName, Path]:
    """An option value ``PANEL/LINE[/EPOCH]=OUTPUT``."""
    name, path = named_path(value)
    return RunName.parse(name), path


def read_curve(folder: Path, tag: str = DEFAULT_TAG) -> list[tuple[int, float]] | None:
    """(step, value) of ``tag`` in the event files under ``folder``, by step; None without event files or tag.

    A resumed job leaves one event file per attempt, and steps between its last checkpoint and the kill are
    logged twice: the later record of a step wins."""
    if not folder.is_dir() or not any(folder.rglob("events.out.tfevents.*")):
        return None
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    if tag not in events.Tags().get("scalars", []):
        return None
    latest: dict[int, tuple[float, float]] = {}
    for event in events.Scalars(tag):
        if event.step not in latest or event.wall_time >= latest[event.step][0]:
            latest[event.step] = (event.wall_time, event.value)
    return [(step, value) for step, (_, value) in sorted(latest.items())]


def epoch_axis(segments: Mapping[int, Sequence[tuple[int, float]]]) -> list[tuple[float, float]]:
    """Joined epochs: epoch e's steps placed on (e - 1, e], in proportion to that epoch's last step."""
    points = []
    for epoch in sorted(segments):
        curve = segments[epoch]
        last = max(step for step, _ in curve) or 1
        points += [(epoch - 1 + step / last, value) for step, value in curve]
    return points


def curves_figure(runs: Sequence[tuple[RunName, Path]], tag: str = DEFAULT_TAG) -> Any:
    """The figure: one panel per named panel, one line per line name; missing curves listed in their panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: dict[str, dict[str, dict[int | None, list[tuple[int, float]]]]] = {}
    missing: dict[str, dict[str, list[int | None]]] = {}
    epoch_panels = {name.panel for name, _ in runs if name.epoch is not None}
    for name, output in runs:
        if (name.panel in epoch_panels) != (name.epoch is not None):
            raise CaigError(f"panel {name.panel!r} mixes runs with and without an epoch: name both alike")
        curve = read_curve(event_dir(output), tag)
        panels.setdefault(name.panel, {})
        if curve is None:
            label = name.line if name.epoch is None else f"{name.line} epoch {name.epoch}"
            log.warning("%s: no %r scalars in %s", label, tag, event_dir(output))
            missing.setdefault(name.panel, {}).setdefault(name.line, []).append(name.epoch)
            continue
        panels[name.panel].setdefault(name.line, {})[name.epoch] = curve
    columns = min(3, len(panels)) or 1
    rows = max(1, -(-len(panels) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 3.8 * rows), squeeze=False)
    for ax, (panel, lines) in zip(axes.flat, panels.items()):
        by_epoch = panel in epoch_panels
        for line, segments in lines.items():
            if by_epoch:
                xs, ys = zip(*epoch_axis(segments))
            else:
                xs, ys = zip(*segments[None])
            # a run with few logged points (a 1-epoch RM row logs one) would be an invisible line without markers
            ax.plot(xs, ys, label=line, linewidth=1.2, marker="o" if len(xs) < 5 else None, markersize=3)
        if by_epoch:
            epochs = max(name.epoch for name, _ in runs if name.panel == panel)
            for boundary in range(1, epochs):
                ax.axvline(boundary, color="grey", linewidth=0.6, alpha=0.5)
            ax.set_xlim(0, epochs)
        ax.set(title=panel, xlabel="epoch" if by_epoch else "step", ylabel=tag)
        ax.grid(alpha=0.3)
        if lines:
            ax.legend(fontsize=7)
        if missing.get(panel):
            named = [line if missed == [None] else f"{line} (epoch {', '.join(map(str, missed))})"
                     for line, missed in missing[panel].items()]
            ax.text(0.02, 0.02, textwrap.fill("no event files: " + ", ".join(named), 70), transform=ax.transAxes,
                    fontsize=7, color="firebrick", va="bottom")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--run", type=run_option, action="append", required=True, metavar="PANEL/LINE[/EPOCH]=OUTPUT",
        help="a training job's output (its curves are in OUTPUT.tensorboard/); repeat for each job",
    )
    parser.add_argument("--tag", default=DEFAULT_TAG, help=f"the scalar to draw (default {DEFAULT_TAG})")
    parser.add_argument("--out", type=Path, required=True, help="figure to write (PNG)")


def run(args: argparse.Namespace, cfg: DictConfig) -> None:
    import matplotlib.pyplot as plt

    fig = curves_figure(args.run, args.tag)
    with atomic_path(args.out) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    log.info("wrote %s (%d runs)", args.out, len(args.run))
