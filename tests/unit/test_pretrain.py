"""caig.pretrain: the task mix, records from observable data (best creatives by OBSERVED CTR, test products left
out), the JSONL format and its errors, product captions, and answer-only labels in the SFT batches."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from PIL import Image

from caig.errors import ConfigError, InputError
from caig.models import build_llava
from caig.pretrain.data import (
    TASKS,
    observed_creatives,
    read_records,
    scale_mix,
    shown_attributes,
    synthetic_records,
    task_counts,
    validate_record,
    write_records,
)
from caig.pretrain.products import product_attributes, product_caption, read_catalog
from caig.pretrain.sft import IGNORE, InstructionCollator, InstructionDataset

REPO = Path(__file__).resolve().parents[2]
PAPER_MIX = yaml.safe_load((REPO / "config" / "pretrain" / "paper.yaml").read_text())["mix"]


def test_paper_mix_is_the_papers_table():
    assert sum(PAPER_MIX.values()) == 1_210_000
    families = {}
    for task, count in PAPER_MIX.items():
        families[TASKS[task].family] = families.get(TASKS[task].family, 0) + count
    assert families == {
        "image_understanding": 150_000,
        "content_comprehension": 150_000,
        "prompt_generation": 910_000,
    }


@pytest.mark.parametrize("total", [100, 1200, 5000])
def test_scale_mix_keeps_proportions_and_every_task(total):
    counts = scale_mix(PAPER_MIX, total)
    assert sum(counts.values()) == total and all(c >= 1 for c in counts.values())
    for task, count in counts.items():
        assert abs(count - PAPER_MIX[task] * total / 1_210_000) <= 1.0


def test_scale_mix_gives_every_task_one_sample_at_the_minimum():
    assert set(scale_mix(PAPER_MIX, len(PAPER_MIX)).values()) == {1}


def test_scale_mix_rejects_unknown_tasks_and_too_few_samples():
    with pytest.raises(ConfigError, match="pretrain.mix.poems"):
        scale_mix({"poems": 3}, 10)
    with pytest.raises(ConfigError, match="below the number of tasks"):
        scale_mix(PAPER_MIX, 5)
    assert scale_mix({"ad_description": 7}, None) == {"ad_description": 7}


# ---- records from observable data ----------------------------------------------------------------------


@pytest.fixture()
def world(tmp_path):
    images = tmp_path / "img"
    images.mkdir()
    for name in ("p1", "p2", "a", "b", "c", "d"):
        Image.new("RGBA", (8, 8), (200, 10, 10, 255)).save(images / f"{name}.png")
    catalog = pl.DataFrame(
        {
            "product_id": ["P1", "P2"],
            "title": ["Red Mug", "Blue Lamp"],
            "category": ["home", "computers_appliances"],
            "image": [str(images / "p1.png"), str(images / "p2.png")],
            "price": [9.5, 30.0],
            "colors": ["vivid_red;cream_white", "navy_blue"],
            "tags": ["gift", "led;desk"],
        }
    )
    catalog.write_parquet(tmp_path / "catalog.parquet")
    creatives = pl.DataFrame(
        {
            "creative_id": ["A", "B", "C", "D"],
            "product_id": ["P1", "P1", "P1", "P2"],
            "description": ["a kitchen", "a beach", "a garden", "an office desk"],
        }
    )
    # observed CTRs: B 10% > A 5% > C 2% (C has too few impressions for min_impressions=50 anyway)
    log = pl.DataFrame(
        {
            "product_id": ["P1", "P1", "P1", "P1", "P2"],
            "creative_id": ["A", "A", "B", "C", "D"],
            "image": [str(images / f"{n}.png") for n in ("a", "a", "b", "c", "d")],
            "impressions": [50, 50, 100, 40, 100],
            "clicks": [2, 3, 10, 10, 4],
        }
    )
    return read_catalog(tmp_path / "catalog.parquet"), observed_creatives(log, creatives)


def test_good_ads_are_the_best_by_observed_ctr_and_test_products_are_left_out(world):
    products, creatives = world
    counts = {"prompt_from_image_caption": 6, "prompt_optimize": 3, "background_description": 4}
    records = synthetic_records(products, creatives, counts, min_impressions=50, good_per_product=1, seed=1)
    prompts = [r for r in records if r["task"] == "prompt_from_image_caption"]
    assert {(r["caption"], r["target"]) for r in prompts} == {
        (products["P1"].caption, "a beach"),
        (products["P2"].caption, "an office desk"),
    }
    optimize = [r for r in records if r["task"] == "prompt_optimize"]
    assert {(r["input"], r["target"]) for r in optimize} == {("a kitchen", "a beach")}  # C lacks impressions
    assert all(r["image"] for r in records if TASKS[r["task"]].image)
    without_p1 = synthetic_records(
        products, creatives, counts, min_impressions=50, good_per_product=1, exclude_products=["P1"], seed=1
    )
    assert all(r["caption"] == products["P2"].caption for r in without_p1)
    assert task_counts(without_p1)["prompt_optimize"] == 0  # P2 has a single creative: nothing to optimise


def test_records_are_seeded(world):
    products, creatives = world
    counts = {"ad_description": 5, "prompt_from_none": 5}
    first = synthetic_records(products, creatives, counts, min_impressions=1, good_per_product=1, seed=3)
    again = synthetic_records(products, creatives, counts, min_impressions=1, good_per_product=1, seed=3)
    assert first == again


def test_catalog_attributes_and_caption(world):
    products, _ = world
    lamp = products["P2"]
    assert lamp.attributes["category"] == "computers appliances"
    assert lamp.attributes["colors"] == ["navy blue"] and lamp.attributes["tags"] == ["led", "desk"]
    assert "image" not in lamp.attributes and "product_id" not in lamp.attributes
    assert lamp.caption == "A computers appliances product in navy blue."
    assert product_caption({"caption": "  A  lamp. ", "title": "x", "category": "y"}) == "A lamp."
    assert product_attributes({"product_id": "1", "title": "t", "caption": "c"}) == {"title": "t"}


def test_shown_attributes_follow_the_task():
    record = {"task": "prompt_optimize", "attributes": {"title": "T"}, "caption": "C", "input": "draft"}
    assert shown_attributes(record) == {"draft prompt": "draft"}
    record["task"] = "prompt_from_image_caption"
    assert shown_attributes(record) == {"title": "T", "caption": "C"}
    record["task"] = "background_description"
    assert shown_attributes(record) == {}


# ---- the JSONL format ------------------------------------------------------------------------------------


def test_jsonl_round_trip_and_relative_images(tmp_path, world):
    products, creatives = world
    records = synthetic_records(
        products,
        creatives,
        {"ad_description": 2, "prompt_from_caption": 2},
        min_impressions=1,
        good_per_product=1,
    )
    write_records(records, tmp_path / "data.jsonl")
    assert read_records(tmp_path / "data.jsonl") == records
    line = {"task": "background_description", "image": "img/a.png", "target": "a kitchen"}
    (tmp_path / "mine.jsonl").write_text(json.dumps(line) + "\n\n")
    (record,) = read_records(tmp_path / "mine.jsonl")
    assert record["image"] == str((tmp_path / "img" / "a.png").resolve()) and record["caption"] is None


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"task": "haiku", "target": "x"}, "unknown task"),
        ({"task": "prompt_from_none", "target": " "}, "empty target"),
        ({"task": "ad_description", "target": "x"}, "needs an image"),
        ({"task": "prompt_from_caption", "target": "x"}, "needs a caption"),
        ({"task": "prompt_optimize", "target": "x"}, "needs an input prompt"),
        ({"task": "prompt_from_none", "target": "x", "colour": "red"}, "unknown field"),
    ],
)
def test_bad_records_name_the_line_and_field(tmp_path, record, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(
        json.dumps({"task": "prompt_from_none", "target": "fine"}) + "\n" + json.dumps(record) + "\n"
    )
    with pytest.raises(InputError, match=message) as err:
        read_records(path)
    assert err.value.row == 2 and err.value.file == str(path)


def test_not_json_is_an_input_error(tmp_path):
    (tmp_path / "x.jsonl").write_text("{oops\n")
    with pytest.raises(InputError, match="not JSON"):
        read_records(tmp_path / "x.jsonl")
    with pytest.raises(InputError, match="must be a JSON object"):
        validate_record([1, 2])


# ---- SFT batches -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_processor():
    node = yaml.safe_load((REPO / "config" / "model" / "tiny.yaml").read_text())
    return build_llava(node, ["a kitchen counter with a red mug", "a sandy beach", "navy blue lamp"] * 5)


def test_labels_cover_exactly_the_answer_and_eos(tiny_processor, tmp_path):
    model, processor = tiny_processor
    image = tmp_path / "x.png"
    Image.fromarray(np.full((40, 40, 4), 128, dtype=np.uint8), "RGBA").save(image)
    records = [
        {
            "task": "background_description",
            "image": str(image),
            "caption": None,
            "attributes": {},
            "input": None,
            "target": "a sandy beach",
        },
        {
            "task": "prompt_from_caption",
            "image": None,
            "caption": "A home product in red.",
            "attributes": {"title": "Red Mug"},
            "input": None,
            "target": "a kitchen counter with a red mug",
        },
    ]
    dataset = InstructionDataset(records, seed=0)
    batch = InstructionCollator(processor, max_length=512)([dataset[0], dataset[1]])
    assert batch["pixel_values"].shape[0] == 1  # one image in a mixed batch
    for row, record in enumerate(records):
        answer = batch["input_ids"][row][batch["labels"][row] != IGNORE]
        assert processor.tokenizer.decode(answer) == " " + record["target"] + processor.tokenizer.eos_token
    assert float(model(**batch).loss.detach()) > 0


def test_truncation_cuts_the_answer_never_the_prompt(tiny_processor):
    _, processor = tiny_processor
    sample = {"image": None, "prompt": "Write a prompt.", "target": "a kitchen counter " * 40}
    collator = InstructionCollator(processor, max_length=24)
    batch = collator([sample])
    assert batch["input_ids"].shape[1] == 24 and (batch["labels"] != IGNORE).any()
    with pytest.raises(InputError, match="leaves no room"):
        InstructionCollator(processor, max_length=8)([{**sample, "prompt": "long " * 30}])
