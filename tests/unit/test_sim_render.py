from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from caig.sim.render import as_rgba, place_product, render_ad, render_background
from caig.sim.vocabulary import COLORS, SLOT_KEYS, Background
from caig.sim.world import make_world, product_image

FIXTURE = Path(__file__).parents[2].parent / "shared" / "fixtures" / "caig_tiny"
SIZE = 64


@pytest.fixture(scope="module")
def products() -> list[Image.Image]:
    world = make_world({"seed": 0, "n_products": 16})
    return [product_image(p, 64) for p in world.products]


def _luminance(img: np.ndarray) -> np.ndarray:
    return img[..., :3] @ np.array([0.299, 0.587, 0.114])


def _saturation(img: np.ndarray) -> float:
    return float((img.max(axis=-1) - img.min(axis=-1)).mean())


def _assert_product_preserved(product: Image.Image, bg: Background | str, size: int, seed: int) -> None:
    ad = np.asarray(render_ad(product, bg, size, seed))
    placement = place_product(product, bg, size, seed)
    cut = np.asarray(placement.image)
    window = ad[placement.y:placement.y + cut.shape[0], placement.x:placement.x + cut.shape[1]]
    opaque = cut[..., 3] == 255
    assert np.array_equal(window[opaque], cut[..., :3][opaque])
    # elsewhere the background shows through by at most (1 - alpha) of the full range
    tolerance = 256 - cut[..., 3:4].astype(int)
    assert (np.abs(window.astype(int) - cut[..., :3]) <= tolerance).all()


def test_product_pixels_are_exact_where_opaque(products) -> None:
    rng = np.random.default_rng(0)
    for i, product in enumerate(products):
        codes = [int(rng.integers(-1, len(SLOT_KEYS[s]))) for s in SLOT_KEYS]
        _assert_product_preserved(product, Background.from_codes(codes), SIZE, seed=i)
    assert (np.asarray(place_product(products[0], Background(), SIZE).image)[..., 3] == 255).any()


def test_render_is_deterministic_and_accepts_text(products) -> None:
    text = "a rustic wooden tabletop with fresh fruit, warm brown tones, warm morning light"
    a = render_ad(products[1], text, SIZE, seed=3)
    b = render_ad(products[1], Background("wooden_tabletop", "fruit", "warm_brown", "warm_morning", "rustic"),
                  SIZE, seed=3)
    assert a.mode == "RGB" and a.size == (SIZE, SIZE)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(render_ad(products[1], text, SIZE, seed=4)))


def test_background_mean_colour_tracks_colour_phrase(products) -> None:
    palette = np.array([c.rgb for c in COLORS.values()], dtype=float)
    for scene in ("marble_counter", "studio", "living_room", "beach", "city_street", "playroom"):
        means = []
        for color in COLORS:
            bg = Background(scene=scene, color=color)
            ad = np.asarray(render_ad(products[2], bg, SIZE, seed=1), dtype=float)
            free = place_product(products[2], bg, SIZE, seed=1).mask(SIZE) == 0
            means.append(ad[free].mean(axis=0))
        means = np.array(means)
        for ch in range(3):
            assert np.corrcoef(means[:, ch], palette[:, ch])[0, 1] > 0.9, (scene, ch)


def test_scenes_have_distinguishable_layouts() -> None:
    """A nearest-template match on normalised greyscale recognises the scene across colours."""
    scenes = SLOT_KEYS["scene"]

    def signature(scene: str, color: str) -> np.ndarray:
        grey = _luminance(render_background(Background(scene=scene, color=color), SIZE))
        return ((grey - grey.mean()) / (grey.std() + 1e-6)).ravel()

    templates = np.array([signature(s, "cream_white") for s in scenes])
    hits = 0
    for color in ("pastel_blue", "emerald_green", "soft_pink"):
        for i, scene in enumerate(scenes):
            hits += int(np.argmin(((templates - signature(scene, color)) ** 2).sum(axis=1)) == i)
    assert hits / (3 * len(scenes)) >= 0.9


def test_lighting_changes_brightness() -> None:
    def lum(lighting: str | None) -> np.ndarray:
        return _luminance(render_background(Background(scene="living_room", color="beige", lighting=lighting),
                                            SIZE))

    plain = lum(None).mean()
    assert lum("bright_daylight").mean() > plain + 10
    assert lum("candlelight").mean() < plain - 40
    assert lum("neon").mean() < plain - 40
    spot = lum("spotlight")
    assert spot[28:40, 26:38].mean() > spot[:8, :8].mean() + 60
    golden = render_background(Background(scene="living_room", color="beige", lighting="golden_hour"), SIZE)
    assert golden[..., 0].mean() - golden[..., 2].mean() > 60


