"""Render an ad: a background drawn from its description, with the product cut-out pasted on top.

The pixels carry every slot of the description, so a model can learn from images what the oracle
rewards: the scene sets the layout and textures (wall, floor line, window, shelves, sand, trees...) and
how large the product appears (close-up vs wide scene), the colour the palette, the lighting the
brightness, gradient and tint, the prop small distinctive shapes, the style contrast/saturation/
texture. The product is pasted with its own alpha after all background effects, so wherever its
alpha is 255 the ad holds exactly the resized product's pixels. Pure numpy on cached layout layers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

from caig.sim.vocabulary import COLORS, SCENES, Background, parse_background

#: Largest side of the product (fraction of the ad) per scene distance.
PRODUCT_SCALE: dict[str, float] = {"close": 0.66, "medium": 0.5, "wide": 0.34}
NEUTRAL_PALETTE = np.array([0.86, 0.84, 0.80], dtype=np.float32)


def as_rgba(image: Image.Image) -> Image.Image:
    """Any PIL image as RGBA, keeping its transparency (alpha, palette tRNS, colour key) as the alpha.

    High bit-depth greyscale is rescaled to 8 bits instead of being clipped; an image without any
    transparency is fully opaque.
    """
    image.load()
    if image.mode == "RGBA":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") else max(float(values.max()), 1.0)
        grey = np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGBA")
    if image.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        return image.convert("RGB").convert("RGBA")
    return image.convert("RGBA")


@dataclass(frozen=True)
class Placement:
    """Where the product goes: its resized RGBA cut-out and its top-left corner in the ad."""

    image: Image.Image
    x: int
    y: int

    def mask(self, size: int) -> np.ndarray:
        """The product's alpha (uint8, 0..255) on the full size x size ad canvas (e.g. an inpainting mask)."""
        out = np.zeros((size, size), dtype=np.uint8)
        out[self.y:self.y + self.image.height, self.x:self.x + self.image.width] = np.asarray(self.image)[..., 3]
        return out


def _ground(scene: str | None) -> float:
    """Where the product stands (fraction of the height from the top) in a scene."""
    return _LAYOUTS[scene][1]


def place_product(product_image: Image.Image, background: Background | str, size: int, seed: int = 0) -> Placement:
    """Crop the cut-out to its alpha box, scale it for the scene and stand it on the scene's ground.

    Close-up scenes show the product large, wide scenes small; the horizontal position varies a
    little with ``seed``.
    """
    bg = parse_background(background) if isinstance(background, str) else background
    rgba = as_rgba(product_image)
    bbox = rgba.getchannel("A").getbbox()
    if bbox is None:
        raise ValueError("the product image is fully transparent (its alpha mask is empty)")
    rgba = rgba.crop(bbox)
    scale = PRODUCT_SCALE[SCENES[bg.scene].scale] if bg.scene else PRODUCT_SCALE["medium"]
    side = max(1.0, scale * size)
    factor = side / max(rgba.size)
    w, h = max(1, round(rgba.width * factor)), max(1, round(rgba.height * factor))
    if (w, h) != rgba.size:
        rgba = rgba.resize((w, h), Image.Resampling.LANCZOS if factor < 1 else Image.Resampling.BICUBIC)
    rng = np.random.default_rng([seed, 7])
    cx = size * (0.5 + rng.uniform(-0.08, 0.08))
    x = int(np.clip(round(cx - w / 2), 0, size - w))
    y = int(np.clip(round(_ground(bg.scene) * size - h), 0, size - h))
    return Placement(rgba, x, y)


def render_ad(product_image: Image.Image, background: Background | str, size: int, seed: int = 0) -> Image.Image:
    """The ad (RGB, size x size): the described background with the product pasted by its alpha.

    A string description is parsed with ``parse_background``. ``seed`` moves props, the product's
    position and texture noise; the same arguments give the same pixels.
    """
    if size < 16:
        raise ValueError(f"ad size must be >= 16 px, got {size}")
    bg = parse_background(background) if isinstance(background, str) else background
    placement = place_product(product_image, bg, size, seed)
    canvas = render_background(bg, size, seed, placement)
    product = np.asarray(placement.image, dtype=np.float32)
    h, w = product.shape[:2]
    alpha = product[..., 3:4] / 255.0
    region = canvas[placement.y:placement.y + h, placement.x:placement.x + w]
    region[:] = region * (1.0 - alpha) + product[..., :3] * alpha
    return Image.fromarray(np.rint(canvas).astype(np.uint8), "RGB")


