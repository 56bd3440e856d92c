"""The diffusers ControlNet-inpainting back end on tiny random parts, the back-end interface, and the render seeds."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf
from PIL import Image

from caig.config import compose
from caig.errors import ConfigError
from caig.generate import ProductInput, WorldRenderer, load_caig_json, make_generator, product_mask
from caig.generate.diffusion import (
    DiffusionGenerator,
    DiffusionSettings,
    Placement,
    build_random_pipeline,
    load_pretrained_pipeline,
    place_product,
)
from caig.preference.render import render_candidates, render_seed, render_seeds

SIZE = 64
SCALE = 0.5  # a 32x32 product fills 32 px of the 64 px canvas: placed without resampling


def compose_generate(option: str, *overrides: str):
    """Compose the config with generate=<option>, whether or not caig.yaml lists the group by default."""
    key = "generate" if "generate" in compose() else "+generate"
    return compose([f"{key}={option}", *overrides])


def make_product(product_id: str = "p", seed: int = 0) -> ProductInput:
    """32x32 noise-coloured product: opaque, a transparent top-left corner and a soft (alpha 64) patch."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (32, 32, 4), dtype=np.uint8)
    ys, xs = np.mgrid[:32, :32]
    pixels[..., 3] = np.where(xs + ys < 12, 0, 255)
    pixels[26:30, 26:30, 3] = 64
    return ProductInput(product_id, Image.fromarray(pixels, "RGBA"), "a product")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def generator() -> DiffusionGenerator:
    settings_ = DiffusionSettings(size=SIZE, steps=3, batch_size=4, placement=Placement(scale=SCALE))
    return DiffusionGenerator(build_random_pipeline("tiny", seed=0), settings_)


def test_product_pixels_equal_the_input_exactly(generator):
    product = make_product()
    (ad,) = generator.generate([product], ["a marble counter"], [3])
    assert ad.mode == "RGB" and ad.size == (SIZE, SIZE)
    source = np.asarray(product.image)
    window = np.asarray(ad)[16:48, 16:48]  # centred 32x32 placement
    inside = source[..., 3] >= 128
    np.testing.assert_array_equal(window[inside], source[..., :3][inside])
    soft = source[..., 3] == 64  # alpha-blended: neither the product's colour nor untouched
    assert np.abs(window[soft].astype(int) - source[..., :3][soft]).mean() > 1


def test_mask_direction_white_repaints_background_black_keeps_product(generator):
    canvas = generator.canvas(make_product())
    mask = np.asarray(canvas.inpaint_mask)
    assert set(np.unique(mask)) == {0, 255}
    assert (mask[~canvas.keep] == 255).all()  # every background pixel is repainted
    assert canvas.keep[mask == 0].all()  # only product pixels are kept
    assert (mask == 0).sum() >= 8 * 8 * 4  # several whole latent cells are kept


def test_product_latents_end_at_the_encoded_init_image(generator):
    product, seed = make_product(), 11
    latents: dict[int, torch.Tensor] = {}

    def record(pipe, step, timestep, tensors):
        latents[step] = tensors["latents"].clone()
        return tensors

    generator.generate([product], ["a wooden table"], [seed], on_step_end=record)
    final = latents[max(latents)]
    pipe, canvas = generator.pipeline, generator.canvas(product)
    init = pipe.image_processor.preprocess(canvas.init_image, height=SIZE, width=SIZE)
    with torch.no_grad():  # the pipeline samples the init latents with the candidate's generator first
        posterior = pipe.vae.encode(init).latent_dist
        expected = posterior.sample(torch.Generator().manual_seed(seed)) * pipe.vae.config.scaling_factor
    mask = pipe.mask_processor.preprocess(canvas.inpaint_mask, height=SIZE, width=SIZE)
    keep = (torch.nn.functional.interpolate(mask, size=final.shape[-2:]) == 0).expand_as(final)
    side = SIZE // final.shape[-1]  # pixels per latent cell
    product_cells = canvas.keep.reshape(final.shape[-2], side, final.shape[-1], side).all(axis=(1, 3))
    assert torch.equal(keep[0, 0], torch.from_numpy(product_cells))  # kept latents = cells inside the product
    assert keep.any() and not keep.all()
    assert torch.equal(final[keep], expected[keep])
    assert (final - expected)[~keep].abs().mean() > 0.1  # the background was denoised, not kept


def test_seeds_decide_the_background_independently_of_the_batch(generator):
    product = make_product()
    keep = generator.canvas(product).keep
    alone = np.asarray(generator.generate([product], ["a sunny beach"], [5])[0])
    again = np.asarray(generator.generate([product], ["a sunny beach"], [5])[0])
    batch = generator.generate([product] * 3, ["a snowy forest", "a sunny beach", "a sunny beach"], [1, 5, 6])
    np.testing.assert_array_equal(alone, again)
    # batched kernels round differently, so a batch-mate changes at most a few 8-bit levels
    assert np.abs(alone.astype(int) - np.asarray(batch[1])).max() <= 2
    other_seed = np.asarray(batch[2])
    assert np.abs(alone.astype(int) - other_seed)[~keep].mean() > 5
    np.testing.assert_array_equal(alone[keep], other_seed[keep])


