"""E-commerce pre-training records: the paper's three task families, from reviewed descriptions or JSONL.

A record is one instruction-following sample (docs/pretrain-data.md)::

    {"id": str, "task": str, "image": str | null, "caption": str | null,
     "attributes": {str: value} | null, "input": str | null, "target": str}

``task`` names one of ``TASKS``; the task decides which of the fields the prompt shows (the image, the
product caption, the other attributes, the ``input`` draft prompt) and which question pool of
``caig.instruct.PRETRAIN_QUESTIONS`` the question comes from. The prompt is
``f_instruct(question, shown attributes)``; the answer is ``target``.

Stage 1 never reads clicks. In the paper its targets are written by a strong MLLM and reviewed by
annotators; here they come from the catalog and a file of reviewed descriptions: background descriptions
of each product, each with the reviewers' verdict whether it fits the product (the synthetic world
publishes its annotators' judgement of every creative in this form; on real data the user provides the
file). Prompt-generation targets are the descriptions reviewed as fitting, whatever their CTR. Products of
the reward model's test split are left out, so nothing about a test pair reaches the reward model through
pre-training.
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

from caig.data.pairs import split_of
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
#: 50k + 50k + 100k + 100k + 610k). Images: the product pictured in a background (an ad of it) where the
#: answer describes a background, the product image itself for product_description and prompt generation
#: (docs/pretrain-data.md gives the reasons).
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


# ---------------------------------------------------------------------------------------------- descriptions
#: Fields of a reviewed-descriptions row (docs/pretrain-data.md); ``image`` is optional.
DESCRIPTION_FIELDS = ("product_id", "description", "fits", "image")


@dataclass(frozen=True)
class Description:
    """A reviewed background description of a product: the reviewers' verdict, and the image it describes."""

    product_id: str
    text: str
    fits: bool
    image: str | None


def validate_description(
    row: Any, *, file: str | Path | None = None, number: int | None = None, root: Path | None = None
) -> Description:
    """One reviewed-descriptions row as a Description; InputError naming the file, row and field otherwise.

    A relative ``image`` is resolved against ``root`` (the file's folder) and must name an existing file.
    """
    if not isinstance(row, dict):
        raise InputError(
            "a reviewed description must be a JSON object",
            file=file,
            row=number,
            expected=f"keys {list(DESCRIPTION_FIELDS)}",
        )
    unknown = sorted(set(row) - set(DESCRIPTION_FIELDS))
    if unknown:
        raise InputError(
            f"unknown field {unknown[0]!r}",
            file=file,
            row=number,
            expected=f"only {list(DESCRIPTION_FIELDS)}",
        )
    product_id = row.get("product_id")
    if isinstance(product_id, int) and not isinstance(product_id, bool):
        product_id = str(product_id)
    if not (isinstance(product_id, str) and product_id.strip()):
        raise InputError(
            f"bad product_id {product_id!r}",
            file=file,
            row=number,
            column="product_id",
            expected="a catalog product id (string or integer)",
        )
    text = row.get("description")
    if not (isinstance(text, str) and text.strip()):
        raise InputError(
            f"bad description {text!r}",
            file=file,
            row=number,
            column="description",
            expected="a non-empty background description",
        )
    fits = row.get("fits")
    if not isinstance(fits, bool):
        raise InputError(
            f"bad fits {fits!r}",
            file=file,
            row=number,
            column="fits",
            expected="true (the background fits the product) or false (a scale, scene or colour mismatch)",
        )
    image = row.get("image")
    if image is not None:
        if not (isinstance(image, str) and image.strip()):
            raise InputError(
                f"bad image {image!r}", file=file, row=number, column="image", expected="a path or null"
            )
        path = Path(image) if root is None or Path(image).is_absolute() else (root / image).resolve()
        if not path.is_file():
            raise InputError(
                f"image {image!r} not found (looked at {path})",
                file=file,
                row=number,
                column="image",
                expected="an existing image, absolute or relative to the file's folder",
            )
        image = str(path)
    return Description(product_id, " ".join(text.split()), fits, image)


def _description_rows(path: Path) -> Iterable[tuple[int, Any]]:
    """(row number, raw row) of a reviewed-descriptions file: JSON lines, or Parquet with the same columns."""
    if path.suffix == ".parquet":
        try:
            table = pl.read_parquet(path)
        except (OSError, pl.exceptions.PolarsError) as err:
            raise InputError(f"cannot read: {err}", file=path, expected="a Parquet file") from err
        missing = [name for name in DESCRIPTION_FIELDS[:3] if name not in table.columns]
        unknown = [name for name in table.columns if name not in DESCRIPTION_FIELDS]
        if missing or unknown:
            raise InputError(
                f"lacks column {missing[0]!r}" if missing else f"unknown column {unknown[0]!r}",
                file=path,
                column=(missing or unknown)[0],
                expected=f"columns {list(DESCRIPTION_FIELDS[:3])}, optionally image",
            )
        yield from enumerate(table.iter_rows(named=True), start=1)
        return
    yield from json_lines(path)


