"""Products as the models see them: the attributes f_instruct renders and the product caption.

Shared by pre-training, the reward model (its prompt C_RM) and the prompt model, so every stage shows a
product the same way. Attributes are every catalog column except the id and the image path; list cells
(``a;b``) become lists and identifier-like values (``computers_appliances``) become words. The caption is
the catalog's ``caption`` column where it exists, else a sentence written from the category and colours.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from caig.data.schema import LIST_SEPARATOR
from caig.errors import InputError

REQUIRED = ("product_id", "title", "category", "image")
NOT_ATTRIBUTES = frozenset({"product_id", "image", "caption"})
LIST_ATTRIBUTES = frozenset({"colors", "tags"})
_IDENTIFIER = re.compile(r"^[a-z0-9]+(?:_[a-z0-9]+)+$")


@dataclass(frozen=True)
class Product:
    """One catalog row: id, cut-out image path, attributes for prompts, and the product caption."""

    product_id: str
    image: str
    attributes: dict[str, object]
    caption: str


def _words(value: str) -> str:
    """``cream_white`` -> ``cream white``; free text is left alone."""
    return value.replace("_", " ") if _IDENTIFIER.match(value) else value


def _attribute(key: str, value: object) -> object:
    if isinstance(value, str):
        if key in LIST_ATTRIBUTES:
            return [_words(item.strip()) for item in value.split(LIST_SEPARATOR) if item.strip()]
        return _words(value)
    if isinstance(value, list):
        return [_words(item) if isinstance(item, str) else item for item in value]
    return value


def product_attributes(row: Mapping[str, object]) -> dict[str, object]:
    """The attributes f_instruct shows for one catalog row (no id, image path or caption)."""
    return {key: _attribute(key, value) for key, value in row.items() if key not in NOT_ATTRIBUTES}


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def product_caption(row: Mapping[str, object]) -> str:
    """The catalog's caption, or a short description of what the product looks like (category, colours).

    The written caption leaves the title, price and tags to the other attributes, so the reward model's
    "+ product caption" and "+ additional product information" rows add different facts.
    """
    caption = row.get("caption")
    if isinstance(caption, str) and caption.strip():
        return " ".join(caption.split())
    attributes = product_attributes(row)
    text = f"A {attributes['category']} product"
    colors = attributes.get("colors")
    if isinstance(colors, list) and colors:
        text += f" in {_join([str(c) for c in colors])}"
    return text + "."


def read_catalog(path: str | Path) -> dict[str, Product]:
    """The catalog (Parquet, as written by ``caig ingest``) as products by id."""
    path = Path(path)
    try:
        table = pl.read_parquet(path)
    except (OSError, pl.exceptions.PolarsError) as err:
        raise InputError(f"cannot read the catalog: {err}", file=path, expected="a Parquet catalog") from err
    missing = [name for name in REQUIRED if name not in table.columns]
    if missing:
        raise InputError(
            f"catalog lacks column {missing[0]!r}", file=path, expected=f"columns {list(REQUIRED)}"
        )
    products: dict[str, Product] = {}
    for number, row in enumerate(table.iter_rows(named=True), start=1):
        for name in REQUIRED:
            if row[name] is None or (isinstance(row[name], str) and not row[name].strip()):
                raise InputError(
                    "empty value", file=path, row=number, column=name, expected="a non-empty value"
                )
        product_id = str(row["product_id"])
        if product_id in products:
            raise InputError(
                f"duplicate product_id {product_id!r}", file=path, row=number, column="product_id"
            )
        products[product_id] = Product(
            product_id, str(row["image"]), product_attributes(row), product_caption(row)
        )
    return products
