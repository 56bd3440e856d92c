"""E-commerce knowledge pre-training (stage 1): the task records, their batches, and the training command."""

from __future__ import annotations

from typing import Any

from caig.pretrain.data import (
    TASKS,
    Description,
    TaskSpec,
    description_records,
    read_descriptions,
    read_records,
    scale_mix,
    write_records,
)
from caig.pretrain.products import Product, product_attributes, product_caption, read_catalog

# The batching classes load torch and transformers (~3.5 s): only on first use, so the jobs that build records
# (caig pretrain-data, ahead of the model's initialisation) start without them.
_SFT_NAMES = ("InstructionCollator", "InstructionDataset")


def __getattr__(name: str) -> Any:
    if name in _SFT_NAMES:
        from caig.pretrain import sft

        return getattr(sft, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "TASKS",
    "Description",
    "InstructionCollator",
    "InstructionDataset",
    "Product",
    "TaskSpec",
    "description_records",
    "product_attributes",
    "product_caption",
    "read_catalog",
    "read_descriptions",
    "read_records",
    "scale_mix",
    "write_records",
]
