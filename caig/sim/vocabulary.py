"""The words of the synthetic world: product categories and the background phrase vocabulary.

A background is five optional slots (scene, prop, colour, lighting, style). ``Background.text()`` writes
a natural description from canonical phrases; ``parse_background`` reads the slots back from free text
(a language model's output) by phrase matching, so generated descriptions can be rendered and judged.
This module holds only public vocabulary; what the slots do to CTR is the oracle's secret.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from functools import lru_cache

import numpy as np

CATEGORIES: tuple[str, ...] = (
    "beauty",
    "fashion",
    "home",
    "digital",
    "computers_appliances",
    "food",
    "sports",
    "baby_toys",
)

SLOTS: tuple[str, ...] = ("scene", "prop", "color", "lighting", "style")
SCALES: tuple[str, ...] = ("close", "medium", "wide")


@dataclass(frozen=True)
class Term:
    """One vocabulary entry: the canonical phrase ``text()`` writes and the aliases ``parse`` accepts."""

    key: str
    phrase: str
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Scene(Term):
    """A scene also says how far the camera is: close-up scenes show the product large, wide ones small."""

    scale: str = "medium"


@dataclass(frozen=True)
class Color(Term):
    """A colour also has its sRGB value, used by the renderer (palette) and the oracle (harmony)."""

    rgb: tuple[int, int, int] = (0, 0, 0)


SCENES: dict[str, Scene] = {
    s.key: s
    for s in (
        Scene("marble_counter", "marble bathroom counter", ("marble counter", "bathroom", "marble countertop"),
              "close"),
        Scene("dressing_table", "dressing table", ("vanity table", "vanity", "makeup table"), "close"),
        Scene("wooden_tabletop", "wooden tabletop", ("wooden table", "wood table", "timber table"), "close"),
        Scene("kitchen_counter", "kitchen countertop", ("kitchen counter", "kitchen"), "close"),
        Scene("office_desk", "office desk", ("work desk", "desk", "workspace"), "close"),
        Scene("studio", "seamless studio backdrop", ("studio backdrop", "photo studio", "studio", "backdrop"),
              "medium"),
        Scene("display_podium", "round display podium", ("display podium", "podium", "pedestal", "plinth"),
              "medium"),
        Scene("store_shelf", "store shelf", ("supermarket shelf", "shop shelf", "shelf", "shelves"), "medium"),
        Scene("boutique", "fashion boutique", ("boutique", "clothing store", "clothes rack"), "medium"),
        Scene("gym", "fitness gym", ("gym", "fitness studio", "workout room"), "medium"),
        Scene("playroom", "kids playroom", ("playroom", "nursery", "children room", "play room"), "medium"),
        Scene("living_room", "cozy living room", ("living room", "lounge", "sitting room"), "wide"),
        Scene("bedroom", "bedroom interior", ("bedroom",), "wide"),
        Scene("garden", "garden lawn", ("garden", "lawn", "backyard", "park"), "wide"),
        Scene("beach", "sandy beach", ("beach", "seaside", "shore", "seashore"), "wide"),
        Scene("city_street", "city street", ("street", "city", "downtown", "urban"), "wide"),
        Scene("forest", "forest path", ("forest", "woods", "woodland", "trail"), "wide"),
    )
}

PROPS: dict[str, Term] = {
    t.key: t
    for t in (
        Term("flowers", "fresh flowers", ("flowers", "flower", "bouquet", "roses", "blossoms", "petals")),
        Term("plant", "a potted plant", ("potted plant", "houseplant", "plant", "leaves", "foliage")),
        Term("candles", "lit candles", ("candles", "candle")),
        Term("books", "a stack of books", ("books", "book")),
        Term("coffee", "a coffee cup", ("coffee cup", "coffee mug", "coffee", "mug")),
        Term("pebbles", "smooth pebbles", ("pebbles", "stones", "rocks")),
        Term("gifts", "wrapped gift boxes", ("gift boxes", "gift box", "gifts", "presents")),
        Term("balloons", "colorful balloons", ("balloons", "balloon")),
        Term("fruit", "fresh fruit", ("fruits", "fruit", "lemons", "oranges", "berries")),
        Term("seashells", "seashells", ("shells", "seashell")),
        Term("confetti", "falling confetti", ("confetti", "streamers", "glitter")),
        Term("fireworks", "bursting fireworks", ("fireworks", "firework", "sparklers")),
    )
}

COLORS: dict[str, Color] = {
    c.key: c
    for c in (
        Color("soft_pink", "soft pink", ("pink", "blush", "rose pink", "pastel pink"), (240, 176, 190)),
        Color("lavender", "lavender", ("lilac", "light purple", "purple"), (184, 160, 214)),
        Color("pastel_blue", "pastel blue", ("baby blue", "light blue", "sky blue"), (160, 196, 232)),
        Color("navy_blue", "navy blue", ("navy", "dark blue", "deep blue", "blue"), (32, 46, 96)),
        Color("teal", "teal", ("turquoise", "aqua", "cyan"), (28, 132, 140)),
        Color("mint_green", "mint green", ("mint", "sage", "light green", "pastel green"), (166, 222, 190)),
        Color("emerald_green", "emerald green", ("emerald", "forest green", "dark green", "green"), (22, 122, 74)),
        Color("sunny_yellow", "sunny yellow", ("yellow", "lemon yellow", "mustard"), (246, 212, 72)),
        Color("vivid_red", "vivid red", ("bright red", "crimson", "scarlet", "red"), (214, 24, 36)),
        Color("gold", "gold", ("golden yellow", "metallic gold", "gilded"), (206, 164, 48)),
        Color("cream_white", "cream white", ("white", "ivory", "off white", "cream"), (244, 238, 222)),
        Color("beige", "beige", ("sand", "tan", "nude", "camel"), (212, 190, 158)),
        Color("warm_brown", "warm brown", ("brown", "chocolate", "walnut", "caramel"), (118, 78, 48)),
        Color("silver_grey", "silver grey", ("silver", "grey", "gray", "light grey"), (184, 188, 196)),
        Color("charcoal_black", "charcoal black", ("black", "charcoal", "dark grey", "jet black"), (38, 38, 44)),
    )
}

LIGHTING: dict[str, Term] = {
    t.key: t
    for t in (
        Term("warm_morning", "warm morning light", ("morning light", "morning sun", "warm light", "sunrise")),
        Term("soft_diffused", "soft diffused light", ("diffused light", "soft light", "soft lighting",
                                                      "overcast")),
        Term("bright_daylight", "bright daylight", ("daylight", "natural light", "sunlight", "sunny",
                                                   "bright light")),
        Term("spotlight", "dramatic spotlight", ("spotlight", "spot light", "dramatic lighting")),
        Term("golden_hour", "golden hour glow", ("golden hour", "sunset", "dusk", "evening glow")),
        Term("candlelight", "dim candlelight", ("candlelight", "candle light", "dim light")),
        Term("neon", "glowing neon lights", ("neon lights", "neon light", "neon glow", "neon")),
    )
}

STYLES: dict[str, Term] = {
    t.key: t
    for t in (
        Term("minimalist", "minimalist", ("minimal", "minimalistic", "clean", "simple")),
        Term("luxurious", "luxurious", ("luxury", "luxe", "opulent", "premium")),
        Term("rustic", "rustic", ("farmhouse", "countryside", "cottage")),
        Term("modern", "modern", ("contemporary", "sleek", "futuristic")),
        Term("vintage", "vintage", ("retro", "antique", "nostalgic")),
        Term("playful", "playful", ("whimsical", "cheerful", "cute")),
        Term("elegant", "elegant", ("refined", "graceful", "classy")),
        Term("pop_art", "bold pop-art", ("pop art", "comic style", "bold graphic")),
    )
}

VOCABULARY: dict[str, Mapping[str, Term]] = {
    "scene": SCENES,
    "prop": PROPS,
    "color": COLORS,
    "lighting": LIGHTING,
    "style": STYLES,
}

#: Per slot, the keys in a fixed order: the integer codes used by vectorised code index these tuples.
SLOT_KEYS: dict[str, tuple[str, ...]] = {slot: tuple(terms) for slot, terms in VOCABULARY.items()}


@dataclass(frozen=True)
class Background:
    """A background description as slots; each is a vocabulary key of its slot or None (not said)."""

    scene: str | None = None
    prop: str | None = None
    color: str | None = None
    lighting: str | None = None
    style: str | None = None

    def __post_init__(self) -> None:
        for slot in SLOTS:
            value = getattr(self, slot)
            if value is not None and value not in VOCABULARY[slot]:
                raise ValueError(f"Background.{slot}={value!r} is not a {slot} key (expected one of "
                                 f"{', '.join(SLOT_KEYS[slot])} or None)")

    def text(self) -> str:
        """A natural description from canonical phrases, e.g. 'a minimalist marble bathroom counter with
        fresh flowers, soft pink tones, warm morning light'."""
        style = STYLES[self.style].phrase if self.style else None
        scene = SCENES[self.scene].phrase if self.scene else None
        if scene is None and style is None:
            subject = "plain setting"
        else:
            subject = " ".join(p for p in (style, scene or "setting") if p)
        out = ("an " if subject[0] in "aeiou" else "a ") + subject
        if self.prop:
            out += f" with {PROPS[self.prop].phrase}"
        if self.color:
            out += f", {COLORS[self.color].phrase} tones"
        if self.lighting:
            out += f", {LIGHTING[self.lighting].phrase}"
        return out

    def codes(self) -> tuple[int, ...]:
        """Integer code per slot (index into ``SLOT_KEYS[slot]``; -1 for None), in ``SLOTS`` order."""
        return tuple(-1 if getattr(self, s) is None else SLOT_KEYS[s].index(getattr(self, s)) for s in SLOTS)

    @classmethod
    def from_codes(cls, codes: Iterable[int]) -> Background:
        """Inverse of ``codes``."""
        values = [int(c) for c in codes]
        if len(values) != len(SLOTS):
            raise ValueError(f"expected {len(SLOTS)} slot codes ({', '.join(SLOTS)}), got {len(values)}")
        return cls(**{s: None if c < 0 else SLOT_KEYS[s][c] for s, c in zip(SLOTS, values, strict=True)})


