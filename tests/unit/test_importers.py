"""caig import: Alibaba CreativeRanking and CG4CTR layouts to the native schema, and on through ingest."""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from PIL import Image

from caig.cli import main
from caig.data.importers import CREATIVE_IMAGE, import_alibaba, import_cg4ctr
from caig.data.ingest import ingest, read_table
from caig.errors import ConfigError, InputError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
REPO_CONFIG = Path(__file__).resolve().parents[2] / "config"
ALIBABA = FIXTURES / "alibaba" / "creative_ranking.tsv"
CG4CTR = FIXTURES / "cg4ctr" / "products.json"
CAPTIONS = FIXTURES / "cg4ctr" / "captions.jsonl"


def make_images(folder: Path, names: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.new("RGB", (4, 4), (10, 120, 200)).save(folder / name, format="JPEG")
    return folder


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------------- Alibaba


def test_alibaba_with_header(tmp_path: Path) -> None:
    images = make_images(tmp_path / "images", [])
    summary = import_alibaba(ALIBABA, images, tmp_path / "catalog.parquet", tmp_path / "log.parquet")
    assert (summary.products, summary.creatives, summary.log_rows) == (3, 5, 8)
    events = pl.read_parquet(tmp_path / "log.parquet")
    assert events.columns == ["product_id", "creative_id", "image", "date", "impressions", "clicks"]
    assert events.row(0) == ("1001", "1001_a.jpg", "1001_a.jpg", date(2021, 3, 1), 120, 6)
    assert events.filter(pl.col("creative_id") == "2002_b.jpg")["clicks"].to_list() == [
        3,
        61,
    ]  # passed through
    catalog = pl.read_parquet(tmp_path / "catalog.parquet")
    assert catalog.to_dicts()[0] == {
        "product_id": "1001",
        "title": "1001",
        "category": "unknown",
        "image": "1001_a.jpg",
        "image_source": CREATIVE_IMAGE,
    }
    assert catalog["product_id"].to_list() == ["1001", "2002", "3003"]


def test_alibaba_without_header_and_iso_dates_to_csv(tmp_path: Path) -> None:
    images = make_images(tmp_path / "images", [])
    import_alibaba(
        FIXTURES / "alibaba" / "creative_ranking_noheader.tsv",
        images,
        tmp_path / "c.csv",
        tmp_path / "l.csv",
        image_pattern="{item_id}/{image_name}",
        category="misc",
    )
    events = read_table(tmp_path / "l.csv").collect()
    assert events["date"].to_list() == ["2021-03-01"] * 3
    assert events["image"].to_list() == ["1001/1001_a.jpg", "1001/1001_b.jpg", "2002/2002_a.jpg"]
    assert read_table(tmp_path / "c.csv").collect()["category"].to_list() == ["misc", "misc"]


def test_alibaba_header_in_another_order(tmp_path: Path) -> None:
    data = write(tmp_path / "d.tsv", "clk\tpv\tds\timage_name\titem_id\n3\t50\t20210105\tx.jpg\t7\n")
    import_alibaba(data, tmp_path, tmp_path / "c.parquet", tmp_path / "l.parquet")
    assert pl.read_parquet(tmp_path / "l.parquet").row(0) == ("7", "x.jpg", "x.jpg", date(2021, 1, 5), 50, 3)


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        (
            "item_id\timage_name\tds\tpv\tclk\n1\ta.jpg\t20210101\t5\n",
            r"d\.tsv, row 2: line has 4 tab-separated fields",
        ),
        (
            "1\ta.jpg\t20210101\t5\t1\n\n2\tb.jpg\t20210101\tmany\t1\n",
            r"d\.tsv, row 3, column 'pv': value 'many'",
        ),
        ("1\ta.jpg\t2021-13-01\t5\t1\n", r"d\.tsv, row 1, column 'ds': value '2021-13-01' does not parse"),
        ("1\ta.jpg\t20210101\t5\t1.0\n", r"d\.tsv, row 1, column 'clk'"),
        ("item_id\timage\tds\tpv\tclk\n", r"d\.tsv, row 1: header has fields"),
        ("\n\n", r"d\.tsv: the file has no lines"),
        ("item_id\timage_name\tds\tpv\tclk\n", r"d\.tsv: the file has a header but no data lines"),
    ],
    ids=["field-count", "count", "date", "float-count", "header", "empty", "header-only"],
)
def test_alibaba_layout_errors_name_file_and_line(tmp_path: Path, text: str, pattern: str) -> None:
    data = write(tmp_path / "d.tsv", text)
    with pytest.raises(InputError, match=pattern):
        import_alibaba(data, tmp_path, tmp_path / "out" / "c.parquet", tmp_path / "out" / "l.parquet")
    assert not (tmp_path / "out").exists()