def test_batches_larger_than_batch_size_keep_order(generator):
    products = [make_product(f"p{i}", seed=i) for i in range(6)]
    ads = generator.generate(products, ["a kitchen"] * 6, list(range(6)))
    for product, ad in zip(products, ads):
        canvas = generator.canvas(product)
        assert np.array_equal(np.asarray(ad)[canvas.keep], np.asarray(canvas.product)[..., :3][canvas.keep])


def test_canny_control_traces_the_product(generator):
    canvas = generator.canvas(make_product())
    edges = np.asarray(canvas.control_image)
    assert canvas.control_image.mode == "RGB" and edges.max() == 255
    assert edges[:8].max() == 0 and edges[:, :8].max() == 0  # nothing far from the product


@settings(max_examples=40, deadline=None)
@given(
    width=st.integers(1, 90),
    height=st.integers(1, 90),
    scale=st.floats(0.05, 1.0),
    x=st.floats(0, 1),
    y=st.floats(0, 1),
)
def test_placed_product_fits_the_canvas_at_the_requested_scale(width, height, scale, x, y):
    image = Image.new("RGBA", (width, height), (200, 10, 10, 255))
    placed = place_product(image, SIZE, Placement(scale=scale, position=(x, y)))
    assert placed.size == (SIZE, SIZE)
    left, top, right, bottom = placed.getchannel("A").getbbox()
    assert abs(max(right - left, bottom - top) - scale * SIZE) <= 1
    assert product_mask(placed).sum() == (right - left) * (bottom - top)


def test_make_generator_builds_the_tiny_diffusion_back_end():
    gen = make_generator(compose_generate("diffusion_tiny", "generate.steps=2"))
    assert isinstance(gen, DiffusionGenerator)
    assert gen.settings.size == 64 and gen.settings.steps == 2
    (ad,) = gen.generate([make_product()], ["studio"], [0])
    assert ad.size == (64, 64)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["generate.backend=gan"], "generate.backend='gan'"),
        (["generate.size=60"], "multiple of"),
        (["generate.scheduler=NoSuchScheduler"], "generate.scheduler"),
        (["generate.safety_checker=true"], "needs pretrained weights"),
        (["generate.models.random_init=huge"], "random_init='huge'"),
        (["generate.prompt_template=plain"], "placeholder"),
        (["generate.prompt_template='{description} in {place}'"], "only"),
        (["generate.placement.scale=1.5"], "placement.scale"),
        (["generate.dtype=int8"], "generate.dtype"),
    ],
)
def test_bad_generate_config_is_a_config_error(overrides, match):
    with pytest.raises(ConfigError, match=match):
        make_generator(compose_generate("diffusion_tiny", *overrides))


def test_missing_weights_say_what_to_put_where(tmp_path):
    folder = tmp_path / "majicmix"
    with pytest.raises(ConfigError, match="generate.models.base.*no such folder.*model_index.json"):
        make_generator(compose_generate("diffusion", f"generate.models.base={folder}"))
    folder.mkdir()
    with pytest.raises(ConfigError, match="has no model_index.json"):
        make_generator(compose_generate("diffusion", f"generate.models.base={folder}"))
    (folder / "model_index.json").write_text("{}")
    with pytest.raises(
        ConfigError, match="not in the Hugging Face cache.*hf download nobody/no-such-controlnet"
    ):
        make_generator(
            compose_generate(
                "diffusion",
                f"generate.models.base={folder}",
                "generate.models.controlnet=nobody/no-such-controlnet",
            )
        )


def test_pretrained_folders_load_offline_and_reproduce_the_saved_parts(tmp_path):
    source = build_random_pipeline("tiny", seed=4)
    source.save_pretrained(tmp_path / "base")
    source.controlnet.save_pretrained(tmp_path / "controlnet")
    models = compose_generate(
        "diffusion",
        f"generate.models.base={tmp_path / 'base'}",
        f"generate.models.controlnet={tmp_path / 'controlnet'}",
    ).generate.models
    loaded = load_pretrained_pipeline(models, torch.float32, safety_checker=False)
    settings_ = DiffusionSettings(size=SIZE, steps=2, placement=Placement(scale=SCALE))
    product = make_product()
    (expected,) = DiffusionGenerator(source, settings_).generate([product], ["a desk"], [2])
    (actual,) = DiffusionGenerator(loaded, settings_).generate([product], ["a desk"], [2])
    np.testing.assert_array_equal(np.asarray(expected), np.asarray(actual))
    with pytest.raises(ConfigError, match="ships no safety checker"):
        load_pretrained_pipeline(models, torch.float32, safety_checker=True)


