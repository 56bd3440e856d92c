"""The tiny vision tower's description head: which description tokens an ad tile shows.

``caig vision-pretrain`` trains it with the tower (caig/pretrain/vision.py) and saves it beside the base model;
the tiny reward model's ``side_desc`` readout (caig/reward/model.py) reads its token probabilities through a
``TileDescriber``: a frozen copy of the base model's tower and projector with the head. A copy, because stage 1
fine-tunes the tower under the head (measured: the head's loss on fresh ads went from 0.13 on the base model's
features to 11.2 on the pre-trained model's).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import LlavaNextForConditionalGeneration

from caig.errors import InputError

DESCRIPTION_HEAD_FILE = "description_head.safetensors"
DESCRIPTION_HEAD_SETTINGS = "description_head.json"


def tile_features(model: LlavaNextForConditionalGeneration, pixel_values: torch.Tensor) -> torch.Tensor:
    """What the language model reads of each tile: (n, patches, text hidden), the vision tower's selected
    layer(s) and strategy through the projector, as LLaVA-NeXT computes them before tiling them together."""
    return project_tiles(model.model.vision_tower, model.model.multi_modal_projector, model.config, pixel_values)


def project_tiles(tower: nn.Module, projector: nn.Module, config: Any, pixel_values: torch.Tensor) -> torch.Tensor:
    """``tile_features`` of a given tower and projector, with a LLaVA-NeXT config's feature layer and strategy."""
    out = tower(pixel_values, output_hidden_states=True, return_dict=True)
    layer = config.vision_feature_layer
    if isinstance(layer, int):
        selected = out.hidden_states[layer]
    else:
        selected = torch.cat([out.hidden_states[i] for i in layer], dim=-1)
    if config.vision_feature_select_strategy == "default":
        selected = selected[:, 1:]
    return projector(selected)


class DescriptionHead(nn.Module):
    """Flattened tile features -> hidden -> GELU -> a logit per description token (``token_ids``)."""

    def __init__(self, patches: int, width: int, hidden: int, token_ids: list[int]) -> None:
        super().__init__()
        self.patches, self.width, self.hidden = patches, width, hidden
        self.token_ids = list(token_ids)
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(patches * width, hidden), nn.GELU(), nn.Linear(hidden, len(token_ids))
        )

    @property
    def settings(self) -> dict[str, Any]:
        """What rebuilds the head: its sizes and the description tokens its outputs stand for."""
        return {"patches": self.patches, "width": self.width, "hidden": self.hidden, "token_ids": self.token_ids}

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


class TileDescriber(nn.Module):
    """Tile pixels -> description-token logits: a copy of ``model``'s tower and projector, then ``head``.

    Built from the vision pre-training's base model, it reads tiles as the head was trained to; built from any
    model of the same architecture, ``load_state_dict`` restores a saved one.
    """

    def __init__(self, model: LlavaNextForConditionalGeneration, head: DescriptionHead) -> None:
        super().__init__()
        self.config = model.config
        self.vision_tower = copy.deepcopy(model.model.vision_tower)
        self.projector = copy.deepcopy(model.model.multi_modal_projector)
        self.head = head

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.head(project_tiles(self.vision_tower, self.projector, self.config, pixel_values))


def save_description_head(head: DescriptionHead, directory: str | Path) -> None:
    """Write the head's weights and settings into ``directory`` (a model directory being written atomically)."""
    directory = Path(directory)
    state = {key: value.detach().contiguous().cpu() for key, value in head.state_dict().items()}
    save_file(state, str(directory / DESCRIPTION_HEAD_FILE))
    (directory / DESCRIPTION_HEAD_SETTINGS).write_text(json.dumps(head.settings, indent=2) + "\n")


def load_description_head(directory: str | Path) -> DescriptionHead:
    """The head ``save_description_head`` wrote (InputError naming the directory when it holds none)."""
    directory = Path(directory)
    for name in (DESCRIPTION_HEAD_FILE, DESCRIPTION_HEAD_SETTINGS):
        if not (directory / name).is_file():
            raise InputError(
                f"no description head: {name} is missing",
                file=directory,
                expected="a model directory written by caig vision-pretrain",
            )
    head = DescriptionHead(**json.loads((directory / DESCRIPTION_HEAD_SETTINGS).read_text()))
    head.load_state_dict(load_file(str(directory / DESCRIPTION_HEAD_FILE)))
    return head.eval()
