"""E-commerce pre-training records: the paper's three task families, from observable data or a JSONL file.

A record is one instruction-following sample (docs/pretrain-data.md)::

    {"id": str, "task": str, "image": str | null, "caption": str | null,
     "attributes": {str: value} | null, "input": str | null, "target": str}

``task`` names one of ``TASKS``; the task decides which of the fields the prompt shows (the image, the
product caption, the other attributes, the ``input`` draft prompt) and which question pool of
``caig.instruct.PRETRAIN_QUESTIONS`` the question comes from. The prompt is
``f_instruct(question, shown attributes)``; the answer is ``target``.

On the synthetic world (or any log with creative descriptions) the records come from observable data only:
product captions from the catalog, backgrounds from the creatives' descriptions, and "good ads" are each
product's best creatives by OBSERVED CTR in the click log. Products of the reward model's test split are
left out, so nothing about a test pair reaches the reward model through pre-training.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from caig.errors import ConfigError, InputError
from caig.instruct import PRETRAIN_QUESTIONS
from caig.pretrain.products import Product

FIELDS = ("id", "task", "image", "caption", "attributes", "input", "target")


@dataclass(frozen=True)
class TaskSpec:
    """What a task shows the model and where its question comes from."""

    family: str
    pool: str
    image: bool
    caption: bool = False
    info: bool = False
    input: bool = False


#: The paper's task table (image understanding 3 x 50k, content comprehension 150k, prompt generation
#: 50k + 50k + 100k + 100k + 610k). Images: ad creatives for the understanding tasks, product cut-outs
#: for prompt generation.
TASKS: dict[str, TaskSpec] = {
    "ad_description": TaskSpec("image_understanding", "image_description", image=True),
    "product_description": TaskSpec("image_understanding", "image_description", image=True),
    "background_description": TaskSpec("image_understanding", "background_description", image=True),
    "caption_background": TaskSpec("content_comprehension", "caption_background", image=True, caption=True),
    "prompt_from_none": TaskSpec("prompt_generation", "prompt_from_none", image=False),
    "prompt_optimize": TaskSpec("prompt_generation", "prompt_optimize", image=False, input=True),
    "prompt_from_image": TaskSpec("prompt_generation", "prompt_from_image", image=True),
    "prompt_from_caption": TaskSpec(
        "prompt_generation", "prompt_from_caption", image=False, caption=True, info=True
    ),
    "prompt_from_image_caption": TaskSpec(
        "prompt_generation", "prompt_from_image_caption", image=True, caption=True, info=True
    ),
}
DRAFT_KEY = "draft prompt"


def questions(task: str) -> tuple[str, ...]:
    """The question pool of a task."""
    return PRETRAIN_QUESTIONS[TASKS[task].pool]


def shown_attributes(record: Mapping[str, Any]) -> dict[str, object]:
    """The attributes the prompt of ``record`` shows, by its task: caption, product info, draft prompt."""
    spec = TASKS[record["task"]]
    shown: dict[str, object] = {}
    if spec.info:
        shown.update(record.get("attributes") or {})
    if spec.caption:
        shown["caption"] = record.get("caption")
    if spec.input:
        shown[DRAFT_KEY] = record.get("input")
    return shown


# ---------------------------------------------------------------------------------------------- the mix
def scale_mix(mix: Mapping[str, int], total: int | None) -> dict[str, int]:
    """Per-task sample counts: ``mix`` itself, or scaled to ``total`` keeping its proportions.

    Largest remainders, and every task with a non-zero share keeps at least one sample.
    """
    unknown = sorted(set(mix) - set(TASKS))
    if unknown:
        raise ConfigError(f"pretrain.mix.{unknown[0]} is not a task (expected some of {sorted(TASKS)})")
    if any(int(count) < 0 for count in mix.values()) or not any(int(c) for c in mix.values()):
        raise ConfigError("pretrain.mix needs non-negative counts, at least one positive")
    counts = {task: int(count) for task, count in mix.items()}
    if total is None:
        return counts
    active = [task for task, count in counts.items() if count > 0]
    if total < len(active):
        raise ConfigError(f"pretrain.samples={total} is below the number of tasks in the mix ({len(active)})")
    whole = sum(counts.values())
    exact = {task: counts[task] * total / whole for task in active}
    scaled = {task: max(1, math.floor(value)) for task, value in exact.items()}
    by_remainder = sorted(active, key=lambda task: exact[task] - math.floor(exact[task]), reverse=True)
    index = 0
    while sum(scaled.values()) != total:
        task = by_remainder[index % len(by_remainder)]
        step = 1 if sum(scaled.values()) < total else -1
        if scaled[task] + step >= 1:
            scaled[task] += step
        index += 1
    return {task: scaled.get(task, 0) for task in counts}


# ---------------------------------------------------------------------------------------------- synthetic
@dataclass(frozen=True)
class Creative:
    """One creative with its observed totals and its background description."""

    creative_id: str
    product_id: str
    image: str
    description: str
    impressions: int
    clicks: int

    @property
    def ctr(self) -> float:
        return self.clicks / self.impressions if self.impressions else 0.0


def observed_creatives(log: pl.DataFrame, creatives: pl.DataFrame) -> list[Creative]:
    """Creatives with impressions and clicks summed over the log, joined to their descriptions."""
    totals = log.group_by("creative_id").agg(
        pl.col("product_id").first().cast(pl.String),
        pl.col("image").first(),
        pl.col("impressions").sum(),
        pl.col("clicks").sum(),
    )
    joined = totals.with_columns(pl.col("creative_id").cast(pl.String)).join(
        creatives.select(pl.col("creative_id").cast(pl.String), "description"), on="creative_id", how="inner"
    )
    return [
        Creative(
            r["creative_id"], r["product_id"], r["image"], r["description"], r["impressions"], r["clicks"]
        )
        for r in joined.sort("creative_id").iter_rows(named=True)
    ]


def ranked_by_ctr(creatives: Iterable[Creative], min_impressions: int) -> dict[str, list[Creative]]:
    """Per product, its creatives with enough impressions, best observed CTR first (ties: by id)."""
    ranked: dict[str, list[Creative]] = {}
    for creative in creatives:
        if creative.impressions >= min_impressions:
            ranked.setdefault(creative.product_id, []).append(creative)
    for items in ranked.values():
        items.sort(key=lambda c: (-c.ctr, c.creative_id))
    return ranked


def _draw(rng: np.random.Generator, items: Sequence[Any], n: int) -> list[Any]:
    """``n`` items: whole shuffled passes over ``items``, so each is used as evenly as possible."""
    if not items or n <= 0:
        return []
    picks: list[Any] = []
    while len(picks) < n:
        picks.extend(items[i] for i in rng.permutation(len(items)))
    return picks[:n]


def synthetic_records(
    products: Mapping[str, Product],
    creatives: Sequence[Creative],
    counts: Mapping[str, int],
    *,
    min_impressions: int,
    good_per_product: int,
    exclude_products: Iterable[str] = (),
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Records of every task in ``counts`` from the catalog, the creatives and their observed CTRs."""
    if good_per_product < 1:
        raise ConfigError(f"pretrain.good_per_product={good_per_product} (expected >= 1)")
    excluded = set(exclude_products)
    usable = [c for c in creatives if c.product_id in products and c.product_id not in excluded]
    ranked = ranked_by_ctr(usable, min_impressions)
    good = [(pid, c) for pid, items in sorted(ranked.items()) for c in items[:good_per_product]]
    # a draft to optimise: a creative outside the product's best ones, paired with the best one
    drafts = [
        (pid, worse, items[0]) for pid, items in sorted(ranked.items()) for worse in items[good_per_product:]
    ]
    rng = np.random.default_rng(seed)
    records: list[dict[str, Any]] = []

    def add(task: str, product: Product, image: str | None, target: str, draft: str | None = None) -> None:
        records.append(
            {
                "id": f"{task}-{len(records):07d}",
                "task": task,
                "image": image,
                "caption": product.caption,
                "attributes": product.attributes,
                "input": draft,
                "target": target,
            }
        )

    for task, count in counts.items():
        if count <= 0:
            continue
        if task in ("ad_description", "background_description", "caption_background"):
            for c in _draw(rng, usable, count):
                product = products[c.product_id]
                target = c.description
                if task == "ad_description":
                    target = f"{product.attributes['title']}, shown in {c.description}"
                add(task, product, c.image, target)
        elif task == "product_description":
            for pid in _draw(rng, sorted({c.product_id for c in usable}), count):
                add(task, products[pid], products[pid].image, products[pid].caption)
        elif task == "prompt_optimize":
            for pid, worse, best in _draw(rng, drafts, count):
                add(task, products[pid], None, best.description, worse.description)
        else:  # prompt generation from nothing, the image, the caption or both: a good ad's background
            image_task = TASKS[task].image
            for pid, c in _draw(rng, good, count):
                add(task, products[pid], products[pid].image if image_task else None, c.description)
    return records