def test_safety_checker_from_its_own_folder_is_wired_in(tmp_path):
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    tiny = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2}
    checker = StableDiffusionSafetyChecker(
        CLIPConfig(
            text_config=tiny, vision_config={**tiny, "image_size": 32, "patch_size": 8}, projection_dim=8
        )
    )
    checker.save_pretrained(tmp_path / "checker")
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        tmp_path / "checker"
    )
    source = build_random_pipeline("tiny", seed=1)
    source.save_pretrained(tmp_path / "base")
    source.controlnet.save_pretrained(tmp_path / "controlnet")
    cfg = compose_generate(
        "diffusion",
        f"generate.models.base={tmp_path / 'base'}",
        f"generate.models.controlnet={tmp_path / 'controlnet'}",
        f"generate.models.safety_checker={tmp_path / 'checker'}",
        "generate.size=64",
        "generate.steps=1",
    )
    gen = make_generator(cfg)
    assert isinstance(gen.pipeline.safety_checker, StableDiffusionSafetyChecker)
    product = make_product()
    (ad,) = gen.generate(
        [product], ["a shelf"], [0]
    )  # a random checker may blank the background, never the product
    canvas = gen.canvas(product)
    assert np.array_equal(np.asarray(ad)[canvas.keep], np.asarray(canvas.product)[..., :3][canvas.keep])


def test_a_repeated_candidate_is_warned_about_and_a_shared_seed_is_not(generator, caplog):
    product = make_product()
    with caplog.at_level("WARNING", logger="caig.generate"):
        generator.generate([product, product], ["a beach", "a forest"], [9, 9])  # one seed per product
    assert "rendered more than once" not in caplog.text
    with caplog.at_level("WARNING", logger="caig.generate"):
        generator.generate([product, product], ["a beach", "a beach"], [9, 9])
    assert "rendered more than once" in caplog.text


def test_render_seeds_per_product_or_per_candidate(tmp_path):
    candidates = pl.DataFrame(
        {"product_id": ["A", "A", "B", "B"], "candidate": [0, 1, 0, 1], "seed": [11, 12, 13, 14]}
    )
    per_product = render_seeds(candidates, "product", 0)
    assert per_product[0] == per_product[1] != per_product[2] == per_product[3]
    # stable across calls, processes and row order: a function of the run seed and the product id only
    assert per_product[:3:2] == [2818127357939594491, 4012844322895138188]
    assert render_seeds(candidates.reverse(), "product", 0) == per_product[::-1]
    assert render_seeds(candidates, "product", 1)[0] != per_product[0]
    per_candidate = render_seeds(candidates, "candidate", 0)
    assert len(set(per_candidate)) == 4 and per_candidate[0] == render_seed(11) == 5246710297973695224
    with pytest.raises(ConfigError, match="preference.render.seed_per='pair'"):
        render_seeds(candidates, "pair", 0)
    assert compose().preference.render.seed_per == compose(["preset=paper"]).preference.render.seed_per == "product"
    products = {pid: make_product(pid, seed=i) for i, pid in enumerate(("A", "B"))}
    rows = candidates.with_columns(pl.Series("description", ["a beach", "a forest", "a beach", "a forest"]))
    ads = render_candidates(WorldRenderer(32), products, rows, tmp_path, seeds=per_product)
    assert ads["render_seed"].to_list() == per_product and (tmp_path / ads["image"][1]).is_file()


def test_config_without_generate_group():
    with pytest.raises(ConfigError, match="no 'generate' group"):
        make_generator(OmegaConf.create({"seed": 0}))


def test_candidate_lists_must_line_up(generator):
    with pytest.raises(ValueError, match="one product, description and seed per candidate"):
        generator.generate([make_product()], ["a", "b"], [1, 2])
    with pytest.raises(ValueError, match="seeds must be integers"):
        generator.generate([make_product()], ["a"], [1.5])


@pytest.mark.fixture
def test_real_fixture_runs_through_the_back_ends(caig_tiny_fixture, generator):
    products = load_caig_json(caig_tiny_fixture / "tiny_dataset" / "tiny.json")
    descriptions = [f"a bright studio background for {p.caption}" for p in products]
    seeds = list(range(100, 100 + len(products)))
    ads = generator.generate(products, descriptions, seeds)
    for product, ad in zip(products, ads):
        canvas = generator.canvas(product)
        assert ad.size == (SIZE, SIZE) and ad.mode == "RGB"
        assert canvas.keep.any() and not canvas.keep.all(), product.product_id
        assert np.array_equal(np.asarray(ad)[canvas.keep], np.asarray(canvas.product)[..., :3][canvas.keep])
    pytest.importorskip("caig.sim.render")
    world = WorldRenderer(SIZE)
    first = world.generate(products, descriptions, seeds)
    assert [ad.size for ad in first] == [(SIZE, SIZE)] * len(products)
    assert all(ad.mode == "RGB" for ad in first)
    again = world.generate(products[:2], descriptions[:2], seeds[:2])
    assert [np.asarray(a).tobytes() for a in again] == [np.asarray(a).tobytes() for a in first[:2]]


def test_world_back_end_is_chosen_by_config():
    pytest.importorskip("caig.sim.render")
    gen = make_generator(compose_generate("world", "generate.size=48"))
    assert isinstance(gen, WorldRenderer)
    (ad,) = gen.generate([make_product()], ["a marble bathroom counter"], [0])
    assert ad.size == (48, 48) and ad.mode == "RGB"
