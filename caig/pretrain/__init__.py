"""E-commerce knowledge pre-training (stage 1): the task records, their batches, and the training command."""

from __future__ import annotations

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
from caig.pretrain.sft import InstructionCollator, InstructionDataset

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
