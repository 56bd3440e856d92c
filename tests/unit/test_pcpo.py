"""PCPO: the loss against hand-computed values, the mismatched inputs, and every hyper-parameter reaching the
trainer's loss."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from caig.config import compose
from caig.generate.products import ProductInput
from caig.models import build_llava
from caig.preference.data import MismatchSettings, PCPOCollator, build_preference_dataset, product_text_pool
from caig.preference.loss import dpo_loss, pcpo_loss
from caig.preference.mismatch import mask_patches, pick_other_product, plan_mismatches


# ---------------------------------------------------------------------------------------------- loss
def test_pcpo_loss_equals_hand_computed_value():
    policy_true = torch.tensor([-10.0, -4.0])
    policy_mismatch = torch.tensor([-12.0, -3.0])
    ref_true = torch.tensor([-11.0, -5.0])
    ref_mismatch = torch.tensor([-11.5, -3.5])
    # row 0: (-10 - -11) - (-12 - -11.5) = 1 - (-0.5) = 1.5; beta 0.5 -> -log sigma(0.75) = log(1 + e^-0.75)
    # row 1: (-4 - -5) - (-3 - -3.5) = 1 - 0.5 = 0.5;       beta 0.5 -> -log sigma(0.25) = log(1 + e^-0.25)
    expected = torch.tensor([0.386871006, 0.575939420])
    loss = pcpo_loss(policy_true, policy_mismatch, ref_true, ref_mismatch, beta=0.5)
    torch.testing.assert_close(loss, expected, rtol=0, atol=1e-7)
    assert math.isclose(float(loss[0]), math.log1p(math.exp(-0.75)), rel_tol=1e-6)


def test_dpo_and_pcpo_share_the_logistic_form_and_reject_bad_beta():
    a, b, c, d = (torch.tensor([v]) for v in (-3.0, -5.0, -4.0, -4.0))
    torch.testing.assert_close(dpo_loss(a, b, c, d, 1.0), pcpo_loss(a, b, c, d, 1.0))
    assert float(pcpo_loss(c, c, c, c, 2.0)) == pytest.approx(math.log(2))  # no margin: log 2
    with pytest.raises(ValueError, match="beta"):
        pcpo_loss(a, b, c, d, 0.0)


# ---------------------------------------------------------------------------------------------- mismatches
def _noise_image(side: int, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 120, (side, side, 3), dtype=np.uint8)  # never the fill 128
    return Image.fromarray(pixels, "RGB")


def test_visual_mismatch_masks_75_percent_of_the_patches():
    image = _noise_image(64)
    masked, covered = mask_patches(image, 0.75, 8, np.random.default_rng(0))
    assert covered.shape == (8, 8) and covered.sum() == 48
    filled = (np.asarray(masked) == 128).all(axis=-1)
    assert filled.mean() == 0.75  # 48 of 64 patches of 8x8 pixels each
    for r in range(8):
        for c in range(8):
            block = filled[r * 8 : (r + 1) * 8, c * 8 : (c + 1) * 8]
            assert block.all() if covered[r, c] else not block.any()
    untouched = ~filled
    assert (np.asarray(masked)[untouched] == np.asarray(image)[untouched]).all()


@settings(max_examples=40, deadline=None)
@given(side=st.integers(8, 80), grid=st.integers(1, 8), seed=st.integers(0, 2**32 - 1))
def test_mask_covers_round_ratio_of_patches(side, grid, seed):
    _, covered = mask_patches(_noise_image(side, 1), 0.75, min(grid, side), np.random.default_rng(seed))
    assert covered.sum() == round(0.75 * min(grid, side) ** 2)


@settings(max_examples=60, deadline=None)
@given(pool=st.lists(st.sampled_from(list("abcde")), min_size=2, max_size=12), seed=st.integers(0, 10**6))
def test_textual_mismatch_never_picks_the_same_product(pool, seed):
    own = pool[0]
    if all(product_id == own for product_id in pool):
        with pytest.raises(ValueError, match="second product"):
            pick_other_product(own, pool, np.random.default_rng(seed))
        return
    rng = np.random.default_rng(seed)
    picks = {pick_other_product(own, pool, rng) for _ in range(20)}
    assert own not in picks and picks <= set(pool)


def test_mismatch_plan_follows_weights_and_mode():
    rng = np.random.default_rng(0)
    assert {row.kind for row in plan_mismatches(50, {"visual": 1, "textual": 0}, "one", rng)} == {"visual"}
    assert {row.kind for row in plan_mismatches(50, {"visual": 0, "textual": 2}, "one", rng)} == {"textual"}
    drawn = [row.kind for row in plan_mismatches(4000, {"visual": 1, "textual": 3}, "one", rng)]
    assert drawn.count("textual") / len(drawn) == pytest.approx(0.75, abs=0.03)
    both = plan_mismatches(3, {"visual": 1, "textual": 1}, "all", rng)
    assert sorted((row.sample, row.kind) for row in both) == [
        (i, kind) for i in range(3) for kind in ("textual", "visual")
    ]
    with pytest.raises(ValueError):
        plan_mismatches(3, {"visual": 0, "textual": 0}, "one", rng)
    with pytest.raises(ValueError):
        plan_mismatches(3, {"audio": 1}, "one", rng)


# ---------------------------------------------------------------------------------------------- trainer
pytestmark = pytest.mark.usefixtures("one_thread")


TITLES = ("Red Lipstick 3g", "Oak Drawer Cabinet", "Yoga Mat 6mm", "Smart Speaker 20W")
DESCRIPTIONS = (
    "a modern office desk with a potted plant, navy blue tones, soft diffused light",
    "a sandy beach with colorful balloons, vivid red tones, glowing neon lights",
    "a rustic wooden tabletop with fresh fruit, beige tones, warm morning light",
    "a fitness gym with smooth pebbles, teal tones, bright daylight",
)


def _product(i: int) -> ProductInput:
    image = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    image.paste((40 * i + 30, 200 - 30 * i, 90, 255), (16, 12, 48, 56))
    return ProductInput(f"P{i}", image, TITLES[i], {"category": ["beauty", "home", "sports", "digital"][i]})


@pytest.fixture(scope="module")
def tiny_setup():
    cfg = compose(["preference.pcpo.mismatch.mask_grid=8"])
    corpus = [*TITLES, *DESCRIPTIONS]
    policy, processor = build_llava(cfg.model, corpus)
    reference, _ = build_llava(compose(["model.seed=1"]).model, corpus)  # differs from the policy: margins != 0
    products = {p.product_id: p for p in (_product(i) for i in range(4))}
    preferences = pl.DataFrame(
        {
            "product_id": list(products),
            "instruction": ["Describe a background for this product."] * 4,
            "chosen": list(DESCRIPTIONS),
            "rejected": [DESCRIPTIONS[(i + 1) % 4] for i in range(4)],
        }
    )
    return policy, reference, processor, products, preferences


@pytest.fixture(scope="module")
def trainer(tiny_setup, tmp_path_factory):
    """A trainer built from a config whose every preference hyper-parameter differs from its default."""
    from caig.preference.train import build_trainer

    policy, reference, processor, products, preferences = tiny_setup
    cfg = compose(
        [
            "preference.dpo.beta=0.2", "preference.pcpo.beta=0.3", "preference.pcpo.weight=1.5",
            "preference.pcpo.mismatch.weights.visual=1", "preference.pcpo.mismatch.weights.textual=0",
            "preference.pcpo.mismatch.mode=one", "preference.pcpo.mismatch.mask_ratio=0.6",
            "preference.pcpo.mismatch.mask_grid=8", "preference.pcpo.mismatch.mask_fill=[10,20,30]",
            "preference.lora.r=4", "preference.lora.alpha=12", "preference.train.learning_rate=3e-4",
            "preference.train.per_device_batch_size=4",
        ]
    )
    built = build_trainer(cfg, policy, reference, processor, preferences, products, tmp_path_factory.mktemp("out"))
    built.model.eval()  # no dropout; the mode only names the metrics bucket
    return built


def _loss(trainer) -> tuple[float, float]:
    """(total loss, DPO term) of the first four pairs; the collator's draws restart from its seed each time."""
    trainer.data_collator.__post_init__()
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    with torch.no_grad():
        total = float(trainer.compute_loss(trainer.model, batch))
    return total, trainer._metrics["eval"]["loss/dpo"][-1]


