"""Pair scoring: the probability that the LEFT creative of a pair gets more clicks.

Every pair is scored in both orders, [L;R] and [R;L]. ``*_by_order`` keeps the two apart (column 0:
p(left | [L;R]), the pair as given; column 1: p(right | [R;L])), so RM evaluation can report the paper's
single-order metric; ``score_pairs`` / ``score_pairs_generative`` average them,
p_left = (p(left | [L;R]) + p(right | [R;L])) / 2, so a model's position bias cannot decide a comparison and
p_left(L, R) == 1 - p_left(R, L). The preference stage judges two candidate ads with the average.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image
from transformers import LlavaNextForConditionalGeneration, LlavaNextProcessor

from caig.instruct import ANSWER_WORDS
from caig.logs import progress
from caig.reward.model import (
    LEFT,
    RIGHT,
    RewardModel,
    concat_pair,
    encode_rm_inputs,
    open_image,
    parse_generative_answer,
)

ImageLike = Image.Image | str | Path
# |p_left - 0.5| at or below this is a tie: two identical ads give 0.5 only up to float rounding of the
# softmax (p(left) + p(right) = 1 +- 1e-7), and that rounding must not pick a winner.
TIE_TOLERANCE = 1e-6


def _chunks(n: int, size: int) -> Iterator[slice]:
    if size <= 0:
        raise ValueError(f"batch_size must be positive, got {size}")
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def _both_orders(
    left_images: Sequence[ImageLike],
    right_images: Sequence[ImageLike],
    prompts: Sequence[str],
    pair_size: int,
) -> tuple[list[Image.Image], list[str]]:
    """[L;R] for every pair, then [R;L] for every pair, with the prompts repeated to match."""
    lefts = [open_image(image) for image in left_images]
    rights = [open_image(image) for image in right_images]
    forward = [concat_pair(l, r, pair_size) for l, r in zip(lefts, rights)]
    swapped = [concat_pair(r, l, pair_size) for l, r in zip(lefts, rights)]
    return forward + swapped, [*prompts, *prompts]


def _check_lengths(left_images: Sequence, right_images: Sequence, prompts: Sequence) -> int:
    if not len(left_images) == len(right_images) == len(prompts):
        raise ValueError(
            f"need one right image and one prompt per left image; got {len(left_images)} left, "
            f"{len(right_images)} right, {len(prompts)} prompts"
        )
    return len(prompts)


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def score_pairs_by_order(
    model: RewardModel,
    processor: LlavaNextProcessor,
    left_images: Sequence[ImageLike],
    right_images: Sequence[ImageLike],
    prompts: Sequence[str],
    *,
    pair_size: int,
    batch_size: int = 8,
) -> np.ndarray:
    """Per pair and order, the classifier's probability that the left creative wins: (n, 2) float64,
    column 0 p(left | [L;R]), column 1 p(right | [R;L]) (softmax of the logits in float64)."""
    n = _check_lengths(left_images, right_images, prompts)
    model.eval()
    device = _device(model)
    out = np.empty((n, 2), dtype=np.float64)
    for part in progress(list(_chunks(n, batch_size)), desc="scoring pairs", unit="batch"):
        images, texts = _both_orders(left_images[part], right_images[part], prompts[part], pair_size)
        batch = encode_rm_inputs(processor, images, texts).to(device)
        probs = model(**batch).logits.double().softmax(dim=-1).cpu()
        rows = part.stop - part.start
        out[part, 0] = probs[:rows, LEFT].numpy()
        out[part, 1] = probs[rows:, RIGHT].numpy()
    return out


def score_pairs(
    model: RewardModel,
    processor: LlavaNextProcessor,
    left_images: Sequence[ImageLike],
    right_images: Sequence[ImageLike],
    prompts: Sequence[str],
    *,
    pair_size: int,
    batch_size: int = 8,
) -> np.ndarray:
    """p_left per pair from the classification head, symmetric over the two orders (float64 array)."""
    return score_pairs_by_order(
        model, processor, left_images, right_images, prompts, pair_size=pair_size, batch_size=batch_size
    ).mean(axis=1)


def _answer_log_likelihood(
    model: LlavaNextForConditionalGeneration, batch: dict[str, torch.Tensor]
) -> torch.Tensor:
    """Sum of the log-probabilities of the labelled (answer) tokens per row."""
    labels = batch.pop("labels")
    logits = model(**batch).logits[:, :-1].float()
    targets = labels[:, 1:]
    mask = targets != -100
    token_logp = logits.log_softmax(dim=-1).gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (token_logp * mask).sum(dim=1)


@torch.no_grad()
def score_pairs_generative_by_order(
    model: LlavaNextForConditionalGeneration,
    processor: LlavaNextProcessor,
    left_images: Sequence[ImageLike],
    right_images: Sequence[ImageLike],
    prompts: Sequence[str],
    *,
    pair_size: int,
    batch_size: int = 8,
    method: Literal["likelihood", "generate"] = "likelihood",
    max_new_tokens: int = 8,
) -> np.ndarray:
    """Per pair and order, the generative RM's probability that the left creative wins: (n, 2) float64,
    column 0 from [L;R], column 1 from [R;L] (as ``score_pairs_by_order``).

    ``likelihood``: p(left | image, prompt) = softmax over the log-likelihoods of answering "left" and
    "right" (all answer tokens, teacher-forced). ``generate``: greedy answer, read by
    ``parse_generative_answer``: 1 for the named side, 0 for the other, 0.5 when it names neither.
    """
    if method not in ("likelihood", "generate"):
        raise ValueError(f"method must be 'likelihood' or 'generate', got {method!r}")
    n = _check_lengths(left_images, right_images, prompts)
    model.eval()
    device = _device(model)
    out = np.empty((n, 2), dtype=np.float64)
    for part in progress(list(_chunks(n, batch_size)), desc="scoring pairs", unit="batch"):
        images, texts = _both_orders(left_images[part], right_images[part], prompts[part], pair_size)
        if method == "likelihood":
            p_first = _likelihood_p_left(model, processor, images, texts, device)
        else:
            p_first = _generated_p_left(model, processor, images, texts, device, max_new_tokens)
        rows = part.stop - part.start
        out[part, 0] = p_first[:rows].double().numpy()
        out[part, 1] = 1.0 - p_first[rows:].double().numpy()
    return out


def score_pairs_generative(
    model: LlavaNextForConditionalGeneration,
    processor: LlavaNextProcessor,
    left_images: Sequence[ImageLike],
    right_images: Sequence[ImageLike],
    prompts: Sequence[str],
    *,
    pair_size: int,
    batch_size: int = 8,
    method: Literal["likelihood", "generate"] = "likelihood",
    max_new_tokens: int = 8,
) -> np.ndarray:
    """p_left per pair for the generative RM (no classification head), symmetric over the two orders."""
    return score_pairs_generative_by_order(
        model,
        processor,
        left_images,
        right_images,
        prompts,
        pair_size=pair_size,
        batch_size=batch_size,
        method=method,
        max_new_tokens=max_new_tokens,
    ).mean(axis=1)


def _likelihood_p_left(
    model: LlavaNextForConditionalGeneration,
    processor: LlavaNextProcessor,
    images: list[Image.Image],
    texts: list[str],
    device: torch.device,
) -> torch.Tensor:
    rows = len(texts)
    answers = [ANSWER_WORDS[LEFT]] * rows + [ANSWER_WORDS[RIGHT]] * rows
    batch = encode_rm_inputs(processor, images + images, texts + texts, answers=answers).to(device)
    loglik = _answer_log_likelihood(model, dict(batch)).cpu()
    return torch.stack([loglik[:rows], loglik[rows:]], dim=1).double().softmax(dim=1)[:, LEFT]


def _generated_p_left(
    model: LlavaNextForConditionalGeneration,
    processor: LlavaNextProcessor,
    images: list[Image.Image],
    texts: list[str],
    device: torch.device,
    max_new_tokens: int,
) -> torch.Tensor:
    batch = encode_rm_inputs(processor, images, texts, padding_side="left").to(device)
    generated = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False)
    answers = processor.batch_decode(generated[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    value = {"left": 1.0, "right": 0.0, None: 0.5}
    return torch.tensor([value[parse_generative_answer(answer)] for answer in answers])
