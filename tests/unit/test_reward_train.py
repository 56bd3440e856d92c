"""Reward-model training and evaluation: the variant configs (rows a-f) and the paper's defaults, pair
examples and prompts, paired batches, the head learning rate and initialisation, a toy batch whose loss
decreases, the one-order (Eq. 13) and both-orders pair accuracies, the product-level bootstrap, and the Bayes
ceiling from the oracle's truth."""

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
from caig.models import build_llava, save_pretrained_model
from caig.models.description import DescriptionHead, save_description_head
from caig.pretrain.products import Product
from caig.reward import RewardModel
from caig.reward.eval import argmax_correct, bootstrap_interval, pair_correct, pair_metrics
from caig.reward.train import (
    PairCollator,
    catalog_categories,
    build_model,
    head_parameter_groups,
    pair_examples,
    pair_prompts,
    read_pairs,
    variant_epochs,
    variant_of,
)
from caig.training import stage_settings

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


def test_the_paper_preset_trains_the_papers_recipe():
    paper = compose(["preset=paper", "reward=f_full"])
    assert not paper.reward.both_orders and not paper.reward.zero_init_heads
    loss = paper.reward.loss
    assert (loss.cls_weight, loss.point_weight, loss.ctr_scale) == (1.0, 0.5, 1.0)
    rm, pretrain = stage_settings(paper, "reward"), stage_settings(paper, "pretrain")
    assert rm.head_learning_rate is None
    for key in ("learning_rate", "epochs", "lr_scheduler", "warmup_ratio"):
        assert getattr(rm, key) == getattr(pretrain, key), key
    assert (rm.learning_rate, rm.epochs, rm.lr_scheduler) == (2e-6, 10, "cosine")
    moved = compose(["preset=paper", "train.pretrain.learning_rate=1e-5"])
    assert stage_settings(moved, "reward").learning_rate == 1e-5  # one rate: they cannot drift apart


def test_the_tiny_preset_trains_the_side_desc_readout_in_one_order_with_normal_init_heads():
    tiny = compose(["reward=f_full"]).reward  # the tiny preset's measured deviation: config/preset/tiny.yaml
    assert tiny.readout == "side_desc" and not tiny.both_orders and not tiny.zero_init_heads
    assert (tiny.loss.cls_weight, tiny.loss.point_weight, tiny.loss.ctr_scale) == (1.0, 0.5, 1.0)
    assert stage_settings(compose([]), "reward").head_learning_rate == 2e-3  # heads at twice the rate (measured)


@pytest.mark.parametrize("name", ["a_base", "b_pretrained"])
def test_the_generative_rows_train_one_epoch_on_the_tiny_preset_only(name):
    tiny, paper = compose([f"reward={name}"]), compose(["preset=paper", f"reward={name}"])
    assert stage_settings(variant_epochs(tiny), "reward").epochs == 1
    assert stage_settings(variant_epochs(paper), "reward").epochs == stage_settings(paper, "reward").epochs == 10
    full = compose(["reward=f_full"])
    assert stage_settings(variant_epochs(full), "reward").epochs == stage_settings(full, "reward").epochs
    with pytest.raises(ConfigError, match="reward.epochs.tiny=0"):
        variant_epochs(compose([f"reward={name}", "reward.epochs.tiny=0"]))
    with pytest.raises(ConfigError, match="reward.epochs=3"):
        variant_epochs(compose([f"reward={name}", "reward.epochs=3"]))


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


