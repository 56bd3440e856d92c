"""The mismatched inputs of PCPO: the same answer shown with a product it was not written for.

Visual mismatch hides a random ``ratio`` (paper: 75%) of the product image's patches; textual mismatch swaps the
product's caption and attributes for ANOTHER product's (never the product itself: the authors' code could draw
the sample itself). ``plan_mismatches`` decides, per sample, which kind(s) it gets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

KINDS: tuple[str, ...] = ("visual", "textual")


def patch_edges(length: int, grid: int) -> np.ndarray:
    """Integer pixel boundaries of ``grid`` near-equal patches along one side (``grid + 1`` values)."""
    if grid < 1 or grid > length:
        raise ValueError(f"patch grid must be in 1..{length} for a side of {length} px, got {grid}")
    return np.linspace(0, length, grid + 1).round().astype(int)


def mask_patches(
    image: Image.Image,
    ratio: float,
    grid: int,
    rng: np.random.Generator,
    fill: tuple[int, int, int] = (128, 128, 128),
) -> tuple[Image.Image, np.ndarray]:
    """Cover ``round(ratio * grid**2)`` of the image's ``grid x grid`` patches, drawn without replacement.

    Returns the masked RGB copy and the (grid, grid) boolean map of covered patches.
    """
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"mask ratio must be in [0, 1], got {ratio}")
    pixels = np.array(image.convert("RGB"))
    rows, cols = patch_edges(pixels.shape[0], grid), patch_edges(pixels.shape[1], grid)
    covered = np.zeros(grid * grid, dtype=bool)
    covered[rng.choice(grid * grid, size=int(round(ratio * grid * grid)), replace=False)] = True
    covered = covered.reshape(grid, grid)
    for r, c in zip(*np.nonzero(covered)):
        pixels[rows[r] : rows[r + 1], cols[c] : cols[c + 1]] = fill
    return Image.fromarray(pixels, "RGB"), covered


def pick_other_product(own_id: str, pool: Sequence[str], rng: np.random.Generator) -> str:
    """A product id drawn uniformly from ``pool`` without ``own_id`` (never the product itself)."""
    others = [product_id for product_id in pool if product_id != own_id]
    if not others:
        raise ValueError(f"textual mismatch needs a second product, but the pool holds only {own_id!r}")
    return others[int(rng.integers(len(others)))]


@dataclass(frozen=True)
class MismatchRow:
    """One PCPO comparison: sample ``sample`` of the batch under a ``kind`` mismatch."""

    sample: int
    kind: str


def normalised_weights(weights: Mapping[str, float]) -> dict[str, float]:
    """The mismatch kinds' weights, checked and scaled to sum to 1 (kinds with weight 0 are dropped)."""
    unknown = set(weights) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown mismatch kind(s) {sorted(unknown)} (expected {', '.join(KINDS)})")
    values = {kind: float(weights.get(kind, 0.0)) for kind in KINDS}
    if any(v < 0 for v in values.values()) or sum(values.values()) <= 0:
        raise ValueError(f"mismatch weights must be >= 0 with a positive sum, got {dict(weights)}")
    total = sum(values.values())
    return {kind: v / total for kind, v in values.items() if v > 0}


def plan_mismatches(
    n_samples: int, weights: Mapping[str, float], mode: str, rng: np.random.Generator
) -> list[MismatchRow]:
    """Which mismatch each sample gets: ``one`` draws one kind per sample by weight; ``all`` gives every sample
    every kind with a positive weight."""
    kinds = normalised_weights(weights)
    if mode == "all":
        return [MismatchRow(i, kind) for kind in kinds for i in range(n_samples)]
    if mode != "one":
        raise ValueError(f"mismatch mode must be 'one' or 'all', got {mode!r}")
    names = list(kinds)
    drawn = rng.choice(len(names), size=n_samples, p=[kinds[k] for k in names])
    return [MismatchRow(i, names[int(k)]) for i, k in enumerate(drawn)]
