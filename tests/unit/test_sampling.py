"""Prompt-model sampling: per-candidate seeds, determinism, resampling of duplicates, the real CAIG fixture."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch
from PIL import Image

import caig.generate.sampling as sampling
from caig.config import compose
from caig.generate.backends import WorldRenderer
from caig.generate.products import ProductInput, load_caig_json
from caig.generate.sampling import (
    SeededSampler,
    candidate_seed,
    generate_descriptions,
    pm_image,
    pm_prompt,
    product_attributes,
    sample_candidates,
)
from caig.instruct import PM_INSTRUCTIONS
from caig.models import build_llava
from caig.preference.render import render_candidates


pytestmark = pytest.mark.usefixtures("one_thread")


def _product(i: int) -> ProductInput:
    image = Image.new("RGBA", (48, 48), (0, 0, 0, 0))
    image.paste((30 * i, 100, 200 - 20 * i, 255), (10, 8, 38, 44))
    return ProductInput(f"P{i}", image, f"Product number {i}", {"category": "home", "price": 10.0 + i})


@pytest.fixture(scope="module")
def tiny_pm():
    corpus = ["a cozy living room with a potted plant, beige tones", "Product number 1", "Product number 2"]
    return build_llava(compose([]).model, corpus)


def test_seeded_sampler_is_per_row_and_respects_top_k():
    scores = torch.randn(3, 50, generator=torch.Generator().manual_seed(0))
    first = SeededSampler([1, 2, 3])(torch.zeros(3, 1, dtype=torch.long), scores)
    again = SeededSampler([1, 2, 3])(torch.zeros(3, 1, dtype=torch.long), scores)
    assert torch.equal(first, again)
    assert ((first == 0).sum(dim=1) == 1).all()  # exactly one allowed token per row
    # a row's token depends on its own seed only, not on its neighbours
    alone = SeededSampler([2])(torch.zeros(1, 1, dtype=torch.long), scores[1:2])
    assert torch.equal(alone[0], first[1])
    greedy = SeededSampler([5, 6, 7], top_k=1)(torch.zeros(3, 1, dtype=torch.long), scores)
    assert torch.equal(greedy.argmax(dim=1), scores.argmax(dim=1))


def test_sampler_probabilities_follow_temperature_and_top_p():
    scores = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    cold = SeededSampler([0], temperature=0.5).filtered_probabilities(scores)
    hot = SeededSampler([0], temperature=2.0).filtered_probabilities(scores)
    assert cold[0, 0] > hot[0, 0]
    nucleus = SeededSampler([0], top_p=0.7).filtered_probabilities(scores)
    assert nucleus[0, 2:].sum() == 0 and nucleus.sum() == pytest.approx(1.0)


def test_candidate_seeds_are_distinct():
    seeds = {candidate_seed(0, epoch, f"P{p}", c, a) for epoch in range(3) for p in range(20) for c in (0, 1)
             for a in range(3)}
    assert len(seeds) == 3 * 20 * 2 * 3
    assert all(0 <= seed < 2**63 for seed in seeds)


def test_generation_is_deterministic_and_batch_independent(tiny_pm):
    model, processor = tiny_pm
    products = [_product(i) for i in range(3)]
    images = [pm_image(p) for p in products]
    prompts = [pm_prompt(PM_INSTRUCTIONS[i], product_attributes(p)) for i, p in enumerate(products)]
    kwargs = {"max_new_tokens": 6}
    together = generate_descriptions(model, processor, images, prompts, [11, 12, 13], batch_size=3, **kwargs)
    again = generate_descriptions(model, processor, images, prompts, [11, 12, 13], batch_size=3, **kwargs)
    one_by_one = generate_descriptions(model, processor, images, prompts, [11, 12, 13], batch_size=1, **kwargs)
    assert together == again == one_by_one
    other_seeds = generate_descriptions(model, processor, images, prompts, [21, 22, 23], batch_size=3, **kwargs)
    assert other_seeds != together


def test_duplicates_are_resampled_and_seeds_recorded(monkeypatch):
    products = [_product(i) for i in range(4)]
    first_round = {candidate_seed(0, 1, p.product_id, c, 0) for p in products for c in (0, 1)}

    def fake_generate(model, processor, images, prompts, seeds, **kwargs):
        # round 0: both candidates of every product say the same thing; P3 keeps repeating itself forever
        out = []
        for prompt, seed in zip(prompts, seeds):
            if seed in first_round or "number 3" in prompt:
                out.append("  A Plain Studio ")
            else:
                out.append(f"scene {seed % 1000}")
        return out

    monkeypatch.setattr(sampling, "generate_descriptions", fake_generate)
    frame, counts = sample_candidates(None, None, products, seed=0, stream=1, max_attempts=3)
    assert counts["left_out_duplicates"] == 1 and set(frame["product_id"]) == {"P0", "P1", "P2"}
    assert frame.height == 6
    for (product_id,), group in frame.group_by("product_id"):
        texts = [sampling.normalise_description(t) for t in group["description"]]
        assert len(set(texts)) == 2  # distinct after resampling
        assert group.filter(pl.col("candidate") == 0)["attempt"].item() == 0  # the first keeps its sample
        resampled = group.filter(pl.col("candidate") == 1).row(0, named=True)
        assert resampled["attempt"] == 1
        assert resampled["seed"] == candidate_seed(0, 1, product_id, 1, 1)
    assert frame["instruction"].is_in(list(PM_INSTRUCTIONS)).all()
    assert counts["resampled"] == 4 + 1  # round 0: one per product; round 1: P3 again


def test_real_caig_fixture_runs_through_sampling_and_rendering(caig_tiny_fixture, tiny_pm, tmp_path):
    model, processor = tiny_pm
    products = load_caig_json(caig_tiny_fixture / "tiny_dataset" / "tiny.json")[:4]
    frame, counts = sample_candidates(
        model, processor, products, seed=0, stream=1, max_new_tokens=8, batch_size=8, max_attempts=2
    )
    assert counts["products"] == 4
    assert frame.height == 2 * (4 - counts["left_out_duplicates"]) > 0
    assert set(frame["product_id"]) <= {p.product_id for p in products}
    ads = render_candidates(WorldRenderer(64), {p.product_id: p for p in products}, frame, tmp_path)
    for row in ads.iter_rows(named=True):
        image = Image.open(tmp_path / row["image"])
        assert image.size == (64, 64) and image.mode == "RGB"
    assert ads["render_seed"].n_unique() == ads.height  # a distinct render seed per candidate
    assert np.all(ads["seed"].to_numpy() >= 0)