def json_lines(path: Path) -> Iterable[tuple[int, Any]]:
    """(line number, parsed object) of each non-blank line of a JSON-lines file; InputError naming the line."""
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as err:
                raise InputError(
                    f"not JSON: {err.msg}", file=path, row=number, expected="one object per line"
                ) from err


def read_descriptions(path: str | Path) -> list[Description]:
    """The reviewed descriptions of a JSONL (``.jsonl``) or Parquet (``.parquet``) file, in file order."""
    path = Path(path)
    if path.suffix not in (".jsonl", ".parquet") or not path.is_file():
        raise InputError(
            "reviewed descriptions not found",
            file=path,
            expected="a .jsonl or .parquet file of reviewed descriptions (docs/pretrain-data.md)",
        )
    root = path.parent.resolve()
    descriptions = [
        validate_description(row, file=path, number=number, root=root)
        for number, row in _description_rows(path)
    ]
    if not descriptions:
        raise InputError("no reviewed descriptions", file=path, expected="at least one row")
    return descriptions


def held_out_products(product_ids: Iterable[str], *, test_fraction: float, seed: int) -> set[str]:
    """The products of the reward model's test split (caig.data.pairs.split_of): what pre-training leaves out.

    The split is a hash of the product id, so it is known without the click log or the pairs.
    """
    ids = sorted(product_ids)
    if not ids:
        return set()
    split = split_of(ids, test_fraction, seed).to_list()
    return {pid for pid, part in zip(ids, split, strict=True) if part == "test"}


def detail_phrases(text: str) -> list[str]:
    """The comma-separated phrases of a description (its subject first, then its details)."""
    return [phrase.strip() for phrase in text.split(",") if phrase.strip()]


def plain_draft(text: str, rng: np.random.Generator) -> str | None:
    """A user's plain version of a description, Promptist-style: its first phrase and a random part of its
    other phrases (in order, at least one left out). None for a description of a single phrase."""
    phrases = detail_phrases(text)
    if len(phrases) < 2:
        return None
    details = phrases[1:]
    keep = rng.random(len(details)) < 0.5
    if keep.all():
        keep[int(rng.integers(len(details)))] = False
    return ", ".join([phrases[0], *(d for d, kept in zip(details, keep, strict=True) if kept)])


def _draw(rng: np.random.Generator, items: Sequence[Any], n: int) -> list[Any]:
    """``n`` items: whole shuffled passes over ``items``, so each is used as evenly as possible."""
    if not items or n <= 0:
        return []
    picks: list[Any] = []
    while len(picks) < n:
        picks.extend(items[i] for i in rng.permutation(len(items)))
    return picks[:n]


def description_records(
    products: Mapping[str, Product],
    descriptions: Sequence[Description],
    counts: Mapping[str, int],
    *,
    exclude_products: Iterable[str] = (),
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Records of every task in ``counts`` from the catalog and the reviewed descriptions; no clicks.

    Understanding and comprehension tasks describe an image of the product in a background (a description
    with an ``image``, fitting or not: the answer is what the image shows); product_description shows the
    product image itself. Prompt generation targets are descriptions reviewed as fitting their product;
    the draft of prompt_optimize is a plain version of such a description (``plain_draft``).
    """
    excluded = set(exclude_products)
    usable = [d for d in descriptions if d.product_id in products and d.product_id not in excluded]
    pictured = [d for d in usable if d.image is not None]
    fitting = [d for d in usable if d.fits]
    optimizable = [d for d in fitting if len(detail_phrases(d.text)) > 1]
    product_ids = sorted(pid for pid in products if pid not in excluded)
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
            for d in _draw(rng, pictured, count):
                product = products[d.product_id]
                target = d.text
                if task == "ad_description":
                    target = f"{product.attributes['title']}, shown in {d.text}"
                add(task, product, d.image, target)
        elif task == "product_description":
            for pid in _draw(rng, product_ids, count):
                add(task, products[pid], products[pid].image, products[pid].caption)
        elif task == "prompt_optimize":
            for d in _draw(rng, optimizable, count):
                add(task, products[d.product_id], None, d.text, plain_draft(d.text, rng))
        else:  # prompt generation from nothing, the product image, the caption or both: a fitting background
            image_task = TASKS[task].image
            for d in _draw(rng, fitting, count):
                product = products[d.product_id]
                add(task, product, product.image if image_task else None, d.text)
    return records


def description_summary(
    products: Mapping[str, Product], descriptions: Sequence[Description], exclude_products: Iterable[str]
) -> dict[str, int]:
    """What the reviewed descriptions give: rows by use, and products with a fitting description."""
    excluded = set(exclude_products)
    known = [d for d in descriptions if d.product_id in products]
    usable = [d for d in known if d.product_id not in excluded]
    return {
        "descriptions": len(descriptions),
        "descriptions_unknown_product": len(descriptions) - len(known),
        "descriptions_of_test_products": len(known) - len(usable),
        "descriptions_used": len(usable),
        "descriptions_fitting": sum(d.fits for d in usable),
        "descriptions_with_image": sum(d.image is not None for d in usable),
        "products": len(products),
        "test_products": len(excluded & set(products)),
        "products_with_fitting_description": len({d.product_id for d in usable if d.fits}),
    }


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
    for number, raw in json_lines(path):
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
