"""Judging candidate pairs: winner/loser, ties dropped and counted, symmetric use of the reward model."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch
from PIL import Image

from caig.config import compose
from caig.errors import ConfigError, InputError
from caig.generate.judge import judge, pair_candidates, preference_rows, score_candidate_pairs
from caig.generate.products import ProductInput
from caig.models import build_llava
from caig.reward import RewardModel, save_reward_model
from caig.reward.baselines import build_ranker, ranker_settings, save_ranker
from caig.reward.judging import PairJudge


pytestmark = pytest.mark.usefixtures("one_thread")


def _ads(n: int) -> pl.DataFrame:
    rows = []
    for i in range(n):
        for c in (0, 1):
            rows.append({
                "product_id": f"P{i}", "candidate": c, "instruction_index": 2, "instruction": "Describe it.",
                "description": f"description {i}-{c}", "seed": 100 * i + c, "image": f"ads/P{i}_{c}.png",
            })
    return pl.DataFrame(rows)


def _scored(p_left) -> pl.DataFrame:
    pairs = pair_candidates(_ads(len(p_left)))
    return pairs.with_columns(pl.Series("p_left", p_left, dtype=pl.Float64), pl.lit("q").alias("rm_question"))


def test_winner_loser_and_ties():
    out, counts = judge(_scored([0.9, 0.2, 0.51, 0.495]), margin=0.02)
    assert (counts["pairs"], counts["kept"], counts["ties_dropped"], counts["left_won"]) == (4, 2, 2, 2)
    assert out["product_id"].to_list() == ["P0", "P1"]  # |p - 0.5| < 0.02: P2 and P3 are ties
    first, second = out.row(0, named=True), out.row(1, named=True)
    assert (first["chosen"], first["rejected"], first["chosen_candidate"]) == ("description 0-0", "description 0-1", 0)
    assert (second["chosen"], second["rejected"]) == ("description 1-1", "description 1-0")
    assert second["chosen_candidate"] == 1
    assert second["chosen_seed"] == 101 and second["rejected_seed"] == 100
    assert first["p_chosen"] == pytest.approx(0.9) and second["p_chosen"] == pytest.approx(0.8)
    exact = preference_rows(_scored([0.5, 0.5, 0.7, 0.3]), margin=0.0)
    assert exact["product_id"].to_list() == ["P2", "P3"]  # an exact tie has no winner even without a margin
    rounded = preference_rows(_scored([0.5 + 6e-8, 0.5 - 3e-8, 0.7, 0.3]), margin=0.0)
    assert rounded["product_id"].to_list() == ["P2", "P3"]  # nor does a tie up to float rounding
    with pytest.raises(ConfigError):
        preference_rows(_scored([0.9]), margin=0.5)


@pytest.mark.parametrize("preset", ["tiny", "paper"])
def test_the_default_margin_drops_only_numerical_ties(preset):
    margin = float(compose([f"preset={preset}"]).preference.judge.margin)
    assert margin == 0.0  # Algorithm 1 drops no pair the RM separates, however narrowly
    out, counts = judge(_scored([0.5 + 2e-6, 0.5 - 1e-3, 0.5 + 5e-7, 0.5]), margin)
    assert out["product_id"].to_list() == ["P0", "P1"] and counts["ties_dropped"] == 2


def test_pairs_need_both_candidates():
    with pytest.raises(InputError, match="candidates"):
        pair_candidates(_ads(3).filter(~((pl.col("product_id") == "P1") & (pl.col("candidate") == 1))))


@pytest.fixture(scope="module")
def tiny_rm():
    backbone, processor = build_llava(compose([]).model, ["a studio backdrop", "gift box"])
    torch.manual_seed(0)
    return RewardModel(backbone), processor


def _write_ads(tmp_path, n: int) -> tuple[pl.DataFrame, dict[str, ProductInput]]:
    ads = _ads(n)
    (tmp_path / "ads").mkdir()
    rng = np.random.default_rng(0)
    for name in ads["image"]:
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(tmp_path / name)
    cutout = Image.new("RGBA", (32, 32), (200, 10, 10, 255))
    products = {f"P{i}": ProductInput(f"P{i}", cutout, f"gift box {i}", {"price": 3.5}) for i in range(n)}
    return ads, products


def _pair_judge(model, processor, folder) -> PairJudge:
    save_reward_model(model, processor, folder)
    return PairJudge(folder, dtype="float32", device=torch.device("cpu"), pair_size=32, batch_size=8)


def _judge(model, processor, ads, tmp_path, products, margin=0.0):
    reward_model = _pair_judge(model, processor, tmp_path / "rm")
    return _judge_with(reward_model, ads, tmp_path, products, margin)


def _judge_with(reward_model, ads, tmp_path, products, margin=0.0):
    scored = score_candidate_pairs(reward_model, ads, tmp_path, products, seed=0, stream=1, caption=True, info=True)
    return judge(scored, margin)


def test_judge_is_symmetric_in_the_candidates(tiny_rm, tmp_path):
    model, processor = tiny_rm
    ads, products = _write_ads(tmp_path, 4)
    forward, counts = _judge(model, processor, ads, tmp_path, products)
    swapped_ads = ads.with_columns((1 - pl.col("candidate")).alias("candidate"))
    swapped, _ = _judge(model, processor, swapped_ads, tmp_path, products)
    assert counts["pairs"] == 4
    np.testing.assert_allclose(swapped["p_left"].to_numpy(), 1 - forward["p_left"].to_numpy(), atol=1e-6)
    assert swapped["chosen"].to_list() == forward["chosen"].to_list()
    assert all(str(tmp_path.resolve()) in path for path in forward["chosen_image"])


def test_a_pure_position_bias_decides_nothing(tiny_rm, tmp_path):
    model, processor = tiny_rm
    biased = RewardModel(model.backbone)
    with torch.no_grad():
        biased.cls_head.weight.zero_()
        biased.cls_head.bias.copy_(torch.tensor([4.0, -4.0]))  # always says "left"
    ads, products = _write_ads(tmp_path, 3)
    preferences, counts = _judge(biased, processor, ads, tmp_path, products, margin=0.01)
    assert preferences.height == 0 and counts["ties_dropped"] == 3 and counts["kept"] == 0


@pytest.mark.parametrize("baseline", ["vam", "cg4ctr"])
def test_a_baseline_ranker_judges_through_the_same_interface(baseline, tmp_path):
    torch.manual_seed(0)
    settings = ranker_settings(compose([f"reward={baseline}"]))
    save_ranker(build_ranker(settings), settings, tmp_path / "rm")
    reward_model = PairJudge(tmp_path / "rm", dtype="float32", device=torch.device("cpu"), pair_size=32, batch_size=8)
    assert reward_model.kind == baseline
    ads, products = _write_ads(tmp_path, 4)
    forward, counts = _judge_with(reward_model, ads, tmp_path, products)
    swapped, _ = _judge_with(reward_model, ads.with_columns((1 - pl.col("candidate")).alias("candidate")), tmp_path,
                             products)
    assert counts["pairs"] == 4
    np.testing.assert_allclose(swapped["p_left"].to_numpy(), 1 - forward["p_left"].to_numpy(), atol=1e-6)


def test_a_folder_that_is_no_model_is_named(tmp_path):
    with pytest.raises(InputError, match="not a reward model or a baseline ranker"):
        PairJudge(tmp_path, dtype="float32", device=torch.device("cpu"), pair_size=32, batch_size=8)
