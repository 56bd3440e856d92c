"""``caig pair-ceiling``: what the synthetic world's ground truth says about the reward-model test pairs.

    caig pair-ceiling --pairs pairs/test.parquet --truth world/truth.parquet --out reward/ceiling.json \\
        [--predictions f_full=reward/f_full/predictions.parquet --predictions vam=... ...]

On the same test pairs the RM is scored on:

- ``bayes_ceiling``: pair accuracy of ranking by the TRUE CTR, judged by the observed labels. Clicks are
  random, so even the oracle misses pairs whose observed order was flipped by chance: no model can be
  expected to do better. The same number is the accuracy of ranking by the OBSERVED CTR (the labels)
  judged by the true order: both count the pairs where the two orders agree (a true tie counts half);
- per ``--predictions`` file (``caig reward-eval`` output): the model's headline predictions (each pair in
  one order, argmax as in the paper's Eq. 13) judged by the true order, beside its accuracy judged by the
  observed labels.

Intervals are product-level bootstrap intervals, as in ``caig reward-eval``. Only this package (and the
simulator) may read ``truth.parquet``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from omegaconf import DictConfig

from caig.cli import named_path
from caig.errors import InputError
from caig.io import write_json
from caig.logs import get_logger
from caig.reward.eval import accuracy_summary, argmax_correct, pair_correct

log = get_logger("pair-ceiling")
TRUTH_COLUMNS = ("creative_id", "true_ctr")


def read_truth(path: str | Path) -> dict[str, float]:
    """creative_id -> true CTR from the world's truth.parquet."""
    path = Path(path)
    try:
        table = pl.read_parquet(path, columns=list(TRUTH_COLUMNS))
    except (OSError, pl.exceptions.PolarsError) as err:
        raise InputError(
            f"cannot read the truth table: {err}", file=path, expected=f"columns {TRUTH_COLUMNS}"
        ) from err
    return dict(zip(table["creative_id"].cast(pl.String).to_list(), table["true_ctr"].to_list()))


def true_ctrs(
    pairs: pl.DataFrame, truth: dict[str, float], file: str | Path
) -> tuple[np.ndarray, np.ndarray]:
    """The true CTR of the left and the right creative of every pair."""
    out = []
    for side in ("left", "right"):
        values = []
        for row, creative in enumerate(pairs[f"{side}_creative_id"].cast(pl.String), start=1):
            if creative not in truth:
                raise InputError(
                    f"creative {creative!r} has no true CTR",
                    file=file,
                    row=row,
                    column=f"{side}_creative_id",
                    expected="a creative of the world truth.parquet describes",
                )
            values.append(truth[creative])
        out.append(np.asarray(values, dtype=np.float64))
    return out[0], out[1]


def ceiling_metrics(
    pairs: pl.DataFrame,
    truth: dict[str, float],
    *,
    file: str | Path,
    resamples: int,
    confidence: float,
    seed: int,
) -> dict[str, Any]:
    """The Bayes ceiling on ``pairs`` (see the module docstring)."""
    left_true, right_true = true_ctrs(pairs, truth, file)
    observed_left = (pairs["label"] == "left").to_numpy()
    true_left = left_true > right_true
    groups = pairs["product_id"].to_list()
    # a true tie scores 0.5 either way; pair_correct treats p_left == 0.5 as a coin flip
    true_as_p = np.where(left_true == right_true, 0.5, true_left.astype(np.float64))
    summary = {"resamples": resamples, "confidence": confidence, "seed": seed}
    bayes = accuracy_summary(
        pair_correct(true_as_p, observed_left), groups, resamples=resamples, confidence=confidence, seed=seed
    )
    return {**summary, "bayes_ceiling": bayes}


def model_vs_truth(
    predictions: pl.DataFrame,
    truth: dict[str, float],
    *,
    file: str | Path,
    resamples: int,
    confidence: float,
    seed: int,
) -> dict[str, Any]:
    """A model's headline predictions (reward-eval's predictions.parquet, ``p_left`` of the pair as shown,
    argmax with ties to the left) judged by the true order; a true tie counts half."""
    for name in ("product_id", "left_creative_id", "right_creative_id", "p_left"):
        if name not in predictions.columns:
            raise InputError(f"lacks column {name!r}", file=file, expected="caig reward-eval predictions")
    left_true, right_true = true_ctrs(predictions, truth, file)
    correct = argmax_correct(predictions["p_left"].to_numpy(), left_true > right_true)
    correct[left_true == right_true] = 0.5
    return accuracy_summary(
        correct, predictions["product_id"].to_list(), resamples=resamples, confidence=confidence, seed=seed
    )


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pairs", type=Path, required=True, help="test pairs (Parquet, caig pairs)")
    parser.add_argument("--truth", type=Path, required=True, help="the world's truth.parquet")
    parser.add_argument("--out", type=Path, required=True, help="JSON to write")
    parser.add_argument(
        "--predictions",
        type=named_path,
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="reward-eval predictions to judge by the true order (repeat the option per model)",
    )


def run(args: argparse.Namespace, cfg: DictConfig) -> None:
    from caig.reward.train import read_pairs

    node = cfg.reward.eval
    settings = {
        "resamples": int(node.bootstrap),
        "confidence": float(node.confidence),
        "seed": int(node.seed),
    }
    pairs = read_pairs(args.pairs)
    truth = read_truth(args.truth)
    metrics = ceiling_metrics(pairs, truth, file=args.pairs, **settings)
    metrics["models_vs_truth"] = {
        name: model_vs_truth(pl.read_parquet(path), truth, file=path, **settings)
        for name, path in args.predictions
    }
    write_json(metrics, args.out)
    log.info(
        "Bayes ceiling %.3f on %d test pairs",
        metrics["bayes_ceiling"]["accuracy"],
        metrics["bayes_ceiling"]["pairs"],
    )
