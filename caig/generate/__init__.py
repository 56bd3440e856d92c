"""Background generation: product inputs and the back ends that render (product, description) into an ad.

``make_generator(cfg)`` picks the back end named by ``cfg.generate.backend``: ``world`` (the synthetic
world's renderer) or ``diffusion`` (SD1.5 + ControlNet canny inpainting, imported only when chosen).
"""

from __future__ import annotations

from caig.generate.backends import BackgroundGenerator, WorldRenderer, make_generator
from caig.generate.products import ProductInput, load_caig_json, load_catalog_products, product_mask

__all__ = [
    "BackgroundGenerator",
    "ProductInput",
    "WorldRenderer",
    "load_caig_json",
    "load_catalog_products",
    "make_generator",
    "product_mask",
]
