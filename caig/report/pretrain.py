"""``caig pretrain-report --stage1 FILE [--vision FILE] --out PNG``: the pre-training loss curves, one figure.

Whether the base model's training converged is read from these curves: stage 1's loss (``caig pretrain``
metrics, every ``train.logging_steps`` steps) and, where the vision tower was pre-trained first
(``caig vision-pretrain`` metrics), its loss curve and its linear-probe accuracies before and after, beside
the majority class.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from caig.errors import InputError
from caig.io import atomic_path
from caig.logs import get_logger

log = get_logger("pretrain-report")


def read_metrics(path: Path, required: tuple[str, ...]) -> dict[str, Any]:
    """A metrics JSON holding ``required`` keys; InputError naming the file otherwise."""
    try:
        metrics = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(f"cannot read metrics: {err}", file=path, expected="a JSON object") from err
    missing = [key for key in required if not isinstance(metrics, dict) or key not in metrics]
    if missing:
        raise InputError(f"metrics lack {missing[0]!r}", file=path, expected=f"keys {list(required)}")
    return metrics


def loss_figure(stage1: Mapping[str, Any], vision: Mapping[str, Any] | None) -> Any:
    """Stage 1's loss curve; with ``vision``, the tower's loss curve and its probe accuracies beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 3 if vision is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(4.6 * panels, 3.6), squeeze=False)
    curves = [("stage 1 (e-commerce pre-training)", stage1["loss_curve"], "cross-entropy")]
    if vision is not None:
        curves.insert(0, ("vision tower (description tokens)", vision["loss_curve"], "binary cross-entropy"))
    for ax, (title, curve, ylabel) in zip(axes[0], curves):
        ax.plot([p["step"] for p in curve], [p["loss"] for p in curve], marker=".")
        ax.set(title=title, xlabel="step", ylabel=ylabel, yscale="log")
        ax.grid(alpha=0.3)
    if vision is not None:
        ax = axes[0][2]
        probes = vision["probes"]
        names = list(probes["after"])
        width = 0.27
        for offset, (label, key) in enumerate(
            (("majority class", "majority"), ("untrained tower", "before"), ("trained tower", "after"))
        ):
            xs = [i + (offset - 1) * width for i in range(len(names))]
            ax.bar(xs, [probes[key][name] for name in names], width, label=label)
        ax.set_xticks(range(len(names)), names, rotation=30)
        ax.set(title="linear probes, held-out products", ylabel="accuracy", ylim=(0, 1))
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stage1", type=Path, required=True, help="caig pretrain --metrics output (JSON)")
    parser.add_argument("--vision", type=Path, help="caig vision-pretrain --metrics output (JSON), if any")
    parser.add_argument("--out", type=Path, required=True, help="figure to write (PNG)")


def run(args: argparse.Namespace, cfg: DictConfig) -> None:
    import matplotlib.pyplot as plt

    stage1 = read_metrics(args.stage1, ("loss_curve",))
    vision = None if args.vision is None else read_metrics(args.vision, ("loss_curve", "probes"))
    fig = loss_figure(stage1, vision)
    with atomic_path(args.out) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    log.info("wrote %s", args.out)
