"""The tiny reward model's side_desc readout: its width, the left-minus-right description probabilities, the
category one-hot only where the prompt holds the product information, frozen tower / projector / head, and a
save-load round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from caig.errors import InputError
from caig.instruct import RM_QUESTIONS
from caig.models import build_llava
from caig.models.description import (
    DescriptionHead,
    TileDescriber,
    load_description_head,
    project_tiles,
    save_description_head,
    tile_features,
)
from caig.reward import RewardModel, concat_pair, encode_rm_inputs, load_reward_model, reward_prompt, save_reward_model
from caig.reward.model import category_line_tokens, category_one_hot, tile_description_difference
from caig.reward.scoring import score_pairs
from caig.reward.train import head_parameter_groups

TINY = yaml.safe_load((Path(__file__).resolve().parents[2] / "config" / "model" / "tiny.yaml").read_text())
SIZE = TINY["pair_image_size"]
CATEGORIES = ["beauty", "computers appliances", "home"]
ATTRIBUTES = [
    {"title": "red mug", "category": "home", "price": 9.5, "caption": "a red mug"},
    {"title": "laptop", "category": "computers appliances", "caption": "a thin laptop"},
    {"title": "lipstick", "category": "beauty", "caption": "a red lipstick for home use"},
]


def _fresh() -> tuple:
    """A model of its own per test: side_desc freezes the backbone's tower, which a shared one must not see.
    The describer's tower is another random model's, as the vision pre-training's differs from stage 1's."""
    torch.manual_seed(0)
    texts = ["red mug laptop lipstick home beauty computers appliances"] * 5
    backbone, processor = build_llava(TINY, texts)
    vision_model, _ = build_llava({**TINY, "seed": 1}, texts)
    patches = (TINY["vision"]["image_size"] // TINY["vision"]["patch_size"]) ** 2
    head = DescriptionHead(patches, TINY["text"]["hidden_size"], 16, token_ids=list(range(5, 17)))
    model = RewardModel(
        backbone,
        point_weight=0.5,
        readout="side_desc",
        describer=TileDescriber(vision_model, head),
        category_tokens=category_line_tokens(processor.tokenizer, CATEGORIES),
    )
    return model, processor


def _images(seed: int, n: int) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)) for _ in range(n)]


def _batch(processor, *, info: bool, swapped: bool = False):
    lefts, rights = _images(1, 3), _images(2, 3)
    if swapped:
        lefts, rights = rights, lefts
    prompts = [reward_prompt(RM_QUESTIONS[i], a, caption=True, info=info) for i, a in enumerate(ATTRIBUTES)]
    return encode_rm_inputs(processor, [concat_pair(a, b, SIZE) for a, b in zip(lefts, rights)], prompts)


def test_the_readout_appends_description_differences_and_their_category_products():
    model, processor = _fresh()
    hidden, tokens = TINY["text"]["hidden_size"], 12
    assert model.cls_head.in_features == model.ctr_head.in_features == 3 * hidden + tokens * (1 + len(CATEGORIES))
    batch = _batch(processor, info=True)
    with torch.no_grad():
        pooled = model.pooled_hidden(**batch)
        out = model(**batch, labels=torch.tensor([0, 1, 0]), ctr=torch.rand(3, 2) * 0.05)
    assert pooled.shape == (3, model.cls_head.in_features) and out.logits.shape == (3, 2)
    described = pooled[:, 3 * hidden : 3 * hidden + tokens]
    by_category = pooled[:, 3 * hidden + tokens :].view(3, tokens, len(CATEGORIES))
    for row, attributes in enumerate(ATTRIBUTES):  # q in the product's category column, zero in the others
        column = CATEGORIES.index(attributes["category"])
        torch.testing.assert_close(by_category[row, :, column], described[row])
        assert torch.all(by_category[row, :, [k for k in range(len(CATEGORIES)) if k != column]] == 0)
    assert described.abs().max() > 0


def test_swapping_the_tiles_negates_the_description_difference():
    model, processor = _fresh()
    forward, swapped = _batch(processor, info=True), _batch(processor, info=True, swapped=True)
    with torch.no_grad():
        differences = [
            tile_description_difference(model.describer, b["pixel_values"], b["image_sizes"])
            for b in (forward, swapped)
        ]
    assert differences[0].shape == (3, 12) and differences[0].abs().min() > 0
    torch.testing.assert_close(differences[1], -differences[0], atol=1e-6, rtol=0)


def test_the_category_one_hot_needs_the_product_information_in_the_prompt():
    model, processor = _fresh()
    with_info, caption_only = _batch(processor, info=True), _batch(processor, info=False)
    expected = torch.zeros(3, len(CATEGORIES))
    for row, attributes in enumerate(ATTRIBUTES):
        expected[row, CATEGORIES.index(attributes["category"])] = 1
    assert torch.equal(category_one_hot(with_info["input_ids"], model.category_tokens), expected)
    # the captions say "home" and "red", but only the product information's category line counts
    assert torch.equal(category_one_hot(caption_only["input_ids"], model.category_tokens), torch.zeros(3, 3))
    with torch.no_grad():
        pooled = model.pooled_hidden(**caption_only)
    assert torch.all(pooled[:, 3 * TINY["text"]["hidden_size"] + 12 :] == 0)


def test_tower_projector_and_description_head_do_not_move_in_a_training_step():
    model, processor = _fresh()
    model.train()
    frozen = [model.backbone.model.vision_tower, model.backbone.model.multi_modal_projector, model.describer]
    before = [{k: v.clone() for k, v in part.state_dict().items()} for part in frozen]
    trained_before = model.backbone.model.language_model.layers[0].mlp.up_proj.weight.clone()
    optimizer = torch.optim.AdamW(head_parameter_groups(model, 1e-2, 2e-2))
    loss = model(**_batch(processor, info=True), labels=torch.tensor([0, 1, 0]), ctr=torch.rand(3, 2) * 0.05).loss
    loss.backward()
    optimizer.step()
    for part, state in zip(frozen, before):
        assert all(not p.requires_grad for p in part.parameters())
        for key, value in part.state_dict().items():
            assert torch.equal(value, state[key]), key
    assert not torch.equal(model.backbone.model.language_model.layers[0].mlp.up_proj.weight, trained_before)
    assert model.cls_head.weight.grad.abs().sum() > 0


def test_the_readout_and_the_describer_go_together():
    backbone, _ = build_llava(TINY, ["red mug"] * 5)
    describer = TileDescriber(backbone, DescriptionHead(16, TINY["text"]["hidden_size"], 8, token_ids=[5, 6]))
    with pytest.raises(ValueError, match="side_desc"):
        RewardModel(backbone, readout="side_desc")
    with pytest.raises(ValueError, match="side_desc"):
        RewardModel(backbone, readout="side", describer=describer)


def test_the_describer_reads_its_own_tower_not_the_backbones():
    model, processor = _fresh()
    batch = _batch(processor, info=True)
    tiles = batch["pixel_values"][:, 1]
    with torch.no_grad():
        own = model.describer(tiles)
        through_backbone = model.describer.head(tile_features(model.backbone, tiles))
        through_describer = model.describer.head(
            project_tiles(model.describer.vision_tower, model.describer.projector, model.describer.config, tiles)
        )
    torch.testing.assert_close(own, through_describer)
    assert not torch.allclose(own, through_backbone)


def test_side_desc_survives_save_and_load(tmp_path):
    model, processor = _fresh()
    model.eval()
    reloaded, reloaded_processor = load_reward_model(save_reward_model(model, processor, tmp_path / "rm"))
    assert reloaded.settings == model.settings and reloaded.describer.head.token_ids == list(range(5, 17))
    for key, value in model.describer.state_dict().items():  # the describer's own tower, not the backbone's
        assert torch.equal(reloaded.describer.state_dict()[key], value), key
    prompts = [reward_prompt(RM_QUESTIONS[0], a, caption=True, info=True) for a in ATTRIBUTES[:2]]
    np.testing.assert_array_equal(
        score_pairs(reloaded, reloaded_processor, _images(3, 2), _images(4, 2), prompts, pair_size=SIZE),
        score_pairs(model, processor, _images(3, 2), _images(4, 2), prompts, pair_size=SIZE),
    )


def test_description_head_round_trip_and_missing_file(tmp_path):
    torch.manual_seed(0)
    head = DescriptionHead(4, 3, 5, token_ids=[7, 9])
    save_description_head(head, tmp_path)
    reloaded = load_description_head(tmp_path)
    features = torch.randn(2, 4, 3)
    torch.testing.assert_close(reloaded(features), head(features))
    with pytest.raises(InputError, match="description_head"):
        load_description_head(tmp_path / "missing")
