"""Instruction samples as LLaVA-NeXT training batches: one user turn (image, prompt), one answer.

The question of each sample is drawn once from its task's pool with a seeded generator, so an epoch, a
resumed run and a rerun see the same prompts. Labels cover the answer and its end-of-sequence token only;
a sample longer than ``max_length`` loses the end of its answer, never its prompt (which holds the image
tokens).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import BatchFeature, LlavaNextProcessor

from caig.errors import InputError
from caig.instruct import f_instruct
from caig.pretrain.data import TASKS, questions, shown_attributes
from caig.reward.model import open_image, to_rgb

IGNORE = -100


def user_turn(processor: LlavaNextProcessor, prompt: str, *, image: bool) -> str:
    """The chat text of one user turn (optionally led by the image) ending at the assistant's prompt."""
    content = ([{"type": "image"}] if image else []) + [{"type": "text", "text": prompt}]
    messages = [{"role": "user", "content": content}]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


class InstructionDataset(torch.utils.data.Dataset):
    """Records (caig.pretrain.data) as ``{"image", "prompt", "target"}`` samples."""

    def __init__(self, records: Sequence[Mapping[str, Any]], *, seed: int = 0) -> None:
        self.records = list(records)
        rng = np.random.default_rng(seed)
        self.question_of = [
            questions(record["task"])[int(rng.integers(len(questions(record["task"]))))]
            for record in self.records
        ]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        return {
            "image": record["image"] if TASKS[record["task"]].image else None,
            "prompt": f_instruct(self.question_of[index], shown_attributes(record)),
            "target": record["target"],
        }


class InstructionCollator:
    """Samples -> input_ids, attention_mask, pixel_values, image_sizes and answer-only labels."""

    def __init__(self, processor: LlavaNextProcessor, *, max_length: int) -> None:
        if max_length < 8:
            raise ValueError(f"max_length must be >= 8, got {max_length}")
        self.processor = processor
        self.max_length = max_length

    def _answer_ids(self, target: str) -> list[int]:
        tokenizer = self.processor.tokenizer
        return tokenizer(" " + target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]

    def __call__(self, samples: Sequence[Mapping[str, Any]]) -> BatchFeature:
        images: list[Image.Image] = []
        texts = []
        for sample in samples:
            has_image = sample["image"] is not None
            if has_image:
                images.append(to_rgb(open_image(sample["image"])))
            texts.append(
                user_turn(self.processor, sample["prompt"], image=has_image) + " " + sample["target"]
            )
        eos = self.processor.tokenizer.eos_token
        batch = self.processor(
            images=images or None,
            text=[text + eos for text in texts],
            padding=True,
            padding_side="right",
            add_special_tokens=False,
            return_tensors="pt",
        )
        lengths = batch["attention_mask"].sum(dim=1)
        labels = torch.full_like(batch["input_ids"], IGNORE)
        for row, sample in enumerate(samples):
            answer = self._answer_ids(sample["target"])
            end = int(lengths[row])
            start = end - len(answer)
            if start <= 0 or batch["input_ids"][row, start:end].tolist() != answer:
                raise InputError(
                    f"answer {sample['target'][:60]!r} does not tokenize as a continuation of its prompt",
                    row=row,
                    expected="an answer after the assistant prompt",
                )
            if start >= self.max_length:
                raise InputError(
                    f"prompt of {start} tokens leaves no room for the answer (max_length={self.max_length})",
                    row=row,
                    expected="a shorter prompt or a larger pretrain.max_length",
                )
            labels[row, start:end] = batch["input_ids"][row, start:end]
        batch["labels"] = labels
        if batch["input_ids"].shape[1] > self.max_length:
            for key in ("input_ids", "attention_mask", "labels"):
                batch[key] = batch[key][:, : self.max_length]
        return batch
