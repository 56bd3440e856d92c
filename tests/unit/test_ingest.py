"""caig ingest: every row is kept or quarantined with a reason; whole-file problems stop before any output."""

from __future__ import annotations

import csv
import json
import shutil
import tempfile
from collections.abc import Iterable
from datetime import date, datetime
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import caig.data.ingest as ingest_module
from caig.cli import main
from caig.data.ingest import ingest, read_table, write_table
from caig.data.schema import LOG_COLUMNS, Reason
from caig.errors import ConfigError, InputError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
REPO_CONFIG = Path(__file__).resolve().parents[2] / "config"
CATALOG_HEADER = ["product_id", "title", "category", "image"]
LOG_HEADER = list(LOG_COLUMNS)


def make_image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), (200, 30, 30)).save(path, format="PNG")
    return path


def write_csv(path: Path, header: list[str], rows: Iterable[Iterable[object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def small_world(folder: Path, log_rows: list[list[object]]) -> tuple[Path, Path]:
    """A two-product catalog with its images, and a log with the given rows (images a.png, b.png exist)."""
    for name in ("a.png", "b.png", "p1.png", "p2.png"):
        make_image(folder / "img" / name)
    catalog = write_csv(
        folder / "catalog.csv",
        CATALOG_HEADER,
        [["p1", "Mug", "home", "img/p1.png"], ["p2", "Shoe", "sports", "img/p2.png"]],
    )
    return catalog, write_csv(folder / "log.csv", LOG_HEADER, log_rows)


def clean_rows(n: int, start: int = 0) -> list[list[object]]:
    return [["p1", f"c{start + i}", "img/a.png", "2024-01-01", 100, 5] for i in range(n)]


def quarantine(out: Path) -> pl.DataFrame:
    return pl.read_parquet(out / "quarantine.parquet")


def assert_no_output(out: Path) -> None:
    assert not out.exists() or not any(out.iterdir())


@pytest.fixture
def native_world(tmp_path: Path) -> Path:
    """tests/fixtures/native with its images: every one present except lamp-03-d; shoe-02-e is corrupt."""
    world = tmp_path / "world"
    shutil.copytree(FIXTURES / "native", world)
    names = [
        "mug-01",
        "shoe-02",
        "lamp-03",
        "pen-04",
        "mug-01-a",
        "mug-01-b",
        "shoe-02-a",
        "shoe-02-b",
        "lamp-03-a",
        "lamp-03-b",
        "lamp-03-c",
        "pen-04-a",
        "cup-99-a",
    ]
    for name in names:
        make_image(world / "images" / f"{name}.png")
    (world / "images" / "shoe-02-e.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return world


# ------------------------------------------------------------------------------------- the fixture world


EXPECTED_LOG_QUARANTINE = {
    (2, "creative_product_conflict", "creative_id"),
    (4, "duplicate_row", "date"),
    (5, "bad_value", "clicks"),
    (6, "clicks_exceed_impressions", "clicks"),
    (7, "image_path_escape", "image"),
    (8, "negative_count", "impressions"),
    (9, "bad_value", "date"),
    (10, "product_quarantined", "product_id"),
    (11, "unknown_product", "product_id"),
    (12, "creative_product_conflict", "creative_id"),
    (13, "image_missing", "image"),
    (14, "image_unreadable", "image"),
}


def test_fixture_world_counts_every_row(native_world: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = ingest(native_world / "catalog.csv", native_world / "log.csv", out)

    assert (report.catalog.rows_read, report.catalog.rows_kept, report.catalog.rows_quarantined) == (5, 3, 2)
    assert report.catalog.quarantined_by_reason == {"missing_value": 1, "duplicate_product": 1}
    assert (report.log.rows_read, report.log.rows_kept, report.log.rows_quarantined) == (26, 14, 12)
    assert report.log.quarantined_by_reason == {
        "bad_value": 2,
        "negative_count": 1,
        "clicks_exceed_impressions": 1,
        "image_path_escape": 1,
        "unknown_product": 1,
        "product_quarantined": 1,
        "creative_product_conflict": 2,
        "duplicate_row": 1,
        "image_missing": 1,
        "image_unreadable": 1,
    }
    assert (report.log.images.checked, report.log.images.missing, report.log.images.unreadable) == (5, 1, 1)
    assert report.catalog.images.checked == 3

    q = quarantine(out)
    log_q = q.filter(pl.col("source") == str(native_world / "log.csv"))
    assert set(log_q.select("row", "reason", "column").iter_rows()) == EXPECTED_LOG_QUARANTINE
    catalog_q = q.filter(pl.col("source") == str(native_world / "catalog.csv"))
    assert set(catalog_q.select("row", "reason", "column").iter_rows()) == {
        (4, "duplicate_product", "product_id"),
        (5, "missing_value", "title"),
    }

    messages = dict(log_q.select("row", "message").iter_rows())
    assert "already appears on row 3" in messages[4]
    assert "'eight'" in messages[5] and "clicks" in messages[5]
    assert "'../escape.png'" in messages[7]
    assert "lamp-03-d.png" in messages[13]
    assert json.loads(log_q.filter(pl.col("row") == 5).item(0, "values"))["clicks"] == "eight"

    written = json.loads((out / "ingest_report.json").read_text())
    assert written["log"]["rows_quarantined"] == 12
    assert written["log"]["quarantined_by_reason"]["duplicate_row"] == 1


def test_clean_outputs_are_typed_and_absolute(native_world: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    ingest(native_world / "catalog.csv", native_world / "log.csv", out)
    events = pl.read_parquet(out / "log.parquet")
    assert events.schema == pl.Schema(
        {
            "product_id": pl.String,
            "creative_id": pl.String,
            "image": pl.String,
            "date": pl.Date,
            "impressions": pl.Int64,
            "clicks": pl.Int64,
        }
    )
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in events["image"])
    assert events["image"][0] == str(native_world / "images" / "mug-01-a.png")
    catalog = pl.read_parquet(out / "catalog.parquet")
    assert catalog.columns == ["product_id", "title", "category", "image", "price", "colors"]
    assert catalog["colors"].to_list() == ["white;blue", "black", None]


# ------------------------------------------------------------------------------------- fatal errors


def test_unknown_suffix_names_the_file(tmp_path: Path) -> None:
    catalog, _ = small_world(tmp_path, clean_rows(2))
    odd = tmp_path / "log.txt"
    odd.write_text("x")
    with pytest.raises(InputError, match=r"log\.txt.*unknown table format '\.txt'"):
        ingest(catalog, odd, tmp_path / "out")
    assert_no_output(tmp_path / "out")


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    catalog, _ = small_world(tmp_path, clean_rows(2))
    with pytest.raises(InputError, match=r"nope\.csv: no such file"):
        ingest(catalog, tmp_path / "nope.csv", tmp_path / "out")
    garbage = tmp_path / "log.parquet"
    garbage.write_bytes(b"this is not parquet at all")
    with pytest.raises(InputError, match=r"log\.parquet: cannot read as parquet"):
        ingest(catalog, garbage, tmp_path / "out")
    assert_no_output(tmp_path / "out")


def test_missing_required_column(tmp_path: Path) -> None:
    catalog, _ = small_world(tmp_path, [])
    log = write_csv(tmp_path / "log.csv", LOG_HEADER[:-1], [["p1", "c1", "img/a.png", "2024-01-01", 3]])
    with pytest.raises(InputError) as err:
        ingest(catalog, log, tmp_path / "out")
    assert "log.csv" in str(err.value) and "column 'clicks'" in str(err.value)
    assert "missing required column(s) clicks" in str(err.value)
    assert_no_output(tmp_path / "out")


def test_parquet_string_column_for_counts_is_fatal(tmp_path: Path) -> None:
    catalog, _ = small_world(tmp_path, [])
    log = tmp_path / "log.parquet"
    pl.DataFrame(
        {
            "product_id": ["p1"],
            "creative_id": ["c1"],
            "image": ["img/a.png"],
            "date": [date(2024, 1, 1)],
            "impressions": ["10"],
            "clicks": [1],
        }
    ).write_parquet(log)
    with pytest.raises(InputError) as err:
        ingest(catalog, log, tmp_path / "out")
    assert "log.parquet" in str(err.value) and "column 'impressions'" in str(err.value)
    assert "dtype String" in str(err.value) and "expected an integer column" in str(err.value)
    assert_no_output(tmp_path / "out")


@pytest.mark.parametrize("content", ["", ",".join(LOG_HEADER) + "\n"], ids=["zero-bytes", "header-only"])
def test_empty_file_is_fatal(tmp_path: Path, content: str) -> None:
    catalog, _ = small_world(tmp_path, [])
    log = tmp_path / "log.csv"
    log.write_text(content)
    with pytest.raises(InputError, match=r"log\.csv"):
        ingest(catalog, log, tmp_path / "out")
    assert_no_output(tmp_path / "out")


def test_csv_row_with_too_many_fields_names_the_row(tmp_path: Path) -> None:
    catalog, _ = small_world(tmp_path, [])
    log = write_csv(
        tmp_path / "log.csv", LOG_HEADER, [*clean_rows(3), ["p1", "c9", "img/a.png", "2024-01-01", 1, 0, 7]]
    )
    with pytest.raises(InputError, match=r"log\.csv, row 4: row has 7 fields \(expected 6"):
        ingest(catalog, log, tmp_path / "out")
    assert_no_output(tmp_path / "out")


def test_csv_row_with_too_few_fields_is_quarantined(tmp_path: Path) -> None:
    catalog, _ = small_world(tmp_path, [])
    log = write_csv(
        tmp_path / "log.csv", LOG_HEADER, [*clean_rows(3), ["p1", "c9", "img/a.png", "2024-01-01", 1]]
    )
    out = tmp_path / "out"
    report = ingest(catalog, log, out)
    assert report.log.quarantined_by_reason == {"missing_value": 1}
    assert quarantine(out).select("row", "column", "message").row(0) == (
        4,
        "clicks",
        "required column 'clicks' is empty",
    )


def test_too_many_bad_rows_is_fatal_and_names_the_first(tmp_path: Path) -> None:
    rows = [*clean_rows(2), *(["p1", f"x{i}", "img/a.png", "2024-01-01", 5, 9] for i in range(3))]
    catalog, log = small_world(tmp_path, rows)
    with pytest.raises(InputError) as err:
        ingest(catalog, log, tmp_path / "out", max_bad_fraction=0.5)
    text = str(err.value)
    assert "log.csv, row 3, column 'clicks'" in text
    assert "3 of 5 rows are invalid" in text and "clicks_exceed_impressions" in text
    assert "data.ingest.max_bad_fraction=0.5" in text
    assert_no_output(tmp_path / "out")
    report = ingest(catalog, log, tmp_path / "out", max_bad_fraction=0.6)
    assert report.log.rows_quarantined == 3


def test_catalog_failure_stops_before_the_log(tmp_path: Path) -> None:
    catalog = write_csv(tmp_path / "catalog.csv", CATALOG_HEADER, [["p1", "", "home", "img/p1.png"]])
    log = write_csv(tmp_path / "log.csv", LOG_HEADER, clean_rows(1))
    with pytest.raises(InputError, match=r"catalog\.csv, row 1, column 'title'"):
        ingest(catalog, log, tmp_path / "out", check_images=False)
    assert_no_output(tmp_path / "out")


def test_bad_settings_are_config_errors(tmp_path: Path) -> None:
    catalog, log = small_world(tmp_path, clean_rows(1))
    with pytest.raises(ConfigError, match="max_bad_fraction"):
        ingest(catalog, log, tmp_path / "out", max_bad_fraction=1.5)
    with pytest.raises(ConfigError, match="image_check_workers"):
        ingest(catalog, log, tmp_path / "out", image_check_workers=0)


def test_refuses_to_overwrite_its_input(tmp_path: Path) -> None:
    for name in ("a.png", "p1.png", "p2.png"):
        make_image(tmp_path / "img" / name)
    write_table(
        pl.DataFrame({"product_id": ["p1"], "title": ["Mug"], "category": ["home"], "image": ["img/p1.png"]}),
        tmp_path / "catalog.parquet",
    )
    write_table(
        pl.DataFrame(
            {
                "product_id": ["p1"],
                "creative_id": ["c1"],
                "image": ["img/a.png"],
                "date": [date(2024, 1, 1)],
                "impressions": [5],
                "clicks": [1],
            }
        ),
        tmp_path / "log.parquet",
    )
    with pytest.raises(InputError, match="overwrite its own input"):
        ingest(tmp_path / "catalog.parquet", tmp_path / "log.parquet", tmp_path)


# ------------------------------------------------------------------------------------- row-level checks


def test_parquet_inputs_with_native_dtypes(tmp_path: Path) -> None:
    for name in ("a.png", "p1.png", "p2.png"):
        make_image(tmp_path / "img" / name)
    catalog = write_table(
        pl.DataFrame(
            {
                "product_id": [1, 2, 2],
                "title": ["Mug", "Shoe", "Shoe"],
                "category": ["home", "sports", "sports"],
                "image": ["img/p1.png", "img/p2.png", "img/p2.png"],
                "tags": [["a", "b"], ["c"], []],
            }
        ),
        tmp_path / "catalog.parquet",
    )
    log = write_table(
        pl.DataFrame(
            {
                "product_id": ["1", "1", "2", "2", "3"],
                "creative_id": ["c1", "c2", "c3", "c3", "c4"],
                "image": ["img/a.png"] * 5,
                "date": [
                    datetime(2024, 1, 1, 13, 0),
                    datetime(2024, 1, 1),
                    datetime(2024, 1, 1),
                    datetime(2024, 1, 1, 9),
                    datetime(2024, 1, 2),
                ],
                "impressions": [10.0, 7.5, 10.0, 10.0, 1.0],
                "clicks": [1, 1, 2, 3, None],
            }
        ),
        tmp_path / "log.parquet",
    )
    out = tmp_path / "out"
    report = ingest(catalog, log, out, max_bad_fraction=0.8)
    assert report.catalog.quarantined_by_reason == {"duplicate_product": 1}
    assert report.log.quarantined_by_reason == {"bad_value": 1, "duplicate_row": 1, "missing_value": 1}
    q = quarantine(out).filter(pl.col("source") == str(log))
    assert dict(q.select("row", "reason").iter_rows()) == {
        2: "bad_value",
        4: "duplicate_row",
        5: "missing_value",
    }
    assert json.loads(q.filter(pl.col("row") == 2).item(0, "values"))["impressions"] == "7.5"
    catalog_q = quarantine(out).filter(pl.col("source") == str(catalog))
    assert json.loads(catalog_q.item(0, "values"))["tags"] == ""
    events = pl.read_parquet(out / "log.parquet")
    assert events["date"].to_list() == [date(2024, 1, 1)] * 2
    assert events["impressions"].to_list() == [10, 10]
    assert pl.read_parquet(out / "catalog.parquet")["product_id"].to_list() == ["1", "2"]


def test_relative_images_resolve_against_each_files_folder(tmp_path: Path) -> None:
    shop, logs = tmp_path / "shop", tmp_path / "logs"
    make_image(shop / "pics" / "p1.png")
    make_image(logs / "ads" / "c1.png")
    catalog = write_csv(shop / "catalog.csv", CATALOG_HEADER, [["p1", "Mug", "home", "pics/p1.png"]])
    log = write_csv(logs / "log.csv", LOG_HEADER, [["p1", "c1", "ads/c1.png", "2024-01-01", 10, 1]])
    out = tmp_path / "out"
    report = ingest(catalog, log, out)
    assert report.log.rows_kept == 1 and report.catalog.rows_kept == 1
    assert pl.read_parquet(out / "catalog.parquet")["image"].item() == str(shop / "pics" / "p1.png")
    assert pl.read_parquet(out / "log.parquet")["image"].item() == str(logs / "ads" / "c1.png")


def test_explicit_image_root_and_path_escapes(tmp_path: Path) -> None:
    root = tmp_path / "images"
    for name in ("p1.png", "sub/c1.png", "sub/c2.png"):
        make_image(root / name)
    make_image(tmp_path / "outside.png")
    data = tmp_path / "tables"
    catalog = write_csv(data / "catalog.csv", CATALOG_HEADER, [["p1", "Mug", "home", "p1.png"]])
    images = [
        "sub/c1.png",
        str(root / "sub" / "c2.png"),
        "sub/../sub/c1.png",
        "../outside.png",
        str(tmp_path / "outside.png"),
        "sub/../../outside.png",
    ]
    log = write_csv(
        data / "log.csv",
        LOG_HEADER,
        [["p1", f"c{i}", image, "2024-01-01", 10, 1] for i, image in enumerate(images)],
    )
    out = tmp_path / "out"
    report = ingest(catalog, log, out, image_root=root, max_bad_fraction=1.0)
    assert report.log.quarantined_by_reason == {"image_path_escape": 3}
    escaped = quarantine(out).filter(pl.col("reason") == "image_path_escape")
    assert escaped["row"].to_list() == [4, 5, 6]
    assert all(str(root) in m for m in escaped["message"])
    kept = pl.read_parquet(out / "log.parquet")["image"].to_list()
    assert kept == [str(root / "sub" / "c1.png"), str(root / "sub" / "c2.png"), str(root / "sub" / "c1.png")]
    assert report.image_root == str(root)


def test_image_root_must_exist(tmp_path: Path) -> None:
    catalog, log = small_world(tmp_path, clean_rows(1))
    with pytest.raises(InputError, match=r"nowhere: image root is not a directory"):
        ingest(catalog, log, tmp_path / "out", image_root=tmp_path / "nowhere")


def test_each_unique_image_is_checked_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def counting(path: str) -> tuple[str, str]:
        calls.append(path)
        return real(path)

    real = ingest_module._check_one_image
    monkeypatch.setattr(ingest_module, "_check_one_image", counting)
    rows = [
        ["p1" if k % 2 else "p2", f"c{k}", f"img/{'ab'[k % 2]}.png", f"2024-01-{1 + i // 7:02d}", 50, 1]
        for i, k in ((i, i % 7) for i in range(70))
    ]
    rows.append(["p1", "c1", "img/p1.png", "2024-02-01", 50, 1])  # an image the catalog also names
    catalog, log = small_world(tmp_path, rows)
    report = ingest(catalog, log, tmp_path / "out")
    assert sorted(calls) == sorted(
        {str(tmp_path / "img" / n) for n in ("a.png", "b.png", "p1.png", "p2.png")}
    )
    assert report.log.images.checked == 3 and report.catalog.images.checked == 2


def test_no_image_check_keeps_rows_with_missing_images(tmp_path: Path) -> None:
    catalog, log = small_world(tmp_path, [["p1", "c1", "img/gone.png", "2024-01-01", 5, 1]])
    report = ingest(catalog, log, tmp_path / "out", check_images=False)
    assert report.log.rows_kept == 1 and report.log.images.checked == 0 and not report.images_checked
    with pytest.raises(InputError, match="image_missing"):
        ingest(catalog, log, tmp_path / "out2")


def test_creative_under_two_products_quarantines_all_its_rows(tmp_path: Path) -> None:
    rows = [
        ["p1", "c1", "img/a.png", "2024-01-01", 10, 1],
        ["p2", "c1", "img/a.png", "2024-01-02", 10, 1],
        *clean_rows(4, start=10),
    ]
    catalog, log = small_world(tmp_path, rows)
    out = tmp_path / "out"
    ingest(catalog, log, out)
    q = quarantine(out)
    assert q["row"].to_list() == [1, 2] and set(q["reason"]) == {"creative_product_conflict"}
    assert "'c1' appears under several product_ids (p1, p2)" in q["message"][0]


# ------------------------------------------------------------------------------------- tables


def test_read_table_dispatches_on_suffix(tmp_path: Path) -> None:
    frame = pl.DataFrame({"a": [1, 2], "tags": [["x", "y"], []]})
    write_table(frame, tmp_path / "t.parquet")
    write_table(frame, tmp_path / "t.csv")
    assert read_table(tmp_path / "t.parquet").collect().equals(frame)
    assert read_table(tmp_path / "t.csv").collect().to_dict(as_series=False) == {
        "a": ["1", "2"],
        "tags": ["x;y", ""],
    }
    with pytest.raises(
        InputError,
        match=r"t\.json: unknown table format '\.json' \(expected a file ending in "
        r"\.parquet or \.csv\)",
    ):
        read_table(tmp_path / "t.json")


# ------------------------------------------------------------------------------------- property


def mostly(valid: st.SearchStrategy[str], *dirty: str) -> st.SearchStrategy[str]:
    """Valid cells most of the time, so rows also reach the checks that run after parsing."""
    return st.tuples(st.integers(0, 11), valid, st.sampled_from(dirty)).map(
        lambda t: t[2] if t[0] == 7 else t[1]
    )


CELLS = {
    "product_id": mostly(st.sampled_from(["p1", "p2"]), "p3", "ghost", ""),
    "creative_id": mostly(st.sampled_from(["c1", "c2", "c3", "c4"]), ""),
    "image": mostly(
        st.sampled_from(["img/a.png", "img/b.png"]), "img/gone.png", "img/broken.png", "../x.png", ""
    ),
    "date": mostly(st.sampled_from(["2024-01-01", "2024-01-02", "2024-01-03"]), "2024-1-3", "2024-02-30", ""),
    "impressions": mostly(st.integers(0, 40).map(str), "", "x", "1.5", " 7 ", "-2"),
    "clicks": mostly(st.integers(0, 10).map(str), "", "NaN", "2e1", "-1", "99"),
}


@pytest.fixture(scope="module")
def dirty_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("dirty")
    for name in ("a.png", "b.png", "p1.png", "p2.png"):
        make_image(folder / "img" / name)
    (folder / "img" / "broken.png").write_bytes(b"GIF89a broken")
    write_csv(
        folder / "catalog.csv",
        CATALOG_HEADER,
        [
            ["p1", "Mug", "home", "img/p1.png"],
            ["p2", "Shoe", "sports", "img/p2.png"],
            ["p3", "", "home", "img/p1.png"],
        ],
    )
    return folder


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.fixed_dictionaries(CELLS), min_size=1, max_size=30))
def test_every_row_is_kept_or_quarantined(dirty_world: Path, rows: list[dict[str, str]]) -> None:
    work = Path(tempfile.mkdtemp(dir=dirty_world))
    log = write_csv(work / "log.csv", LOG_HEADER, ([row[c] for c in LOG_HEADER] for row in rows))
    shutil.copytree(dirty_world / "img", work / "img")
    report = ingest(
        dirty_world / "catalog.csv", log, work / "out", max_bad_fraction=1.0, image_check_workers=2
    )

    assert report.log.rows_read == len(rows)
    assert report.log.rows_kept + report.log.rows_quarantined == len(rows)
    assert sum(report.log.quarantined_by_reason.values()) == report.log.rows_quarantined
    assert set(report.log.quarantined_by_reason) <= {r.value for r in Reason}
    q = quarantine(work / "out").filter(pl.col("source") == str(log))
    assert q.height == report.log.rows_quarantined and q["row"].n_unique() == q.height
    assert q["row"].is_between(1, len(rows)).all() and q["message"].is_not_null().all()
    events = pl.read_parquet(work / "out" / "log.parquet")
    assert events.height == report.log.rows_kept
    assert (events["clicks"] <= events["impressions"]).all() and (events["clicks"] >= 0).all()
    assert events.select("creative_id", "date").is_unique().all()
    assert events.group_by("creative_id").agg(pl.col("product_id").n_unique())["product_id"].max() in (
        None,
        1,
    )
    assert set(events["product_id"]) <= {"p1", "p2"}
    assert all(Path(p).name in ("a.png", "b.png") for p in events["image"])
    kept_rows = len(rows) - q.height
    assert kept_rows == events.height


# ------------------------------------------------------------------------------------- CLI


@pytest.fixture
def config_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A minimal Hydra tree around the data config group, so the CLI test needs no other stage's config."""
    tree = tmp_path / "config"
    (tree / "data").mkdir(parents=True)
    shutil.copy(REPO_CONFIG / "data" / "default.yaml", tree / "data" / "default.yaml")
    (tree / "caig.yaml").write_text("defaults:\n  - _self_\n  - data: default\nseed: 0\n")
    monkeypatch.setenv("CAIG_CONFIG_DIR", str(tree))
    return tree


def test_cli_ingest_and_its_errors(
    config_tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    catalog, log = small_world(tmp_path, [*clean_rows(3), ["p1", "cx", "img/gone.png", "2024-01-01", 5, 1]])
    out = tmp_path / "out"
    assert main(["ingest", "--catalog", str(catalog), "--log", str(log), "--out", str(out)]) == 0
    assert json.loads((out / "ingest_report.json").read_text())["log"]["quarantined_by_reason"] == {
        "image_missing": 1
    }
    assert (
        main(
            [
                "ingest",
                "--catalog",
                str(catalog),
                "--log",
                str(log),
                "--out",
                str(tmp_path / "o2"),
                "--no-image-check",
            ]
        )
        == 0
    )
    assert pl.read_parquet(tmp_path / "o2" / "log.parquet").height == 4
    assert (
        main(
            [
                "ingest",
                "--catalog",
                str(catalog),
                "--log",
                str(log),
                "--out",
                str(tmp_path / "o3"),
                "data.ingest.max_bad_fraction=0.1",
            ]
        )
        == 2
    )
    assert "caig ingest: error:" in capsys.readouterr().err and not (tmp_path / "o3").exists()
