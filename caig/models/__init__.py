"""Model builders and loaders: a tiny random-init LLaVA-NeXT (tiny preset) or a local checkpoint (paper)."""

from __future__ import annotations

from caig.models.llava import (
    PAPER_HUB_ID,
    build_llava,
    build_tiny_llava,
    count_parameters,
    load_llava,
    resolve_checkpoint,
    save_pretrained_model,
)
from caig.models.tokenizer import CHAT_TEMPLATE, IMAGE_TOKEN, train_tokenizer

__all__ = [
    "CHAT_TEMPLATE",
    "IMAGE_TOKEN",
    "PAPER_HUB_ID",
    "build_llava",
    "build_tiny_llava",
    "count_parameters",
    "load_llava",
    "resolve_checkpoint",
    "save_pretrained_model",
    "train_tokenizer",
]
