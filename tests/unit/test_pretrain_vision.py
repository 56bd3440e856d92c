"""caig vision-pretrain: backgrounds drawn uniformly per slot, only training products rendered, the tower
learns (loss falls), the output is a LLaVA-NeXT base model with a changed tower and the same text model,
the same seed gives the same model, and bad settings name their key; caig pretrain-report draws the curves."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
import yaml
from PIL import Image, ImageDraw
from transformers import LlavaNextForConditionalGeneration

from caig.config import compose
from caig.errors import ConfigError, InputError
from caig.generate.backends import BackgroundGenerator, WorldRenderer
from caig.generate.products import ProductInput
from caig.models import build_llava, load_llava, save_pretrained_model
from caig.models.description import load_description_head
from caig.pretrain.data import held_out_products
from caig.pretrain.vision import (
    AdSet,
    DescriptionHead,
    VisionPretrainSettings,
    draw_backgrounds,
    normalise,
    render_ads,
    run,
    split_products,
    tile_features,
    token_targets,
    train_tower,
    vision_pretrain,
    vision_pretrain_enabled,
)
from caig.report.pretrain import run as report_run
from caig.sim.vocabulary import SLOT_KEYS, SLOTS, Background

REPO = Path(__file__).resolve().parents[2]
TINY = yaml.safe_load((REPO / "config" / "model" / "tiny.yaml").read_text())
SMALL = {
    "ads": 256,
    "probe_ads": 64,
    "probe_fraction": 0.25,
    "steps": 8,
    "batch_size": 32,
    "learning_rate": 1e-3,
    "warmup_ratio": 0.1,
    "weight_decay": 0.01,
    "head_hidden": 32,
    "log_every": 4,
}
TEST_FRACTION, SPLIT_SEED = 0.3, 0


pytestmark = pytest.mark.usefixtures("one_thread")


def small_settings(**changes: float) -> VisionPretrainSettings:
    return VisionPretrainSettings.from_config({"vision_pretrain": {"enabled": True, **SMALL, **changes}})


def cut_out(index: int) -> Image.Image:
    image = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    colour = ((37 * index) % 256, (91 * index) % 256, (53 * index + 80) % 256, 255)
    ImageDraw.Draw(image).ellipse((6, 4 + index % 5, 26, 28), fill=colour)
    return image


def make_products(n: int = 24) -> list[ProductInput]:
    return [ProductInput(f"P{i:03d}", cut_out(i), f"product {i}") for i in range(n)]


def tiny_model() -> tuple[LlavaNextForConditionalGeneration, object]:
    texts = [bg.text() for bg in draw_backgrounds(300, np.random.default_rng(0))]
    return build_llava(TINY, texts)


class RecordingRenderer(BackgroundGenerator):
    """The world renderer, remembering which products it was asked to render."""

    def __init__(self) -> None:
        self.world = WorldRenderer(32)
        self.rendered: set[str] = set()

    def generate(
        self, products: Sequence[ProductInput], descriptions: Sequence[str], seeds: Sequence[int]
    ) -> list[Image.Image]:
        self.rendered.update(p.product_id for p in products)
        return self.world.generate(products, descriptions, seeds)


def pretrain(model, processor, products, renderer, seed: int = 0, **changes: float) -> dict:
    """The metrics of a small vision pre-training (the trained head is dropped)."""
    _, metrics = vision_pretrain(
        model,
        processor,
        products,
        renderer,
        small_settings(**changes),
        test_fraction=TEST_FRACTION,
        split_seed=SPLIT_SEED,
        seed=seed,
    )
    return metrics


def test_backgrounds_draw_every_slot_uniformly_over_its_phrases_and_none():
    codes = np.asarray([bg.codes() for bg in draw_backgrounds(20_000, np.random.default_rng(1))])
    for column, slot in enumerate(SLOTS):
        options = len(SLOT_KEYS[slot]) + 1
        counts = np.bincount(codes[:, column] + 1, minlength=options)
        assert len(counts) == options
        assert np.all(np.abs(counts / len(codes) - 1 / options) < 0.25 / options), slot


def test_token_targets_mark_the_tokens_of_each_description():
    _, processor = tiny_model()
    texts = [Background(scene="beach").text(), Background(prop="candles", color="gold").text()]
    ids, targets = token_targets(processor.tokenizer, texts)
    for row, text in enumerate(texts):
        tokens = set(processor.tokenizer(" " + text, add_special_tokens=False)["input_ids"])
        assert {ids[j] for j in torch.nonzero(targets[row]).flatten().tolist()} == tokens
    fixed, unseen = token_targets(processor.tokenizer, [Background(style="vintage").text()], ids[:3])
    assert fixed == ids[:3] and unseen.shape == (1, 3)


def test_probe_labels_read_the_rendered_slots_and_the_scene_distance():
    backgrounds = [
        Background(scene="beach", prop="candles"),
        Background(color="gold"),
        Background(scene="studio"),
    ]
    ads = AdSet(
        np.zeros((3, 4, 4, 3), np.uint8), np.asarray([b.codes() for b in backgrounds]), [""] * 3, ["P"] * 3
    )
    assert ads.labels("scene").tolist() == [
        1 + SLOT_KEYS["scene"].index("beach"),
        0,
        1 + SLOT_KEYS["scene"].index("studio"),
    ]
    assert ads.labels("prop").tolist() == [1 + SLOT_KEYS["prop"].index("candles"), 0, 0]
    assert ads.labels("scale").tolist() == [3, 0, 2]  # wide, not said, medium


def test_only_training_products_are_rendered_and_probe_products_are_not_trained_on():
    products = make_products()
    ids = [p.product_id for p in products]
    test = held_out_products(ids, test_fraction=TEST_FRACTION, seed=SPLIT_SEED)
    assert test, "the split should hold some test products"
    tower, probe = split_products(
        ids, test_fraction=TEST_FRACTION, split_seed=SPLIT_SEED, probe_fraction=0.25, seed=0
    )
    assert not set(tower) & set(probe) and set(tower) | set(probe) == set(ids) - test
    renderer = RecordingRenderer()
    model, processor = tiny_model()
    metrics = pretrain(model, processor, products, renderer)
    assert renderer.rendered and not renderer.rendered & test
    assert metrics["tower_products"] == len(tower) and metrics["probe_products"] == len(probe)
    ads = render_ads(
        renderer, [p for p in products if p.product_id in tower], 40, 32, np.random.default_rng(0), "t"
    )
    assert set(ads.product_ids) <= set(tower)


def test_training_lowers_the_loss_on_a_small_set():
    products = make_products(8)
    model, processor = tiny_model()
    ads = render_ads(WorldRenderer(32), products, 64, 32, np.random.default_rng(0), "t")
    pixels = normalise(ads.pixels, processor.image_processor.image_mean, processor.image_processor.image_std)
    _, targets = token_targets(processor.tokenizer, ads.texts)
    patches, width = tile_features(model, pixels[:1]).shape[1:]
    torch.manual_seed(0)
    head = DescriptionHead(patches, width, 32, list(range(targets.shape[1])))
    settings = small_settings(ads=64, steps=60, batch_size=64, learning_rate=3e-3, log_every=10)
    curve = train_tower(model, head, pixels, targets, settings, torch.Generator().manual_seed(0))
    assert len(curve) == 6 and curve[-1]["step"] == 60
    assert curve[-1]["loss"] < 0.5 * curve[0]["loss"]


def test_the_same_seed_gives_the_same_tower_and_another_seed_another():
    products = make_products()
    states, curves = [], []
    for seed in (3, 3, 4):
        model, processor = tiny_model()
        curves.append(
            [p["loss"] for p in pretrain(model, processor, products, WorldRenderer(32), seed)["loss_curve"]]
        )
        states.append({k: v.clone() for k, v in model.model.vision_tower.state_dict().items()})
    assert curves[0] == curves[1]
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert not all(torch.equal(states[0][k], states[2][k]) for k in states[0])


def test_command_writes_a_base_model_with_a_trained_tower_and_the_same_text_model(tmp_path):
    products = make_products()
    rows = []
    for product in products:
        path = tmp_path / "images" / f"{product.product_id}.png"
        path.parent.mkdir(exist_ok=True)
        product.image.save(path)
        rows.append(
            {
                "product_id": product.product_id,
                "title": product.caption,
                "category": "home",
                "image": str(path),
            }
        )
    pl.DataFrame(rows).write_parquet(tmp_path / "catalog.parquet")
    model, processor = tiny_model()
    save_pretrained_model(model, processor, tmp_path / "init")
    overrides = [
        "preset=tiny",
        "generate.size=32",
        *(f"model.vision_pretrain.{k}={v}" for k, v in SMALL.items()),
    ]
    args = argparse.Namespace(
        model=tmp_path / "init",
        catalog=tmp_path / "catalog.parquet",
        out=tmp_path / "base",
        metrics=tmp_path / "vision_metrics.json",
    )
    run(args, compose(overrides))

    trained, _ = load_llava(tmp_path / "base")
    assert isinstance(trained, LlavaNextForConditionalGeneration)
    before, after = model.state_dict(), trained.state_dict()
    assert before.keys() == after.keys()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any("vision_tower" in k for k in changed) and any("multi_modal_projector" in k for k in changed)
    assert all("vision_tower" in k or "multi_modal_projector" in k for k in changed)
    metrics = json.loads((tmp_path / "vision_metrics.json").read_text())
    assert [p["step"] for p in metrics["loss_curve"]] == [4, 8]
    assert set(metrics["probes"]) == {"majority", "before", "after"}
    assert set(metrics["probes"]["after"]) == {*SLOTS, "scale"}
    head = load_description_head(tmp_path / "base")  # kept beside the model for the reward model's side_desc
    assert head.token_ids and set(head.token_ids) <= set(range(len(processor.tokenizer)))
    assert metrics["description_tokens"] == len(head.token_ids)
    assert head.net[1].in_features == head.patches * head.width


def test_presets_and_bad_settings():
    assert vision_pretrain_enabled(compose(["preset=tiny"]).model)
    assert not vision_pretrain_enabled(compose(["preset=paper"]).model)
    assert not vision_pretrain_enabled({"source": "random"})
    with pytest.raises(ConfigError, match="model.vision_pretrain.enabled='yes'"):
        vision_pretrain_enabled({"vision_pretrain": {"enabled": "yes"}})
    with pytest.raises(ConfigError, match="enabled is not true"):
        VisionPretrainSettings.from_config({"vision_pretrain": {"enabled": False}})
    with pytest.raises(ConfigError, match="model.vision_pretrain.steps is missing"):
        VisionPretrainSettings.from_config(
            {"vision_pretrain": {"enabled": True, **{k: v for k, v in SMALL.items() if k != "steps"}}}
        )
    with pytest.raises(ConfigError, match="model.vision_pretrain.pixels is not a setting"):
        small_settings(pixels=3)
    with pytest.raises(ConfigError, match=r"model.vision_pretrain.steps=2.5 \(expected an integer\)"):
        small_settings(steps=2.5)
    with pytest.raises(
        ConfigError, match=r"model.vision_pretrain.probe_fraction=1.0 \(expected in \(0, 1\)\)"
    ):
        small_settings(probe_fraction=1.0)


def test_pretrain_report_draws_the_loss_curves_and_names_a_bad_metrics_file(tmp_path):
    curve = [{"step": 20 * (i + 1), "loss": 5.0 / (i + 1)} for i in range(5)]
    probes = {
        key: dict.fromkeys((*SLOTS, "scale"), value)
        for key, value in (("majority", 0.1), ("before", 0.4), ("after", 0.6))
    }
    (tmp_path / "stage1.json").write_text(json.dumps({"loss_curve": curve}))
    (tmp_path / "vision.json").write_text(json.dumps({"loss_curve": curve, "probes": probes}))
    (tmp_path / "bad.json").write_text(json.dumps({"final_loss": 1.0}))
    cfg = compose(["preset=tiny"])
    for vision, name in ((tmp_path / "vision.json", "both.png"), (None, "stage1.png")):
        out = tmp_path / name
        report_run(argparse.Namespace(stage1=tmp_path / "stage1.json", vision=vision, out=out), cfg)
        with Image.open(out) as image:
            assert image.format == "PNG" and image.width > (1000 if vision else 300)
    with pytest.raises(InputError, match="metrics lack 'loss_curve'"):
        report_run(argparse.Namespace(stage1=tmp_path / "bad.json", vision=None, out=tmp_path / "x.png"), cfg)