def test_alibaba_bad_settings(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="image folder does not exist"):
        import_alibaba(ALIBABA, tmp_path / "nope", tmp_path / "c.parquet", tmp_path / "l.parquet")
    with pytest.raises(ConfigError, match=r"data\.import\.alibaba\.image_pattern.*\['hash'\]"):
        import_alibaba(
            ALIBABA, tmp_path, tmp_path / "c.parquet", tmp_path / "l.parquet", image_pattern="{hash}.jpg"
        )
    with pytest.raises(ConfigError, match="names no field"):
        import_alibaba(
            ALIBABA, tmp_path, tmp_path / "c.parquet", tmp_path / "l.parquet", image_pattern="x.jpg"
        )
    with pytest.raises(InputError, match=r"l\.json: unknown table format"):
        import_alibaba(ALIBABA, tmp_path, tmp_path / "c.parquet", tmp_path / "l.json")


def test_alibaba_catalog_image_is_the_first_creative_that_exists(tmp_path: Path) -> None:
    images = make_images(tmp_path / "images", ["1001_b.jpg", "2002_a.jpg"])
    import_alibaba(ALIBABA, images, tmp_path / "catalog.parquet", tmp_path / "log.parquet")
    catalog = pl.read_parquet(tmp_path / "catalog.parquet")
    assert catalog.select("product_id", "image").rows() == [
        ("1001", "1001_b.jpg"),
        ("2002", "2002_a.jpg"),
        ("3003", "3003_a.jpg"),
    ]


def test_alibaba_through_ingest(tmp_path: Path) -> None:
    names = ["1001_a.jpg", "1001_b.jpg", "2002_a.jpg", "2002_b.jpg"]  # 3003_a.jpg is missing
    images = make_images(tmp_path / "images", names)
    raw = tmp_path / "raw"
    import_alibaba(ALIBABA, images, raw / "catalog.parquet", raw / "log.parquet")
    report = ingest(raw / "catalog.parquet", raw / "log.parquet", tmp_path / "clean", image_root=images)
    assert report.catalog.quarantined_by_reason == {"image_missing": 1}
    assert report.log.quarantined_by_reason == {"clicks_exceed_impressions": 1, "product_quarantined": 1}
    assert report.log.rows_kept + report.log.rows_quarantined == report.log.rows_read == 8
    events = pl.read_parquet(tmp_path / "clean" / "log.parquet")
    assert set(events["image"]) == {str(images / n) for n in names}


# ------------------------------------------------------------------------------------- CG4CTR


def test_cg4ctr_with_captions(tmp_path: Path) -> None:
    summary = import_cg4ctr(
        CG4CTR,
        tmp_path,
        tmp_path / "catalog.parquet",
        tmp_path / "log.parquet",
        creatives_out=tmp_path / "creatives.parquet",
        captions_path=CAPTIONS,
        log_date="2024-06-01",
    )
    assert (summary.products, summary.creatives, summary.log_rows) == (2, 5, 5)
    assert summary.notes == {
        "products_without_creatives": 1,
        "captions_duplicate": 1,
        "captions_unmatched": 1,
        "creatives_without_caption": 2,
    }
    events = pl.read_parquet(tmp_path / "log.parquet")
    assert events.select("creative_id", "image", "impressions", "clicks").rows()[:3] == [
        ("11", "9f1c0a.jpg", 1500, 45),
        ("12", "4be2d7.jpg", 1320, 30),
        ("13", "77aa01.jpg", 980, 41),
    ]
    assert set(events["date"]) == {date(2024, 6, 1)}
    catalog = pl.read_parquet(tmp_path / "catalog.parquet")
    assert catalog.select("product_id", "image").rows() == [("p-100", "9f1c0a.jpg"), ("p-200", "c0ffee.jpg")]
    creatives = pl.read_parquet(tmp_path / "creatives.parquet")
    assert creatives.columns == ["creative_id", "product_id", "description"]
    assert creatives.select("creative_id", "product_id").rows() == [
        ("11", "p-100"),
        ("12", "p-100"),
        ("21", "p-200"),
    ]
    assert creatives["description"][0].startswith("a ceramic mug")


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ('{"p": [\n  {"creative_id": 1,}\n]}', r"d\.json, row 2: malformed JSON"),
        ('[{"creative_id": 1}]', r"d\.json: top level is a JSON list"),
        (
            '{"p": [{"creative_id": 1, "creative_image_hash": "h", '
            '"exp_impression_cnt": "ten", "exp_click_cnt": 1}]}',
            r"d\.json, column 'exp_impression_cnt': product 'p', creative #0: exp_impression_cnt is 'ten'",
        ),
        (
            '{"p": [{"creative_id": 1, "exp_impression_cnt": 3, "exp_click_cnt": 1}]}',
            r"column 'creative_image_hash': product 'p', creative #0: field 'creative_image_hash' is missing",
        ),
        ('{"p": {"creative_id": 1}}', r"product 'p': value is a JSON dict"),
        ('{"p": []}', r"no creatives in the file"),
    ],
    ids=["malformed", "top-level", "count", "missing-field", "not-a-list", "no-creatives"],
)
def test_cg4ctr_errors_name_file_and_place(tmp_path: Path, text: str, pattern: str) -> None:
    data = write(tmp_path / "d.json", text)
    with pytest.raises(InputError, match=pattern):
        import_cg4ctr(data, tmp_path, tmp_path / "out" / "c.parquet", tmp_path / "out" / "l.parquet")
    assert not (tmp_path / "out").exists()


