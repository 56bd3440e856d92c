"""LLaVA-NeXT builders: a tiny random-init model for the tiny preset, a local checkpoint for the paper preset.

Both return the same pair, a ``LlavaNextForConditionalGeneration`` and a ``LlavaNextProcessor``, so every
later stage (pre-training, reward model, preference optimisation) is written once. Nothing is downloaded:
the paper preset reads a local directory or a hub id already in the local Hugging Face cache.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import snapshot_download
from huggingface_hub.errors import LocalEntryNotFoundError
from omegaconf import DictConfig, OmegaConf
from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlavaNextConfig,
    LlavaNextForConditionalGeneration,
    LlavaNextProcessor,
)
from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

from caig.errors import ConfigError
from caig.instruct import ANSWER_WORDS, all_instruction_texts
from caig.io import atomic_path
from caig.logs import get_logger
from caig.models.tokenizer import CHAT_TEMPLATE, train_tokenizer

PAPER_HUB_ID = "llava-hf/llava-v1.6-vicuna-7b-hf"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

log = get_logger("models")


def _plain(cfg: Mapping[str, Any] | DictConfig) -> dict[str, Any]:
    """The model config node as a plain dict (interpolations resolved)."""
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    return dict(cfg)


def _require(node: Mapping[str, Any], key: str, prefix: str = "model") -> Any:
    if key not in node or node[key] is None:
        raise ConfigError(f"{prefix}.{key} is missing")
    return node[key]


def _dtype(name: str) -> torch.dtype | str:
    """A torch dtype by name; ``auto`` keeps the checkpoint's own dtype when loading."""
    if name == "auto":
        return name
    if name not in DTYPES:
        raise ConfigError(
            f"model.dtype={name!r} is not supported (expected 'auto' or one of {sorted(DTYPES)})"
        )
    return DTYPES[name]


def build_llava(
    model_cfg: Mapping[str, Any] | DictConfig, texts: Iterable[str] = ()
) -> tuple[LlavaNextForConditionalGeneration, LlavaNextProcessor]:
    """Build the model and processor that ``model_cfg`` (the ``model`` node of the composed config) names.

    ``model.source=random`` builds a tiny random-init LLaVA-NeXT whose tokenizer is trained on ``texts``
    plus the instruction pools; ``model.source=pretrained`` loads ``model.path`` (``texts`` is unused).
    """
    node = _plain(model_cfg)
    source = _require(node, "source")
    if source == "random":
        return build_tiny_llava(node, texts)
    if source == "pretrained":
        return load_llava(
            str(_require(node, "path")),
            dtype=node.get("dtype", "auto"),
            attn_implementation=node.get("attn_implementation", "sdpa"),
            expect_vision=node.get("expect_vision"),
        )
    raise ConfigError(f"model.source={source!r} is not supported (expected 'random' or 'pretrained')")