def test_each_pair_trains_once_in_its_stored_order_unless_both_orders():
    once = pair_examples(_pairs(), ["q1", "q2", "q3"], both_orders=False)
    assert [len(g) for g in once] == [1, 1, 1]
    assert [(g[0].left_image, g[0].right_image, g[0].label, g[0].ctr) for g in once] == [
        ("a.png", "b.png", 0, (0.05, 0.02)),
        ("b.png", "c.png", 1, (0.01, 0.04)),
        ("c.png", "d.png", 0, (0.03, 0.02)),
    ]
    groups = pair_examples(_pairs(), ["q1", "q2", "q3"], both_orders=True)
    first, swapped = groups[0]
    assert first == once[0][0]
    assert (swapped.left_image, swapped.label, swapped.ctr) == ("b.png", 1, (0.02, 0.05))
    assert swapped.prompt == first.prompt


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


def _toy_groups(tmp_path: Path, both_orders: bool) -> list:
    files = _image_files(tmp_path)
    pairs = _pairs().with_columns(
        pl.col("left_image").replace_strict(files), pl.col("right_image").replace_strict(files)
    )
    prompts = pair_prompts(pairs, PRODUCTS, caption=True, info=True, seed=0)
    return pair_examples(pairs, prompts, both_orders=both_orders)


def test_both_orders_of_a_pair_sit_together_in_a_batch(tiny, tmp_path):
    collate = PairCollator(tiny[1], pair_size=TINY["pair_image_size"], generative=False)
    batch = collate(_toy_groups(tmp_path, both_orders=True))
    assert batch["labels"].tolist() == [0, 1, 1, 0, 0, 1] and batch["ctr"].shape == (6, 2)
    torch.testing.assert_close(batch["ctr"][:2], torch.tensor([[0.05, 0.02], [0.02, 0.05]]))


