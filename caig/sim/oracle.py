"""The ground truth of the synthetic world: the true CTR of any (product, background) and the annotators'
match judgement.

Only ``caig.sim.clicklog`` (to draw the click log) and the evaluation may import this module; training
code learns from clicks and pixels alone.

CTR model (logit scale, magnitudes from the ``sim.oracle`` config)::

    logit(ctr) = logit(base_ctr[product])                      log-uniform in sim.oracle.base_ctr
               + scene fit of the category                     preferred / neutral / wrong / no scene
               + scale                                         large product in a close-up, small in a wide scene
               + colour harmony with the product's main colour too close (-) / complementary (+)
               + category preferences for prop, lighting, style
               + eye-catching boost, the same for every product: e * (1 + d + ... + d^(k-1)), k = number of
                 eye-catching phrases (vivid red, gold, neon lights, confetti, fireworks, pop-art)
               + idiosyncratic per-product taste for each phrase, N(0, sd), seeded

Judgement, first that applies: ``scale`` (size vs scene distance), ``scene`` (no recognisable scene, a
scene wrong for the category, or a prop/lighting/style annotators find wrong for it), ``color`` (too
close to the product's main colour, or a colour that clashes with the category), else ``available``.
Eye-catching phrases raise CTR for every product but are wrong for many categories, so a policy that
chases CTR without looking at the product loses match rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from caig.errors import ConfigError
from caig.sim.vocabulary import CATEGORIES, COLORS, SCENES, SLOT_KEYS, SLOTS, Background, parse_background
from caig.sim.world import SIZES, Product, World, require

REASONS: tuple[str, ...] = ("available", "scale", "scene", "color")

#: Phrases that draw the eye: they raise CTR for every product.
EYE_CATCHING: frozenset[tuple[str, str]] = frozenset({
    ("color", "vivid_red"), ("color", "gold"), ("lighting", "neon"),
    ("prop", "confetti"), ("prop", "fireworks"), ("style", "pop_art"),
})

#: Per category: (preferred scenes, wrong scenes); every other scene is neutral.
SCENE_FIT: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "beauty": (frozenset({"marble_counter", "dressing_table", "studio", "display_podium"}),
               frozenset({"kitchen_counter", "office_desk", "gym", "playroom", "city_street", "forest",
                          "store_shelf"})),
    "fashion": (frozenset({"boutique", "city_street", "studio", "display_podium", "bedroom"}),
                frozenset({"kitchen_counter", "office_desk", "playroom", "store_shelf", "forest"})),
    "home": (frozenset({"living_room", "bedroom", "wooden_tabletop", "dressing_table"}),
             frozenset({"beach", "city_street", "gym", "boutique", "forest", "store_shelf"})),
    "digital": (frozenset({"office_desk", "studio", "display_podium", "city_street"}),
                frozenset({"kitchen_counter", "marble_counter", "beach", "forest", "playroom", "garden",
                           "dressing_table"})),
    "computers_appliances": (frozenset({"kitchen_counter", "living_room", "office_desk", "studio"}),
                             frozenset({"beach", "forest", "garden", "boutique", "dressing_table", "playroom",
                                        "city_street", "marble_counter"})),
    "food": (frozenset({"kitchen_counter", "wooden_tabletop", "store_shelf", "garden"}),
             frozenset({"marble_counter", "gym", "boutique", "office_desk", "dressing_table", "bedroom",
                        "city_street"})),
    "sports": (frozenset({"gym", "forest", "beach", "city_street", "garden"}),
               frozenset({"dressing_table", "marble_counter", "kitchen_counter", "bedroom", "boutique",
                          "office_desk", "playroom"})),
    "baby_toys": (frozenset({"playroom", "bedroom", "living_room", "garden"}),
                  frozenset({"city_street", "gym", "office_desk", "marble_counter", "kitchen_counter",
                             "dressing_table"})),
}

#: Props, lighting and styles annotators call a wrong setting (scene mismatch) for a category.
WRONG_ELEMENTS: dict[str, frozenset[tuple[str, str]]] = {
    "beauty": frozenset({("prop", "fireworks"), ("lighting", "neon"), ("style", "pop_art")}),
    "fashion": frozenset({("prop", "fireworks"), ("prop", "fruit")}),
    "home": frozenset({("lighting", "neon"), ("prop", "confetti"), ("prop", "fireworks")}),
    "digital": frozenset({("prop", "confetti"), ("prop", "fireworks"), ("prop", "seashells")}),
    "computers_appliances": frozenset({("lighting", "neon"), ("prop", "confetti"), ("prop", "fireworks"),
                                       ("style", "pop_art"), ("prop", "seashells")}),
    "food": frozenset({("lighting", "neon"), ("prop", "confetti"), ("style", "pop_art"),
                       ("prop", "pebbles")}),
    "sports": frozenset({("prop", "fireworks"), ("prop", "candles"), ("prop", "confetti")}),
    "baby_toys": frozenset({("lighting", "neon"), ("prop", "fireworks"), ("prop", "candles"),
                            ("prop", "coffee")}),
}

#: Background colours annotators find clashing with a category, whatever the product's own colour.
CLASHING_COLORS: dict[str, frozenset[str]] = {
    "beauty": frozenset(),
    "fashion": frozenset(),
    "home": frozenset({"vivid_red"}),
    "digital": frozenset({"gold"}),
    "computers_appliances": frozenset(),
    "food": frozenset({"charcoal_black"}),
    "sports": frozenset({"gold"}),
    "baby_toys": frozenset({"vivid_red", "charcoal_black"}),
}

#: Category tastes for props, lighting and styles, in units of ``sim.oracle.preference``.
PREFERENCES: dict[str, dict[tuple[str, str], float]] = {
    "beauty": {("lighting", "soft_diffused"): 1, ("lighting", "warm_morning"): 0.5,
               ("lighting", "candlelight"): 0.5, ("lighting", "bright_daylight"): -0.5,
               ("style", "minimalist"): 1, ("style", "elegant"): 1, ("style", "luxurious"): 0.5,
               ("style", "rustic"): -1, ("prop", "flowers"): 1, ("prop", "pebbles"): 0.5,
               ("prop", "candles"): 0.5, ("prop", "books"): -0.5},
    "fashion": {("lighting", "golden_hour"): 1, ("lighting", "spotlight"): 1,
                ("lighting", "bright_daylight"): 0.5, ("lighting", "candlelight"): -0.5,
                ("style", "modern"): 1, ("style", "elegant"): 0.5, ("style", "vintage"): 0.5,
                ("style", "rustic"): -0.5, ("prop", "gifts"): 0.5, ("prop", "flowers"): 0.5,
                ("prop", "coffee"): 0.5},
    "home": {("lighting", "warm_morning"): 1, ("lighting", "golden_hour"): 0.5,
             ("lighting", "candlelight"): 0.5, ("lighting", "spotlight"): -1,
             ("style", "rustic"): 1, ("style", "minimalist"): 0.5, ("style", "vintage"): 0.5,
             ("style", "modern"): 0.5, ("prop", "plant"): 1, ("prop", "books"): 1, ("prop", "candles"): 0.5},
    "digital": {("lighting", "spotlight"): 1, ("lighting", "bright_daylight"): 0.5,
                ("lighting", "candlelight"): -1, ("style", "modern"): 1, ("style", "minimalist"): 1,
                ("style", "vintage"): -1, ("style", "rustic"): -1, ("prop", "coffee"): 0.5,
                ("prop", "books"): 0.5, ("prop", "plant"): 0.5},
    "computers_appliances": {("lighting", "bright_daylight"): 1, ("lighting", "soft_diffused"): 0.5,
                             ("lighting", "candlelight"): -1, ("lighting", "spotlight"): -0.5,
                             ("style", "modern"): 1, ("style", "minimalist"): 1, ("style", "vintage"): -0.5,
                             ("prop", "plant"): 0.5, ("prop", "fruit"): 1},
    "food": {("lighting", "warm_morning"): 1, ("lighting", "bright_daylight"): 0.5,
             ("lighting", "golden_hour"): 0.5, ("lighting", "spotlight"): -0.5,
             ("style", "rustic"): 1, ("style", "vintage"): 0.5, ("style", "minimalist"): -0.5,
             ("prop", "fruit"): 1, ("prop", "flowers"): 0.5, ("prop", "coffee"): 0.5},
    "sports": {("lighting", "bright_daylight"): 1, ("lighting", "golden_hour"): 1,
               ("lighting", "candlelight"): -1, ("lighting", "soft_diffused"): -0.5,
               ("style", "modern"): 1, ("style", "pop_art"): 0.5, ("style", "elegant"): -0.5,
               ("style", "vintage"): -0.5, ("prop", "pebbles"): 0.5, ("prop", "plant"): 0.5},
    "baby_toys": {("lighting", "soft_diffused"): 1, ("lighting", "warm_morning"): 1,
                  ("lighting", "spotlight"): -1, ("lighting", "candlelight"): -0.5,
                  ("style", "playful"): 1, ("style", "minimalist"): 0.5, ("style", "luxurious"): -0.5,
                  ("prop", "balloons"): 1, ("prop", "books"): 0.5, ("prop", "flowers"): 0.5},
}

#: Scene distances at which a product of a size class looks wrongly scaled.
SCALE_MISMATCH: dict[str, frozenset[str]] = {"small": frozenset({"wide"}), "medium": frozenset(),
                                             "large": frozenset({"close"})}

_ORACLE_KEYS: tuple[str, ...] = (
    "base_ctr", "scene_preferred", "scene_wrong", "scene_missing", "scale_mismatch", "color_close",
    "color_complementary", "preference", "eye_catching", "eye_catching_decay", "idiosyncratic_sd",
    "close_color_delta_e",
)


@dataclass(frozen=True)
class Judgement:
    """The annotators' verdict on an ad: does the background fit the product, and if not, why."""

    match: bool
    reason: str


