"""Preference examples and their collation for the DPO/PCPO trainer.

An example is one judged pair: the product image, the PM prompt (chat-templated, with the image token), the
winner y+ (``chosen``) and the loser y- (``rejected``), each ending with the end-of-sequence token so the
policy learns where a description stops. The DPO part of a batch is TRL's vision collation ([prompt+chosen;
prompt+rejected], 2B rows). ``PCPOCollator`` adds the PCPO part under ``pcpo_*`` keys: 2R rows
[true input + y+; mismatched input + y+] for the R comparisons ``plan_mismatches`` asks for, where the
mismatched input is the masked image (visual) or another product's text under the same instruction (textual).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import torch
from datasets import Dataset
from PIL import Image
from trl.trainer.dpo_trainer import DataCollatorForVisionPreference
from trl.trainer.utils import flush_left

from caig.errors import InputError
from caig.generate.products import ProductInput
from caig.generate.sampling import pm_image, pm_prompt, product_attributes
from caig.preference.mismatch import KINDS, mask_patches, pick_other_product, plan_mismatches
from caig.reward.model import chat_text

PCPO_PREFIX = "pcpo_"


def completion_text(processor: Any, description: str) -> str:
    """An answer as the policy is trained to emit it: a space after the generation prompt, then EOS."""
    return " " + description.strip() + processor.tokenizer.eos_token


def build_preference_dataset(
    preferences: pl.DataFrame, products: Mapping[str, ProductInput], processor: Any, source: str = "preferences"
) -> Dataset:
    """The trainer's dataset: ``images``, ``prompt``, ``chosen``, ``rejected``, ``product_id``, ``instruction``."""
    for column in ("product_id", "instruction", "chosen", "rejected"):
        if column not in preferences.columns:
            raise InputError("missing column", file=source, column=column)
    rows = []
    for row_number, row in enumerate(preferences.iter_rows(named=True), start=1):
        product = products.get(row["product_id"])
        if product is None:
            raise InputError(
                f"product {row['product_id']!r} is not in the catalog",
                file=source,
                row=row_number,
                column="product_id",
            )
        rows.append(
            {
                "images": [pm_image(product)],
                "prompt": chat_text(processor, pm_prompt(row["instruction"], product_attributes(product))),
                "chosen": completion_text(processor, row["chosen"]),
                "rejected": completion_text(processor, row["rejected"]),
                "product_id": row["product_id"],
                "instruction": row["instruction"],
            }
        )
    if not rows:
        raise InputError("the preference set is empty (every pair was a tie?)", file=source)
    return Dataset.from_list(rows)


def encode_prompt_completion(
    processor: Any, images: Sequence[Image.Image], prompts: Sequence[str], completions: Sequence[str]
) -> dict[str, torch.Tensor]:
    """Rows ``prompt_i + completion_i`` laid out as TRL's collator lays them out (left-padded prompts with
    images, right-padded completions, flushed left), with ``completion_mask`` marking the completion tokens."""
    prompt_batch = processor(
        images=list(images), text=list(prompts), padding=True, padding_side="left", add_special_tokens=False,
        return_tensors="pt",
    )
    completion_batch = processor(
        text=list(completions), padding=True, padding_side="right", add_special_tokens=False, return_tensors="pt"
    )
    input_ids = torch.cat((prompt_batch["input_ids"], completion_batch["input_ids"]), dim=1)
    attention_mask = torch.cat((prompt_batch["attention_mask"], completion_batch["attention_mask"]), dim=1)
    completion_mask = torch.cat(
        (torch.zeros_like(prompt_batch["attention_mask"]), completion_batch["attention_mask"]), dim=1
    )
    attention_mask, input_ids, completion_mask = flush_left(attention_mask, input_ids, completion_mask)
    out = dict(prompt_batch)
    out.update(input_ids=input_ids, attention_mask=attention_mask, completion_mask=completion_mask)
    return out


@dataclass
class MismatchSettings:
    """How PCPO builds mismatched inputs: kind weights, ``one``/``all`` per sample, patch masking."""

    weights: Mapping[str, float]
    mode: str = "one"
    mask_ratio: float = 0.75
    mask_grid: int = 8
    mask_fill: tuple[int, int, int] = (128, 128, 128)


@dataclass
class PCPOCollator:
    """TRL's DPO vision collation plus the PCPO rows (see the module docstring).

    ``product_text`` maps every product id of the textual-mismatch pool to its attributes. With
    ``mismatch=None`` the collator is plain DPO.
    """

    processor: Any
    product_text: Mapping[str, Mapping[str, Any]]
    mismatch: MismatchSettings | None
    seed: int = 0
    rng: np.random.Generator = field(init=False)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng([self.seed, 23])
        self.pool = sorted(self.product_text)
        self.dpo = DataCollatorForVisionPreference(processor=self.processor, max_length=None)

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = dict(self.dpo([dict(example) for example in examples]))
        if self.mismatch is None:
            return batch
        plan = plan_mismatches(len(examples), self.mismatch.weights, self.mismatch.mode, self.rng)
        true_images, true_prompts, bad_images, bad_prompts, answers = [], [], [], [], []
        for row in plan:
            example = examples[row.sample]
            image = example["images"][0]
            true_images.append(image)
            true_prompts.append(example["prompt"])
            answers.append(example["chosen"])
            if row.kind == "visual":
                masked, _ = mask_patches(
                    image, self.mismatch.mask_ratio, self.mismatch.mask_grid, self.rng, self.mismatch.mask_fill
                )
                bad_images.append(masked)
                bad_prompts.append(example["prompt"])
            else:
                other = pick_other_product(example["product_id"], self.pool, self.rng)
                bad_images.append(image)
                bad_prompts.append(
                    chat_text(self.processor, pm_prompt(example["instruction"], self.product_text[other]))
                )
        pcpo = encode_prompt_completion(
            self.processor, true_images + bad_images, true_prompts + bad_prompts, answers + answers
        )
        batch.update({PCPO_PREFIX + key: value for key, value in pcpo.items()})
        batch[PCPO_PREFIX + "kind"] = torch.tensor([KINDS.index(row.kind) for row in plan])
        return batch


def product_text_pool(products: Mapping[str, ProductInput]) -> dict[str, dict[str, Any]]:
    """Attributes per product id: the texts a textual mismatch draws from."""
    return {product_id: product_attributes(product) for product_id, product in products.items()}