def encode_backgrounds(backgrounds: Iterable[Background]) -> np.ndarray:
    """Slot codes of many backgrounds as an (n, 5) int16 array (-1 = slot not given)."""
    rows = [bg.codes() for bg in backgrounds]
    return np.asarray(rows, dtype=np.int16).reshape(len(rows), len(SLOTS))


def decode_backgrounds(codes: np.ndarray) -> list[Background]:
    """Backgrounds from an (n, 5) code array."""
    return [Background.from_codes(row) for row in np.asarray(codes)]


def _normalise_token(token: str) -> str:
    """Crude singular form so 'lights'/'light' and 'boxes'/'box' match the same phrase."""
    if len(token) <= 3:
        return token
    if token.endswith("ies"):
        return token[:-3] + "y"
    if token.endswith(("ches", "shes", "sses", "xes")):
        return token[:-2]
    if token.endswith("s") and not token.endswith(("ss", "us", "is")):
        return token[:-1]
    return token


def _tokens(text: str) -> list[str]:
    return [_normalise_token(t) for t in re.findall(r"[a-z0-9]+", text.lower().replace("'", ""))]


@lru_cache(maxsize=1)
def _phrase_index() -> dict[str, tuple[tuple[tuple[str, ...], str, str], ...]]:
    """Phrases and aliases as (tokens, slot, key) by first token, longest first.

    A leading article is dropped ('a potted plant' matches 'potted plant'); a phrase claimed by two
    keys is a vocabulary bug and fails loudly.
    """
    seen: dict[tuple[str, ...], tuple[str, str]] = {}
    for slot, terms in VOCABULARY.items():
        for term in terms.values():
            for phrase in (term.phrase, *term.aliases):
                tokens = tuple(_tokens(phrase))
                tokens = tokens[1:] if tokens[0] in ("a", "an") else tokens
                owner = seen.setdefault(tokens, (slot, term.key))
                if owner != (slot, term.key):
                    raise AssertionError(f"phrase {phrase!r} belongs to both {owner} and {(slot, term.key)}")
    index: dict[str, list[tuple[tuple[str, ...], str, str]]] = {}
    for tokens, (slot, key) in seen.items():
        index.setdefault(tokens[0], []).append((tokens, slot, key))
    return {first: tuple(sorted(entries, key=lambda e: -len(e[0]))) for first, entries in index.items()}