def test_config_sets_every_hyper_parameter(trainer):
    assert (trainer.beta, trainer.pcpo_beta, trainer.pcpo_weight) == (0.2, 0.3, 1.5)
    mismatch = trainer.data_collator.mismatch
    assert dict(mismatch.weights) == {"visual": 1.0, "textual": 0.0} and mismatch.mode == "one"
    assert (mismatch.mask_ratio, mismatch.mask_grid, mismatch.mask_fill) == (0.6, 8, (10, 20, 30))
    lora = trainer.model.peft_config["default"]
    assert (lora.r, lora.lora_alpha) == (4, 12) and "lm_head" not in str(lora.target_modules)
    assert trainer.args.learning_rate == 3e-4 and trainer.args.per_device_train_batch_size == 4


def test_presets_take_the_authors_values_where_the_paper_is_silent():
    from caig.preference.train import stage_settings

    paper, tiny = compose(["preset=paper"]), compose(["preset=tiny"])
    for cfg in (paper, tiny):
        assert (cfg.preference.dpo.beta, cfg.preference.pcpo.beta) == (0.5, 0.5)
    train = stage_settings(paper)
    assert (train.per_device_batch_size, train.gradient_accumulation_steps, train.warmup_ratio) == (1, 1, 0.0)
    assert train.learning_rate == 2e-5 and paper.preference.epochs == 5 and paper.preference.lora.r > 0
    assert (stage_settings(tiny).gradient_accumulation_steps, stage_settings(tiny).warmup_ratio) == (1, 0.0)