def _srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIE L*a*b* (D65) of sRGB colours in 0..255, shape (..., 3)."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = lin @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def color_relations(close_delta_e: float) -> tuple[np.ndarray, np.ndarray]:
    """(too_close, complementary) boolean matrices over the colour vocabulary.

    Too close: CIE76 distance below ``close_delta_e`` (includes the same colour). Complementary: both
    colours saturated (chroma >= 25) with hue angles at least 135 degrees apart.
    """
    lab = _srgb_to_lab(np.array([c.rgb for c in COLORS.values()]))
    delta = np.linalg.norm(lab[:, None, :] - lab[None, :, :], axis=-1)
    chroma = np.hypot(lab[:, 1], lab[:, 2])
    hue = np.degrees(np.arctan2(lab[:, 2], lab[:, 1]))
    dh = np.abs(hue[:, None] - hue[None, :])
    dh = np.minimum(dh, 360 - dh)
    saturated = chroma >= 25
    complementary = (dh >= 135) & saturated[:, None] & saturated[None, :]
    return delta < close_delta_e, complementary


class Oracle:
    """True CTR and match judgement for the products of one world.

    Tables are indexed by slot code, with one extra last column for "slot not given" (code -1).
    """

    def __init__(self, world: World) -> None:
        self.world = world
        params = require(world.config, "oracle")
        missing = [k for k in _ORACLE_KEYS if k not in params]
        if missing:
            raise ConfigError(f"config keys missing under sim.oracle: {', '.join(missing)}")
        self.params: dict[str, Any] = {k: params[k] for k in _ORACLE_KEYS}
        p = self.params
        lo, hi = (float(v) for v in p["base_ctr"])
        if not 0 < lo <= hi < 1:
            raise ConfigError(f"sim.oracle.base_ctr must be [low, high] with 0 < low <= high < 1, got {[lo, hi]}")
        products = world.products
        n = len(products)
        self._category = np.array([CATEGORIES.index(q.category) for q in products], dtype=np.int64)
        self._size = np.array([SIZES.index(q.size) for q in products], dtype=np.int64)
        color_keys = SLOT_KEYS["color"]
        self._main_color = np.array([color_keys.index(q.main_color) for q in products], dtype=np.int64)
        rng = np.random.default_rng([world.seed, 2])
        self.base_ctr = np.exp(rng.uniform(np.log(lo), np.log(hi), n))
        self._base_logit = np.log(self.base_ctr / (1 - self.base_ctr))
        sd = float(p["idiosyncratic_sd"])
        self._idio = {s: np.zeros((n, len(SLOT_KEYS[s]) + 1), dtype=np.float32) for s in SLOTS}
        for s in SLOTS:
            self._idio[s][:, :-1] = rng.normal(0.0, sd, (n, len(SLOT_KEYS[s])))
        self._build_tables()

    def _build_tables(self) -> None:
        """Effect and mismatch tables per slot: rows are the group (category, size or main colour)."""
        p = self.params
        ncat = len(CATEGORIES)
        width = {s: len(SLOT_KEYS[s]) + 1 for s in SLOTS}
        scene_keys = SLOT_KEYS["scene"]
        effect = {s: np.zeros((ncat, width[s])) for s in SLOTS}
        wrong = {s: np.zeros((ncat, width[s]), dtype=bool) for s in SLOTS}
        for ci, cat in enumerate(CATEGORIES):
            preferred, wrong_scenes = SCENE_FIT[cat]
            for j, key in enumerate(scene_keys):
                if key in preferred:
                    effect["scene"][ci, j] = p["scene_preferred"]
                elif key in wrong_scenes:
                    effect["scene"][ci, j] = p["scene_wrong"]
                    wrong["scene"][ci, j] = True
            effect["scene"][ci, -1] = p["scene_missing"]
            wrong["scene"][ci, -1] = True
            for (slot, key), units in PREFERENCES[cat].items():
                effect[slot][ci, SLOT_KEYS[slot].index(key)] = units * p["preference"]
            for slot, key in WRONG_ELEMENTS[cat]:
                wrong[slot][ci, SLOT_KEYS[slot].index(key)] = True
            for key in CLASHING_COLORS[cat]:
                wrong["color"][ci, SLOT_KEYS["color"].index(key)] = True
        self._effect, self._wrong = effect, wrong
        self._scale_wrong = np.zeros((len(SIZES), width["scene"]), dtype=bool)
        for si, size in enumerate(SIZES):
            for j, key in enumerate(scene_keys):
                self._scale_wrong[si, j] = SCENES[key].scale in SCALE_MISMATCH[size]
        self._scale_effect = self._scale_wrong * float(p["scale_mismatch"])
        close, complementary = color_relations(float(p["close_color_delta_e"]))
        ncol = len(SLOT_KEYS["color"])
        self._color_close = np.zeros((ncol, ncol + 1), dtype=bool)
        self._color_close[:, :-1] = close
        self._color_effect = np.zeros((ncol, ncol + 1))
        self._color_effect[:, :-1] = close * p["color_close"] + (complementary & ~close) * p["color_complementary"]
        self._eye = {s: np.zeros(width[s], dtype=np.int64) for s in SLOTS}
        for slot, key in EYE_CATCHING:
            self._eye[slot][SLOT_KEYS[slot].index(key)] = 1

    # ----------------------------------------------------------------- vectorised core
    def _columns(self, codes: np.ndarray) -> dict[str, np.ndarray]:
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[1] != len(SLOTS):
            raise ValueError(f"background codes must have shape (n, {len(SLOTS)}), got {codes.shape}")
        out = {}
        for i, s in enumerate(SLOTS):
            col = codes[:, i].astype(np.int64)
            k = len(SLOT_KEYS[s])
            if col.size and (col.min() < -1 or col.max() >= k):
                raise ValueError(f"{s} codes must lie in [-1, {k - 1}]")
            out[s] = np.where(col < 0, k, col)
        return out

    def _logit(self, pi: np.ndarray, cols: dict[str, np.ndarray]) -> np.ndarray:
        """Broadcasting core: ``pi`` and the code columns broadcast against each other."""
        p = self.params
        cat, size, main = self._category[pi], self._size[pi], self._main_color[pi]
        logit = self._base_logit[pi] + self._scale_effect[size, cols["scene"]]
        logit = logit + self._color_effect[main, cols["color"]]
        k = 0
        for s in SLOTS:
            logit = logit + self._effect[s][cat, cols[s]] + self._idio[s][pi, cols[s]]
            k = k + self._eye[s][cols[s]]
        decay = float(p["eye_catching_decay"])
        boost = float(p["eye_catching"]) * (1 - decay ** k) / (1 - decay) if decay != 1 else p["eye_catching"] * k
        return logit + boost

    def _reasons(self, pi: np.ndarray, cols: dict[str, np.ndarray]) -> np.ndarray:
        cat, size, main = self._category[pi], self._size[pi], self._main_color[pi]
        scale = self._scale_wrong[size, cols["scene"]]
        scene = self._wrong["scene"][cat, cols["scene"]]
        for s in ("prop", "lighting", "style"):
            scene = scene | self._wrong[s][cat, cols[s]]
        color = self._color_close[main, cols["color"]] | self._wrong["color"][cat, cols["color"]]
        return np.where(scale, 1, np.where(scene, 2, np.where(color, 3, 0))).astype(np.int8)

    def _check_index(self, product_index: np.ndarray) -> np.ndarray:
        pi = np.asarray(product_index, dtype=np.int64)
        if pi.size and (pi.min() < 0 or pi.max() >= len(self.world.products)):
            raise ValueError(f"product indices must lie in [0, {len(self.world.products) - 1}]")
        return pi

    def ctr_many(self, product_index: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """True CTR of row i = (products[product_index[i]], background codes[i]); shape (n,)."""
        pi = self._check_index(product_index)
        cols = self._columns(codes)
        return 1.0 / (1.0 + np.exp(-self._logit(pi, cols)))

    def ctr_table(self, product_index: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """True CTR of every product x every background; shape (len(product_index), len(codes))."""
        pi = self._check_index(product_index)[:, None]
        cols = {s: c[None, :] for s, c in self._columns(codes).items()}
        return 1.0 / (1.0 + np.exp(-self._logit(pi, cols)))

    def judge_many(self, product_index: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(match, reason code) per row; reason codes index ``REASONS``."""
        pi = self._check_index(product_index)
        reasons = self._reasons(pi, self._columns(codes))
        return reasons == 0, reasons

    def judge_table(self, product_index: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Reason code of every product x every background; shape (len(product_index), len(codes))."""
        pi = self._check_index(product_index)[:, None]
        return self._reasons(pi, {s: c[None, :] for s, c in self._columns(codes).items()})

    # ----------------------------------------------------------------- one ad at a time
    def _one(self, product: Product | str, background: Background | str) -> tuple[np.ndarray, np.ndarray]:
        product_id = product if isinstance(product, str) else product.product_id
        if isinstance(background, str):
            background = parse_background(background)
        return np.array([self.world.index[product_id]]), np.array([background.codes()])

    def ctr(self, product: Product | str, background: Background | str) -> float:
        """True CTR of the product shown on the background (a free-text description is parsed)."""
        return float(self.ctr_many(*self._one(product, background))[0])

    def judge(self, product: Product | str, background: Background | str) -> Judgement:
        """The annotators' match judgement (reason order: scale, scene, color)."""
        match, reasons = self.judge_many(*self._one(product, background))
        return Judgement(bool(match[0]), REASONS[int(reasons[0])])

    def is_eye_catching(self, slot: str) -> np.ndarray:
        """Which codes of a slot are eye-catching (bool, one entry per key plus a last for 'not given')."""
        return self._eye[slot].astype(bool)

    def designed_weights(self, slot: str) -> tuple[np.ndarray, np.ndarray]:
        """How a designer who knows the category picks a slot's phrase: (row per product, weights).

        ``weights[row]`` has one column per key plus a last for 'not given'. Mismatching and eye-catching
        phrases get no weight; the category's favourites (and complementary colours) weigh three times
        a neutral phrase. Scenes also respect the product's size. Used to draw creatives that look
        designed for the product.
        """
        ncat = len(CATEGORIES)
        if slot == "scene":
            rows = self._category * len(SIZES) + self._size
            fit = self._effect["scene"] > 0
            weights = np.repeat(fit, len(SIZES), axis=0) & ~np.tile(self._scale_wrong, (ncat, 1))
            return rows, weights.astype(np.float64)
        if slot == "color":
            ncol = len(SLOT_KEYS["color"])
            rows = self._category * ncol + self._main_color
            bad = np.repeat(self._wrong["color"], ncol, axis=0) | np.tile(self._color_close, (ncat, 1))
            weights = np.where(np.tile(self._color_effect, (ncat, 1)) > 0, 3.0, 1.0)
            weights[bad | self._eye["color"].astype(bool)] = 0.0
            weights[:, -1] = 1.0
            return rows, weights
        if slot not in ("prop", "lighting", "style"):
            raise KeyError(f"unknown slot {slot!r} (expected one of {', '.join(SLOTS)})")
        effect = self._effect[slot]
        weights = np.where(effect > 0, 3.0, np.where(effect < 0, 0.0, 1.0))
        weights[self._wrong[slot] | self._eye[slot].astype(bool)[None, :]] = 0.0
        weights[:, -1] = 2.0
        return self._category, weights
