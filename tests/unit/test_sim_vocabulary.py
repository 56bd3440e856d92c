from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from caig.sim.vocabulary import (
    CATEGORIES,
    COLORS,
    SLOT_KEYS,
    SLOTS,
    Background,
    decode_backgrounds,
    encode_backgrounds,
    parse_background,
    vocabulary_dict,
)

backgrounds = st.builds(Background, **{s: st.sampled_from((None, *SLOT_KEYS[s])) for s in SLOTS})


def test_vocabulary_sizes() -> None:
    assert len(CATEGORIES) >= 8
    assert {"beauty", "fashion", "home", "digital", "computers_appliances"} <= set(CATEGORIES)
    assert all(len(SLOT_KEYS[s]) >= 7 for s in SLOTS)
    assert all(len(c.rgb) == 3 and all(0 <= v <= 255 for v in c.rgb) for c in COLORS.values())


@given(backgrounds)
def test_text_parse_round_trip(bg: Background) -> None:
    assert parse_background(bg.text()) == bg


@given(backgrounds)
def test_round_trip_survives_case_and_punctuation(bg: Background) -> None:
    messy = "  Generate: " + bg.text().upper().replace(",", " ;; ") + "!!! (high quality, 8k)"
    assert parse_background(messy) == bg


@given(st.lists(backgrounds, max_size=20))
def test_codes_round_trip(bgs: list[Background]) -> None:
    codes = encode_backgrounds(bgs)
    assert codes.shape == (len(bgs), len(SLOTS)) and codes.dtype == np.int16
    assert decode_backgrounds(codes) == bgs


def test_text_reads_naturally() -> None:
    bg = Background("marble_counter", "flowers", "soft_pink", "warm_morning", "minimalist")
    expected = "a minimalist marble bathroom counter with fresh flowers, soft pink tones, warm morning light"
    assert bg.text() == expected
    assert Background(style="elegant", scene="office_desk").text() == "an elegant office desk"
    assert Background().text() == "a plain setting"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Place the lipstick on a WHITE marble counter in a bathroom, surrounded by pink roses; soft light.",
         Background("marble_counter", "flowers", "cream_white", "soft_diffused", None)),
        ("Sunset on the seashore, some shells scattered around, retro vibe",
         Background("beach", "seashells", None, "golden_hour", "vintage")),
        ("sleek kitchen with lemons and sunny yellow walls",
         Background("kitchen_counter", "fruit", "sunny_yellow", None, "modern")),
        ("golden hour glow over a garden", Background("garden", None, None, "golden_hour", None)),
        ("A spaceship interior with lasers", Background()),
        ("", Background()),
        ("neon-lit city street with fireworks and confetti", Background("city_street", "fireworks", None, "neon",
                                                                        None)),
    ],
)
def test_parse_free_text(text: str, expected: Background) -> None:
    assert parse_background(text) == expected


def test_first_mention_of_a_slot_wins() -> None:
    assert parse_background("a navy blue living room, later repainted teal").color == "navy_blue"


def test_invalid_background_rejected() -> None:
    with pytest.raises(ValueError, match="scene"):
        Background(scene="moon")
    with pytest.raises(TypeError):
        parse_background(None)  # type: ignore[arg-type]


def test_vocabulary_dict_is_plain_data() -> None:
    data = vocabulary_dict()
    assert data["categories"] == list(CATEGORIES)
    assert data["color"]["gold"]["rgb"] == list(COLORS["gold"].rgb)
    assert set(data) == {"categories", *SLOTS}