def test_every_hyper_parameter_reaches_the_loss(trainer):
    base_total, base_dpo = _loss(trainer)
    pcpo_term = (base_total - base_dpo) / trainer.pcpo_weight
    assert pcpo_term != pytest.approx(math.log(2), abs=1e-6)  # the reference differs: a real margin
    mismatch = trainer.data_collator.mismatch

    def changed(attribute_owner, name, value):
        old = getattr(attribute_owner, name)
        setattr(attribute_owner, name, value)
        try:
            return _loss(trainer)
        finally:
            setattr(attribute_owner, name, old)

    total, dpo = changed(trainer, "beta", 0.7)  # DPO beta: the DPO term only
    assert dpo != pytest.approx(base_dpo, abs=1e-6)
    assert total - dpo == pytest.approx(base_total - base_dpo, abs=1e-6)
    total, dpo = changed(trainer, "pcpo_beta", 0.9)  # PCPO beta: the PCPO term only
    assert dpo == pytest.approx(base_dpo, abs=1e-7)
    assert total - dpo != pytest.approx(base_total - base_dpo, abs=1e-6)
    total, dpo = changed(trainer, "pcpo_weight", 4.0)  # the weight scales the PCPO term linearly
    assert total - dpo == pytest.approx(4.0 * pcpo_term, rel=1e-6)
    total, dpo = changed(trainer, "pcpo_weight", 0.0)  # weight 0: plain DPO
    assert total == dpo
    total, dpo = changed(mismatch, "mask_ratio", 0.0)  # nothing hidden: no margin, PCPO = log 2
    assert total - dpo == pytest.approx(trainer.pcpo_weight * math.log(2), rel=1e-6)
    for name, value in (("mask_ratio", 0.9), ("mask_grid", 2), ("mask_fill", (250, 250, 250))):
        total, dpo = changed(mismatch, name, value)
        assert total - dpo != pytest.approx(base_total - base_dpo, abs=1e-6), name
    total, dpo = changed(mismatch, "weights", {"visual": 0.0, "textual": 1.0})
    assert total - dpo != pytest.approx(base_total - base_dpo, abs=1e-6)
    both = {"visual": 1.0, "textual": 1.0}
    one = changed(mismatch, "weights", both)
    mismatch.weights, old = both, mismatch.weights
    try:
        all_kinds = changed(mismatch, "mode", "all")
    finally:
        mismatch.weights = old
    assert all_kinds != pytest.approx(one, abs=1e-6)


def test_collator_builds_same_answer_under_true_and_mismatched_inputs(tiny_setup):
    _, _, processor, products, preferences = tiny_setup
    dataset = build_preference_dataset(preferences, products, processor)
    collator = PCPOCollator(
        processor, product_text_pool(products), MismatchSettings({"visual": 0, "textual": 1}), seed=3
    )
    batch = collator([dataset[i] for i in range(4)])
    assert batch["input_ids"].shape[0] == 8  # DPO: [prompt+chosen; prompt+rejected]
    ids, completion = batch["pcpo_input_ids"], batch["pcpo_completion_mask"].bool()
    assert ids.shape[0] == 8 and batch["pcpo_kind"].tolist() == [1] * 4
    decode = processor.tokenizer.decode
    for row in range(4):
        true_answer, other_answer = ids[row][completion[row]], ids[row + 4][completion[row + 4]]
        assert torch.equal(true_answer, other_answer)  # the same y+ ...
        true_text = decode(ids[row][~completion[row]], skip_special_tokens=True)
        other_text = decode(ids[row + 4][~completion[row + 4]], skip_special_tokens=True)
        assert TITLES[row] in true_text and TITLES[row] not in other_text  # ... under another product's text
        assert any(title in other_text for title in TITLES)