def build_tiny_llava(
    node: Mapping[str, Any], texts: Iterable[str] = ()
) -> tuple[LlavaNextForConditionalGeneration, LlavaNextProcessor]:
    """A LLaVA-NeXT of the real architecture (Llama text, CLIP vision, anyres tiling) at toy size."""
    text = _require(node, "text")
    vision = _require(node, "vision")
    tok_cfg = _require(node, "tokenizer")
    pinpoints = [list(map(int, p)) for p in _require(node, "image_grid_pinpoints")]
    image_size = int(_require(vision, "image_size", "model.vision"))
    patch_size = int(_require(vision, "patch_size", "model.vision"))
    if image_size % patch_size:
        raise ConfigError(
            f"model.vision.image_size={image_size} is not a multiple of model.vision.patch_size={patch_size}"
        )
    for pinpoint in pinpoints:
        if len(pinpoint) != 2 or any(side % image_size for side in pinpoint):
            raise ConfigError(
                f"model.image_grid_pinpoints entry {pinpoint} is not a [height, width] pair of multiples of "
                f"model.vision.image_size={image_size}"
            )

    corpus = [*texts, *all_instruction_texts(), *ANSWER_WORDS]
    tokenizer = train_tokenizer(
        corpus,
        int(_require(tok_cfg, "vocab_size", "model.tokenizer")),
        min_frequency=int(tok_cfg.get("min_frequency", 2)),
    )
    image_processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        image_grid_pinpoints=pinpoints,
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's CLS token, dropped by the "default" strategy
        chat_template=CHAT_TEMPLATE,
    )

    text_config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=int(_require(text, "hidden_size", "model.text")),
        intermediate_size=int(_require(text, "intermediate_size", "model.text")),
        num_hidden_layers=int(_require(text, "num_hidden_layers", "model.text")),
        num_attention_heads=int(_require(text, "num_attention_heads", "model.text")),
        num_key_value_heads=int(text.get("num_key_value_heads", text["num_attention_heads"])),
        max_position_embeddings=int(_require(text, "max_position_embeddings", "model.text")),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    vision_hidden = int(_require(vision, "hidden_size", "model.vision"))
    vision_config = CLIPVisionConfig(
        hidden_size=vision_hidden,
        intermediate_size=int(_require(vision, "intermediate_size", "model.vision")),
        num_hidden_layers=int(_require(vision, "num_hidden_layers", "model.vision")),
        num_attention_heads=int(_require(vision, "num_attention_heads", "model.vision")),
        image_size=image_size,
        patch_size=patch_size,
        projection_dim=vision_hidden,
    )
    config = LlavaNextConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_token_index=tokenizer.image_token_id,
        image_grid_pinpoints=pinpoints,
        vision_feature_layer=int(node.get("vision_feature_layer", -2)),
        vision_feature_select_strategy="default",
        image_seq_length=(image_size // patch_size) ** 2,
        tie_word_embeddings=False,
    )
    config._attn_implementation = node.get("attn_implementation", "sdpa")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(node.get("seed", 0)))
        model = LlavaNextForConditionalGeneration(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    dtype = _dtype(node.get("dtype", "float32"))
    return model.to(torch.float32 if dtype == "auto" else dtype).eval(), processor


def resolve_checkpoint(path: str) -> Path:
    """The local directory of a LLaVA-NeXT checkpoint named by a path or a hub id in the local HF cache.

    Raises ConfigError saying what to put where when neither exists; never touches the network.
    """
    local = Path(path).expanduser()
    layout = (
        "a transformers-format LLaVA-NeXT checkpoint: config.json (model_type 'llava_next'), "
        "model*.safetensors (+ index), tokenizer files (tokenizer.json or tokenizer.model, tokenizer_config.json), "
        "preprocessor_config.json / processor_config.json and chat_template.json(.jinja); the CLIP ViT-L/14-336 "
        "vision tower is inside it"
    )
    fetch = (
        f"on a machine with internet run `hf download {PAPER_HUB_ID} --local-dir <dir>` (or "
        f"`huggingface-cli download ...`), copy <dir> to the cluster and set model.path=<dir> "
        f"(or export CAIG_LLAVA_PATH=<dir>)"
    )
    if local.exists():
        if not (local / "config.json").is_file():
            raise ConfigError(
                f"model.path={path!r} is a directory without config.json; it must hold {layout}"
            )
        return local
    if _HUB_ID.match(path):
        try:
            return Path(snapshot_download(path, local_files_only=True))
        except (LocalEntryNotFoundError, OSError, ValueError) as err:
            raise ConfigError(
                f"model.path={path!r} is neither a local directory nor a hub id in the local Hugging Face cache "
                f"({err.__class__.__name__}). Either {fetch}, or pre-download the hub id into the cache of the "
                f"machine that runs the job (`hf download {path}` with HF_HOME set to the cluster's cache). "
                f"The directory must hold {layout}."
            ) from err
    raise ConfigError(f"model.path={path!r} does not exist. Put there {layout}; {fetch}.")


def load_llava(
    path: str | Path,
    *,
    dtype: str = "auto",
    attn_implementation: str = "sdpa",
    expect_vision: Mapping[str, int] | None = None,
) -> tuple[LlavaNextForConditionalGeneration, LlavaNextProcessor]:
    """Load a LLaVA-NeXT model and processor from a local checkpoint (see ``resolve_checkpoint``).

    ``expect_vision`` (e.g. image_size 336, patch_size 14) is checked against the checkpoint's vision
    tower so a wrong checkpoint fails at load, not after a day of training.
    """
    directory = resolve_checkpoint(str(path))
    config = json.loads((directory / "config.json").read_text())
    if config.get("model_type") != "llava_next":
        raise ConfigError(
            f"model.path={str(path)!r}: {directory / 'config.json'} has model_type "
            f"{config.get('model_type')!r} (expected 'llava_next', the transformers LLaVA-NeXT format)"
        )
    for key, expected in (expect_vision or {}).items():
        found = config.get("vision_config", {}).get(key)
        if found != expected:
            raise ConfigError(
                f"model.expect_vision.{key}={expected} but the checkpoint at {directory} has vision_config.{key}="
                f"{found} (expected the CLIP ViT-L/14-336 tower of LLaVA-v1.6)"
            )
    log.info("loading LLaVA-NeXT from %s (%s)", directory, dtype)
    model = LlavaNextForConditionalGeneration.from_pretrained(
        directory, dtype=_dtype(dtype), attn_implementation=attn_implementation, local_files_only=True
    )
    processor = LlavaNextProcessor.from_pretrained(directory, local_files_only=True)
    return model.eval(), processor


def save_pretrained_model(
    model: LlavaNextForConditionalGeneration, processor: LlavaNextProcessor, out_dir: str | Path
) -> Path:
    """Write model (safetensors), config and processor to ``out_dir`` atomically; ``load_llava`` reads it."""
    out_dir = Path(out_dir)
    with atomic_path(out_dir) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
    return out_dir


def count_parameters(model: torch.nn.Module) -> int:
    """Number of parameters (for logs and reports)."""
    return sum(p.numel() for p in model.parameters())