# ---------------------------------------------------------------------------------------------- JSONL
def validate_record(record: Any, *, file: str | Path | None = None, row: int | None = None) -> dict[str, Any]:
    """A record with every field present (missing optional fields as None); InputError when malformed."""
    if not isinstance(record, dict):
        raise InputError(
            "a record must be a JSON object", file=file, row=row, expected=f"keys {list(FIELDS)}"
        )
    unknown = sorted(set(record) - set(FIELDS))
    if unknown:
        raise InputError(f"unknown field {unknown[0]!r}", file=file, row=row, expected=f"only {list(FIELDS)}")
    out = {key: record.get(key) for key in FIELDS}
    task = out["task"]
    if task not in TASKS:
        raise InputError(
            f"unknown task {task!r}", file=file, row=row, column="task", expected=f"one of {sorted(TASKS)}"
        )
    spec = TASKS[task]
    if not isinstance(out["target"], str) or not out["target"].strip():
        raise InputError("empty target", file=file, row=row, column="target", expected="a non-empty string")
    if spec.image and not (isinstance(out["image"], str) and out["image"]):
        raise InputError(
            f"task {task!r} needs an image", file=file, row=row, column="image", expected="a path"
        )
    if not spec.image:
        out["image"] = None
    if spec.caption and not (isinstance(out["caption"], str) and out["caption"].strip()):
        raise InputError(
            f"task {task!r} needs a caption", file=file, row=row, column="caption", expected="text"
        )
    if spec.input and not (isinstance(out["input"], str) and out["input"].strip()):
        raise InputError(
            f"task {task!r} needs an input prompt", file=file, row=row, column="input", expected="text"
        )
    if out["attributes"] is not None and not isinstance(out["attributes"], dict):
        raise InputError(
            "attributes must be an object", file=file, row=row, column="attributes", expected="{}"
        )
    if out["id"] is None:
        out["id"] = f"{task}-{row or 0:07d}"
    return out


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Records from a JSONL file; relative image paths are resolved against the file's folder."""
    path = Path(path)
    if not path.is_file():
        raise InputError(
            "pre-training data not found", file=path, expected="a JSONL file (docs/pretrain-data.md)"
        )
    records = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as err:
                raise InputError(
                    f"not JSON: {err.msg}", file=path, row=number, expected="one object per line"
                ) from err
            record = validate_record(raw, file=path, row=number)
            if record["image"] and not Path(record["image"]).is_absolute():
                record["image"] = str((path.parent / record["image"]).resolve())
            records.append(record)
    if not records:
        raise InputError("no records", file=path, expected="at least one JSON line")
    return records


def write_records(records: Iterable[Mapping[str, Any]], path: str | Path) -> Path:
    """Records as JSONL (one object per line, fields in FIELDS order), written atomically."""
    from caig.io import write_text

    lines = [json.dumps({key: record.get(key) for key in FIELDS}, default=str) for record in records]
    return write_text("\n".join(lines) + "\n", path)


def corpus(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """The texts of the records (captions, targets, drafts, attribute values) for the tiny tokenizer."""
    from caig.instruct import format_value

    texts: list[str] = []
    for record in records:
        texts.extend(str(record[key]) for key in ("caption", "input", "target") if record.get(key))
        texts.extend(format_value(value) for value in (record.get("attributes") or {}).values())
    return texts


def task_counts(records: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Records per task, in TASKS order."""
    counts = dict.fromkeys(TASKS, 0)
    for record in records:
        counts[record["task"]] += 1
    return counts
