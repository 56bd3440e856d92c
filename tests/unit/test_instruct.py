"""f_instruct renders every attribute deterministically; the question pools have the paper's sizes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from caig.errors import InputError
from caig.instruct import (
    ATTRIBUTE_ORDER,
    PM_INSTRUCTIONS,
    PRETRAIN_QUESTIONS,
    RM_QUESTIONS,
    all_instruction_texts,
    f_instruct,
    format_value,
)

PRODUCT = {
    "title": "Cherry Blossom Hand Cream 30ml",
    "category": "Beauty",
    "price": 12.5,
    "rating": 4.0,
    "colors": ["pink", "white"],
    "tags": ("gift", "moisturizing"),
    "caption": "A small pink tube of hand cream",
    "brand": "L'Occitane",
    "stock_level": None,
}


def test_every_attribute_is_rendered_in_a_fixed_order():
    prompt = f_instruct(RM_QUESTIONS[0], PRODUCT)
    lines = prompt.splitlines()
    assert lines[0] == RM_QUESTIONS[0]
    body = lines[lines.index("Product information:") + 1 :]
    assert body == [
        "- Title: Cherry Blossom Hand Cream 30ml",
        "- Category: Beauty",
        "- Price: 12.5",
        "- Rating: 4",
        "- Colors: pink, white",
        "- Tags: gift, moisturizing",
        "- Caption: A small pink tube of hand cream",
        "- Brand: L'Occitane",
        "- Stock level: unknown",
    ]


def test_insertion_order_does_not_matter():
    shuffled = dict(reversed(list(PRODUCT.items())))
    assert f_instruct("Q?", shuffled) == f_instruct("Q?", PRODUCT)


def test_no_attributes_gives_the_question_alone():
    assert f_instruct("  Which   one? ", {}) == "Which one?"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "unknown"),
        (float("nan"), "unknown"),
        ("", "unknown"),
        ("two\nlines  here", "two lines here"),
        (3.0, "3"),
        (12.499, "12.5"),
        (1234567.891, "1234567.89"),
        (0.0123456, "0.01235"),
        (np.float32(2.25), "2.25"),
        (np.int64(7), "7"),
        (True, "yes"),
        (np.bool_(False), "no"),
        ([], "none"),
        ([1.5, None, "x"], "1.5, unknown, x"),
        (np.array([1, 2]), "1, 2"),
        ({"b", "a"}, "a, b"),
        ({"width": 3, "height": 2.5}, "height: 2.5; width: 3"),
        (math.inf, "infinite"),
    ],
)
def test_value_formatting(value, text):
    assert format_value(value) == text


keys = st.from_regex(r"[a-z]{1,6}(_[a-z]{1,6}){0,2}", fullmatch=True)
values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=False, width=32),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp")), max_size=20),
    st.lists(st.text("abcxyz ", min_size=1, max_size=5), max_size=4),
)


@given(st.dictionaries(keys, values, max_size=8))
def test_any_attributes_are_all_rendered(attributes):
    prompt = f_instruct("Which ad gets more clicks?", attributes)
    lines = prompt.splitlines()[3:] if attributes else []
    assert len(lines) == len(attributes)
    rendered_keys = [line[2:].split(":", 1)[0] for line in lines]
    expected = [k for k in ATTRIBUTE_ORDER if k in attributes] + sorted(
        k for k in attributes if k not in ATTRIBUTE_ORDER
    )
    assert rendered_keys == [(k[:1].upper() + k[1:]).replace("_", " ") for k in expected]
    for key, line in zip(expected, lines):
        assert line.endswith(": " + format_value(attributes[key]))


def test_bad_question_or_key_is_an_input_error():
    with pytest.raises(InputError, match="empty question"):
        f_instruct("   ", PRODUCT)
    with pytest.raises(InputError, match="attribute name"):
        f_instruct("Q?", {3: "x"})


def test_pool_sizes_and_no_duplicates():
    assert len(RM_QUESTIONS) == 13
    assert len(PM_INSTRUCTIONS) == 8
    assert set(PRETRAIN_QUESTIONS) == {
        "image_description",
        "background_description",
        "caption_background",
        "prompt_from_none",
        "prompt_optimize",
        "prompt_from_image",
        "prompt_from_caption",
        "prompt_from_image_caption",
    }
    assert all(len(pool) >= 5 for pool in PRETRAIN_QUESTIONS.values())
    texts = all_instruction_texts()
    assert len(texts) == len(set(texts)) == 13 + 8 + sum(len(pool) for pool in PRETRAIN_QUESTIONS.values())
    assert all(text == " ".join(text.split()) and text for text in texts)


def test_reward_questions_ask_for_left_or_right():
    assert all("left" in q.lower() or "half" in q.lower() for q in RM_QUESTIONS)
