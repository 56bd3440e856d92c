"""Seeded products of the synthetic world: attributes, e-commerce titles and RGBA cut-out images.

Everything here is what a real catalog would show (title, category, price, rating, colours, tags, the
cut-out image). What drives clicks is hidden in ``caig.sim.oracle``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from caig.errors import ConfigError
from caig.sim.vocabulary import CATEGORIES, COLORS

SIZES: tuple[str, ...] = ("small", "medium", "large")


@dataclass(frozen=True)
class ProductType:
    """A kind of product: its noun, the silhouette drawn for it, its physical size class and price."""

    noun: str
    shape: str
    size: str
    colors: tuple[str, ...]
    tags: tuple[str, ...]
    median_price: float
    specs: tuple[str, ...]


PRODUCT_TYPES: dict[str, tuple[ProductType, ...]] = {
    "beauty": (
        ProductType("Matte Lipstick", "tube", "small", ("vivid_red", "soft_pink", "warm_brown", "lavender"),
                    ("long-lasting", "moisturizing", "velvet finish", "gift set"), 25, ("3.5g", "4g")),
        ProductType("Hydrating Face Cream", "jar", "small", ("cream_white", "soft_pink", "mint_green", "gold"),
                    ("hydrating", "anti-aging", "sensitive skin", "night repair"), 45, ("50ml", "30ml")),
        ProductType("Eau de Parfum", "bottle", "small", ("soft_pink", "gold", "lavender", "pastel_blue"),
                    ("floral", "long-lasting", "gift for her", "fresh scent"), 80, ("50ml", "100ml")),
        ProductType("Nourishing Shower Gel", "bottle", "medium", ("soft_pink", "mint_green", "cream_white",
                                                                 "pastel_blue"),
                    ("moisturizing", "fragrant", "family size", "gentle"), 15, ("500ml", "1000ml")),
    ),
    "fashion": (
        ProductType("Leather Handbag", "bag", "medium", ("warm_brown", "charcoal_black", "beige", "vivid_red"),
                    ("genuine leather", "large capacity", "crossbody", "commuter"), 120, ("medium", "large")),
        ProductType("Running Sneakers", "shoe", "medium", ("cream_white", "charcoal_black", "navy_blue",
                                                         "vivid_red"),
                    ("breathable", "lightweight", "cushioned", "unisex"), 70, ("EU 38-45",)),
        ProductType("Summer Dress", "garment", "medium", ("soft_pink", "pastel_blue", "sunny_yellow",
                                                         "emerald_green"),
                    ("floral print", "A-line", "breathable", "holiday"), 40, ("S-XL",)),
        ProductType("Classic Wristwatch", "round", "small", ("silver_grey", "gold", "charcoal_black",
                                                            "navy_blue"),
                    ("waterproof", "quartz", "stainless steel", "business"), 150, ("40mm", "42mm")),
    ),
    "home": (
        ProductType("Fabric Sofa", "sofa", "large", ("beige", "silver_grey", "navy_blue", "emerald_green"),
                    ("3-seater", "removable cover", "modern", "living room"), 600, ("210cm", "180cm")),
        ProductType("Solid Wood Drawer Cabinet", "cabinet", "large", ("warm_brown", "cream_white", "beige"),
                    ("five-drawer", "storage", "solid walnut", "bedroom"), 350, ("5-drawer", "4-drawer")),
        ProductType("Ceramic Vase", "vase", "medium", ("cream_white", "teal", "lavender", "sunny_yellow"),
                    ("handmade", "nordic", "decorative", "table centerpiece"), 30, ("25cm", "30cm")),
        ProductType("Bedside Table Lamp", "lamp", "medium", ("cream_white", "gold", "charcoal_black",
                                                            "mint_green"),
                    ("dimmable", "warm light", "bedside", "reading"), 45, ("E27",)),
    ),
    "digital": (
        ProductType("5G Smartphone", "slab", "small", ("charcoal_black", "silver_grey", "navy_blue",
                                                      "lavender"),
                    ("OLED screen", "fast charging", "triple camera", "dual SIM"), 500, ("128GB", "256GB")),
        ProductType("Wireless Headphones", "headphones", "small", ("charcoal_black", "cream_white",
                                                                  "pastel_blue", "vivid_red"),
                    ("noise cancelling", "bluetooth 5.3", "40h battery", "foldable"), 120, ("over-ear",)),
        ProductType("Mirrorless Camera", "camera", "small", ("charcoal_black", "silver_grey"),
                    ("4K video", "interchangeable lens", "vlog", "image stabilization"), 900, ("24MP",)),
        ProductType("Smart Speaker", "speaker", "small", ("charcoal_black", "cream_white", "teal"),
                    ("voice assistant", "hi-fi", "wifi", "bluetooth"), 80, ("20W",)),
    ),
    "computers_appliances": (
        ProductType("Double-Door Refrigerator", "fridge", "large", ("silver_grey", "cream_white",
                                                                   "charcoal_black"),
                    ("frost-free", "energy saving", "inverter", "large capacity"), 800, ("450L", "520L")),
        ProductType("Front-Load Washing Machine", "washer", "large", ("cream_white", "silver_grey"),
                    ("inverter motor", "steam wash", "quiet", "energy class A"), 500, ("8kg", "10kg")),
        ProductType("Ultrathin Laptop", "laptop", "medium", ("silver_grey", "charcoal_black", "navy_blue"),
                    ("16GB RAM", "1TB SSD", "lightweight", "long battery"), 1100, ("14-inch", "16-inch")),
        ProductType("Microwave Oven", "microwave", "medium", ("cream_white", "charcoal_black", "silver_grey"),
                    ("grill", "defrost", "child lock", "compact"), 120, ("20L", "25L")),
    ),
    "food": (
        ProductType("Cold-Pressed Sesame Oil", "bottle", "small", ("sunny_yellow", "warm_brown", "gold"),
                    ("cold pressed", "time-honored brand", "cooking", "hot pot"), 9, ("235ml", "500ml")),
        ProductType("Roasted Coffee Beans", "pouch", "small", ("warm_brown", "charcoal_black", "vivid_red"),
                    ("arabica", "medium roast", "fresh", "single origin"), 18, ("500g", "1kg")),
        ProductType("Premium Tea Gift Box", "box", "medium", ("emerald_green", "vivid_red", "gold"),
                    ("gift box", "loose leaf", "spring harvest", "festival"), 35, ("250g",)),
        ProductType("Black Soy Milk Powder", "pouch", "small", ("charcoal_black", "cream_white",
                                                               "sunny_yellow"),
                    ("individually packaged", "no added sugar", "instant", "breakfast"), 12, ("450g",)),
    ),
    "sports": (
        ProductType("Non-Slip Yoga Mat", "mat", "medium", ("lavender", "teal", "mint_green", "soft_pink"),
                    ("non-slip", "eco TPE", "extra thick", "with strap"), 30, ("6mm", "8mm")),
        ProductType("Adjustable Dumbbell", "dumbbell", "medium", ("charcoal_black", "vivid_red", "silver_grey"),
                    ("adjustable", "home gym", "anti-slip grip", "pair"), 90, ("20kg", "40kg")),
        ProductType("Mountain Bike", "bicycle", "large", ("charcoal_black", "vivid_red", "navy_blue",
                                                         "emerald_green"),
                    ("21-speed", "disc brakes", "aluminium frame", "shock absorbing"), 400, ("27.5-inch",)),
        ProductType("Sports Water Bottle", "bottle", "small", ("teal", "pastel_blue", "charcoal_black",
                                                              "sunny_yellow"),
                    ("leak-proof", "BPA free", "insulated", "outdoor"), 20, ("750ml", "1L")),
    ),
    "baby_toys": (
        ProductType("Plush Teddy Bear", "bear", "medium", ("warm_brown", "beige", "soft_pink", "cream_white"),
                    ("super soft", "hypoallergenic", "gift", "cuddly"), 25, ("40cm", "60cm")),
        ProductType("Wooden Building Blocks", "blocks", "small", ("sunny_yellow", "pastel_blue", "mint_green",
                                                                 "vivid_red"),
                    ("educational", "non-toxic paint", "ages 3+", "100 pieces"), 30, ("100pcs",)),
        ProductType("Lightweight Baby Stroller", "stroller", "large", ("navy_blue", "silver_grey", "beige",
                                                                      "charcoal_black"),
                    ("foldable", "one-hand fold", "reclining", "newborn"), 250, ("0-36 months",)),
        ProductType("Anti-Colic Baby Bottle", "bottle", "small", ("pastel_blue", "soft_pink", "mint_green"),
                    ("BPA free", "anti-colic", "wide neck", "newborn"), 12, ("240ml", "160ml")),
    ),
}

_BRAND_SYLLABLES = ("lu", "ma", "ko", "ri", "sa", "ve", "no", "ta", "zen", "ora", "mi", "del", "xi", "ar",
                    "bel", "qu", "vo", "ly", "fen", "do")


@dataclass(frozen=True)
class Product:
    """A catalog entry. ``colors[0]`` is the main colour (the body of the cut-out)."""

    product_id: str
    title: str
    category: str
    price: float
    rating: float
    colors: tuple[str, ...]
    tags: tuple[str, ...]
    size: str
    shape: str

    @property
    def main_color(self) -> str:
        return self.colors[0]


@dataclass(frozen=True)
class World:
    """The seeded product catalog and the sim config it was drawn from (``config`` is the ``sim`` node)."""

    seed: int
    config: Mapping[str, Any]
    products: tuple[Product, ...]

    @cached_property
    def index(self) -> dict[str, int]:
        """Position of each product id in ``products``."""
        return {p.product_id: i for i, p in enumerate(self.products)}

    def product(self, product_id: str) -> Product:
        try:
            return self.products[self.index[product_id]]
        except KeyError:
            raise KeyError(f"unknown product_id {product_id!r} (the world has {len(self.products)} products)")


def sim_section(cfg: Mapping[str, Any]) -> Mapping[str, Any]:
    """The ``sim`` node of a composed config; a ``sim`` node itself is returned as is."""
    return cfg["sim"] if "sim" in cfg else cfg


def require(cfg: Mapping[str, Any], key: str) -> Any:
    """``cfg[key]`` of the sim section, or a ConfigError naming ``sim.<key>``."""
    if key not in cfg or cfg[key] is None:
        raise ConfigError(f"config key sim.{key} is missing")
    return cfg[key]


def make_world(cfg: Mapping[str, Any]) -> World:
    """Draw ``sim.n_products`` products with seed ``sim.seed``; the same config gives the same world.

    ``cfg`` is a composed config (its ``sim`` node is used) or the ``sim`` node itself.
    """
    sim = sim_section(cfg)
    seed = int(require(sim, "seed"))
    n = int(require(sim, "n_products"))
    if n < 1:
        raise ConfigError(f"sim.n_products must be >= 1, got {n}")
    if seed < 0:
        raise ConfigError(f"sim.seed must be >= 0, got {seed}")
    rng = np.random.default_rng([seed, 1])
    width = max(6, len(str(n - 1)))
    category = rng.integers(0, len(CATEGORIES), n)
    # One uniform per attribute and product, scaled to each product type's own list lengths.
    u = rng.random((n, 6))
    brand = rng.integers(0, len(_BRAND_SYLLABLES), (n, 2))
    has_second_color = rng.random(n) < 0.5
    price_factor = np.exp(rng.normal(0.0, 0.35, n))
    ratings = np.round(np.clip(4.9 - rng.gamma(2.0, 0.25, n), 3.0, 5.0), 1)
    color_keys = tuple(COLORS)
    category, u, brand = category.tolist(), u.tolist(), brand.tolist()
    has_second_color, price_factor, ratings = has_second_color.tolist(), price_factor.tolist(), ratings.tolist()
    products = []
    for i in range(n):
        cat = CATEGORIES[category[i]]
        types = PRODUCT_TYPES[cat]
        ptype = types[int(u[i][0] * len(types))]
        main = ptype.colors[int(u[i][1] * len(ptype.colors))]
        colors = (main,)
        if has_second_color[i]:
            others = [c for c in color_keys if c != main]
            colors += (others[int(u[i][2] * len(others))],)
        first = int(u[i][3] * len(ptype.tags))
        second = int(u[i][4] * (len(ptype.tags) - 1))
        second += second >= first
        tags = tuple(ptype.tags[j] for j in sorted((first, second)))
        spec = ptype.specs[int(u[i][5] * len(ptype.specs))]
        name = (_BRAND_SYLLABLES[brand[i][0]] + _BRAND_SYLLABLES[brand[i][1]]).upper()
        color_words = " / ".join(COLORS[c].phrase for c in colors)
        title = f"{name} {ptype.noun} {spec}, {color_words}, {', '.join(tags)}"
        price = round(ptype.median_price * price_factor[i], 2)
        products.append(Product(f"P{i:0{width}d}", title, cat, price, ratings[i], colors, tags,
                                ptype.size, ptype.shape))
    return World(seed=seed, config=sim, products=tuple(products))


def product_image(product: Product, size_px: int) -> Image.Image:
    """The product's RGBA cut-out: its silhouette in its colours on a transparent square canvas.

    Drawn 4x larger and downsampled, so the alpha mask has soft edges and an exactly opaque interior.
    """
    if size_px < 8:
        raise ValueError(f"product image size must be >= 8 px, got {size_px}")
    scale = 4
    big = size_px * scale
    canvas = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    main = COLORS[product.colors[0]].rgb
    accent = COLORS[product.colors[1]].rgb if len(product.colors) > 1 else _shade(main, 0.55)
    _SHAPES[product.shape](draw, big, main + (255,), accent + (255,), _shade(main, 0.6) + (255,))
    return canvas.resize((size_px, size_px), Image.Resampling.BOX)


def _shade(rgb: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    """A darker (factor < 1) or lighter variant, kept distinct from the colour itself."""
    if sum(rgb) < 150:
        return tuple(min(255, int(v + 90)) for v in rgb)  # type: ignore[return-value]
    return tuple(int(v * factor) for v in rgb)  # type: ignore[return-value]


def _box(s: int, x0: float, y0: float, x1: float, y1: float) -> tuple[float, float, float, float]:
    return (x0 * s, y0 * s, x1 * s, y1 * s)


def _draw_bottle(d: ImageDraw.ImageDraw, s: int, main, accent, dark) -> None:
    d.rounded_rectangle(_box(s, 0.32, 0.3, 0.68, 0.92), radius=s * 0.06, fill=main)
    d.rectangle(_box(s, 0.43, 0.16, 0.57, 0.31), fill=main)
    d.rectangle(_box(s, 0.41, 0.08, 0.59, 0.17), fill=accent)
    d.rectangle(_box(s, 0.32, 0.5, 0.68, 0.7), fill=accent)


def _draw_tube(d, s, main, accent, dark) -> None:
    d.rectangle(_box(s, 0.4, 0.42, 0.6, 0.92), fill=main)
    d.rectangle(_box(s, 0.42, 0.3, 0.58, 0.43), fill=accent)
    d.polygon([(0.43 * s, 0.3 * s), (0.57 * s, 0.2 * s), (0.57 * s, 0.3 * s)], fill=accent)


def _draw_jar(d, s, main, accent, dark) -> None:
    d.rounded_rectangle(_box(s, 0.22, 0.5, 0.78, 0.88), radius=s * 0.08, fill=main)
    d.rectangle(_box(s, 0.25, 0.4, 0.75, 0.51), fill=accent)


def _draw_bag(d, s, main, accent, dark) -> None:
    d.arc(_box(s, 0.33, 0.15, 0.67, 0.55), 180, 360, fill=dark, width=int(s * 0.04))
    d.polygon([(0.22 * s, 0.4 * s), (0.78 * s, 0.4 * s), (0.85 * s, 0.88 * s), (0.15 * s, 0.88 * s)], fill=main)
    d.rectangle(_box(s, 0.45, 0.46, 0.55, 0.54), fill=accent)


def _draw_shoe(d, s, main, accent, dark) -> None:
    d.polygon([(0.1 * s, 0.75 * s), (0.15 * s, 0.45 * s), (0.4 * s, 0.45 * s), (0.55 * s, 0.58 * s),
               (0.88 * s, 0.64 * s), (0.92 * s, 0.75 * s)], fill=main)
    d.rectangle(_box(s, 0.1, 0.75, 0.92, 0.82), fill=accent)


def _draw_garment(d, s, main, accent, dark) -> None:
    d.polygon([(0.38 * s, 0.12 * s), (0.62 * s, 0.12 * s), (0.66 * s, 0.4 * s), (0.82 * s, 0.9 * s),
               (0.18 * s, 0.9 * s), (0.34 * s, 0.4 * s)], fill=main)
    d.rectangle(_box(s, 0.34, 0.4, 0.66, 0.45), fill=accent)


def _draw_round(d, s, main, accent, dark) -> None:
    d.rectangle(_box(s, 0.42, 0.08, 0.58, 0.92), fill=dark)
    d.ellipse(_box(s, 0.28, 0.32, 0.72, 0.68), fill=main)
    d.ellipse(_box(s, 0.34, 0.38, 0.66, 0.62), fill=accent)


def _draw_sofa(d, s, main, accent, dark) -> None:
    d.rounded_rectangle(_box(s, 0.12, 0.3, 0.88, 0.62), radius=s * 0.05, fill=main)
    d.rectangle(_box(s, 0.06, 0.5, 0.94, 0.78), fill=main)
    d.rectangle(_box(s, 0.2, 0.5, 0.8, 0.6), fill=accent)
    d.rectangle(_box(s, 0.1, 0.78, 0.16, 0.86), fill=dark)
    d.rectangle(_box(s, 0.84, 0.78, 0.9, 0.86), fill=dark)


def _draw_cabinet(d, s, main, accent, dark) -> None:
    d.rectangle(_box(s, 0.18, 0.1, 0.82, 0.9), fill=main)
    for i in range(5):
        y = 0.14 + i * 0.15
        d.rectangle(_box(s, 0.22, y, 0.78, y + 0.12), fill=accent)
        d.rectangle(_box(s, 0.45, y + 0.05, 0.55, y + 0.07), fill=dark)


def _draw_vase(d, s, main, accent, dark) -> None:
    d.ellipse(_box(s, 0.25, 0.35, 0.75, 0.9), fill=main)
    d.rectangle(_box(s, 0.4, 0.12, 0.6, 0.45), fill=main)
    d.rectangle(_box(s, 0.25, 0.58, 0.75, 0.64), fill=accent)


def _draw_lamp(d, s, main, accent, dark) -> None:
    d.polygon([(0.32 * s, 0.1 * s), (0.68 * s, 0.1 * s), (0.8 * s, 0.42 * s), (0.2 * s, 0.42 * s)], fill=main)
    d.rectangle(_box(s, 0.47, 0.42, 0.53, 0.82), fill=accent)
    d.ellipse(_box(s, 0.3, 0.8, 0.7, 0.92), fill=accent)


def _draw_slab(d, s, main, accent, dark) -> None:
    d.rounded_rectangle(_box(s, 0.32, 0.1, 0.68, 0.9), radius=s * 0.05, fill=main)
    d.rectangle(_box(s, 0.35, 0.16, 0.65, 0.82), fill=accent)


def _draw_headphones(d, s, main, accent, dark) -> None:
    d.arc(_box(s, 0.2, 0.12, 0.8, 0.8), 180, 360, fill=main, width=int(s * 0.07))
    d.rounded_rectangle(_box(s, 0.14, 0.45, 0.32, 0.78), radius=s * 0.05, fill=main)
    d.rounded_rectangle(_box(s, 0.68, 0.45, 0.86, 0.78), radius=s * 0.05, fill=main)
    d.rectangle(_box(s, 0.18, 0.52, 0.28, 0.7), fill=accent)
    d.rectangle(_box(s, 0.72, 0.52, 0.82, 0.7), fill=accent)


def _draw_camera(d, s, main, accent, dark) -> None:
    d.rectangle(_box(s, 0.3, 0.28, 0.5, 0.36), fill=main)
    d.rounded_rectangle(_box(s, 0.12, 0.35, 0.88, 0.78), radius=s * 0.04, fill=main)
    d.ellipse(_box(s, 0.36, 0.4, 0.64, 0.72), fill=accent)
    d.ellipse(_box(s, 0.43, 0.47, 0.57, 0.63), fill=dark)


def _draw_speaker(d, s, main, accent, dark) -> None:
    d.rounded_rectangle(_box(s, 0.3, 0.15, 0.7, 0.9), radius=s * 0.15, fill=main)
    d.ellipse(_box(s, 0.38, 0.5, 0.62, 0.74), fill=accent)
    d.ellipse(_box(s, 0.44, 0.26, 0.56, 0.38), fill=accent)


def _draw_fridge(d, s, main, accent, dark) -> None:
    d.rounded_rectangle(_box(s, 0.25, 0.05, 0.75, 0.95), radius=s * 0.03, fill=main)
    d.rectangle(_box(s, 0.25, 0.38, 0.75, 0.4), fill=dark)
    d.rectangle(_box(s, 0.67, 0.15, 0.7, 0.32), fill=accent)
    d.rectangle(_box(s, 0.67, 0.46, 0.7, 0.7), fill=accent)


def _draw_washer(d, s, main, accent, dark) -> None:
    d.rectangle(_box(s, 0.18, 0.12, 0.82, 0.9), fill=main)
    d.rectangle(_box(s, 0.18, 0.12, 0.82, 0.26), fill=accent)
    d.ellipse(_box(s, 0.3, 0.36, 0.7, 0.8), fill=dark)
    d.ellipse(_box(s, 0.36, 0.42, 0.64, 0.74), fill=accent)


def _draw_laptop(d, s, main, accent, dark) -> None:
    d.rectangle(_box(s, 0.2, 0.22, 0.8, 0.66), fill=main)
    d.rectangle(_box(s, 0.24, 0.26, 0.76, 0.62), fill=accent)
    d.polygon([(0.2 * s, 0.66 * s), (0.8 * s, 0.66 * s), (0.92 * s, 0.76 * s), (0.08 * s, 0.76 * s)],
              fill=main)


def _draw_microwave(d, s, main, accent, dark) -> None:
    d.rectangle(_box(s, 0.1, 0.3, 0.9, 0.78), fill=main)
    d.rectangle(_box(s, 0.15, 0.36, 0.65, 0.72), fill=dark)
    d.rectangle(_box(s, 0.72, 0.38, 0.84, 0.46), fill=accent)


def _draw_box(d, s, main, accent, dark) -> None:
    d.rectangle(_box(s, 0.15, 0.3, 0.85, 0.85), fill=main)
    d.rectangle(_box(s, 0.45, 0.3, 0.55, 0.85), fill=accent)
    d.rectangle(_box(s, 0.15, 0.52, 0.85, 0.6), fill=accent)


def _draw_pouch(d, s, main, accent, dark) -> None:
    d.polygon([(0.3 * s, 0.12 * s), (0.7 * s, 0.12 * s), (0.76 * s, 0.9 * s), (0.24 * s, 0.9 * s)], fill=main)
    d.rectangle(_box(s, 0.3, 0.12, 0.7, 0.18), fill=dark)
    d.ellipse(_box(s, 0.38, 0.42, 0.62, 0.66), fill=accent)


def _draw_mat(d, s, main, accent, dark) -> None:
    d.rectangle(_box(s, 0.1, 0.5, 0.78, 0.8), fill=main)
    d.ellipse(_box(s, 0.68, 0.5, 0.9, 0.8), fill=accent)
    d.ellipse(_box(s, 0.74, 0.58, 0.84, 0.72), fill=dark)


def _draw_dumbbell(d, s, main, accent, dark) -> None:
    d.rectangle(_box(s, 0.2, 0.56, 0.8, 0.64), fill=accent)
    d.rounded_rectangle(_box(s, 0.1, 0.4, 0.3, 0.8), radius=s * 0.03, fill=main)
    d.rounded_rectangle(_box(s, 0.7, 0.4, 0.9, 0.8), radius=s * 0.03, fill=main)


def _draw_bicycle(d, s, main, accent, dark) -> None:
    width = int(s * 0.04)
    d.ellipse(_box(s, 0.04, 0.45, 0.4, 0.81), outline=dark, width=width)
    d.ellipse(_box(s, 0.6, 0.45, 0.96, 0.81), outline=dark, width=width)
    d.line([(0.22 * s, 0.63 * s), (0.45 * s, 0.4 * s), (0.78 * s, 0.63 * s), (0.5 * s, 0.63 * s),
            (0.22 * s, 0.63 * s)], fill=main, width=width)
    d.line([(0.45 * s, 0.4 * s), (0.7 * s, 0.4 * s), (0.78 * s, 0.63 * s)], fill=main, width=width)
    d.rectangle(_box(s, 0.38, 0.34, 0.5, 0.38), fill=accent)


def _draw_bear(d, s, main, accent, dark) -> None:
    d.ellipse(_box(s, 0.26, 0.45, 0.74, 0.92), fill=main)
    d.ellipse(_box(s, 0.3, 0.12, 0.7, 0.5), fill=main)
    d.ellipse(_box(s, 0.26, 0.1, 0.4, 0.24), fill=main)
    d.ellipse(_box(s, 0.6, 0.1, 0.74, 0.24), fill=main)
    d.ellipse(_box(s, 0.42, 0.3, 0.58, 0.44), fill=accent)
    d.ellipse(_box(s, 0.38, 0.58, 0.62, 0.82), fill=accent)


def _draw_blocks(d, s, main, accent, dark) -> None:
    d.rectangle(_box(s, 0.15, 0.6, 0.45, 0.9), fill=main)
    d.rectangle(_box(s, 0.5, 0.6, 0.8, 0.9), fill=accent)
    d.rectangle(_box(s, 0.32, 0.3, 0.62, 0.6), fill=dark)


def _draw_stroller(d, s, main, accent, dark) -> None:
    d.pieslice(_box(s, 0.15, 0.12, 0.75, 0.72), 180, 360, fill=main)
    d.rectangle(_box(s, 0.2, 0.42, 0.72, 0.6), fill=main)
    d.line([(0.72 * s, 0.55 * s), (0.88 * s, 0.15 * s)], fill=accent, width=int(s * 0.03))
    d.ellipse(_box(s, 0.18, 0.72, 0.34, 0.88), fill=dark)
    d.ellipse(_box(s, 0.58, 0.72, 0.74, 0.88), fill=dark)


_SHAPES = {
    "bottle": _draw_bottle, "tube": _draw_tube, "jar": _draw_jar, "bag": _draw_bag, "shoe": _draw_shoe,
    "garment": _draw_garment, "round": _draw_round, "sofa": _draw_sofa, "cabinet": _draw_cabinet,
    "vase": _draw_vase, "lamp": _draw_lamp, "slab": _draw_slab, "headphones": _draw_headphones,
    "camera": _draw_camera, "speaker": _draw_speaker, "fridge": _draw_fridge, "washer": _draw_washer,
    "laptop": _draw_laptop, "microwave": _draw_microwave, "box": _draw_box, "pouch": _draw_pouch,
    "mat": _draw_mat, "dumbbell": _draw_dumbbell, "bicycle": _draw_bicycle, "bear": _draw_bear,
    "blocks": _draw_blocks, "stroller": _draw_stroller,
}
