"""E-commerce knowledge pre-training (stage 1): the task records, their batches, and the training command."""

from __future__ import annotations

from caig.pretrain.data import TASKS, TaskSpec, read_records, scale_mix, synthetic_records, write_records
from caig.pretrain.products import Product, product_attributes, product_caption, read_catalog
from caig.pretrain.sft import InstructionCollator, InstructionDataset

__all__ = [
    "TASKS",
    "InstructionCollator",
    "InstructionDataset",
    "Product",
    "TaskSpec",
    "product_attributes",
    "product_caption",
    "read_catalog",
    "read_records",
    "scale_mix",
    "synthetic_records",
    "write_records",
]
