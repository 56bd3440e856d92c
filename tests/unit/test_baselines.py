"""The VAM- and CG4CTR-style baselines: forward/backward, title hashing, symmetric pair scores, the loss, the
learning-rate schedule, save/load, and a short run of the training command with preemption and resume."""

from __future__ import annotations

import argparse
import math
import os
import signal
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from PIL import Image

from caig.config import compose
from caig.errors import ConfigError, InputError
from caig.launch.preemption import Preempted, checkpoint_dir, last_checkpoint
from caig.reward import baselines
from caig.reward.baselines import (
    build_ranker,
    load_ranker,
    lr_factor,
    pair_loss,
    save_ranker,
    score_ranker_pairs,
    word_ids,
)

SETTINGS = {
    "vam": {"name": "vam", "kind": "vam", "image_size": 16, "channels": [4, 8]},
    "cg4ctr": {
        "name": "cg4ctr",
        "kind": "cg4ctr",
        "image_size": 16,
        "channels": [4, 8],
        "text": {"buckets": 64, "dim": 8, "max_words": 6},
        "heads": 2,
    },
}


@pytest.mark.parametrize("kind", ["vam", "cg4ctr"])
def test_forward_backward_reaches_every_parameter(kind):
    torch.manual_seed(0)
    ranker = build_ranker(SETTINGS[kind])
    images = torch.randn(6, 3, 16, 16)
    words = torch.tensor([word_ids("red mug", 64, 6)] * 3) if kind == "cg4ctr" else None
    loss = pair_loss(
        ranker,
        images[:3],
        images[3:],
        words,
        torch.tensor([True, False, True]),
        torch.rand(3, 2) * 0.05,
        cls_weight=1.0,
        point_weight=0.5,
        ctr_scale=100.0,
    )
    loss.backward()
    assert loss.item() > 0
    assert [n for n, p in ranker.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0] == []


def test_word_ids_are_stable_padded_and_never_the_padding_id():
    ids = word_ids("Red MUG, 250ml red", 50, 6)
    assert ids == word_ids("red mug 250ml RED", 50, 6)
    assert ids[:4] == [ids[0], ids[1], ids[2], ids[0]] and ids[4:] == [0, 0]
    assert all(1 <= i < 50 for i in ids[:4])
    assert word_ids("", 50, 3) == [0, 0, 0]


def test_cg4ctr_with_an_empty_title_stays_finite():
    ranker = build_ranker(SETTINGS["cg4ctr"]).eval()
    out = ranker(torch.randn(2, 3, 16, 16), torch.zeros(2, 6, dtype=torch.long))
    assert torch.isfinite(out).all()


def test_unknown_kind_and_bad_heads_are_config_errors():
    with pytest.raises(ConfigError, match="not a baseline"):
        build_ranker({"kind": "svm", "channels": [4]})
    with pytest.raises(ConfigError, match="multiple"):
        build_ranker({**SETTINGS["cg4ctr"], "heads": 3})


def _images(tmp_path: Path, n: int) -> list[str]:
    rng = np.random.default_rng(1)
    paths = []
    for i in range(n):
        path = tmp_path / f"ad{i}.png"
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


@pytest.mark.parametrize("kind", ["vam", "cg4ctr"])
def test_scores_are_symmetric_and_survive_save_and_load(kind, tmp_path):
    torch.manual_seed(0)
    ranker = build_ranker(SETTINGS[kind])
    with torch.no_grad():  # move BatchNorm statistics off their defaults so the round trip is checked
        ranker.train()(torch.randn(8, 3, 16, 16), torch.ones(8, 6, dtype=torch.long))
    images = _images(tmp_path, 4)
    titles = ["red mug", "blue lamp"]
    p = score_ranker_pairs(ranker, images[:2], images[2:], titles, settings=SETTINGS[kind])
    swapped = score_ranker_pairs(ranker, images[2:], images[:2], titles, settings=SETTINGS[kind])
    np.testing.assert_allclose(p, 1 - swapped, atol=1e-6)
    save_ranker(ranker, SETTINGS[kind], tmp_path / "model")
    loaded, settings = load_ranker(tmp_path / "model")
    assert settings == SETTINGS[kind]
    np.testing.assert_allclose(score_ranker_pairs(loaded, images[:2], images[2:], titles), p, atol=1e-6)
    with pytest.raises(InputError, match="not a saved baseline"):
        load_ranker(tmp_path)


def test_lr_schedule_warms_up_then_follows_the_cosine():
    assert lr_factor(0, 100, 10, "cosine") == pytest.approx(0.1)
    assert lr_factor(10, 100, 10, "cosine") == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, "cosine") == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_factor(99, 100, 0, "linear") == pytest.approx(0.01)
    assert lr_factor(50, 100, 0, "constant") == 1.0


def _pairs_and_catalog(tmp_path: Path) -> tuple[Path, Path]:
    images = _images(tmp_path, 6)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(24):
        left, right = rng.choice(6, 2, replace=False)
        rows.append(
            {
                "product_id": f"P{i % 3}",
                "left_image": images[left],
                "right_image": images[right],
                "left_ctr": 0.01 * (left + 1),
                "right_ctr": 0.01 * (right + 1),
                "label": "left" if left > right else "right",
            }
        )
    pl.DataFrame(rows).write_parquet(tmp_path / "pairs.parquet")
    pl.DataFrame(
        {
            "product_id": ["P0", "P1", "P2"],
            "title": ["red mug", "lamp", "shoe"],
            "category": ["home"] * 3,
            "image": images[:3],
        }
    ).write_parquet(tmp_path / "catalog.parquet")
    return tmp_path / "pairs.parquet", tmp_path / "catalog.parquet"


def test_training_command_resumes_after_a_preemption(tmp_path, monkeypatch):
    pairs, catalog = _pairs_and_catalog(tmp_path)
    cfg = compose(
        [
            "reward=cg4ctr",
            "reward.image_size=16",
            "reward.channels=[4,8]",
            "reward.text.dim=8",
            "reward.heads=2",
            "train.baseline.per_device_batch_size=8",
            "train.baseline.epochs=4",
            "train.save_steps=100",
        ]
    )
    out = tmp_path / "model"
    args = argparse.Namespace(pairs=pairs, catalog=catalog, out=out, metrics=tmp_path / "train.json")
    original = baselines.pair_loss
    calls = {"n": 0}

    def interrupted(*a, **k):  # SIGTERM during the 5th step: the loop saves checkpoint-5 and exits
        calls["n"] += 1
        if calls["n"] == 5:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(*a, **k)

    monkeypatch.setattr(baselines, "pair_loss", interrupted)
    with pytest.raises(Preempted):
        baselines.run(args, cfg)
    assert last_checkpoint(out).name == "checkpoint-5" and not out.exists()
    monkeypatch.setattr(baselines, "pair_loss", original)
    baselines.run(args, cfg)
    assert not checkpoint_dir(out).exists()
    ranker, settings = load_ranker(out)
    assert settings["kind"] == "cg4ctr" and settings["image_size"] == 16
    assert (tmp_path / "train.json").is_file()