def render_background(background: Background | str, size: int, seed: int = 0,
                      placement: Placement | None = None) -> np.ndarray:
    """The background alone as float32 (size, size, 3) in 0..255; with a placement, props avoid the
    product and a soft shadow sits under it."""
    bg = parse_background(background) if isinstance(background, str) else background
    grid = _grid(size)
    material, tint = _layout(bg.scene, size)
    palette = np.asarray(COLORS[bg.color].rgb, dtype=np.float32) / 255.0 if bg.color else NEUTRAL_PALETTE
    shade = material.mean(axis=2, keepdims=True)
    img = material * (1.0 - tint[..., None]) + palette * (0.55 + 0.55 * shade) * tint[..., None]
    rng = np.random.default_rng([seed, 11])
    if placement is not None:
        _shadow(img, grid, placement, size)
    if bg.prop:
        _PROPS[bg.prop](img, grid, rng, _prop_anchors(bg.scene, placement, size, rng))
    if bg.lighting:
        gain, tint_rgb, glow = _lighting(bg.lighting, size)
        img = img * gain[..., None] * tint_rgb + glow
        if bg.lighting == "soft_diffused":
            img = img.mean(axis=(0, 1)) + 0.75 * (img - img.mean(axis=(0, 1)))
    if bg.style:
        img = _STYLES[bg.style](img, grid, rng)
    return np.clip(img, 0.0, 1.0) * 255.0


# ------------------------------------------------------------------------------------------- grids
@dataclass(frozen=True)
class _Grid:
    yy: np.ndarray
    xx: np.ndarray


@lru_cache(maxsize=8)
def _grid(size: int) -> _Grid:
    c = (np.arange(size, dtype=np.float32) + 0.5) / size
    yy, xx = np.meshgrid(c, c, indexing="ij")
    return _Grid(yy, xx)


def _rgb(*v: float) -> np.ndarray:
    return np.array(v, dtype=np.float32)


def _rect(g: _Grid, y0: float, x0: float, y1: float, x1: float) -> np.ndarray:
    return (g.yy >= y0) & (g.yy < y1) & (g.xx >= x0) & (g.xx < x1)