def test_cg4ctr_caption_errors_name_the_line(tmp_path: Path) -> None:
    bad = write(
        tmp_path / "caps.jsonl", '{"creative_id": 11, "prompt_creative": "ok"}\n\n{"creative_id": 12\n'
    )
    with pytest.raises(InputError, match=r"caps\.jsonl, row 3: malformed JSON line"):
        import_cg4ctr(
            CG4CTR,
            tmp_path,
            tmp_path / "c.parquet",
            tmp_path / "l.parquet",
            creatives_out=tmp_path / "k.parquet",
            captions_path=bad,
        )
    missing = write(tmp_path / "caps2.jsonl", '{"creative_id": 11}\n')
    with pytest.raises(InputError, match=r"caps2\.jsonl, row 1, column 'prompt_creative'"):
        import_cg4ctr(
            CG4CTR,
            tmp_path,
            tmp_path / "c.parquet",
            tmp_path / "l.parquet",
            creatives_out=tmp_path / "k.parquet",
            captions_path=missing,
        )
    with pytest.raises(ConfigError, match="data.import.cg4ctr.date"):
        import_cg4ctr(CG4CTR, tmp_path, tmp_path / "c.parquet", tmp_path / "l.parquet", log_date="01/02/2024")


def test_cg4ctr_through_ingest(tmp_path: Path) -> None:
    images = make_images(
        tmp_path / "images", ["9f1c0a.png", "4be2d7.png", "77aa01.png", "c0ffee.png", "5eed00.png"]
    )
    raw = tmp_path / "raw"
    import_cg4ctr(
        CG4CTR, images, raw / "catalog.csv", raw / "log.csv", image_pattern="{creative_image_hash}.png"
    )
    report = ingest(raw / "catalog.csv", raw / "log.csv", tmp_path / "clean", image_root=images)
    assert report.log.quarantined_by_reason == {"clicks_exceed_impressions": 1}
    assert (report.log.rows_read, report.log.rows_kept) == (5, 4)
    assert report.catalog.rows_kept == 2


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


def test_cli_import_both_layouts(
    config_tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ali"
    assert (
        main(["import", "alibaba", "--log", str(ALIBABA), "--images", str(tmp_path), "--out", str(out)]) == 0
    )
    assert sorted(p.name for p in out.iterdir()) == ["catalog.parquet", "log.parquet"]

    out = tmp_path / "cg"
    argv = [
        "import",
        "cg4ctr",
        "--log",
        str(CG4CTR),
        "--images",
        str(tmp_path),
        "--captions",
        str(CAPTIONS),
        "--out",
        str(out),
        "--log-out",
        str(tmp_path / "log.csv"),
        "--image-pattern",
        "img/{creative_id}.png",
        "--date",
        "2023-12-31",
        "data.import.placeholder_category=misc",
    ]
    assert main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["catalog.parquet", "creatives.parquet"]
    events = read_table(tmp_path / "log.csv").collect()
    assert events["image"][0] == "img/11.png" and set(events["date"]) == {"2023-12-31"}
    assert set(pl.read_parquet(out / "catalog.parquet")["category"]) == {"misc"}

    assert (
        main(
            [
                "import",
                "alibaba",
                "--log",
                str(ALIBABA),
                "--images",
                str(tmp_path),
                "--out",
                str(out),
                "--captions",
                str(CAPTIONS),
            ]
        )
        == 2
    )
    assert "--captions only apply to the cg4ctr layout" in capsys.readouterr().err
    assert main(["import", "cg4ctr", "--log", str(CG4CTR), "--images", str(tmp_path)]) == 2
    assert "give --out DIR or --catalog-out FILE" in capsys.readouterr().err


def test_summary_is_json_serialisable(tmp_path: Path) -> None:
    summary = import_alibaba(ALIBABA, tmp_path, tmp_path / "c.parquet", tmp_path / "l.parquet")
    assert json.loads(json.dumps(summary.to_dict()))["products"] == 3
