"""Prompt-model sampling: background descriptions for each product, reproducible per candidate.

For each product the prompt model (PM) sees the product image and C = f_instruct(Q, attributes), with Q one
of the 8 PM instructions (drawn per product and seed stream), and samples candidate descriptions at
temperature 1.0 (by default). Every candidate has its own seed, derived from (run seed, stream, product id,
candidate, attempt), training epoch e being stream e, and its tokens are drawn from its own
``torch.Generator``: a candidate's text depends on its seed and inputs, not on the order or size of the batch
it was generated in. When a product's candidates come out equal (or empty), the later ones are resampled with
the next attempt's seed, so a preference pair never compares a description with itself.

``caig sample --model DIR --catalog FILE --products FILE --role train|heldout --epoch E --out DIR``
writes ``candidates.parquet`` (product_id, candidate, instruction_index, instruction, description, seed,
attempt) and ``summary.json``. It samples the products chunk by chunk and resumes after a kill at the first
unfinished chunk (``caig.generate.chunks``). Split across jobs, ``--shard I-of-K`` samples shard I's chunks only and
``--gather SHARD...`` (the same options otherwise) assembles the output from the shards without loading the model.
"""

from __future__ import annotations

import argparse
import zlib
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from omegaconf import DictConfig
from PIL import Image
from transformers import LogitsProcessor, LogitsProcessorList

from caig.errors import ConfigError, InputError
from caig.generate.chunks import add_shard_options
from caig.generate.products import ProductInput
from caig.instruct import PM_INSTRUCTIONS, f_instruct
from caig.io import write_json, write_parquet
from caig.logs import get_logger
from caig.logs import progress as progress_bar
from caig.preference.products import load_product_images
from caig.reward.model import chat_text, to_rgb

log = get_logger("sample")

# ---------------------------------------------------------------------------------------------- inputs
def load_products(path: str | Path, image_root: str | Path | None = None) -> list[ProductInput]:
    """Products from a native catalog (.parquet/.csv) or the CAIG prompt-model JSON (.json).

    Catalog products are shown as every other stage shows them (``caig.pretrain.products``): the prompt's
    caption and attributes are the ones pre-training and the reward model saw. A CAIG JSON product is its
    ``new_caption`` (and any extra keys).
    """
    from caig.pretrain.products import product_attributes as shown_attributes
    from caig.pretrain.products import product_caption, read_catalog

    path = Path(path)
    products = load_product_images(path, image_root)
    if path.suffix.lower() == ".json":
        return products
    if path.suffix.lower() in (".parquet", ".pq"):
        shown = {pid: (p.caption, p.attributes) for pid, p in read_catalog(path).items()}
    else:
        rows = {p.product_id: {"product_id": p.product_id, "title": p.caption, **p.attributes} for p in products}
        shown = {pid: (product_caption(row), shown_attributes(row)) for pid, row in rows.items()}
    return [
        ProductInput(p.product_id, p.image, shown[p.product_id][0], dict(shown[p.product_id][1])) for p in products
    ]


def product_attributes(product: ProductInput) -> dict[str, Any]:
    """What the prompts show of a product: its attributes and its caption (pre-training's and the RM's view)."""
    return {**product.attributes, "caption": product.caption}


def pm_prompt(instruction: str, attributes: Mapping[str, Any]) -> str:
    """C = f_instruct(Q, attributes): the text the prompt model answers."""
    return f_instruct(instruction, attributes)


def pm_image(product: ProductInput) -> Image.Image:
    """The product image as the PM sees it: the cut-out composited on white (RGB)."""
    return to_rgb(product.image)


def instruction_index(seed: int, stream: int, product_id: str) -> int:
    """Which of the PM instructions a product gets in a seed stream (independent of the product order)."""
    rng = np.random.default_rng([seed, stream, zlib.crc32(product_id.encode()), 11])
    return int(rng.integers(len(PM_INSTRUCTIONS)))