def test_styles_change_contrast_and_saturation() -> None:
    def img(style: str | None) -> np.ndarray:
        return render_background(Background(scene="boutique", color="teal", style=style), SIZE)

    plain = img(None)
    assert _saturation(img("pop_art")) > _saturation(plain) + 20
    assert _saturation(img("playful")) > _saturation(plain) + 10
    assert _saturation(img("vintage")) < _saturation(plain) - 10
    assert _luminance(img("minimalist")).std() < _luminance(plain).std() - 5
    assert _luminance(img("modern")).std() > _luminance(plain).std() + 5


def test_props_draw_small_distinctive_shapes() -> None:
    base = render_background(Background(scene="studio", color="beige"), SIZE, seed=5)
    changed = {}
    for prop in SLOT_KEYS["prop"]:
        img = render_background(Background(scene="studio", color="beige", prop=prop), SIZE, seed=5)
        changed[prop] = (np.abs(img - base).max(axis=-1) > 30).mean()
    assert all(0.005 < share < 0.35 for share in changed.values()), changed
    signatures = {p: render_background(Background(scene="studio", color="beige", prop=p), SIZE, seed=5)
                  for p in SLOT_KEYS["prop"]}
    keys = list(signatures)
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            assert np.abs(signatures[a] - signatures[b]).max() > 30, (a, b)


def test_product_scale_follows_scene_distance(products) -> None:
    close = place_product(products[3], Background(scene="marble_counter"), SIZE)
    wide = place_product(products[3], Background(scene="beach"), SIZE)
    assert max(close.image.size) > 1.6 * max(wide.image.size)
    assert close.mask(SIZE).shape == (SIZE, SIZE)


def _png_bytes(image: Image.Image, **kwargs) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **kwargs)
    buffer.seek(0)
    return Image.open(buffer)


def test_as_rgba_keeps_transparency_of_every_mode() -> None:
    palette = Image.new("P", (8, 8), 1)
    palette.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)
    palette.putpixel((0, 0), 0)
    assert np.asarray(as_rgba(_png_bytes(palette, transparency=0)))[0, 0, 3] == 0
    assert np.asarray(as_rgba(_png_bytes(palette, transparency=0)))[4, 4].tolist() == [200, 30, 30, 255]
    rgb = Image.new("RGB", (8, 8), (10, 20, 30))
    rgb.putpixel((1, 1), (1, 2, 3))
    keyed = np.asarray(as_rgba(_png_bytes(rgb, transparency=(1, 2, 3))))
    assert keyed[1, 1, 3] == 0 and keyed[0, 0, 3] == 255
    assert np.asarray(as_rgba(Image.new("LA", (4, 4), (90, 128))))[0, 0].tolist() == [90, 90, 90, 128]
    deep = as_rgba(Image.fromarray(np.full((4, 4), 32896, np.uint16)))
    assert np.asarray(deep)[0, 0].tolist() == [128, 128, 128, 255]
    assert np.asarray(as_rgba(Image.new("RGB", (4, 4), (5, 6, 7))))[0, 0, 3] == 255


def test_fully_transparent_product_is_rejected() -> None:
    with pytest.raises(ValueError, match="fully transparent"):
        render_ad(Image.new("RGBA", (8, 8)), Background(), SIZE)


@pytest.mark.fixture
@pytest.mark.skipif(not FIXTURE.is_dir(), reason="../shared/fixtures/caig_tiny is absent")
def test_real_fixture_cut_outs_render() -> None:
    items = json.loads((FIXTURE / "tiny_dataset" / "tiny.json").read_text())
    modes = set()
    for k, item in enumerate(items):
        image = Image.open(FIXTURE / item["image"])
        modes.add(image.mode)
        rgba = np.asarray(as_rgba(image))
        assert (rgba[..., 3] == 0).mean() > 0.2 and (rgba[..., 3] >= 250).mean() > 0.1
        for size in (64, 128):
            _assert_product_preserved(image, "a cozy living room, pastel blue tones, soft light", size, seed=k)
            _assert_product_preserved(image, Background(scene="marble_counter", color="gold"), size, seed=k)
    assert {"RGBA", "P"} <= modes
