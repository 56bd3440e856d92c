"""Reward-model training and evaluation: the variant configs (rows a-f), pair examples and prompts, paired
batches, the head learning rate, a toy batch whose loss decreases, pair accuracy with ties, the product-level
bootstrap, and the Bayes ceiling from the oracle's truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
import yaml
from PIL import Image

from caig.config import compose
from caig.errors import ConfigError, InputError
from caig.evaluate.pairs import ceiling_metrics, model_vs_truth
from caig.instruct import RM_QUESTIONS
from caig.models import build_llava
from caig.pretrain.products import Product
from caig.reward import RewardModel
from caig.reward.eval import bootstrap_interval, pair_correct
from caig.reward.train import (
    PairCollator,
    head_parameter_groups,
    pair_examples,
    pair_prompts,
    read_pairs,
    variant_of,
)

REPO = Path(__file__).resolve().parents[2]
TINY = yaml.safe_load((REPO / "config" / "model" / "tiny.yaml").read_text())

ROWS = {
    "a_base": ("generative", "base", False, False, 0.0),
    "b_pretrained": ("generative", "pretrained", False, False, 0.0),
    "c_cls_head": ("classifier", "pretrained", False, False, 0.0),
    "d_caption": ("classifier", "pretrained", True, False, 0.0),
    "e_product_info": ("classifier", "pretrained", True, True, 0.0),
    "f_full": ("classifier", "pretrained", True, True, 0.5),
}


@pytest.mark.parametrize("name", sorted(ROWS))
def test_each_ablation_row_is_a_named_config(name):
    variant = variant_of(compose([f"reward={name}"]))
    assert (variant.kind, variant.init, variant.caption, variant.info, variant.point_weight) == ROWS[name]
    assert variant.name == name and variant.cls_weight == 1.0


def test_a_config_without_a_variant_is_a_config_error():
    with pytest.raises(ConfigError, match="reward.name is missing"):
        variant_of(compose(["reward=common"]))


def _pairs() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "product_id": ["P1", "P1", "P2"],
            "left_image": ["a.png", "b.png", "c.png"],
            "right_image": ["b.png", "c.png", "d.png"],
            "left_ctr": [0.05, 0.01, 0.03],
            "right_ctr": [0.02, 0.04, 0.02],
            "label": ["left", "right", "left"],
        }
    )


PRODUCTS = {
    "P1": Product("P1", "p1.png", {"title": "Red Mug", "price": 9.5}, "A home product in red."),
    "P2": Product("P2", "p2.png", {"title": "Blue Lamp", "price": 30}, "A lamp."),
}


def test_prompts_are_seeded_and_show_what_the_variant_shows():
    pairs = _pairs()
    plain = pair_prompts(pairs, PRODUCTS, caption=False, info=False, seed=4)
    assert plain == pair_prompts(pairs, PRODUCTS, caption=False, info=False, seed=4)
    assert all(prompt in RM_QUESTIONS for prompt in plain)
    caption = pair_prompts(pairs, PRODUCTS, caption=True, info=False, seed=4)
    assert "A home product in red." in caption[0] and "Red Mug" not in caption[0]
    full = pair_prompts(pairs, PRODUCTS, caption=True, info=True, seed=4)
    assert "Red Mug" in full[0] and "9.5" in full[0] and "A lamp." in full[2]
    with pytest.raises(InputError, match="'P3' is not in the catalog") as err:
        pair_prompts(
            pairs.with_columns(pl.lit("P3").alias("product_id")), PRODUCTS, caption=False, info=False, seed=0
        )
    assert err.value.row == 1


def test_both_orders_flip_the_label_and_swap_the_ctrs():
    groups = pair_examples(_pairs(), ["q1", "q2", "q3"], both_orders=True)
    first, swapped = groups[0]
    assert (first.left_image, first.label, first.ctr) == ("a.png", 0, (0.05, 0.02))
    assert (swapped.left_image, swapped.label, swapped.ctr) == ("b.png", 1, (0.02, 0.05))
    assert swapped.prompt == first.prompt
    assert [len(g) for g in pair_examples(_pairs(), ["q"] * 3, both_orders=False)] == [1, 1, 1]


def test_bad_labels_and_missing_columns_name_the_file(tmp_path):
    path = tmp_path / "pairs.parquet"
    _pairs().with_columns(pl.Series("label", ["left", "up", "left"])).write_parquet(path)
    with pytest.raises(InputError, match="label 'up'") as err:
        read_pairs(path)
    assert err.value.row == 2
    _pairs().drop("right_ctr").write_parquet(path)
    with pytest.raises(InputError, match="right_ctr"):
        read_pairs(path)


@pytest.fixture(scope="module")
def tiny():
    return build_llava(TINY, ["which ad is better left or right red mug blue lamp"] * 5)


def _image_files(tmp_path: Path) -> dict[str, str]:
    rng = np.random.default_rng(0)
    paths = {}
    for name in ("a", "b", "c", "d"):
        path = tmp_path / f"{name}.png"
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(path)
        paths[f"{name}.png"] = str(path)
    return paths


def test_a_toy_batch_trains_down_and_keeps_both_orders_together(tiny, tmp_path):
    model, processor = tiny
    files = _image_files(tmp_path)
    pairs = _pairs().with_columns(
        pl.col("left_image").replace_strict(files), pl.col("right_image").replace_strict(files)
    )
    groups = pair_examples(
        pairs, pair_prompts(pairs, PRODUCTS, caption=True, info=True, seed=0), both_orders=True
    )
    batch = PairCollator(processor, pair_size=TINY["pair_image_size"], generative=False)(groups)
    assert batch["labels"].tolist() == [0, 1, 1, 0, 0, 1] and batch["ctr"].shape == (6, 2)
    torch.manual_seed(0)
    reward = RewardModel(model, point_weight=0.5).train()
    groups_ = head_parameter_groups(reward, 1e-3, 1e-2)
    assert [g["lr"] for g in groups_] == [1e-3, 1e-2] and len(groups_[1]["params"]) == 4  # two heads
    optimizer = torch.optim.AdamW(groups_)
    losses = []
    for _ in range(8):
        loss = reward(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_generative_batches_label_the_answer_words(tiny, tmp_path):
    _, processor = tiny
    files = _image_files(tmp_path)
    pairs = _pairs().with_columns(
        pl.col("left_image").replace_strict(files), pl.col("right_image").replace_strict(files)
    )
    groups = pair_examples(pairs, ["Which is better?"] * 3, both_orders=True)
    batch = PairCollator(processor, pair_size=16, generative=True)(groups[:1])
    answers = [
        processor.tokenizer.decode(row[labels != -100]).strip()
        for row, labels in zip(batch["input_ids"], batch["labels"])
    ]
    assert answers == ["left", "right"]


# ---- evaluation ----------------------------------------------------------------------------------------------


def test_pair_correct_counts_exact_ties_as_half():
    correct = pair_correct(np.array([0.9, 0.2, 0.5, 0.6]), np.array([True, True, False, False]))
    assert correct.tolist() == [1.0, 0.0, 0.5, 0.0]
    with pytest.raises(ValueError, match="NaN"):
        pair_correct(np.array([np.nan]), np.array([True]))


def test_product_bootstrap_is_seeded_and_wider_than_the_pair_bootstrap():
    rng = np.random.default_rng(0)
    # 40 products, 10 pairs each, all right or all wrong per product: pairs are far from independent
    per_product = rng.random(40) < 0.6
    correct = np.repeat(per_product, 10).astype(float)
    groups = np.repeat(np.arange(40), 10)
    low, high = bootstrap_interval(correct, groups, resamples=2000, seed=1)
    assert (low, high) == bootstrap_interval(correct, groups, resamples=2000, seed=1)
    assert low < correct.mean() < high
    pair_low, pair_high = bootstrap_interval(correct, None, resamples=2000, seed=1)
    assert high - low > 2 * (pair_high - pair_low)


def test_bayes_ceiling_and_models_judged_by_the_truth():
    pairs = pl.DataFrame(
        {
            "product_id": ["P1", "P1", "P2", "P2"],
            "left_creative_id": ["A", "B", "C", "D"],
            "right_creative_id": ["B", "C", "D", "C"],
            "label": ["left", "left", "right", "left"],
        }
    )
    truth = {"A": 0.05, "B": 0.03, "C": 0.04, "D": 0.02}
    ceiling = ceiling_metrics(pairs, truth, file="test.parquet", resamples=200, confidence=0.95, seed=0)
    # true order: left, right, left, right; the labels agree on the first pair only
    assert ceiling["bayes_ceiling"]["accuracy"] == pytest.approx(0.25)
    predictions = pairs.with_columns(pl.Series("p_left", [0.9, 0.1, 0.8, 0.5]))
    judged = model_vs_truth(predictions, truth, file="p.parquet", resamples=200, confidence=0.95, seed=0)
    assert judged["accuracy"] == pytest.approx((1 + 1 + 1 + 0.5) / 4)
    with pytest.raises(InputError, match="'Z' has no true CTR"):
        ceiling_metrics(
            pairs.with_columns(pl.lit("Z").alias("left_creative_id")),
            truth,
            file="t",
            resamples=10,
            confidence=0.9,
            seed=0,
        )
