"""The instruction function C = f_instruct(Q, i_1..i_n) and the question pools of every task.

A prompt is a task question followed by every product attribute the caller passes, in a fixed order, so the
same product always yields the same text and an ablation that drops an attribute changes nothing else.
The pools are this project's own wording; callers draw a question from a pool with their own seeded RNG.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from caig.errors import InputError

# Attributes shown first, in this order; any other attribute follows in alphabetical order.
ATTRIBUTE_ORDER = ("title", "category", "price", "rating", "colors", "tags", "caption")
MISSING = "unknown"
ANSWER_WORDS = ("left", "right")

RM_QUESTIONS: tuple[str, ...] = (
    "Two advertising images of the same product are placed side by side. Which one, left or right, would "
    "more shoppers click? Answer left or right.",
    "The picture shows two ad creatives for one product, one on the left and one on the right. Which creative "
    "will get the higher click-through rate? Reply with left or right.",
    "Compare the left and the right advertisement of this product. Which is more likely to be clicked?",
    "Here are two candidate ad images for the same item. Predict which one attracts more clicks: left or right.",
    "Looking at both ad images of this product, which side would perform better in an online shop feed? "
    "Say left or right.",
    "An e-commerce platform must show one of these two creatives. Which should it pick to maximise clicks, "
    "the left one or the right one?",
    "Judge the two product advertisements shown left and right. Which one has the stronger visual appeal "
    "for buyers? Answer with one word: left or right.",
    "Both halves of the image advertise the same product with different backgrounds. Which half would earn "
    "more clicks?",
    "Which of the two ad images, left or right, better presents this product to potential customers and "
    "would be clicked more often?",
    "You are an advertising expert. Given the two creatives side by side, tell which one will achieve a "
    "higher click-through rate. Answer left or right.",
    "Decide which advertising image is more click-worthy for this product: the one on the left or the one on "
    "the right.",
    "Two versions of an ad for this product are shown. Considering background, composition and how well the "
    "scene suits the product, which version wins more clicks, left or right?",
    "Estimate which of these two product ads users would prefer to click. Respond with left or right only.",
)

PM_INSTRUCTIONS: tuple[str, ...] = (
    "Write a background description for an advertising image of this product that will attract many clicks.",
    "Describe a scene to place this product in so that its ad image earns a high click-through rate.",
    "Propose a background for this product's advertisement: setting, props, colours, lighting and style.",
    "Create a text-to-image prompt for the background of an eye-catching ad featuring this product.",
    "Suggest an attractive and fitting background that would make shoppers click on this product's ad.",
    "Imagine the ideal advertising photo for this product and describe everything around the product.",
    "Give a concise background prompt for generating a high-converting e-commerce ad of this item.",
    "What background would best showcase this product in an online advertisement? Describe it as an "
    "image-generation prompt.",
)

PRETRAIN_QUESTIONS: dict[str, tuple[str, ...]] = {
    # image -> image description
    "image_description": (
        "Describe this advertising image in detail.",
        "What does this product image show? Give a complete description.",
        "Provide a detailed caption for this e-commerce picture.",
        "Explain what can be seen in this ad image, including the product and its surroundings.",
        "Write a thorough description of the picture, covering objects, colours and layout.",
        "Summarise the content of this product advertisement image.",
    ),
    # image -> background description
    "background_description": (
        "Describe the background of this advertising image, leaving out the product itself.",
        "What scene surrounds the product in this picture?",
        "Describe the setting, props and lighting behind the product in this ad.",
        "Write a description of everything in this image except the product.",
        "What kind of background was used for this product photo?",
        "Characterise the backdrop of this ad image: place, objects, colours and mood.",
    ),
    # image + caption -> background description
    "caption_background": (
        "Using the image and the product details, describe the background of this advertisement.",
        "Given this product's information and its ad image, describe the scene around the product.",
        "With the product details below in mind, describe the setting in which the product is shown.",
        "Read the product information and look at the image, then describe its background.",
        "Describe the backdrop of this product's advertising image, taking its details into account.",
        "Based on the picture and the product facts, what background surrounds the item?",
    ),
    # none -> prompt
    "prompt_from_none": (
        "Write a background prompt for an e-commerce advertising image.",
        "Generate an image-generation prompt describing an appealing product backdrop.",
        "Compose a prompt for the background scene of an online shop advertisement.",
        "Produce a text-to-image prompt for a product ad background.",
        "Invent a background description suitable for a product advertisement.",
        "Give an example prompt for rendering the surroundings of a product in an ad.",
    ),
    # prompt -> optimized prompt
    "prompt_optimize": (
        "Improve the draft background prompt given below so the scene suits the product better.",
        "Rewrite the prompt below into a more vivid and effective ad background prompt.",
        "Refine the following background prompt for a better-performing product advertisement.",
        "Make the background prompt below more detailed and more appealing to shoppers.",
        "Polish this draft image prompt for an e-commerce ad background.",
        "Complete the given background prompt into a full description of a fitting ad scene.",
    ),
    # image -> prompt
    "prompt_from_image": (
        "Write a background prompt for an advertising image of the product shown.",
        "Looking at this product, generate a prompt for a fitting ad background.",
        "Create an image-generation prompt for a background that suits the product in the picture.",
        "Suggest a text-to-image prompt for the backdrop of an ad featuring this item.",
        "Describe, as a prompt, a background that would present this product well.",
        "Given the product image, compose a prompt for its advertisement scene.",
    ),
    # caption -> prompt
    "prompt_from_caption": (
        "From the product information below, write a background prompt for its advertising image.",
        "Using only the product details, generate a prompt for a suitable ad background.",
        "Compose a text-to-image background prompt for the product described below.",
        "Read the product description and suggest a backdrop prompt for its ad.",
        "Write an ad background prompt that matches the product details given.",
        "Create a fitting advertisement scene prompt for the product described.",
    ),
    # image + caption -> prompt
    "prompt_from_image_caption": (
        "Using the image and the product information, write a background prompt for its advertisement.",
        "Given this product's picture and details, generate a prompt for an attractive ad background.",
        "Combine what you see and the product facts to compose a background prompt for the ad.",
        "Look at the product and read its description, then propose an ad background prompt.",
        "Create a text-to-image prompt for a background that fits both the image and the details of this item.",
        "Write a click-attracting background prompt for this product, based on its image and information.",
    ),
}


def all_instruction_texts() -> list[str]:
    """Every question of every pool (e.g. for a tokenizer corpus)."""
    pools = [RM_QUESTIONS, PM_INSTRUCTIONS, *PRETRAIN_QUESTIONS.values()]
    return [question for pool in pools for question in pool]


def _format_number(value: float) -> str:
    if math.isnan(value):
        return MISSING
    if math.isinf(value):
        return "infinite" if value > 0 else "-infinite"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    text = f"{value:.2f}" if abs(value) >= 1 else f"{value:.4g}"
    return text.rstrip("0").rstrip(".") if "." in text and "e" not in text else text


def format_value(value: Any) -> str:
    """One attribute value as prompt text: numbers trimmed, sequences comma-joined, missing as 'unknown'."""
    if value is None:
        return MISSING
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return _format_number(float(value))
    if isinstance(value, str):
        text = " ".join(value.split())
        return text or MISSING
    if isinstance(value, Mapping):
        if not value:
            return "none"
        return "; ".join(f"{key}: {format_value(value[key])}" for key in sorted(value, key=str))
    if isinstance(value, (set, frozenset)):
        return ", ".join(sorted(format_value(item) for item in value)) or "none"
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)) or (hasattr(value, "to_list") and callable(value.to_list)):
        items = list(value)
        return ", ".join(format_value(item) for item in items) or "none"
    return " ".join(str(value).split()) or MISSING


def _label(key: str) -> str:
    words = re.sub(r"[_\s]+", " ", key).strip()
    return words[:1].upper() + words[1:]


def ordered_keys(attributes: Mapping[str, object]) -> list[str]:
    """The rendering order: ATTRIBUTE_ORDER first, then every other key alphabetically."""
    known = [key for key in ATTRIBUTE_ORDER if key in attributes]
    return known + sorted(key for key in attributes if key not in ATTRIBUTE_ORDER)


def f_instruct(question: str, attributes: Mapping[str, object]) -> str:
    """Render a task question and every given product attribute into one prompt.

    Keys must be strings; values may be numbers, strings, sequences, mappings or missing (None/NaN).
    With no attributes the prompt is the question alone.
    """
    question = " ".join(str(question).split())
    if not question:
        raise InputError("f_instruct got an empty question", expected="a non-empty task question")
    for key in attributes:
        if not isinstance(key, str) or not key.strip():
            raise InputError(
                f"product attribute name {key!r} is not a non-empty string",
                column=str(key),
                expected="str keys",
            )
    if not attributes:
        return question
    lines = [f"- {_label(key)}: {format_value(attributes[key])}" for key in ordered_keys(attributes)]
    return question + "\n\nProduct information:\n" + "\n".join(lines)
