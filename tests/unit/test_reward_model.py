"""Reward model core: pair images, last-token pooling under padding, the loss, per-order and symmetric scoring,
answers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from caig.errors import InputError
from caig.instruct import RM_QUESTIONS
from caig.models import build_llava
from caig.reward import (
    RewardModel,
    concat_pair,
    encode_rm_inputs,
    load_reward_model,
    parse_generative_answer,
    reward_prompt,
    save_reward_model,
    score_pairs,
    score_pairs_generative,
)
from caig.reward.model import image_sides, last_token_index, open_image, point_loss, side_difference
from caig.reward.scoring import score_pairs_by_order, score_pairs_generative_by_order

TINY = yaml.safe_load((Path(__file__).resolve().parents[2] / "config" / "model" / "tiny.yaml").read_text())
SIZE = TINY["pair_image_size"]
ATTRIBUTES = [
    {"title": "red shoe", "price": 59.9, "caption": "a red leather shoe"},
    {
        "title": "blue mug with a very long descriptive title for testing",
        "category": "Home",
        "caption": "mug",
    },
    {"title": "lamp", "tags": ["bedroom", "warm light", "wood"], "rating": 4.5, "caption": None},
]


@pytest.fixture(scope="module")
def backbone():
    return build_llava(TINY, ["red shoe blue mug lamp bedroom"] * 5)


@pytest.fixture(scope="module")
def reward_model(backbone) -> RewardModel:
    torch.manual_seed(0)
    model = RewardModel(backbone[0])
    with torch.no_grad():  # large head weights so probabilities vary and the position effect is visible
        model.cls_head.weight.normal_(std=2.0)
    return model.eval()


def _images(seed: int, n: int) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)) for _ in range(n)]


def _prompts() -> list[str]:
    return [reward_prompt(RM_QUESTIONS[i], a, caption=True, info=True) for i, a in enumerate(ATTRIBUTES)]


# ------------------------------------------------------------------------------------------- images
def test_concat_pair_places_left_and_right():
    pair = concat_pair(Image.new("RGB", (50, 50), (255, 0, 0)), Image.new("RGB", (10, 10), (0, 0, 255)), 16)
    assert pair.size == (32, 16) and pair.mode == "RGB"
    assert pair.getpixel((8, 8)) == (255, 0, 0)
    assert pair.getpixel((24, 8)) == (0, 0, 255)


def test_concat_pair_composites_transparency_on_white():
    rgba = Image.new("RGBA", (20, 20), (255, 0, 0, 0))
    rgba.paste((0, 255, 0, 255), (5, 5, 15, 15))
    palette = Image.new("P", (20, 20), 0)
    palette.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    palette.paste(1, (5, 5, 15, 15))
    palette.info["transparency"] = 0
    pair = concat_pair(rgba, palette, 20)
    assert pair.getpixel((1, 1)) == (255, 255, 255)
    assert pair.getpixel((10, 10)) == (0, 255, 0)
    assert pair.getpixel((21, 1)) == (255, 255, 255)
    assert pair.getpixel((30, 10)) == (200, 100, 50)


def test_concat_pair_other_modes_and_aspect():
    gray = Image.new("L", (40, 20), 90)
    wide16 = Image.new("I;16", (8, 8), 1000)
    la = Image.new("LA", (8, 8), (50, 0))
    pair = concat_pair(gray, la, 20)
    assert pair.getpixel((10, 10)) == (90, 90, 90)
    assert pair.getpixel((10, 1)) == (255, 255, 255)  # a wide image is padded top and bottom with white
    assert pair.getpixel((30, 10)) == (255, 255, 255)
    assert concat_pair(wide16, gray, 8).mode == "RGB"
    with pytest.raises(ValueError):
        concat_pair(gray, gray, 0)


def test_real_palette_and_rgba_cutouts(caig_tiny_fixture):
    images = caig_tiny_fixture / "tiny_dataset" / "images"
    palette, rgba = open_image(images / "6.png"), open_image(images / "1.png")
    assert palette.mode == "P" and rgba.mode == "RGBA"
    pair = concat_pair(palette, rgba, 64)
    assert pair.size == (128, 64)
    assert pair.getpixel((0, 0)) == (255, 255, 255) and pair.getpixel((127, 63)) == (255, 255, 255)


def test_unreadable_image_names_the_file(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(InputError, match="bad.png"):
        open_image(bad)


# ------------------------------------------------------------------------------------------- pooling
def test_last_token_index_left_right_and_no_padding():
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert last_token_index(mask).tolist() == [2, 4, 4]


@pytest.mark.parametrize("side", ["left", "right"])
def test_pooling_under_padding_equals_unpadded(reward_model, backbone, side):
    processor = backbone[1]
    pairs = [concat_pair(a, b, SIZE) for a, b in zip(_images(1, 3), _images(2, 3))]
    prompts = _prompts()
    with torch.no_grad():
        single = [
            reward_model.pooled_hidden(**encode_rm_inputs(processor, [pair], [prompt]))
            for pair, prompt in zip(pairs, prompts)
        ]
        batch = encode_rm_inputs(processor, pairs, prompts, padding_side=side)
        padded = reward_model.pooled_hidden(**batch)
    lengths = batch["attention_mask"].sum(1)
    assert len(set(lengths.tolist())) == 3  # rows really have different lengths
    torch.testing.assert_close(padded, torch.cat(single), atol=1e-5, rtol=1e-5)


def test_side_positions_are_the_high_res_halves_and_swap_with_the_tiles(backbone):
    model, processor = backbone
    lefts, rights = _images(21, 3), _images(22, 3)
    forward = encode_rm_inputs(processor, [concat_pair(a, b, SIZE) for a, b in zip(lefts, rights)], _prompts())
    swapped = encode_rm_inputs(processor, [concat_pair(b, a, SIZE) for a, b in zip(lefts, rights)], _prompts())
    sides = image_sides(model, forward["input_ids"], forward["image_sizes"])
    patches = model.config.vision_config.image_size // model.config.vision_config.patch_size
    # the 1x2 high-res grid: per side, half of 2 * patches^2 features; base features and newlines are neither
    assert (sides == 1).sum(1).tolist() == (sides == -1).sum(1).tolist() == [patches * patches] * 3
    assert torch.all(sides[forward["input_ids"] != model.config.image_token_id] == 0)
    with torch.no_grad():  # the image features as they enter the language model (its layer-0 input)
        embedded = [
            model.model(**batch, output_hidden_states=True, use_cache=False).hidden_states[0]
            for batch in (forward, swapped)
        ]
    difference = side_difference(embedded[0], sides)
    swapped_difference = side_difference(
        embedded[1], image_sides(model, swapped["input_ids"], swapped["image_sizes"])
    )
    assert difference.abs().min() > 0
    torch.testing.assert_close(swapped_difference, -difference, atol=1e-6, rtol=0)


def test_last_token_readout_is_the_last_real_tokens_final_state(backbone):
    torch.manual_seed(0)
    last_token, side = RewardModel(backbone[0]), RewardModel(backbone[0], readout="side")
    pairs = [concat_pair(a, b, SIZE) for a, b in zip(_images(23, 3), _images(24, 3))]
    batch = encode_rm_inputs(backbone[1], pairs, _prompts(), padding_side="left")
    hidden_size = backbone[0].config.text_config.hidden_size
    with torch.no_grad():
        states = backbone[0].model(**batch, use_cache=False).last_hidden_state
        expected = states[torch.arange(3), last_token_index(batch["attention_mask"])]
        pooled, pooled_side = last_token.pooled_hidden(**batch), side.pooled_hidden(**batch)
    torch.testing.assert_close(pooled, expected, atol=1e-5, rtol=1e-5)
    assert pooled_side.shape == (3, 3 * hidden_size) and side.cls_head.in_features == 3 * hidden_size
    torch.testing.assert_close(pooled_side[:, :hidden_size], pooled)
    difference = pooled_side[:, hidden_size : 2 * hidden_size]
    torch.testing.assert_close(pooled_side[:, 2 * hidden_size :], pooled * difference)


def test_side_readout_under_padding_equals_unpadded(backbone):
    model = RewardModel(backbone[0], readout="side").eval()
    pairs = [concat_pair(a, b, SIZE) for a, b in zip(_images(25, 3), _images(26, 3))]
    with torch.no_grad():
        single = [
            model.pooled_hidden(**encode_rm_inputs(backbone[1], [pair], [prompt]))
            for pair, prompt in zip(pairs, _prompts())
        ]
        padded = model.pooled_hidden(**encode_rm_inputs(backbone[1], pairs, _prompts(), padding_side="left"))
    torch.testing.assert_close(padded, torch.cat(single), atol=1e-5, rtol=1e-5)


def test_unknown_readout_is_rejected(backbone):
    with pytest.raises(ValueError, match="readout"):
        RewardModel(backbone[0], readout="mean")


# ------------------------------------------------------------------------------------------- loss
def test_point_loss_is_the_mean_squared_error_on_the_raw_ctrs():
    pred = torch.tensor([[0.03, 0.0], [0.0, 0.02]])
    ctr = torch.tensor([[0.02, 0.01], [0.01, 0.04]])
    # squared errors 1e-4, 1e-4, 1e-4, 4e-4: their mean over both outputs and both rows
    assert point_loss(pred, ctr).item() == pytest.approx(7e-4 / 4, rel=1e-5)
    # a rescaled target (an option): the head predicts ctr_scale * CTR
    assert point_loss(pred * 10, ctr, ctr_scale=10.0).item() == pytest.approx(7e-2 / 4, rel=1e-5)
    with pytest.raises(ValueError, match="shape"):
        point_loss(pred[:, :1], ctr)


def test_loss_equals_hand_computed_value(backbone):
    model = RewardModel(backbone[0], cls_weight=1.0, point_weight=0.5)
    assert model.ctr_scale == 1.0  # the paper's raw CTRs unless asked otherwise
    hidden = model.cls_head.in_features
    h = torch.zeros(2, hidden)
    h[0, 0], h[1, 1] = 1.0, 2.0
    with torch.no_grad():
        for head in (model.cls_head, model.ctr_head):
            head.weight.zero_()
            head.bias.zero_()
        model.cls_head.weight[0, 0] = 1.0  # row 0: logits (1, 0); row 1: logits (0, 0)
        model.ctr_head.weight[0, 0] = 0.3  # row 0: ctr_pred (0.3, 0); row 1: ctr_pred (0, 0.2)
        model.ctr_head.weight[1, 1] = 0.1
    model.pooled_hidden = lambda *args, **kwargs: h
    labels = torch.tensor([0, 1])
    ctr = torch.tensor([[0.02, 0.01], [0.01, 0.03]])
    inputs = {"input_ids": torch.zeros(2, 1, dtype=torch.long), "attention_mask": torch.ones(2, 1)}
    out = model(**inputs, labels=labels, ctr=ctr)
    ce = (-math.log(math.e / (math.e + 1)) + -math.log(0.5)) / 2
    point = ((0.3 - 0.02) ** 2 + (0 - 0.01) ** 2 + (0 - 0.01) ** 2 + (0.2 - 0.03) ** 2) / 4  # MSE, 4 outputs
    assert out.loss.item() == pytest.approx(1.0 * ce + 0.5 * point, rel=1e-6)
    torch.testing.assert_close(out.ctr, torch.tensor([[0.3, 0.0], [0.0, 0.2]]))
    model.point_weight = 0.0
    assert model(**inputs, labels=labels).loss.item() == pytest.approx(ce, rel=1e-6)
    model.point_weight, model.ctr_scale = 0.5, 10.0  # the head's output is read as 10 x CTR
    point_scaled = ((0.3 - 0.2) ** 2 + (0 - 0.1) ** 2 + (0 - 0.1) ** 2 + (0.2 - 0.3) ** 2) / 4
    scaled = model(**inputs, labels=labels, ctr=ctr)
    assert scaled.loss.item() == pytest.approx(ce + 0.5 * point_scaled, rel=1e-6)
    torch.testing.assert_close(scaled.ctr, torch.tensor([[0.03, 0.0], [0.0, 0.02]]))
    with pytest.raises(ValueError, match="observed CTRs"):
        model(**inputs, labels=labels)


def test_heads_start_from_the_normal_init(backbone):
    torch.manual_seed(0)
    model = RewardModel(backbone[0])
    std = backbone[0].config.text_config.initializer_range
    for head in (model.cls_head, model.ctr_head):
        assert head.weight.abs().sum() > 0 and torch.all(head.bias == 0)
        assert 0.5 * std < head.weight.std().item() < 2 * std


def test_loss_backpropagates_into_heads_and_backbone(backbone):
    model = RewardModel(build_llava(TINY)[0])
    pairs = [concat_pair(a, b, SIZE) for a, b in zip(_images(3, 3), _images(4, 3))]
    batch = encode_rm_inputs(backbone[1], pairs, _prompts())
    out = model(**batch, labels=torch.tensor([0, 1, 0]), ctr=torch.rand(3, 2) * 0.05)
    assert out.logits.shape == (3, 2) and out.ctr.shape == (3, 2)
    out.loss.backward()
    assert model.cls_head.weight.grad.abs().sum() > 0 and model.ctr_head.weight.grad.abs().sum() > 0
    assert model.backbone.model.language_model.layers[0].mlp.up_proj.weight.grad.abs().sum() > 0


# ------------------------------------------------------------------------------------------- scoring
def test_symmetric_scoring_is_invariant_to_swapping(reward_model, backbone):
    lefts, rights, prompts = _images(5, 3), _images(6, 3), _prompts()
    p = score_pairs(reward_model, backbone[1], lefts, rights, prompts, pair_size=SIZE, batch_size=2)
    q = score_pairs(reward_model, backbone[1], rights, lefts, prompts, pair_size=SIZE)
    np.testing.assert_allclose(p + q, 1.0, atol=1e-6)
    # the single-order probabilities are NOT symmetric: the combination is what removes position bias
    one_order = encode_rm_inputs(
        backbone[1],
        [concat_pair(a, b, SIZE) for a, b in zip(lefts + rights, rights + lefts)],
        prompts + prompts,
    )
    with torch.no_grad():
        raw = reward_model(**one_order).logits.softmax(-1)[:, 0].numpy()
    assert np.abs(raw[:3] + raw[3:] - 1).max() > 1e-3


def test_scores_by_order_keep_each_order_and_average_to_the_symmetric_score(reward_model, backbone):
    lefts, rights, prompts = _images(15, 3), _images(16, 3), _prompts()
    by_order = score_pairs_by_order(reward_model, backbone[1], lefts, rights, prompts, pair_size=SIZE)
    assert by_order.shape == (3, 2) and by_order.dtype == np.float64
    single = encode_rm_inputs(backbone[1], [concat_pair(a, b, SIZE) for a, b in zip(lefts, rights)], prompts)
    swapped = encode_rm_inputs(backbone[1], [concat_pair(b, a, SIZE) for a, b in zip(lefts, rights)], prompts)
    with torch.no_grad():
        p_given = reward_model(**single).logits.double().softmax(-1)[:, 0].numpy()
        p_swapped = reward_model(**swapped).logits.double().softmax(-1)[:, 1].numpy()
    np.testing.assert_allclose(by_order[:, 0], p_given, atol=1e-6)
    np.testing.assert_allclose(by_order[:, 1], p_swapped, atol=1e-6)
    np.testing.assert_allclose(
        score_pairs(reward_model, backbone[1], lefts, rights, prompts, pair_size=SIZE), by_order.mean(axis=1)
    )


def test_scoring_accepts_paths_and_checks_lengths(reward_model, backbone, tmp_path):
    lefts, rights = _images(7, 2), _images(8, 2)
    paths = []
    for i, image in enumerate(lefts):
        image.save(tmp_path / f"{i}.png")
        paths.append(tmp_path / f"{i}.png")
    prompts = _prompts()[:2]
    from_paths = score_pairs(reward_model, backbone[1], paths, rights, prompts, pair_size=SIZE)
    from_images = score_pairs(reward_model, backbone[1], lefts, rights, prompts, pair_size=SIZE)
    np.testing.assert_allclose(from_paths, from_images, atol=1e-6)
    with pytest.raises(ValueError, match="one right image"):
        score_pairs(reward_model, backbone[1], lefts, rights[:1], prompts, pair_size=SIZE)


@pytest.mark.parametrize("method", ["likelihood", "generate"])
def test_generative_scoring_is_symmetric(backbone, method):
    model, processor = backbone
    lefts, rights, prompts = _images(9, 2), _images(10, 2), _prompts()[:2]
    p = score_pairs_generative(model, processor, lefts, rights, prompts, pair_size=SIZE, method=method)
    q = score_pairs_generative(model, processor, rights, lefts, prompts, pair_size=SIZE, method=method)
    np.testing.assert_allclose(p + q, 1.0, atol=1e-6)
    assert ((p >= 0) & (p <= 1)).all()
    by_order = score_pairs_generative_by_order(
        model, processor, lefts, rights, prompts, pair_size=SIZE, method=method
    )
    assert by_order.shape == (2, 2)
    np.testing.assert_allclose(by_order.mean(axis=1), p, atol=1e-12)


def test_answer_labels_mark_exactly_the_answer_tokens(backbone):
    processor = backbone[1]
    pairs = [concat_pair(a, b, SIZE) for a, b in zip(_images(11, 2), _images(12, 2))]
    batch = encode_rm_inputs(processor, pairs, _prompts()[:2], answers=["left", "right"])
    for row, answer in enumerate(["left", "right"]):
        ids = batch["input_ids"][row][batch["labels"][row] != -100]
        assert processor.tokenizer.decode(ids).strip() == answer
    with pytest.raises(ValueError, match="right padding"):
        encode_rm_inputs(processor, pairs, _prompts()[:2], answers=["left", "right"], padding_side="left")


# ------------------------------------------------------------------------------------------- save/load
def test_side_readout_survives_save_and_load(backbone, tmp_path):
    torch.manual_seed(0)
    model = RewardModel(backbone[0], readout="side").eval()
    reloaded, processor = load_reward_model(save_reward_model(model, backbone[1], tmp_path / "rm"))
    assert reloaded.readout == "side" and reloaded.settings == model.settings
    lefts, rights, prompts = _images(27, 2), _images(28, 2), _prompts()[:2]
    np.testing.assert_array_equal(
        score_pairs(reloaded, processor, lefts, rights, prompts, pair_size=SIZE),
        score_pairs(model, backbone[1], lefts, rights, prompts, pair_size=SIZE),
    )


def test_reward_model_save_load_round_trip(reward_model, backbone, tmp_path):
    out = save_reward_model(reward_model, backbone[1], tmp_path / "rm")
    reloaded, processor = load_reward_model(out)
    assert reloaded.settings == reward_model.settings
    lefts, rights, prompts = _images(13, 2), _images(14, 2), _prompts()[:2]
    np.testing.assert_array_equal(
        score_pairs(reloaded, processor, lefts, rights, prompts, pair_size=SIZE),
        score_pairs(reward_model, backbone[1], lefts, rights, prompts, pair_size=SIZE),
    )
    with pytest.raises(InputError, match="reward_heads.safetensors"):
        load_reward_model(tmp_path)


# ------------------------------------------------------------------------------------------- prompts, answers
def test_prompt_ablations_select_caption_and_info():
    product = {"title": "lamp", "price": 9.5, "caption": "a warm lamp"}
    assert "Caption" in reward_prompt("Q?", product, caption=True, info=False)
    assert "Title" not in reward_prompt("Q?", product, caption=True, info=False)
    assert "Caption" not in reward_prompt("Q?", product, caption=False, info=True)
    assert reward_prompt("Q?", product, caption=False, info=False) == "Q?"


@pytest.mark.parametrize(
    ("text", "side"),
    [
        ("left", "left"),
        ("RIGHT", "right"),
        ("The left one.", "left"),
        ("Left image is better", "left"),
        ("right!", "right"),
        ("  Answer: Right.", "right"),
        ("image 1", "left"),
        ("Image 2 is better.", "right"),
        ("The second one", "right"),
        ("1", "left"),
        ("2.", "right"),
        ("The left image is better than the right image.", "left"),
        ("I would pick left over right", "left"),
        ("Left is worse than right", "right"),
        ("Not the left one, the right one.", "right"),
        ("The right one is less attractive", "left"),
        ("Right is not better than left", "left"),
        ("Right, because the left one is cluttered", "right"),
        ("Between left and right, the right one is better", "right"),
        ("First, the right one looks better.", "right"),
        ("left or right", None),
        ("Both left and right are good", None),
        ("neither left nor right", None),
        ("Neither.", None),
        ("I cannot tell", None),
        ("", None),
        ("leftover rightly", None),
    ],
)
def test_parse_generative_answer(text, side):
    assert parse_generative_answer(text) == side