def _ellipse(g: _Grid, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    return ((g.yy - cy) / ry) ** 2 + ((g.xx - cx) / rx) ** 2 < 1.0


# ------------------------------------------------------------------------------------------- scenes
# A layout is (material colours, palette weight): the colour phrase tints each pixel by its weight.
_Layout = tuple[np.ndarray, np.ndarray]
WALL = _rgb(0.9, 0.88, 0.85)


def _room(g: _Grid, horizon: float, wall: np.ndarray, floor: np.ndarray, wall_tint: float = 0.8,
          floor_tint: float = 0.3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Wall above the horizon, floor/surface below, with a dark edge at the horizon."""
    below = g.yy >= horizon
    material = np.where(below[..., None], floor, wall).astype(np.float32)
    tint = np.where(below, floor_tint, wall_tint).astype(np.float32)
    edge = np.abs(g.yy - horizon) < 0.012
    material[edge] *= 0.6
    return material, tint, below


def _marble_counter(g: _Grid) -> _Layout:
    m, t, below = _room(g, 0.62, WALL, _rgb(0.93, 0.93, 0.91), floor_tint=0.2)
    veins = np.abs(np.sin(14 * (g.xx + 0.4 * g.yy) + 3 * np.sin(6 * g.yy))) < 0.12
    m[below & veins] = _rgb(0.62, 0.62, 0.66)
    tiles = ((g.xx * 6) % 1 < 0.04) | ((g.yy * 6) % 1 < 0.04)
    m[~below & tiles] *= 0.85
    return m, t


def _dressing_table(g: _Grid) -> _Layout:
    m, t, below = _room(g, 0.66, WALL, _rgb(0.78, 0.62, 0.48))
    frame = _ellipse(g, 0.3, 0.5, 0.27, 0.21)
    m[frame] = _rgb(0.78, 0.66, 0.38)
    glass = _ellipse(g, 0.3, 0.5, 0.24, 0.18)
    m[glass] = _rgb(0.82, 0.9, 0.95)
    t[frame] = 0.15
    m[below & (np.abs(g.yy - 0.83) < 0.01)] *= 0.6
    return m, t


def _wooden_tabletop(g: _Grid) -> _Layout:
    m, t, below = _room(g, 0.58, WALL, _rgb(0.6, 0.42, 0.26), floor_tint=0.25)
    grain = 0.85 + 0.15 * np.sin(45 * g.yy + 3 * np.sin(7 * g.xx))
    m[below] *= grain[below][:, None]
    return m, t


def _kitchen_counter(g: _Grid) -> _Layout:
    m, t, below = _room(g, 0.6, _rgb(0.95, 0.95, 0.95), _rgb(0.35, 0.35, 0.38), floor_tint=0.15)
    tiles = (((g.xx * 8) % 1 < 0.07) | ((g.yy * 10) % 1 < 0.07)) & ~below & (g.yy > 0.2)
    m[tiles] = _rgb(0.55, 0.55, 0.55)
    cabinets = g.yy < 0.2
    m[cabinets] = _rgb(0.75, 0.72, 0.68)
    m[cabinets & (((g.xx * 3) % 1) < 0.02)] = _rgb(0.4, 0.4, 0.4)
    t[cabinets] = 0.4
    return m, t


def _office_desk(g: _Grid) -> _Layout:
    m, t, below = _room(g, 0.64, WALL, _rgb(0.55, 0.56, 0.6), floor_tint=0.2)
    monitor = _rect(g, 0.2, 0.06, 0.56, 0.36)
    m[monitor] = _rgb(0.12, 0.12, 0.14)
    m[_rect(g, 0.23, 0.09, 0.52, 0.33)] = _rgb(0.45, 0.65, 0.85)
    m[_rect(g, 0.56, 0.19, 0.64, 0.23)] = _rgb(0.12, 0.12, 0.14)
    t[monitor] = 0.0
    return m, t


def _studio(g: _Grid) -> _Layout:
    light = 1.0 - 0.35 * ((g.yy - 0.45) ** 2 + 0.6 * (g.xx - 0.5) ** 2)
    m = (WALL * light[..., None]).astype(np.float32)
    return m, np.full(g.yy.shape, 0.85, np.float32)


def _display_podium(g: _Grid) -> _Layout:
    m, t, below = _room(g, 0.8, WALL, _rgb(0.8, 0.78, 0.75))
    body = _rect(g, 0.72, 0.18, 0.95, 0.82) | _ellipse(g, 0.95, 0.5, 0.04, 0.32)
    m[body] = _rgb(0.97, 0.96, 0.94) * (0.8 + 0.2 * np.cos((g.xx[body] - 0.5) * 3))[:, None]
    top = _ellipse(g, 0.72, 0.5, 0.05, 0.32)
    m[top] = _rgb(1.0, 1.0, 0.98)
    t[body | top] = 0.35
    return m, t


def _store_shelf(g: _Grid) -> _Layout:
    m, t, below = _room(g, 0.88, _rgb(0.88, 0.86, 0.82), _rgb(0.7, 0.7, 0.7))
    for y in (0.28, 0.56):
        m[np.abs(g.yy - y) < 0.02] = _rgb(0.45, 0.35, 0.25)
        goods = (g.yy < y - 0.02) & (g.yy > y - 0.14) & (((g.xx * 9) % 1) < 0.7)
        hue = np.floor(g.xx * 9) % 3
        m[goods & (hue == 0)] = _rgb(0.85, 0.3, 0.25)
        m[goods & (hue == 1)] = _rgb(0.3, 0.55, 0.8)
        m[goods & (hue == 2)] = _rgb(0.95, 0.8, 0.3)
        t[goods] = 0.2
    return m, t


def _boutique(g: _Grid) -> _Layout:
    m, t, below = _room(g, 0.78, WALL, _rgb(0.7, 0.55, 0.4))
    m[np.abs(g.yy - 0.12) < 0.012] = _rgb(0.3, 0.3, 0.3)
    clothes = (g.yy > 0.13) & (g.yy < 0.5) & (((g.xx * 7) % 1) < 0.6)
    hue = np.floor(g.xx * 7) % 4
    for k, colour in enumerate((_rgb(0.3, 0.3, 0.5), _rgb(0.85, 0.75, 0.65), _rgb(0.6, 0.2, 0.3),
                                _rgb(0.2, 0.45, 0.4))):
        m[clothes & (hue == k)] = colour
    t[clothes] = 0.2
    return m, t


def _gym(g: _Grid) -> _Layout:
    m, t, below = _room(g, 0.72, _rgb(0.8, 0.8, 0.8), _rgb(0.2, 0.2, 0.22), floor_tint=0.15)
    mirrors = ~below & (g.yy > 0.08) & (((g.xx * 4) % 1) > 0.08)
    m[mirrors] = _rgb(0.7, 0.78, 0.82)
    m[~below & (np.abs(g.yy - 0.4) < 0.015)] = _rgb(0.25, 0.25, 0.25)
    speckle = below & ((np.sin(g.xx * 211) * np.sin(g.yy * 173)) > 0.6)
    m[speckle] = _rgb(0.45, 0.45, 0.5)
    return m, t


def _playroom(g: _Grid) -> _Layout:
    m, t, below = _room(g, 0.7, WALL, _rgb(0.95, 0.95, 0.95), floor_tint=0.5)
    checker = below & ((np.floor(g.xx * 8) + np.floor(g.yy * 10)) % 2 == 0)
    m[checker] = _rgb(0.95, 0.75, 0.3)
    dots = ~below & ((((g.xx * 6) % 1) - 0.5) ** 2 + (((g.yy * 6) % 1) - 0.5) ** 2 < 0.03)
    m[dots] = _rgb(0.4, 0.7, 0.95)
    t[dots] = 0.2
    return m, t


def _living_room(g: _Grid) -> _Layout:
    m, t, below = _room(g, 0.72, WALL, _rgb(0.62, 0.45, 0.3), floor_tint=0.2)
    window = _rect(g, 0.1, 0.06, 0.55, 0.36)
    m[window] = _rgb(0.85, 0.93, 1.0)
    bars = window & ((np.abs(g.xx - 0.21) < 0.01) | (np.abs(g.yy - 0.32) < 0.01))
    m[bars] = _rgb(0.95, 0.95, 0.95)
    t[window] = 0.1
    picture = _rect(g, 0.18, 0.62, 0.42, 0.88)
    m[picture] = _rgb(0.35, 0.3, 0.25)
    m[_rect(g, 0.2, 0.64, 0.4, 0.86)] = _rgb(0.55, 0.7, 0.6)
    planks = below & (((g.xx * 5 + 0.5 * np.floor(g.yy * 12)) % 1) < 0.04)
    m[planks] *= 0.7
    return m, t


def _bedroom(g: _Grid) -> _Layout:
    m, t, below = _room(g, 0.75, WALL, _rgb(0.7, 0.6, 0.5))
    head = _rect(g, 0.3, 0.02, 0.62, 0.5)
    m[head] = _rgb(0.5, 0.38, 0.28)
    bed = _rect(g, 0.48, 0.02, 0.74, 0.6)
    m[bed] = _rgb(0.97, 0.97, 0.97)
    m[_ellipse(g, 0.5, 0.15, 0.05, 0.1)] = _rgb(0.9, 0.88, 0.85)
    t[head] = 0.2
    t[bed] = 0.45
    return m, t


def _sky(g: _Grid, horizon: float) -> tuple[np.ndarray, np.ndarray]:
    sky = _rgb(0.55, 0.75, 0.95) + _rgb(0.3, 0.18, 0.05) * (g.yy / horizon)[..., None]
    return sky.astype(np.float32), g.yy < horizon


def _garden(g: _Grid) -> _Layout:
    m, upper = _sky(g, 0.45)
    hedge = (g.yy >= 0.45 - 0.05 * np.abs(np.sin(g.xx * 25))) & (g.yy < 0.6)
    m[hedge] = _rgb(0.15, 0.4, 0.18)
    lawn = g.yy >= 0.6
    m[lawn] = _rgb(0.35, 0.65, 0.3)
    m[lawn & ((g.xx * 6 % 1) < 0.5)] = _rgb(0.42, 0.72, 0.36)
    t = np.where(upper, 0.7, 0.3).astype(np.float32)
    return m, t


def _beach(g: _Grid) -> _Layout:
    m, upper = _sky(g, 0.45)
    sea = (g.yy >= 0.45) & (g.yy < 0.58)
    m[sea] = _rgb(0.15, 0.45, 0.7)
    m[np.abs(g.yy - 0.58 - 0.01 * np.sin(g.xx * 30)) < 0.012] = _rgb(1.0, 1.0, 1.0)
    sand = g.yy >= 0.59
    m[sand] = _rgb(0.93, 0.83, 0.62)
    m[sand & ((np.sin(g.xx * 197) * np.sin(g.yy * 151)) > 0.7)] = _rgb(0.8, 0.7, 0.5)
    t = np.where(upper, 0.7, 0.3).astype(np.float32)
    return m, t


def _city_street(g: _Grid) -> _Layout:
    m, upper = _sky(g, 0.75)
    heights = 0.15 + 0.4 * np.abs(np.sin(np.floor(g.xx * 7) * 2.3))
    building = (g.yy > heights) & (g.yy < 0.75)
    m[building] = _rgb(0.4, 0.4, 0.45)
    windows = building & ((g.xx * 28 % 1) < 0.4) & ((g.yy * 28 % 1) < 0.4)
    m[windows] = _rgb(0.95, 0.9, 0.6)
    road = g.yy >= 0.75
    m[road] = _rgb(0.3, 0.3, 0.32)
    m[road & (np.abs(g.yy - 0.9) < 0.01) & ((g.xx * 5 % 1) < 0.5)] = _rgb(0.95, 0.95, 0.9)
    t = np.where(building, 0.3, np.where(upper, 0.75, 0.15)).astype(np.float32)
    return m, t


def _forest(g: _Grid) -> _Layout:
    m = (_rgb(0.35, 0.55, 0.35) + _rgb(0.2, 0.2, 0.1) * (1 - g.yy)[..., None]).astype(np.float32)
    trunk = (np.abs(np.sin(g.xx * 23 + np.sin(g.xx * 5))) > 0.85) & (g.yy < 0.8)
    m[trunk] = _rgb(0.3, 0.2, 0.12)
    ground = g.yy >= 0.72
    m[ground] = _rgb(0.35, 0.28, 0.18)
    path = ground & (np.abs(g.xx - 0.5) < 0.1 + 0.6 * (g.yy - 0.72))
    m[path] = _rgb(0.7, 0.6, 0.45)
    t = np.where(trunk, 0.15, 0.5).astype(np.float32)
    return m, t


def _plain(g: _Grid) -> _Layout:
    return np.broadcast_to(WALL, g.yy.shape + (3,)).astype(np.float32), np.full(g.yy.shape, 0.9, np.float32)


#: Scene key -> (layout, ground line where the product stands, fraction of the height).
_LAYOUTS: dict[str | None, tuple[Callable[[_Grid], _Layout], float]] = {
    "marble_counter": (_marble_counter, 0.86), "dressing_table": (_dressing_table, 0.88),
    "wooden_tabletop": (_wooden_tabletop, 0.86), "kitchen_counter": (_kitchen_counter, 0.86),
    "office_desk": (_office_desk, 0.88), "studio": (_studio, 0.82), "display_podium": (_display_podium, 0.73),
    "store_shelf": (_store_shelf, 0.93), "boutique": (_boutique, 0.9), "gym": (_gym, 0.88),
    "playroom": (_playroom, 0.88), "living_room": (_living_room, 0.86), "bedroom": (_bedroom, 0.9),
    "garden": (_garden, 0.86), "beach": (_beach, 0.86), "city_street": (_city_street, 0.88),
    "forest": (_forest, 0.9), None: (_plain, 0.84),
}


@lru_cache(maxsize=128)
def _layout(scene: str | None, size: int) -> _Layout:
    material, tint = _LAYOUTS[scene][0](_grid(size))
    material.setflags(write=False)
    tint.setflags(write=False)
    return material, tint


def _shadow(img: np.ndarray, g: _Grid, placement: Placement, size: int) -> None:
    w, h = placement.image.size
    cx, base = (placement.x + w / 2) / size, (placement.y + h) / size
    soft = _ellipse(g, base, cx, 0.035, 0.55 * w / size)
    img[soft] *= 0.7


# ------------------------------------------------------------------------------------------- props
def _prop_anchors(scene: str | None, placement: Placement | None, size: int,
                  rng: np.random.Generator) -> list[tuple[float, float, float]]:
    """(cy, cx, radius) spots on the ground beside the product, in ad fractions."""
    scale = SCENES[scene].scale if scene else "medium"
    radius = {"close": 0.11, "medium": 0.095, "wide": 0.08}[scale]
    ground = _ground(scene)
    if placement is None:
        left, right = 0.35, 0.65
    else:
        left, right = placement.x / size, (placement.x + placement.image.width) / size
    spots = []
    for side in (-1, 1):
        room = left if side < 0 else 1.0 - right
        if room > 1.6 * radius:
            cx = (left - room / 2) if side < 0 else (right + room / 2)
        else:
            cx = 0.1 if side < 0 else 0.9
        spots.append((ground - radius + rng.uniform(-0.02, 0.01), cx + rng.uniform(-0.02, 0.02), radius))
    return spots


def _flowers(img, g, rng, spots) -> None:
    for cy, cx, r in spots:
        img[_rect(g, cy - 0.2 * r, cx - 0.25 * r, cy + r, cx + 0.25 * r)] = _rgb(0.85, 0.85, 0.9)
        img[_rect(g, cy - 1.2 * r, cx - 0.06 * r, cy, cx + 0.06 * r)] = _rgb(0.2, 0.55, 0.25)
        for dy, dx, colour in ((-1.5, -0.5, _rgb(0.95, 0.45, 0.6)), (-1.7, 0.4, _rgb(1.0, 0.95, 0.95)),
                               (-1.1, 0.6, _rgb(0.95, 0.3, 0.45))):
            img[_ellipse(g, cy + dy * r, cx + dx * r, 0.45 * r, 0.45 * r)] = colour
            img[_ellipse(g, cy + dy * r, cx + dx * r, 0.15 * r, 0.15 * r)] = _rgb(1.0, 0.85, 0.2)


def _plant(img, g, rng, spots) -> None:
    for cy, cx, r in spots:
        img[_rect(g, cy, cx - 0.45 * r, cy + r, cx + 0.45 * r)] = _rgb(0.75, 0.4, 0.25)
        for dx in (-0.5, 0.0, 0.5):
            img[_ellipse(g, cy - 0.8 * r, cx + dx * r, 0.8 * r, 0.3 * r)] = _rgb(0.15, 0.55, 0.2)


def _candles(img, g, rng, spots) -> None:
    for cy, cx, r in spots:
        for dx, tall in ((-0.4, 1.4), (0.4, 1.0)):
            img[_ellipse(g, cy + (0.8 - tall) * r - 0.4 * r, cx + dx * r, 0.7 * r, 0.6 * r)] *= 1.25
            img[_rect(g, cy + (1 - tall) * r, cx + (dx - 0.2) * r, cy + r, cx + (dx + 0.2) * r)] = \
                _rgb(0.98, 0.95, 0.85)
            img[_ellipse(g, cy + (0.8 - tall) * r - 0.2 * r, cx + dx * r, 0.22 * r, 0.1 * r)] = _rgb(1.0, 0.7, 0.1)


def _books(img, g, rng, spots) -> None:
    for cy, cx, r in spots:
        for k, colour in enumerate((_rgb(0.6, 0.15, 0.15), _rgb(0.15, 0.3, 0.55), _rgb(0.2, 0.45, 0.25))):
            y = cy + r - (k + 1) * 0.4 * r
            img[_rect(g, y, cx - r + 0.1 * k * r, y + 0.38 * r, cx + r - 0.1 * k * r)] = colour


def _coffee(img, g, rng, spots) -> None:
    for cy, cx, r in spots:
        ring = _ellipse(g, cy + 0.2 * r, cx + 0.6 * r, 0.35 * r, 0.3 * r) & \
            ~_ellipse(g, cy + 0.2 * r, cx + 0.6 * r, 0.18 * r, 0.14 * r)
        img[ring] = _rgb(0.97, 0.97, 0.97)
        img[_rect(g, cy - 0.3 * r, cx - 0.5 * r, cy + r, cx + 0.5 * r)] = _rgb(0.97, 0.97, 0.97)
        img[_ellipse(g, cy - 0.3 * r, cx, 0.15 * r, 0.5 * r)] = _rgb(0.35, 0.2, 0.1)


def _pebbles(img, g, rng, spots) -> None:
    for cy, cx, r in spots:
        for dx, dy, s, v in ((-0.5, 0.6, 0.6, 0.55), (0.45, 0.65, 0.5, 0.7), (0.0, 0.3, 0.45, 0.45)):
            img[_ellipse(g, cy + dy * r, cx + dx * r, 0.55 * s * r, s * r)] = _rgb(v, v, v + 0.03)


def _gifts(img, g, rng, spots) -> None:
    for (cy, cx, r), colour in zip(spots, (_rgb(0.8, 0.15, 0.2), _rgb(0.2, 0.4, 0.75)), strict=False):
        img[_rect(g, cy - 0.5 * r, cx - 0.8 * r, cy + r, cx + 0.8 * r)] = colour
        img[_rect(g, cy - 0.5 * r, cx - 0.12 * r, cy + r, cx + 0.12 * r)] = _rgb(1.0, 0.85, 0.3)
        img[_rect(g, cy + 0.1 * r, cx - 0.8 * r, cy + 0.3 * r, cx + 0.8 * r)] = _rgb(1.0, 0.85, 0.3)


def _balloons(img, g, rng, spots) -> None:
    colours = (_rgb(0.95, 0.3, 0.35), _rgb(0.3, 0.6, 0.95), _rgb(1.0, 0.85, 0.25))
    for cy, cx, r in spots:
        for k, dx in enumerate((-0.7, 0.0, 0.7)):
            top = cy - (3.0 + 0.5 * (k % 2)) * r
            img[_rect(g, top, cx + dx * r - 0.02, cy + r, cx + dx * r + 0.005)] = _rgb(0.5, 0.5, 0.5)
            img[_ellipse(g, top, cx + dx * r, 0.75 * r, 0.6 * r)] = colours[k]


def _fruit(img, g, rng, spots) -> None:
    for cy, cx, r in spots:
        img[_ellipse(g, cy + 0.7 * r, cx, 0.35 * r, 1.0 * r)] = _rgb(0.6, 0.45, 0.3)
        for dx, dy, colour in ((-0.5, 0.2, _rgb(1.0, 0.6, 0.1)), (0.5, 0.2, _rgb(0.9, 0.15, 0.15)),
                               (0.0, -0.2, _rgb(1.0, 0.9, 0.2))):
            img[_ellipse(g, cy + dy * r, cx + dx * r, 0.45 * r, 0.45 * r)] = colour


def _seashells(img, g, rng, spots) -> None:
    for cy, cx, r in spots:
        for dx in (-0.5, 0.5):
            fan = _ellipse(g, cy + 0.8 * r, cx + dx * r, 0.7 * r, 0.55 * r) & (g.yy < cy + 0.8 * r)
            img[fan] = _rgb(0.98, 0.85, 0.8)
            ribs = fan & (np.abs(np.sin((g.xx - cx - dx * r) / r * 9)) < 0.3)
            img[ribs] = _rgb(0.85, 0.6, 0.55)


def _confetti(img, g, rng, spots) -> None:
    size = img.shape[0]
    n = max(12, size * size // 45)
    ys, xs = rng.integers(0, size - 1, n), rng.integers(0, size - 1, n)
    palette = np.array([(1.0, 0.2, 0.3), (1.0, 0.85, 0.1), (0.2, 0.8, 0.4), (0.2, 0.5, 1.0), (0.9, 0.3, 0.9)],
                       dtype=np.float32)
    colours = palette[rng.integers(0, len(palette), n)]
    for dy, dx in ((0, 0), (0, 1), (1, 0)):
        img[ys + dy, xs + dx] = colours


def _fireworks(img, g, rng, spots) -> None:
    size = img.shape[0]
    for k, colour in enumerate((_rgb(1.0, 0.85, 0.3), _rgb(1.0, 0.35, 0.6))):
        cy, cx = rng.uniform(0.12, 0.3), (0.25 if k == 0 else 0.72) + rng.uniform(-0.05, 0.05)
        angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)[:, None]
        radii = np.linspace(0.02, 0.16, max(6, size // 8))[None, :]
        ys = np.clip(((cy + radii * np.sin(angles)) * size).astype(int), 0, size - 1)
        xs = np.clip(((cx + radii * np.cos(angles)) * size).astype(int), 0, size - 1)
        img[ys, xs] = colour
        img[_ellipse(g, cy, cx, 0.025, 0.025)] = _rgb(1.0, 1.0, 0.9)


_PROPS: dict[str, Callable[..., None]] = {
    "flowers": _flowers, "plant": _plant, "candles": _candles, "books": _books, "coffee": _coffee,
    "pebbles": _pebbles, "gifts": _gifts, "balloons": _balloons, "fruit": _fruit, "seashells": _seashells,
    "confetti": _confetti, "fireworks": _fireworks,
}


# ------------------------------------------------------------------------------------------- lighting
@lru_cache(maxsize=64)
def _lighting(lighting: str, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(gain map, RGB tint, additive glow) of one lighting phrase."""
    g = _grid(size)
    zero = np.zeros(g.yy.shape + (3,), np.float32)
    spot = np.exp(-((g.xx - 0.5) ** 2 + (g.yy - 0.55) ** 2) / 0.05)
    if lighting == "warm_morning":
        out = (1.0 + 0.22 * (1 - (g.xx + g.yy) / 2), _rgb(1.06, 1.0, 0.86), zero)
    elif lighting == "soft_diffused":
        out = (np.full(g.yy.shape, 1.05, np.float32), _rgb(1.0, 1.0, 1.0), zero)
    elif lighting == "bright_daylight":
        out = (np.full(g.yy.shape, 1.2, np.float32), _rgb(1.0, 1.0, 1.04), zero + 0.02)
    elif lighting == "spotlight":
        out = (0.25 + 1.0 * spot, _rgb(1.0, 1.0, 1.0), zero)
    elif lighting == "golden_hour":
        out = (0.85 + 0.35 * g.xx, _rgb(1.2, 0.92, 0.62), zero)
    elif lighting == "candlelight":
        out = (0.35 + 0.45 * spot, _rgb(1.25, 0.88, 0.55), zero)
    elif lighting == "neon":
        glow = zero.copy()
        glow += _rgb(1.0, 0.1, 0.8) * np.exp(-((g.yy - 0.1) ** 2) / 0.0015)[..., None]
        glow += _rgb(0.1, 0.9, 1.0) * np.exp(-((g.xx - 0.07) ** 2) / 0.001)[..., None]
        glow += _rgb(0.1, 0.9, 1.0) * np.exp(-((g.xx - 0.93) ** 2) / 0.001)[..., None]
        out = (np.full(g.yy.shape, 0.38, np.float32), _rgb(0.9, 0.8, 1.1), glow)
    else:
        raise KeyError(f"no lighting treatment for {lighting!r}")
    gain, tint, glow = (np.asarray(a, dtype=np.float32) for a in out)
    for a in (gain, tint, glow):
        a.setflags(write=False)
    return gain, tint, glow


# ------------------------------------------------------------------------------------------- styles
def _saturate(img: np.ndarray, factor: float) -> np.ndarray:
    grey = img.mean(axis=2, keepdims=True)
    return grey + factor * (img - grey)


def _contrast(img: np.ndarray, factor: float, centre: float = 0.5) -> np.ndarray:
    return centre + factor * (img - centre)


def _minimalist(img, g, rng):
    return _saturate(img.mean(axis=(0, 1)) + 0.65 * (img - img.mean(axis=(0, 1))), 0.8)


def _luxurious(img, g, rng):
    sheen = 0.08 * (np.abs(((g.xx + g.yy) * 4) % 1 - 0.5) < 0.05)
    return _contrast(img, 1.25) + sheen[..., None] * _rgb(1.0, 0.8, 0.3)


def _rustic(img, g, rng):
    grain = rng.normal(0.0, 0.045, g.yy.shape).astype(np.float32)[..., None]
    return img * _rgb(1.05, 0.97, 0.85) + grain


def _modern(img, g, rng):
    return _saturate(_contrast(img, 1.4), 0.85)


def _vintage(img, g, rng):
    grey = img.mean(axis=2, keepdims=True)
    sepia = grey * _rgb(1.1, 0.95, 0.7)
    vignette = 1.0 - 0.9 * ((g.xx - 0.5) ** 2 + (g.yy - 0.5) ** 2)
    return (0.35 * img + 0.65 * sepia) * vignette[..., None]


def _playful(img, g, rng):
    return _saturate(img, 1.7) + 0.04


def _elegant(img, g, rng):
    return _saturate(_contrast(img, 0.85, 0.6), 0.6)


def _pop_art(img, g, rng):
    img = np.round(np.clip(_saturate(img, 2.2), 0, 1) * 2) / 2
    size = g.yy.shape[0]
    dots = ((np.arange(size)[:, None] % 4 == 0) & (np.arange(size)[None, :] % 4 == 0))
    return img * np.where(dots, 0.35, 1.0)[..., None]


_STYLES: dict[str, Callable[[np.ndarray, _Grid, np.random.Generator], np.ndarray]] = {
    "minimalist": _minimalist, "luxurious": _luxurious, "rustic": _rustic, "modern": _modern,
    "vintage": _vintage, "playful": _playful, "elegant": _elegant, "pop_art": _pop_art,
}
