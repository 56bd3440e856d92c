from __future__ import annotations

import numpy as np
import pytest

from caig.config import compose
from caig.errors import ConfigError
from caig.sim.vocabulary import CATEGORIES, COLORS
from caig.sim.world import PRODUCT_TYPES, SIZES, make_world, product_image


@pytest.fixture(scope="module")
def cfg():
    return compose(["sim=small"])


def test_world_is_seeded_and_deterministic(cfg) -> None:
    a, b = make_world(cfg), make_world(cfg.sim)
    assert a.products == b.products
    other = make_world(compose(["sim=small", "seed=1"]))
    assert other.products != a.products


def test_products_are_well_formed(cfg) -> None:
    world = make_world(compose(["sim=small", "sim.n_products=400"]))
    ids = [p.product_id for p in world.products]
    assert len(set(ids)) == len(ids) == 400
    assert {p.category for p in world.products} == set(CATEGORIES)
    assert {p.size for p in world.products} == set(SIZES)
    for p in world.products:
        assert p.colors and all(c in COLORS for c in p.colors)
        assert len(p.tags) == 2 and p.price > 0 and 3.0 <= p.rating <= 5.0
        assert any(t.noun in p.title and t.shape == p.shape for t in PRODUCT_TYPES[p.category])
        assert COLORS[p.main_color].phrase in p.title
    assert world.product(ids[7]) is world.products[7]
    with pytest.raises(KeyError, match="unknown product_id"):
        world.product("nope")


def test_product_image_is_a_cut_out(cfg) -> None:
    world = make_world(cfg)
    for p in world.products[:12]:
        image = product_image(p, 64)
        assert image.mode == "RGBA" and image.size == (64, 64)
        rgba = np.asarray(image)
        alpha = rgba[..., 3]
        assert alpha[0, 0] == 0 and alpha[-1, -1] == 0
        opaque = alpha == 255
        assert opaque.mean() > 0.05
        main = np.array(COLORS[p.main_color].rgb)
        # the main colour covers a good share of the opaque body
        share = (np.abs(rgba[opaque][:, :3].astype(int) - main).max(axis=1) <= 2).mean()
        assert share > 0.3, (p.shape, share)


def test_config_errors_name_the_key(cfg) -> None:
    with pytest.raises(ConfigError, match="sim.n_products"):
        make_world(compose(["sim=small", "sim.n_products=0"]))
    with pytest.raises(ConfigError, match="sim.seed"):
        make_world({"n_products": 3})