def parse_background(text: str) -> Background:
    """Recover the slots from free text by phrase matching.

    Case, punctuation, plurals and extra words are ignored. Reading left to right, the longest phrase
    that starts at a word wins ('golden hour glow' is lighting, 'sunny yellow' a colour, not 'sunny'
    light), and when a slot is named twice the first mention counts. Slots with no phrase are None.
    """
    if not isinstance(text, str):
        raise TypeError(f"parse_background expects a str, got {type(text).__name__}")
    tokens = _tokens(text)
    index = _phrase_index()
    found: dict[str, str] = {}
    pos = 0
    while pos < len(tokens):
        for phrase, slot, key in index.get(tokens[pos], ()):
            if tuple(tokens[pos:pos + len(phrase)]) == phrase:
                found.setdefault(slot, key)
                pos += len(phrase)
                break
        else:
            pos += 1
    return Background(**found)


def vocabulary_dict() -> dict[str, object]:
    """The vocabulary as plain data (for world.json)."""
    out: dict[str, object] = {"categories": list(CATEGORIES)}
    for slot, terms in VOCABULARY.items():
        entries = {}
        for key, term in terms.items():
            entry = {f.name: getattr(term, f.name) for f in fields(term) if f.name != "key"}
            entries[key] = {k: list(v) if isinstance(v, tuple) else v for k, v in entry.items()}
        out[slot] = entries
    return out
