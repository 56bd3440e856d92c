"""One interface, two back ends, for turning (product, background description) into an ad image.

``world``: the synthetic world's renderer (tiny preset), whose pixels visibly carry the description so
the reward model and the oracle can tell backgrounds apart. ``diffusion``: Stable Diffusion 1.5 +
ControlNet (canny) inpainting around the product, the paper's generator (caig/generate/diffusion.py).

Seeds are the caller's contract. The preference loop gives both candidates of a product one seed by default
(``preference.render.seed_per``, as the authors' code does), so the pair shares its noise and differs only
through the descriptions; it can also give every candidate its own. Given the same (product, description,
seed) a back end returns the same image.
"""

from __future__ import annotations

import numbers
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence

from omegaconf import DictConfig
from PIL import Image

from caig.errors import ConfigError
from caig.generate.products import ProductInput
from caig.logs import get_logger

BACKENDS = ("world", "diffusion")

log = get_logger("generate")


def check_candidates(
    products: Sequence[ProductInput], descriptions: Sequence[str], seeds: Sequence[int]
) -> None:
    """Validate one call's candidates: equal lengths, integer seeds; warn when a (product, description, seed)
    repeats, which renders the same ad twice."""
    if not len(products) == len(descriptions) == len(seeds):
        raise ValueError(
            f"one product, description and seed per candidate: got {len(products)} products, "
            f"{len(descriptions)} descriptions, {len(seeds)} seeds"
        )
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**63:
            raise ValueError(f"seeds must be integers in [0, 2**63), got {seed!r}")
    keys = zip((p.product_id for p in products), descriptions, seeds)
    repeated = [key for key, n in Counter(keys).items() if n > 1]
    if repeated:
        log.warning(
            "%d (product, description, seed) triples are rendered more than once, e.g. %s: identical ads",
            len(repeated),
            repeated[0],
        )


class BackgroundGenerator(ABC):
    """Renders ad images: one RGB image per (product, description, seed), in order."""

    @abstractmethod
    def generate(
        self, products: Sequence[ProductInput], descriptions: Sequence[str], seeds: Sequence[int]
    ) -> list[Image.Image]:
        """Return one RGB ad image per candidate ``(products[i], descriptions[i], seeds[i])``."""


class WorldRenderer(BackgroundGenerator):
    """The synthetic world's renderer (caig.sim.render.render_ad) behind the common interface."""

    def __init__(self, size: int) -> None:
        if size < 16:
            raise ConfigError(
                f"generate.size={size} is too small for the world renderer (expected at least 16)"
            )
        self.size = size

    def generate(
        self, products: Sequence[ProductInput], descriptions: Sequence[str], seeds: Sequence[int]
    ) -> list[Image.Image]:
        check_candidates(products, descriptions, seeds)
        try:
            from caig.sim.render import render_ad
        except ImportError as err:
            raise ConfigError(
                f"generate.backend=world needs caig.sim.render, which does not import: {err}"
            ) from err
        return [
            render_ad(product.image, description, self.size, seed=seed).convert("RGB")
            for product, description, seed in zip(products, descriptions, seeds)
        ]


def make_generator(cfg: DictConfig) -> BackgroundGenerator:
    """Build the back end named by ``cfg.generate.backend`` (``world`` or ``diffusion``) from ``cfg.generate``."""
    gen = cfg.get("generate")
    if gen is None:
        raise ConfigError(
            "config has no 'generate' group (expected e.g. generate=world or generate=diffusion)"
        )
    backend = gen.get("backend")
    if backend == "world":
        return WorldRenderer(int(gen.size))
    if backend == "diffusion":
        from caig.generate.diffusion import DiffusionGenerator

        return DiffusionGenerator.from_config(gen)
    raise ConfigError(f"generate.backend={backend!r} is not a back end (expected one of {list(BACKENDS)})")
