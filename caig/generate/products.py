"""Product inputs for background generation: an RGBA cut-out, its caption and its attributes.

Two sources are read: the native catalog (``product_id, title, category, image`` + optional attribute
columns; see caig/data/schema.py) and the CAIG prompt-model JSON ``[{id, image, new_caption}]`` published
by the paper's authors. Every image is normalised to RGBA on load, whatever its PNG flavour (palette with
a tRNS chunk, interlaced, grey+alpha, no alpha at all), so the rest of the stage sees one kind of image and
the product mask is always its alpha channel.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from PIL import Image, ImageOps, UnidentifiedImageError

from caig.errors import InputError
from caig.logs import get_logger

#: Alpha at or above this value counts as product (kept); below it, background (repainted).
DEFAULT_ALPHA_THRESHOLD = 128

CATALOG_REQUIRED = ("product_id", "title", "category", "image")
CAIG_JSON_KEYS = ("id", "image", "new_caption")

log = get_logger("generate")


class OpaqueImageWarning(UserWarning):
    """An image without transparency: the whole frame is taken as the product and nothing is repainted."""


@dataclass(frozen=True)
class ProductInput:
    """One product to advertise: ``image`` is an RGBA cut-out whose alpha marks the product."""

    product_id: str
    image: Image.Image
    caption: str
    attributes: dict[str, Any] = field(default_factory=dict)


def load_product_image(path: str | Path, product_id: str) -> Image.Image:
    """Read a product cut-out as RGBA; a missing, unreadable or fully transparent file is an InputError.

    Palette images keep their tRNS transparency, grey+alpha becomes RGBA, and an image without any alpha
    (RGB, grey, CMYK) gets an opaque alpha with an ``OpaqueImageWarning``: the whole frame is then the
    product. EXIF orientation is applied, so a rotated JPEG is placed upright.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"product {product_id!r}: image file not found", file=path)
    try:
        with Image.open(path) as opened:
            opened.load()
            image = ImageOps.exif_transpose(opened)
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError, SyntaxError, ValueError) as err:
        raise InputError(
            f"product {product_id!r}: cannot read the image ({err})",
            file=path,
            expected="a PNG/JPEG/WebP cut-out",
        ) from err
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    if not has_alpha:
        warnings.warn(
            f"{path}: product {product_id!r} has no alpha channel ({image.mode}); the whole image is the product",
            OpaqueImageWarning,
            stacklevel=2,
        )
    rgba = image.convert("RGBA")
    if not product_mask(rgba).any():
        raise InputError(
            f"product {product_id!r}: the image is fully transparent, so there is no product to keep",
            file=path,
            expected=f"some pixels with alpha >= {DEFAULT_ALPHA_THRESHOLD}",
        )
    return rgba


def product_mask(image: Image.Image, threshold: int = DEFAULT_ALPHA_THRESHOLD) -> np.ndarray:
    """Boolean (height, width) mask of the product: alpha >= ``threshold``; all True for opaque modes."""
    if not 0 < threshold <= 255:
        raise ValueError(f"alpha threshold must be in 1..255, got {threshold}")
    if image.mode == "RGBA":
        alpha = np.asarray(image.getchannel("A"))
    elif image.mode in ("LA", "PA") or "transparency" in image.info:
        alpha = np.asarray(image.convert("RGBA").getchannel("A"))
    else:
        return np.ones((image.height, image.width), dtype=np.bool_)
    return alpha >= threshold


def _resolve(image: str, root: Path) -> Path:
    path = Path(image).expanduser()
    return path if path.is_absolute() else root / path


def _load_listed_image(
    image: str, root: Path, product_id: str, listing: Path, row: int, column: str
) -> Image.Image:
    """Load a product image named by a row of ``listing``; errors name the listing, the row and the image."""
    image_path = _resolve(image, root)
    try:
        return load_product_image(image_path, product_id)
    except InputError as err:
        hint = f" (relative paths resolve against {root}; pass image_root to change that)"
        raise InputError(
            f"{err}{hint if not Path(image).is_absolute() else ''}", file=listing, row=row, column=column
        ) from err