def candidate_seed(seed: int, stream: int, product_id: str, candidate: int, attempt: int) -> int:
    """The sampling seed of one candidate: distinct for every (run seed, stream, product, candidate, attempt)."""
    state = np.random.SeedSequence([seed, stream, zlib.crc32(product_id.encode()), candidate, attempt, 13])
    return int(state.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def normalise_description(text: str) -> str:
    """The form in which two descriptions count as the same (case and spacing ignored)."""
    return " ".join(text.lower().split())


# ---------------------------------------------------------------------------------------------- sampling
class SeededSampler(LogitsProcessor):
    """Samples the next token of each row from that row's own generator and forces greedy search to take it.

    Used with ``do_sample=False``: the returned scores are -inf everywhere but the sampled token. Applies
    temperature, then top-k, then nucleus (top-p) filtering, as ``do_sample=True`` would.
    """

    def __init__(self, seeds: Sequence[int], temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> None:
        if temperature <= 0:
            raise ConfigError(f"sampling temperature must be positive, got {temperature}")
        if not 0 < top_p <= 1:
            raise ConfigError(f"sampling top_p must be in (0, 1], got {top_p}")
        if top_k < 0:
            raise ConfigError(f"sampling top_k must be >= 0 (0 = off), got {top_k}")
        self.generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]
        self.temperature = float(temperature)
        self.top_k = int(top_k)
        self.top_p = float(top_p)

    def filtered_probabilities(self, scores: torch.Tensor) -> torch.Tensor:
        """Next-token probabilities after temperature, top-k and top-p (float32, rows sum to 1)."""
        logits = scores.float() / self.temperature
        if self.top_k and self.top_k < logits.shape[-1]:
            kth = logits.topk(self.top_k, dim=-1).values[..., -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = logits.softmax(dim=-1)
        if self.top_p < 1.0:
            sorted_probs, order = probs.sort(dim=-1, descending=True)
            outside = sorted_probs.cumsum(dim=-1) - sorted_probs >= self.top_p  # keep the token that crosses top_p
            sorted_probs = sorted_probs.masked_fill(outside, 0.0)
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
            probs = probs / probs.sum(dim=-1, keepdim=True)
        return probs

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if scores.shape[0] != len(self.generators):
            raise ValueError(f"{scores.shape[0]} rows but {len(self.generators)} seeds")
        probs = self.filtered_probabilities(scores).cpu()
        tokens = [int(torch.multinomial(p, 1, generator=g)) for p, g in zip(probs, self.generators)]
        forced = torch.full_like(scores, float("-inf"))
        forced[torch.arange(scores.shape[0]), torch.tensor(tokens, device=scores.device)] = 0.0
        return forced


@torch.no_grad()
def generate_descriptions(
    model: torch.nn.Module,
    processor: Any,
    images: Sequence[Image.Image],
    prompts: Sequence[str],
    seeds: Sequence[int],
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    batch_size: int = 16,
    progress: bool = False,
) -> list[str]:
    """One sampled answer per (image, prompt, seed), decoded without special tokens and stripped."""
    if not len(images) == len(prompts) == len(seeds):
        raise ValueError(f"got {len(images)} images, {len(prompts)} prompts and {len(seeds)} seeds")
    if batch_size < 1:
        raise ConfigError(f"sampling batch_size must be >= 1, got {batch_size}")
    model.eval()
    device = next(model.parameters()).device
    texts = [chat_text(processor, prompt) for prompt in prompts]
    out: list[str] = []
    starts = range(0, len(texts), batch_size)
    for start in progress_bar(starts, desc="sampling", unit="batch", disable=not progress):
        part = slice(start, start + batch_size)
        batch = processor(
            images=list(images[part]),
            text=texts[part],
            padding=True,
            padding_side="left",
            add_special_tokens=False,
            return_tensors="pt",
        ).to(device)
        sampler = SeededSampler(seeds[part], temperature=temperature, top_k=top_k, top_p=top_p)
        generated = model.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            logits_processor=LogitsProcessorList([sampler]),
            pad_token_id=processor.tokenizer.pad_token_id,
            eos_token_id=processor.tokenizer.eos_token_id,
        )
        answers = processor.batch_decode(generated[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
        out.extend(answer.strip() for answer in answers)
    return out


def sample_candidates(
    model: torch.nn.Module,
    processor: Any,
    products: Sequence[ProductInput],
    *,
    seed: int,
    stream: int,
    n_candidates: int = 2,
    distinct: bool = True,
    max_attempts: int = 4,
    max_new_tokens: int = 48,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    batch_size: int = 16,
) -> tuple[pl.DataFrame, dict[str, int]]:
    """``n_candidates`` descriptions per product; with ``distinct``, equal or empty ones are resampled.

    ``stream`` separates seed streams: training epoch e samples with stream e, while the evaluation uses one
    fixed stream for every method and epoch, so their samples differ only through the model.

    Returns the candidates (product_id, candidate, instruction_index, instruction, description, seed, attempt;
    products still holding equal candidates after ``max_attempts`` are left out) and counts: resampled
    candidates and products left out.
    """
    if n_candidates < 1 or (distinct and n_candidates < 2):
        raise ConfigError(f"need n_candidates >= 1 (>= 2 for distinct candidates), got {n_candidates}")
    if max_attempts < 1:
        raise ConfigError(f"max_attempts must be >= 1, got {max_attempts}")
    ids = [p.product_id for p in products]
    if len(set(ids)) != len(ids):
        raise InputError("the product list holds duplicate product ids", expected="one entry per product")
    images = [pm_image(p) for p in products]
    instructions = [instruction_index(seed, stream, p.product_id) for p in products]
    prompts = [pm_prompt(PM_INSTRUCTIONS[k], product_attributes(p)) for p, k in zip(products, instructions)]
    text: dict[tuple[int, int], str] = {}
    attempt_of: dict[tuple[int, int], int] = {}
    todo = [(i, c) for i in range(len(products)) for c in range(n_candidates)]
    resampled = 0
    for attempt in range(max_attempts):
        if not todo:
            break
        seeds = [candidate_seed(seed, stream, ids[i], c, attempt) for i, c in todo]
        answers = generate_descriptions(
            model,
            processor,
            [images[i] for i, _ in todo],
            [prompts[i] for i, _ in todo],
            seeds,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            batch_size=batch_size,
            progress=len(todo) > 4 * batch_size,
        )
        for key, answer in zip(todo, answers):
            text[key], attempt_of[key] = answer, attempt
        if not distinct:
            break
        todo = _clashing(text, len(products), n_candidates)
        resampled += len(todo) if attempt + 1 < max_attempts else 0
    left_out = {i for i, _ in todo} if distinct else set()
    rows = [
        {
            "product_id": ids[i],
            "candidate": c,
            "instruction_index": instructions[i],
            "instruction": PM_INSTRUCTIONS[instructions[i]],
            "description": text[(i, c)],
            "seed": candidate_seed(seed, stream, ids[i], c, attempt_of[(i, c)]),
            "attempt": attempt_of[(i, c)],
        }
        for i in range(len(products))
        if i not in left_out
        for c in range(n_candidates)
    ]
    schema = {
        "product_id": pl.String, "candidate": pl.Int32, "instruction_index": pl.Int32, "instruction": pl.String,
        "description": pl.String, "seed": pl.Int64, "attempt": pl.Int32,
    }
    counts = {"products": len(products), "resampled": resampled, "left_out_duplicates": len(left_out)}
    return pl.DataFrame(rows, schema=schema), counts


def _clashing(text: Mapping[tuple[int, int], str], n_products: int, n_candidates: int) -> list[tuple[int, int]]:
    """Candidates to resample: empty ones, and any equal to an earlier candidate of the same product."""
    todo = []
    for i in range(n_products):
        seen: set[str] = set()
        for c in range(n_candidates):
            key = normalise_description(text[(i, c)])
            if not key or key in seen:
                todo.append((i, c))
            seen.add(key)
    return todo


# ---------------------------------------------------------------------------------------------- product sets
def select_products(
    products: Sequence[ProductInput], ids: Sequence[str], source: str | Path
) -> list[ProductInput]:
    """``products`` restricted to ``ids``, in the order of ``ids``; unknown ids are an InputError."""
    by_id = {p.product_id: p for p in products}
    missing = [pid for pid in ids if pid not in by_id]
    if missing:
        raise InputError(
            f"{len(missing)} product id(s) of the product set are not in the catalog, e.g. {missing[:3]}",
            file=source,
            expected="product sets drawn from this catalog",
        )
    return [by_id[pid] for pid in ids]


# ---------------------------------------------------------------------------------------------- CLI
def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, required=True, help="prompt model directory (LLaVA-NeXT)")
    parser.add_argument("--catalog", type=Path, required=True, help="catalog (.parquet/.csv) or CAIG JSON")
    parser.add_argument("--image-root", type=Path, help="resolve relative image paths against this folder")
    parser.add_argument("--products", type=Path, help="product sets (caig preference-products); default: all")
    parser.add_argument("--role", choices=("train", "heldout"), default="train", help="which product set")
    parser.add_argument("--epoch", type=int, required=True, help="the epoch these candidates train (seed stream)")
    parser.add_argument("--out", type=Path, required=True, help="output folder (a shard's: its chunks)")
    add_shard_options(parser)


def run(args: argparse.Namespace, cfg: DictConfig) -> None:
    from caig.generate.chunks import (
        ChunkWork, chunk_products, parts_folder, plan_chunks, read_manifests, shard_of, shard_store, work_digest,
        work_or_gather, work_ranks,
    )
    from caig.models import load_llava
    from caig.preference.products import products_for
    from caig.preference.sharding import join_world, local_device
    from caig.training import configure_threads

    if args.epoch < 0:
        raise InputError(f"--epoch must be >= 0, got {args.epoch}")
    world = join_world()  # under caig launch: one rank per GPU, each sampling every N-th product of a chunk
    configure_threads(cfg)  # train.torch_threads: one thread per job on a shared CPU (tiny preset)
    settings = cfg.preference.sample
    products = load_products(args.catalog, args.image_root)
    if args.products is not None:
        products = select_products(products, products_for(args.products, args.role), args.products)
    by_id = {p.product_id: p for p in products}
    chunks = plan_chunks([p.product_id for p in products], chunk_products(cfg))
    inputs = {"model": args.model, "catalog": args.catalog, **({"products": args.products} if args.products else {})}
    shard, manifests = shard_of(args), read_manifests(args)
    ranks = work_ranks(manifests, world)
    digest = work_digest(
        "sample", inputs, cfg, ("seed", "preference.dtype", "preference.sample"),
        role=args.role, epoch=args.epoch, image_root=args.image_root, ranks=ranks,
    ) if world.is_main else ""
    store = shard_store(parts_folder(args.out), digest, chunks, shard)

    def sample_work() -> Callable[[list[str]], ChunkWork]:
        model, processor = load_llava(args.model, dtype=str(cfg.preference.dtype))
        return partial(sample_share, model.to(local_device()), processor)

    def sample_share(model: torch.nn.Module, processor: Any, ids: list[str]) -> ChunkWork:
        frame, counts = sample_candidates(
            model,
            processor,
            [by_id[pid] for pid in ids],
            seed=int(cfg.seed),
            stream=args.epoch,
            n_candidates=int(settings.candidates),
            distinct=True,
            max_attempts=int(settings.max_attempts),
            max_new_tokens=int(settings.max_new_tokens),
            temperature=float(settings.temperature),
            top_k=int(settings.top_k),
            top_p=float(settings.top_p),
            batch_size=int(settings.batch_size),
        )
        return ChunkWork(frame, counts)

    if not work_or_gather(store, world, sample_work, out=args.out, shard=shard, manifests=manifests):
        return
    frame, counts = store.table(), store.counts()
    write_parquet(frame, args.out / "candidates.parquet")
    summary = {"epoch": args.epoch, "role": args.role, "model": str(args.model), "ranks": ranks, **counts}
    write_json(summary, args.out / "summary.json")
    store.remove()
    log.info(
        "%d products -> %d candidates (%d resampled, %d products left out with equal candidates) -> %s",
        counts["products"], frame.height, counts["resampled"], counts["left_out_duplicates"], args.out,
    )
