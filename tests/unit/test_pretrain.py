"""caig.pretrain: the task mix, records from reviewed descriptions (fitting ones as targets, never clicks, test
products left out), the reviewed-descriptions and JSONL formats and their errors, product captions, and
answer-only labels in the SFT batches."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from PIL import Image

from caig.cli import main
from caig.config import compose
from caig.data.pairs import split_of
from caig.errors import ConfigError, InputError
from caig.models import build_llava
from caig.pretrain.data import (
    TASKS,
    Description,
    description_records,
    description_summary,
    detail_phrases,
    held_out_products,
    plain_draft,
    read_descriptions,
    read_records,
    scale_mix,
    shown_attributes,
    task_counts,
    validate_record,
    write_records,
)
from caig.pretrain.products import product_attributes, product_caption, read_catalog
from caig.pretrain.sft import IGNORE, InstructionCollator, InstructionDataset
from caig.sim.clicklog import generate_click_world

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


# ---- records from reviewed descriptions --------------------------------------------------------------------

FITTING = {
    ("P1", "a kitchen counter with a mug, warm light, soft pink tones"),
    ("P1", "a wooden tabletop, morning light"),
    ("P2", "an office desk, daylight"),
}


@pytest.fixture()
def world(tmp_path):
    images = tmp_path / "img"
    images.mkdir()
    for name in ("p1", "p2", "a", "b", "d"):
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
    rows = [
        {
            "product_id": "P1",
            "description": "a kitchen counter with a mug, warm light, soft pink tones",
            "fits": True,
            "image": "img/a.png",
        },
        {
            "product_id": "P1",
            "description": "a sandy beach, neon lights",
            "fits": False,
            "image": "img/b.png",
        },
        {"product_id": "P1", "description": "a wooden tabletop, morning light", "fits": True},
        {"product_id": "P2", "description": "an office desk, daylight", "fits": True, "image": "img/d.png"},
        {"product_id": "P9", "description": "a garden", "fits": True, "image": None},
    ]
    (tmp_path / "reviewed.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return read_catalog(tmp_path / "catalog.parquet"), read_descriptions(tmp_path / "reviewed.jsonl")


ALL_TASKS = {task: 8 for task in TASKS}


def test_generation_targets_are_descriptions_reviewed_as_fitting(world):
    products, descriptions = world
    records = description_records(products, descriptions, ALL_TASKS, seed=1)
    assert task_counts(records) == ALL_TASKS
    caption_of = {product.caption: pid for pid, product in products.items()}
    for record in records:
        if TASKS[record["task"]].family == "prompt_generation":
            assert (caption_of[record["caption"]], record["target"]) in FITTING
    prompts = {
        (caption_of[r["caption"]], r["target"]) for r in records if r["task"] == "prompt_from_image_caption"
    }
    assert prompts == FITTING  # every fitting description is used, none of the others


def test_understanding_tasks_describe_the_pictured_product_and_prompt_tasks_show_the_product(world, tmp_path):
    products, descriptions = world
    records = description_records(products, descriptions, ALL_TASKS, seed=1)
    pictured = {str((tmp_path / "img" / f"{n}.png").resolve()) for n in ("a", "b", "d")}
    product_images = {p.image for p in products.values()}
    for record in records:
        if record["task"] in ("ad_description", "background_description", "caption_background"):
            assert record["image"] in pictured  # fitting or not: the answer is what the image shows
        elif TASKS[record["task"]].image:
            assert record["image"] in product_images
        else:
            assert record["image"] is None
    described = {r["target"] for r in records if r["task"] == "background_description"}
    assert "a sandy beach, neon lights" in described


def test_caption_background_prompt_shows_the_caption(world):
    products, descriptions = world
    (record,) = description_records(products, descriptions, {"caption_background": 1}, seed=0)
    (sample,) = InstructionDataset([record], seed=0)
    assert TASKS["caption_background"].image and record["image"]
    assert record["caption"] in sample["prompt"] and "Red Mug" not in sample["prompt"]


def test_prompt_optimize_drafts_are_plain_versions_of_a_fitting_description(world):
    products, descriptions = world
    records = description_records(products, descriptions, {"prompt_optimize": 20}, seed=2)
    for record in records:
        assert any(record["target"] == text for _, text in FITTING)
        target, draft = detail_phrases(record["target"]), detail_phrases(record["input"])
        assert draft[0] == target[0] and set(draft) < set(target)
    assert plain_draft("a plain setting", np.random.default_rng(0)) is None


def test_records_ignore_the_click_log(tmp_path):
    """Two worlds that differ only in their clicks give byte-identical pre-training records."""
    world = tmp_path / "world"
    outputs, clicks = [], []
    for median_daily in (200, 35):
        generate_click_world(compose(["sim=small", f"sim.exposure.median_daily={median_daily}"]), world)
        clicks.append(pl.read_parquet(world / "log.parquet")["clicks"].to_list())
        out = tmp_path / f"out{median_daily}"
        code = main(
            [
                "pretrain-data",
                "--catalog",
                str(world / "catalog.parquet"),
                "--descriptions",
                str(world / "reviewed_descriptions.parquet"),
                "--out",
                str(out),
                "pretrain.samples=200",
            ]
        )
        assert code == 0
        outputs.append((out / "data.jsonl").read_bytes())
    assert clicks[0] != clicks[1]
    assert outputs[0] == outputs[1]


def test_test_split_products_are_left_out(world, tmp_path):
    products, descriptions = world
    held_out = held_out_products(products, test_fraction=0.5, seed=0)
    split = split_of(sorted(products), 0.5, 0).to_list()
    assert held_out == {pid for pid, part in zip(sorted(products), split) if part == "test"}
    assert held_out_products(products, test_fraction=1.0, seed=0) == set(products)
    records = description_records(products, descriptions, ALL_TASKS, exclude_products=["P1"], seed=1)
    assert all(r["caption"] == products["P2"].caption for r in records)
    summary = description_summary(products, descriptions, ["P1"])
    assert summary["descriptions_unknown_product"] == 1 and summary["descriptions_of_test_products"] == 3
    assert summary["products_with_fitting_description"] == 1 and summary["test_products"] == 1


def test_records_are_seeded(world):
    products, descriptions = world
    counts = {"ad_description": 5, "prompt_from_none": 5, "prompt_optimize": 5}
    first = description_records(products, descriptions, counts, seed=3)
    assert first == description_records(products, descriptions, counts, seed=3)


# ---- the reviewed-descriptions file ---------------------------------------------------------------------


def test_reviewed_descriptions_parquet_and_integer_ids(tmp_path):
    (tmp_path / "ad.png").write_bytes(b"")
    pl.DataFrame(
        {"product_id": [7], "description": ["a  studio"], "fits": [False], "image": ["ad.png"]}
    ).write_parquet(tmp_path / "r.parquet")
    (row,) = read_descriptions(tmp_path / "r.parquet")
    assert row == Description("7", "a studio", False, str((tmp_path / "ad.png").resolve()))
    pl.DataFrame({"product_id": ["P1"], "description": ["x"]}).write_parquet(tmp_path / "bad.parquet")
    with pytest.raises(InputError, match="lacks column 'fits'"):
        read_descriptions(tmp_path / "bad.parquet")


@pytest.mark.parametrize(
    ("row", "column", "message"),
    [
        ({"product_id": "P1", "description": "x", "fits": True, "ctr": 0.1}, None, "unknown field 'ctr'"),
        ({"description": "x", "fits": True}, "product_id", "bad product_id"),
        ({"product_id": True, "description": "x", "fits": True}, "product_id", "bad product_id"),
        ({"product_id": "P1", "description": " ", "fits": True}, "description", "bad description"),
        ({"product_id": "P1", "description": "x", "fits": "yes"}, "fits", "bad fits"),
        ({"product_id": "P1", "description": "x", "fits": True, "image": "nope.png"}, "image", "not found"),
        ({"product_id": "P1", "description": "x", "fits": True, "image": 3}, "image", "bad image"),
        ([1, 2], None, "must be a JSON object"),
    ],
)
def test_bad_reviewed_descriptions_name_the_file_row_and_field(tmp_path, row, column, message):
    path = tmp_path / "reviewed.jsonl"
    good = {"product_id": "P1", "description": "a studio", "fits": True}
    path.write_text(json.dumps(good) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(InputError, match=message) as err:
        read_descriptions(path)
    assert (err.value.file, err.value.row, err.value.column) == (str(path), 2, column)


def test_reviewed_descriptions_file_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_descriptions(tmp_path / "missing.jsonl")
    (tmp_path / "r.csv").write_text("product_id,description,fits\n")
    with pytest.raises(InputError, match="not found") as err:
        read_descriptions(tmp_path / "r.csv")
    assert ".jsonl or .parquet" in str(err.value)
    (tmp_path / "r.jsonl").write_text("{oops\n")
    with pytest.raises(InputError, match="not JSON"):
        read_descriptions(tmp_path / "r.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(InputError, match="no reviewed descriptions"):
        read_descriptions(tmp_path / "empty.jsonl")


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
    products, descriptions = world
    records = description_records(products, descriptions, {"ad_description": 2, "prompt_from_caption": 2})
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
