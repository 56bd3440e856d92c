"""Product inputs: every PNG flavour becomes RGBA with the right mask; bad files name the file and product."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from caig.errors import InputError
from caig.generate.products import (
    OpaqueImageWarning,
    load_caig_json,
    load_catalog_products,
    load_product_image,
    product_mask,
)

ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def write_interlaced_png(pixels: np.ndarray, path: Path) -> None:
    """Write an RGBA array as an Adam7-interlaced PNG (Pillow only writes non-interlaced ones)."""
    height, width, _ = pixels.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b""
    for x0, y0, dx, dy in ADAM7:
        sub = pixels[y0::dy, x0::dx]
        if sub.size:
            raw += b"".join(b"\x00" + row.tobytes() for row in sub)
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 1)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def rgba_array(width: int = 13, height: int = 9, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (height, width, 4), dtype=np.uint8)
    pixels[0, 0, 3] = 255  # at least one opaque pixel whatever the seed
    return pixels


def test_rgba_kept_exactly(tmp_path):
    pixels = rgba_array()
    Image.fromarray(pixels, "RGBA").save(tmp_path / "p.png")
    image = load_product_image(tmp_path / "p.png", "p1")
    assert image.mode == "RGBA"
    np.testing.assert_array_equal(np.asarray(image), pixels)
    np.testing.assert_array_equal(product_mask(image), pixels[..., 3] >= 128)


def test_interlaced_png_decodes_to_the_same_pixels(tmp_path):
    pixels = rgba_array(width=11, height=7)
    write_interlaced_png(pixels, tmp_path / "i.png")
    with Image.open(tmp_path / "i.png") as raw:
        assert raw.info.get("interlace") == 1
    np.testing.assert_array_equal(np.asarray(load_product_image(tmp_path / "i.png", "i")), pixels)


def test_palette_with_transparency_index(tmp_path):
    index = np.zeros((6, 8), dtype=np.uint8)
    index[1:5, 2:6] = 1
    palette_image = Image.fromarray(index, "P")
    palette_image.putpalette([255, 255, 255, 200, 30, 40] + [0] * 762)
    palette_image.save(tmp_path / "pal.png", transparency=0)
    image = load_product_image(tmp_path / "pal.png", "pal")
    assert image.mode == "RGBA"
    np.testing.assert_array_equal(product_mask(image), index == 1)
    assert tuple(np.asarray(image)[2, 3]) == (200, 30, 40, 255)


def test_grey_alpha_becomes_rgba(tmp_path):
    la = np.stack([np.full((4, 5), 90, np.uint8), np.array([[0, 255, 10, 200, 128]] * 4, np.uint8)], axis=-1)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    image = load_product_image(tmp_path / "la.png", "la")
    assert image.mode == "RGBA"
    np.testing.assert_array_equal(product_mask(image)[0], [False, True, False, True, True])
    assert tuple(np.asarray(image)[0, 1]) == (90, 90, 90, 255)


@pytest.mark.parametrize("size", [(1, 1), (300, 7), (7, 300)])
def test_rgb_without_alpha_is_all_product_with_a_warning(tmp_path, size):
    Image.new("RGB", size, (10, 200, 30)).save(tmp_path / "rgb.png")
    with pytest.warns(OpaqueImageWarning, match="no alpha"):
        image = load_product_image(tmp_path / "rgb.png", "rgb")
    assert image.mode == "RGBA" and image.size == size
    assert product_mask(image).all()


def test_missing_unreadable_and_empty_images_name_file_and_product(tmp_path):
    with pytest.raises(InputError, match="'p9'") as err:
        load_product_image(tmp_path / "nope.png", "p9")
    assert err.value.file == str(tmp_path / "nope.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    with pytest.raises(InputError, match="p7.*cannot read") as err:
        load_product_image(tmp_path / "bad.png", "p7")
    assert err.value.file == str(tmp_path / "bad.png")
    Image.new("RGBA", (4, 4), (255, 0, 0, 0)).save(tmp_path / "clear.png")
    with pytest.raises(InputError, match="fully transparent"):
        load_product_image(tmp_path / "clear.png", "p8")


@settings(max_examples=30, deadline=None)
@given(
    alpha=arrays(np.uint8, st.tuples(st.integers(1, 12), st.integers(1, 12))),
    threshold=st.integers(1, 255),
)
def test_product_mask_is_alpha_at_or_above_threshold(alpha, threshold):
    rgba = np.zeros((*alpha.shape, 4), np.uint8)
    rgba[..., 3] = alpha
    mask = product_mask(Image.fromarray(rgba, "RGBA"), threshold)
    assert mask.dtype == np.bool_
    np.testing.assert_array_equal(mask, alpha >= threshold)


def write_caig_layout(root: Path, records: list[dict]) -> Path:
    (root / "data" / "images").mkdir(parents=True)
    Image.fromarray(rgba_array(), "RGBA").save(root / "data" / "images" / "a.png")
    listing = root / "data" / "list.json"
    listing.write_text(json.dumps(records))
    return listing


def test_caig_json_resolves_images_against_the_folder_holding_the_dataset_folder(tmp_path):
    listing = write_caig_layout(tmp_path, [{"id": 1, "image": "data/images/a.png", "new_caption": "a lamp"}])
    (product,) = load_caig_json(listing)
    assert (product.product_id, product.caption, product.image.mode) == ("1", "a lamp", "RGBA")
    with pytest.raises(InputError, match="resolve against") as err:
        load_caig_json(listing, image_root=tmp_path / "data")
    assert err.value.row == 1 and err.value.column == "image"


def test_caig_json_image_root_and_absolute_paths(tmp_path):
    listing = write_caig_layout(
        tmp_path,
        [
            {"id": "x", "image": "images/a.png", "new_caption": "c"},
            {"id": "y", "image": str(tmp_path / "data" / "images" / "a.png"), "new_caption": "d", "extra": 3},
        ],
    )
    products = load_caig_json(listing, image_root=tmp_path / "data")
    assert [p.product_id for p in products] == ["x", "y"]
    assert products[1].attributes == {"extra": 3}


@pytest.mark.parametrize(
    ("records", "match", "row", "column"),
    [
        ({"id": 1}, "list of", None, None),
        ([{"id": 1, "image": "data/images/a.png"}], "missing", 1, "new_caption"),
        ([{"id": 1, "image": "data/images/a.png", "new_caption": " "}], "empty", 1, "new_caption"),
        ([3], "JSON object", 1, None),
        (
            [
                {"id": 1, "image": "data/images/a.png", "new_caption": "c"},
                {"id": "1", "image": "data/images/a.png", "new_caption": "c"},
            ],
            "duplicate",
            2,
            "id",
        ),
    ],
)
def test_caig_json_bad_entries(tmp_path, records, match, row, column):
    listing = write_caig_layout(tmp_path, records)
    with pytest.raises(InputError, match=match) as err:
        load_caig_json(listing)
    assert (err.value.file, err.value.row, err.value.column) == (str(listing), row, column)


def test_caig_json_not_json(tmp_path):
    (tmp_path / "x.json").write_text("[{")
    with pytest.raises(InputError, match="not valid JSON"):
        load_caig_json(tmp_path / "x.json")


def catalog_frame(image: str) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "product_id": ["007", "008"],
            "title": ["steel kettle", "wool scarf"],
            "category": ["home", "fashion"],
            "image": [image, image],
            "colors": ["silver;black", None],
        }
    )


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_catalog_products(tmp_path, suffix):
    (tmp_path / "img").mkdir()
    Image.fromarray(rgba_array(), "RGBA").save(tmp_path / "img" / "k.png")
    path = tmp_path / f"catalog{suffix}"
    frame = catalog_frame("img/k.png")
    frame.write_csv(path) if suffix == ".csv" else frame.write_parquet(path)
    products = load_catalog_products(path)
    assert [p.product_id for p in products] == ["007", "008"]
    assert products[0].caption == "steel kettle"
    assert products[0].attributes == {"category": "home", "colors": "silver;black"}
    assert products[1].attributes == {"category": "fashion"}
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    (moved / f"catalog{suffix}").write_bytes(path.read_bytes())
    assert len(load_catalog_products(moved / f"catalog{suffix}", image_root=tmp_path)) == 2


def test_catalog_errors_name_file_row_and_column(tmp_path):
    path = tmp_path / "c.csv"
    catalog_frame("missing.png").write_csv(path)
    with pytest.raises(InputError, match="'007'.*not found") as err:
        load_catalog_products(path)
    assert (err.value.file, err.value.row, err.value.column) == (str(path), 1, "image")
    catalog_frame("x.png").drop("category").write_csv(path)
    with pytest.raises(InputError, match="category"):
        load_catalog_products(path)
    (tmp_path / "c.tsv").write_text("a\tb\n")
    with pytest.raises(InputError, match=r"\.parquet or \.csv"):
        load_catalog_products(tmp_path / "c.tsv")


@pytest.mark.fixture
def test_real_caig_fixture_loads(caig_tiny_fixture):
    products = load_caig_json(caig_tiny_fixture / "tiny_dataset" / "tiny.json")
    assert [p.product_id for p in products] == [str(i) for i in range(1, 9)]
    sources = caig_tiny_fixture / "tiny_dataset" / "images"
    with Image.open(sources / "6.png") as palette, Image.open(sources / "2.png") as interlaced:
        assert palette.mode == "P" and interlaced.info.get("interlace") == 1
    for product in products:
        mask = product_mask(product.image)
        assert product.image.mode == "RGBA" and product.image.size == (800, 800)
        assert 0.02 < mask.mean() < 0.98, product.product_id  # a cut-out: some product, some transparency
        assert product.caption