def test_a_toy_batch_trains_down(tiny, tmp_path):
    model, processor = tiny
    batch = PairCollator(processor, pair_size=TINY["pair_image_size"], generative=False)(
        _toy_groups(tmp_path, both_orders=False)
    )
    assert batch["labels"].tolist() == [0, 1, 0] and batch["ctr"].shape == (3, 2)
    torch.manual_seed(0)
    reward = RewardModel(model, point_weight=0.5).train()
    groups = head_parameter_groups(reward, 1e-3, 1e-2)
    assert [g["lr"] for g in groups] == [1e-3, 1e-2] and len(groups[1]["params"]) == 4  # two heads
    optimizer = torch.optim.AdamW(groups)
    losses = []
    for _ in range(8):
        loss = reward(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_one_learning_rate_unless_the_heads_get_their_own(tiny):
    reward = RewardModel(tiny[0])
    groups = head_parameter_groups(reward, 1e-3, None)
    assert [g["lr"] for g in groups] == [1e-3, 1e-3]
    assert sum(len(g["params"]) for g in groups) == len(list(reward.parameters()))


def test_the_readout_setting_reaches_the_model_and_is_checked(tiny, tmp_path):
    base = save_pretrained_model(*tiny, tmp_path / "base")
    assert compose(["preset=paper", "reward=f_full"]).reward.readout == "last_token"
    hidden = tiny[0].config.text_config.hidden_size
    for readout, width in (("last_token", hidden), ("side", 3 * hidden)):
        cfg = compose(["reward=f_full", f"reward.readout={readout}"])
        model, _ = build_model(variant_of(cfg), base, cfg)
        assert model.readout == readout and model.cls_head.in_features == model.ctr_head.in_features == width
    cfg = compose(["reward=f_full", "reward.readout=mean"])
    with pytest.raises(ConfigError, match="reward.readout is 'mean'; expected one of last_token, side"):
        build_model(variant_of(cfg), base, cfg)


def test_side_desc_reads_the_description_head_and_one_hots_the_catalogs_categories(tiny, tmp_path):
    base = save_pretrained_model(*tiny, tmp_path / "base")
    head = DescriptionHead(16, tiny[0].config.text_config.hidden_size, 8, token_ids=[5, 6, 7])
    save_description_head(head, base)
    cfg = compose(["reward=f_full"])
    with pytest.raises(ConfigError, match="--description-head"):
        build_model(variant_of(cfg), base, cfg)
    categories = catalog_categories(
        {**PRODUCTS, "P3": Product("P3", "p3.png", {"title": "Pen", "category": "office"}, "A pen.")}
    )
    assert categories == ["office"]
    model, _ = build_model(variant_of(cfg), base, cfg, description_head=base, categories=categories)
    hidden = tiny[0].config.text_config.hidden_size
    assert model.readout == "side_desc" and model.cls_head.in_features == 3 * hidden + 3 * (1 + 1)
    assert model.describer.head.token_ids == [5, 6, 7] and len(model.category_tokens) == 1
    for key, value in model.describer.vision_tower.state_dict().items():  # the vision pre-training's tower
        assert torch.equal(value, tiny[0].model.vision_tower.state_dict()[key])


@pytest.mark.parametrize("zero_init", [False, True])
def test_heads_start_from_the_normal_init_unless_zero_init_heads(tiny, tmp_path, zero_init):
    base = save_pretrained_model(*tiny, tmp_path / "base")
    cfg = compose(["reward=f_full", "reward.readout=side", f"reward.zero_init_heads={str(zero_init).lower()}"])
    model, _ = build_model(variant_of(cfg), base, cfg)
    for head in (model.cls_head, model.ctr_head):
        assert bool(torch.all(head.weight == 0)) == zero_init


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


def test_argmax_correct_is_eq_13_with_ties_to_the_left():
    correct = argmax_correct(
        np.array([0.9, 0.2, 0.5, 0.5, 0.6]), np.array([True, True, True, False, False])
    )
    assert correct.tolist() == [1.0, 0.0, 1.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="NaN"):
        argmax_correct(np.array([np.nan]), np.array([True]))


def test_pair_metrics_score_the_stored_order_and_both_orders():
    # per pair p(left wins) from [L;R] (as stored) and from [R;L]
    by_order = np.array([[0.7, 0.4], [0.5, 0.45], [0.3, 0.8], [0.45, 0.55]])
    left_better = np.array([True, False, False, True])
    summary, per_pair = pair_metrics(
        by_order, left_better, ["P1", "P1", "P2", "P3"], resamples=200, confidence=0.9, seed=0
    )
    # stored order, argmax: left (right), left on a tie (wrong), right (right), right (wrong)
    assert per_pair["correct"].tolist() == [1.0, 0.0, 1.0, 0.0]
    assert summary["accuracy"] == 0.5 and summary["ties"] == 1 and summary["predicted_left_share"] == 0.5
    # both orders: 0.55 left (right), 0.475 right (right), 0.55 left (wrong), 0.5 a coin flip
    np.testing.assert_allclose(per_pair["p_left_symmetric"], [0.55, 0.475, 0.55, 0.5])
    assert per_pair["correct_symmetric"].tolist() == [1.0, 1.0, 0.0, 0.5]
    assert summary["symmetric_accuracy"] == 0.625 and summary["symmetric_ties"] == 1
    assert summary["ci_low"] <= 0.5 <= summary["ci_high"]
    assert summary["symmetric_ci_low"] <= 0.625 <= summary["symmetric_ci_high"]
    assert summary["mean_p_label"] == pytest.approx((0.7 + 0.5 + 0.7 + 0.45) / 4)
    assert (summary["pairs"], summary["groups"]) == (4, 3)
    with pytest.raises(ValueError, match="shape"):
        pair_metrics(by_order[:, 0], left_better, ["P"] * 4, resamples=10, confidence=0.9, seed=0)


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
    # the headline's argmax: the last pair's exact tie goes left, and the truth says right
    assert judged["accuracy"] == pytest.approx((1 + 1 + 1 + 0) / 4)
    with pytest.raises(InputError, match="'Z' has no true CTR"):
        ceiling_metrics(
            pairs.with_columns(pl.lit("Z").alias("left_creative_id")),
            truth,
            file="t",
            resamples=10,
            confidence=0.9,
            seed=0,
        )