def load_caig_json(path: str | Path, image_root: str | Path | None = None) -> list[ProductInput]:
    """Products from the CAIG prompt-model JSON, a list of ``{"id", "image", "new_caption"}``.

    Relative ``image`` paths resolve against ``image_root`` when given, else against the folder that holds
    the JSON's folder: the authors' layout is ``<root>/tiny_dataset/tiny.json`` naming
    ``tiny_dataset/images/1.png`` relative to ``<root>``. Absolute paths are used as they are.
    """
    path = Path(path)
    root = Path(image_root) if image_root is not None else path.resolve().parent.parent
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise InputError("CAIG product JSON not found", file=path) from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(
            f"not valid JSON ({err})", file=path, expected='a list of {"id", "image", "new_caption"}'
        ) from err
    if not isinstance(records, list):
        raise InputError(
            f"top level is a {type(records).__name__}",
            file=path,
            expected='a list of {"id", "image", "new_caption"}',
        )
    products: list[ProductInput] = []
    seen: set[str] = set()
    for row, record in enumerate(records, start=1):
        if not isinstance(record, Mapping):
            raise InputError(
                f"entry is a {type(record).__name__}", file=path, row=row, expected="a JSON object"
            )
        for key in CAIG_JSON_KEYS:
            value = record.get(key)
            if value is None or (isinstance(value, str) and not value.strip()):
                raise InputError("missing or empty value", file=path, row=row, column=key)
        product_id = str(record["id"])
        if product_id in seen:
            raise InputError(f"duplicate product id {product_id!r}", file=path, row=row, column="id")
        seen.add(product_id)
        if not isinstance(record["image"], str) or not isinstance(record["new_caption"], str):
            raise InputError("image and new_caption must be strings", file=path, row=row, expected="strings")
        image = _load_listed_image(record["image"], root, product_id, path, row, "image")
        extra = {k: v for k, v in record.items() if k not in CAIG_JSON_KEYS}
        products.append(ProductInput(product_id, image, record["new_caption"], extra))
    log.info("loaded %d products from %s", len(products), path)
    return products


def _read_table(path: Path) -> pl.DataFrame:
    suffix = path.suffix.lower()
    if not path.is_file():
        raise InputError("catalog not found", file=path)
    try:
        if suffix in (".parquet", ".pq"):
            return pl.read_parquet(path)
        if suffix == ".csv":
            return pl.read_csv(path, infer_schema=False)
    except (pl.exceptions.PolarsError, OSError) as err:
        raise InputError(f"cannot read the catalog ({err})", file=path) from err
    raise InputError(f"unknown catalog format {suffix!r}", file=path, expected="a .parquet or .csv file")


def load_catalog_products(
    catalog_path: str | Path, image_root: str | Path | None = None
) -> list[ProductInput]:
    """Products from a native catalog table (Parquet or CSV), one per row.

    Required columns: ``product_id, title, category, image``; every other non-null column is kept as an
    attribute (with ``category``). Relative image paths resolve against ``image_root`` when given, else
    against the catalog file's folder. The title is the caption.
    """
    path = Path(catalog_path)
    table = _read_table(path)
    missing = [c for c in CATALOG_REQUIRED if c not in table.columns]
    if missing:
        raise InputError(
            f"missing column(s) {missing}", file=path, expected=f"columns {list(CATALOG_REQUIRED)}"
        )
    root = Path(image_root) if image_root is not None else path.resolve().parent
    products: list[ProductInput] = []
    seen: set[str] = set()
    for row, record in enumerate(table.iter_rows(named=True), start=1):
        for key in CATALOG_REQUIRED:
            value = record[key]
            if value is None or (isinstance(value, str) and not value.strip()):
                raise InputError("missing or empty value", file=path, row=row, column=key)
        product_id = str(record["product_id"])
        if product_id in seen:
            raise InputError(f"duplicate product id {product_id!r}", file=path, row=row, column="product_id")
        seen.add(product_id)
        image = _load_listed_image(str(record["image"]), root, product_id, path, row, "image")
        attributes = {
            k: v for k, v in record.items() if k not in ("product_id", "title", "image") and v is not None
        }
        products.append(ProductInput(product_id, image, str(record["title"]), attributes))
    log.info("loaded %d products from %s", len(products), path)
    return products
