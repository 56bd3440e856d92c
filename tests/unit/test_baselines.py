"""The VAM and CG4CTR baselines: the architectures on transformers' ResNet (tiny config, pretrained local
checkpoints, missing paths), the list-wise + point-wise loss and the lists it reads, symmetric pair scores,
save/load, and the training command (the loss falls; preemption and resume; a frozen backbone)."""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from PIL import Image
from transformers import ResNetConfig, ResNetModel

from caig.config import compose
from caig.errors import ConfigError, InputError
from caig.launch.preemption import Preempted, checkpoint_dir, last_checkpoint
from caig.reward import baselines
from caig.reward.baselines import (
    CreativeImages,
    ListBatches,
    beta_prior,
    build_ranker,
    creative_lists,
    list_loss,
    load_backbone,
    load_ranker,
    lr_factor,
    ranker_settings,
    save_ranker,
    score_ranker_pairs,
    title_words,
    word_ids,
)

RESNET = {"embedding_size": 4, "hidden_sizes": [4, 8], "depths": [1, 1], "layer_type": "basic"}
IMAGE = {"resize": 16, "crop": 12, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
LOSS = {"cls_weight": 1.0, "point_weight": 0.5, "rank_scale": 1000.0, "ctr_scale": 100.0}
SMALL = [  # Hydra overrides that shrink either baseline's tiny config for fast tests
    "reward.backbone.tiny.resnet.embedding_size=4",
    "reward.backbone.tiny.resnet.hidden_sizes=[4,8]",
    "reward.backbone.tiny.resnet.depths=[1,1]",
    "reward.backbone.tiny.image.resize=16",
    "reward.backbone.tiny.image.crop=12",
]
CG4CTR_SMALL = ["reward.projection=[8,8]", "reward.fusion.layers=1", "reward.fusion.ffn=16", "reward.head=[4]",
                "reward.text.dim=8"]


def _settings(kind: str, **backbone) -> dict:
    settings = {
        "name": kind,
        "kind": kind,
        "preset": "tiny",
        "list_size": 3,
        "loss": LOSS,
        "backbone": {"source": "random", "resnet": RESNET, "trainable": True, "image": IMAGE, **backbone},
    }
    if kind == "vam":
        return {**settings, "feature_dim": 4}
    return {
        **settings,
        "text": {"buckets": 64, "dim": 8, "max_words": 6},
        "projection": [8, 8],
        "fusion": {"layers": 1, "heads": 2, "ffn": 16, "dropout": 0.0},
        "head": [4],
        "dropout": 0.0,
    }


def _words(kind: str, n: int) -> torch.Tensor | None:
    titles = ["red mug", "blue desk lamp", "running shoe", "oak desk"]
    return title_words([titles[i % len(titles)] for i in range(n)], _settings(kind))


# ---------------------------------------------------------------------------------------------- architectures
@pytest.mark.parametrize("kind", ["vam", "cg4ctr"])
def test_the_tiny_preset_builds_each_architecture_on_a_transformers_resnet(kind):
    settings = ranker_settings(compose([f"reward={kind}"]))
    ranker = build_ranker(settings).eval()
    assert isinstance(ranker.backbone, ResNetModel) and ranker.trainable
    assert ranker.backbone.config.hidden_sizes == [16, 32, 64, 128] and ranker.backbone.config.depths == [2] * 4
    crop = settings["backbone"]["image"]["crop"]
    words = title_words(["red mug"] * 3, settings)
    scores = ranker(torch.randn(3, 3, crop, crop), words)
    assert scores.shape == (3,) and torch.isfinite(scores).all()
    assert ranker.features(torch.randn(2, 3, crop, crop)).shape == (2, 128)
    assert "torchvision" not in sys.modules


@pytest.mark.parametrize("kind", ["vam", "cg4ctr"])
def test_gradients_reach_every_parameter_and_a_frozen_backbone_gets_none(kind):
    torch.manual_seed(0)
    ranker = build_ranker(_settings(kind)).train()
    ranker(torch.randn(6, 3, 12, 12), _words(kind, 6)).sum().backward()
    assert [n for n, p in ranker.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0] == []
    frozen = build_ranker(_settings(kind, trainable=False)).train()
    frozen(torch.randn(6, 3, 12, 12), _words(kind, 6)).sum().backward()
    assert all(p.grad is None for p in frozen.backbone.parameters()) and not frozen.backbone.training
    assert all(p.grad is not None for n, p in frozen.named_parameters() if not n.startswith("backbone."))


def test_a_pretrained_backbone_loads_from_a_local_directory(tmp_path):
    torch.manual_seed(3)
    saved = ResNetModel(ResNetConfig(**RESNET))
    saved.save_pretrained(tmp_path / "resnet")
    node = {"source": "pretrained", "path": str(tmp_path / "resnet")}
    loaded = load_backbone(node, "reward.backbone.paper", "vam")
    for (name, before), after in zip(saved.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(before, after), name
    ranker = build_ranker(_settings("vam", source="pretrained", path=str(tmp_path / "resnet")))
    assert torch.equal(ranker.backbone.embedder.embedder.convolution.weight, saved.embedder.embedder.convolution.weight)


def test_a_missing_or_wrong_backbone_path_is_a_config_error_naming_key_and_path(tmp_path):
    with pytest.raises(ConfigError, match=r"reward\.backbone\.paper\.path='/no/such/resnet' does not exist.*resnet-50"):
        load_backbone({"source": "pretrained", "path": "/no/such/resnet"}, "reward.backbone.paper", "cg4ctr")
    with pytest.raises(ConfigError, match="reward.backbone.paper.path is not set"):
        load_backbone({"source": "pretrained", "path": None}, "reward.backbone.paper", "vam")
    (tmp_path / "clip").mkdir()
    (tmp_path / "clip" / "config.json").write_text(json.dumps({"model_type": "clip_vision_model"}))
    with pytest.raises(ConfigError, match="holds a 'clip_vision_model' checkpoint"):
        load_backbone({"source": "pretrained", "path": str(tmp_path / "clip")}, "reward.backbone.paper", "vam")
    settings = ranker_settings(compose(["reward=vam", "preset=paper", f"reward.backbone.paper.path={tmp_path}/x"]))
    with pytest.raises(ConfigError, match=rf"reward\.backbone\.paper\.path='{tmp_path}/x' does not exist"):
        build_ranker(settings)


def test_bad_baseline_settings_are_config_errors():
    with pytest.raises(ConfigError, match="not a baseline"):
        build_ranker({"kind": "svm"})
    with pytest.raises(ConfigError, match="multiple of reward.fusion.heads"):
        build_ranker({**_settings("cg4ctr"), "fusion": {"layers": 1, "heads": 3, "ffn": 16, "dropout": 0.0}})
    with pytest.raises(ConfigError, match=r"reward\.backbone\.tiny\.source=None"):
        build_ranker(_settings("vam", source=None))
    with pytest.raises(ConfigError, match=r"crop=80 must be positive and at most resize=64"):
        ranker_settings(compose(["reward=vam", "reward.backbone.tiny.image.crop=80"]))
    with pytest.raises(ConfigError, match=r"reward\.list_size=1"):
        ranker_settings(compose(["reward=cg4ctr", "reward.list_size=1"]))
    with pytest.raises(ConfigError, match=r"reward=f_full is not a baseline"):
        ranker_settings(compose(["reward=f_full"]))


def test_word_ids_are_stable_padded_and_never_the_padding_id():
    ids = word_ids("Red MUG, 250ml red", 50, 6)
    assert ids == word_ids("red mug 250ml RED", 50, 6)
    assert ids[:4] == [ids[0], ids[1], ids[2], ids[0]] and ids[4:] == [0, 0]
    assert all(1 <= i < 50 for i in ids[:4])
    assert word_ids("", 50, 3) == [0, 0, 0]
    assert title_words(["a"], _settings("vam")) is None


def test_cg4ctr_with_an_empty_title_stays_finite():
    ranker = build_ranker(_settings("cg4ctr")).eval()
    assert torch.isfinite(ranker(torch.randn(2, 3, 12, 12), torch.zeros(2, 6, dtype=torch.long))).all()


# ---------------------------------------------------------------------------------------------- loss, lists
def test_the_list_loss_is_the_softmax_cross_entropy_plus_the_point_error_over_present_creatives():
    slots = torch.tensor([[True, True, True], [True, True, False]])
    ctr = torch.tensor([[0.05, 0.01, 0.02], [0.03, 0.04, 0.0]])
    scores = torch.zeros(2, 3)
    total, ranking, point = list_loss(scores, slots, ctr, **LOSS)
    # rank_scale 1000 makes each target almost one-hot: uniform scores cost log(list length)
    assert ranking.item() == pytest.approx((math.log(3) + math.log(2)) / 2, rel=1e-3)
    assert point.item() == pytest.approx(float(((ctr * 100)[slots] ** 2).mean()), rel=1e-6)
    assert total.item() == pytest.approx(ranking.item() + 0.5 * point.item(), rel=1e-6)
    padded = scores.clone()
    padded[1, 2] = 50.0  # an absent slot changes nothing
    assert torch.equal(list_loss(padded, slots, ctr, **LOSS)[0], total)
    better = torch.tensor([[9.0, 0.0, 0.0], [0.0, 9.0, 0.0]])
    assert list_loss(better, slots, ctr, **LOSS)[1] < 0.01


def test_the_beta_prior_matches_the_ctr_moments_and_needs_varying_ctrs():
    impressions = np.full(5, 1000.0)
    clicks = np.array([10.0, 20.0, 30.0, 40.0, 50.0])
    a, b = beta_prior(impressions, clicks)
    mean, var = a / (a + b), a * b / ((a + b) ** 2 * (a + b + 1))
    assert mean == pytest.approx(0.03) and var == pytest.approx(np.var(clicks / impressions, ddof=1))
    with pytest.raises(InputError, match="cannot fit the CTR prior"):
        beta_prior(impressions, np.full(5, 20.0))


def _images(tmp_path: Path, n: int) -> list[str]:
    rng = np.random.default_rng(1)
    paths = []
    for i in range(n):
        path = tmp_path / f"ad{i}.png"
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def _pairs(tmp_path: Path, products: int = 3, per_product: int = 4) -> pl.DataFrame:
    """Every pair of each product's creatives; a creative's CTR grows with its index."""
    images = _images(tmp_path, products * per_product)
    rows = []
    for p in range(products):
        for i in range(per_product):
            for j in range(i + 1, per_product):
                side = {}
                for name, k in (("left", i), ("right", j)):
                    side |= {
                        f"{name}_creative_id": f"P{p}_{k}",
                        f"{name}_image": images[p * per_product + k],
                        f"{name}_impressions": 1000 + 100 * p,
                        f"{name}_clicks": 10 * (k + 1) + p,
                        f"{name}_ctr": (10 * (k + 1) + p) / (1000 + 100 * p),
                    }
                rows.append({"product_id": f"P{p}", **side, "label": "right"})
    return pl.DataFrame(rows)


def test_creative_lists_gather_each_creative_once_per_product_with_smoothed_ctrs(tmp_path):
    pairs = _pairs(tmp_path)
    lists = creative_lists(pairs, {"P0": "mug", "P1": "lamp", "P2": "shoe"})
    assert [len(group) for group in lists.images] == [4, 4, 4] and lists.creatives == 12
    assert lists.titles == ["mug", "lamp", "shoe"]
    a, b = lists.prior
    assert lists.ctr[1][2] == pytest.approx((31 + a) / (1100 + a + b))
    assert all(np.all(np.diff(ctr) > 0) for ctr in lists.ctr)
    with pytest.raises(InputError, match="product 'P2' is not in the catalog"):
        creative_lists(pairs, {"P0": "mug", "P1": "lamp"})
    with pytest.raises(InputError, match="lacks column 'left_clicks'"):
        creative_lists(pairs.drop("left_clicks"), {})


def test_list_batches_are_seeded_per_step_capped_at_the_list_size_and_index_frozen_features(tmp_path):
    lists = creative_lists(_pairs(tmp_path), {"P0": "mug", "P1": "lamp", "P2": "shoe"})
    images = CreativeImages(IMAGE)
    batches = ListBatches(lists, images, list_size=3, batch_size=2, seed=0, frozen=False)
    assert batches.per_epoch == 2
    first, again = batches[0], batches[0]
    assert torch.equal(first["pixels"], again["pixels"]) and torch.equal(first["lists"], again["lists"])
    assert first["slots"].shape == (2, 3) and first["slots"].all()
    assert first["pixels"].shape == (6, 3, 12, 12) and first["rows"].tolist() == [0, 0, 0, 1, 1, 1]
    frozen = ListBatches(lists, images, list_size=3, batch_size=2, seed=0, frozen=True)[0]
    flat_ctr = np.concatenate(lists.ctr)
    np.testing.assert_allclose(flat_ctr[frozen["index"].numpy()], first["ctr"][first["slots"]].numpy())
    assert "pixels" not in frozen


# ---------------------------------------------------------------------------------------------- scoring
@pytest.mark.parametrize("kind", ["vam", "cg4ctr"])
def test_scores_are_symmetric_and_survive_save_and_load(kind, tmp_path):
    torch.manual_seed(0)
    settings = _settings(kind)
    ranker = build_ranker(settings)
    with torch.no_grad():  # move BatchNorm statistics off their defaults so the round trip is checked
        ranker.train()(torch.randn(8, 3, 12, 12), _words(kind, 8))
    images = _images(tmp_path, 4)
    titles = ["red mug", "blue lamp"]
    p = score_ranker_pairs(ranker, images[:2], images[2:], titles, settings=settings)
    swapped = score_ranker_pairs(ranker, images[2:], images[:2], titles, settings=settings)
    np.testing.assert_allclose(p, 1 - swapped, atol=1e-6)
    save_ranker(ranker, settings, tmp_path / "model")
    loaded, saved = load_ranker(tmp_path / "model")
    assert {k: v for k, v in saved.items() if k != "backbone_architecture"} == settings
    assert saved["backbone_architecture"]["hidden_sizes"] == [4, 8]
    np.testing.assert_allclose(score_ranker_pairs(loaded, images[:2], images[2:], titles), p, atol=1e-6)
    with pytest.raises(InputError, match="not a saved baseline"):
        load_ranker(tmp_path)


def test_lr_schedule_warms_up_then_follows_the_cosine():
    assert lr_factor(0, 100, 10, "cosine") == pytest.approx(0.1)
    assert lr_factor(10, 100, 10, "cosine") == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, "cosine") == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_factor(99, 100, 0, "linear") == pytest.approx(0.01)
    assert lr_factor(50, 100, 0, "constant") == 1.0


# ---------------------------------------------------------------------------------------------- training
def _inputs(tmp_path: Path) -> tuple[Path, Path]:
    pairs = _pairs(tmp_path, products=4)
    pairs.write_parquet(tmp_path / "pairs.parquet")
    pl.DataFrame(
        {
            "product_id": ["P0", "P1", "P2", "P3"],
            "title": ["red mug", "lamp", "shoe", "desk"],
            "category": ["home"] * 4,
            "image": pairs["left_image"][:4].to_list(),
        }
    ).write_parquet(tmp_path / "catalog.parquet")
    return tmp_path / "pairs.parquet", tmp_path / "catalog.parquet"


def _args(tmp_path: Path, name: str) -> argparse.Namespace:
    pairs, catalog = _inputs(tmp_path)
    return argparse.Namespace(pairs=pairs, catalog=catalog, out=tmp_path / name, metrics=tmp_path / f"{name}.json")


def test_training_lowers_the_loss_on_a_tiny_set(tmp_path):
    args = _args(tmp_path, "vam")
    cfg = compose(["reward=vam", *SMALL, "reward.backbone.tiny.image.crop=16", "reward.list_size=4",  # one fixed batch
                   "train.baseline.epochs=40", "train.baseline.per_device_batch_size=4",
                   "train.baseline.learning_rate=1e-2", "train.baseline.head_learning_rate=1e-2"])
    baselines.run(args, cfg)
    metrics = json.loads(args.metrics.read_text())
    curve = metrics["loss_per_epoch"]
    assert len(curve) == 40 and metrics["steps"] == 40
    assert np.mean(curve[-5:]) < 0.5 * np.mean(curve[:5])
    assert metrics["list_loss_per_epoch"][-1] < metrics["list_loss_per_epoch"][0]


def test_training_command_resumes_after_a_preemption(tmp_path, monkeypatch):
    args = _args(tmp_path, "model")
    cfg = compose(["reward=cg4ctr", *SMALL, *CG4CTR_SMALL, "train.baseline.per_device_batch_size=2",
                   "train.baseline.epochs=4", "train.save_steps=100"])
    original = baselines.list_loss
    calls = {"n": 0}

    def interrupted(*a, **k):  # SIGTERM during the 5th step: the loop saves checkpoint-5 and exits
        calls["n"] += 1
        if calls["n"] == 5:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(*a, **k)

    monkeypatch.setattr(baselines, "list_loss", interrupted)
    with pytest.raises(Preempted):
        baselines.run(args, cfg)
    assert last_checkpoint(args.out).name == "checkpoint-5" and not args.out.exists()
    monkeypatch.setattr(baselines, "list_loss", original)
    baselines.run(args, cfg)
    assert not checkpoint_dir(args.out).exists()
    ranker, settings = load_ranker(args.out)
    assert settings["kind"] == "cg4ctr" and settings["backbone"]["image"]["crop"] == 12
    assert len(json.loads(args.metrics.read_text())["loss_per_epoch"]) == 4


def test_a_frozen_pretrained_backbone_is_encoded_once_and_left_unchanged(tmp_path):
    torch.manual_seed(5)
    ResNetModel(ResNetConfig(**RESNET)).save_pretrained(tmp_path / "resnet")
    args = _args(tmp_path, "model")
    cfg = compose(["reward=cg4ctr", "preset=paper", *[o.replace(".tiny.", ".paper.") for o in SMALL[3:]],
                   *CG4CTR_SMALL, f"reward.backbone.paper.path={tmp_path}/resnet", "train.baseline.epochs=2",
                   "train.baseline.per_device_batch_size=2", "train.dataloader_num_workers=0", "train.torch_threads=1"])
    baselines.run(args, cfg)
    ranker, settings = load_ranker(args.out)
    assert settings["backbone"]["trainable"] is False
    original = ResNetModel.from_pretrained(tmp_path / "resnet", local_files_only=True).state_dict()
    for name, tensor in ranker.backbone.state_dict().items():
        assert torch.equal(tensor, original[name]), name
