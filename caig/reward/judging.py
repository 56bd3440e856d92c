"""One interface to any trained pair judge: the CAIG reward model (LLaVA-NeXT + heads) or a baseline ranker
(VAM, a ResNet visual ranker; CG4CTR, an image + title fusion ranker). The preference stage's judge and the
match-rate RM win rate call it, so a method can be driven by any of them (the paper's online comparison: the
loop with the VAM or CG4CTR RM).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from caig.errors import InputError
from caig.reward.baselines import SETTINGS_FILE, load_ranker, score_ranker_pairs
from caig.reward.model import HEADS_FILE, load_reward_model, reward_prompt
from caig.reward.scoring import score_pairs


class PairJudge:
    """p_left of (left ad, right ad) pairs of one product, symmetric over the two orders, from a saved model.

    The LLaVA reward model reads C_RM = f_instruct(question, attributes) (caption / other attributes as
    ``caption`` and ``info`` say); a baseline ranker reads the images and, for CG4CTR, the title.
    """

    def __init__(
        self, path: str | Path, *, dtype: str, device: torch.device, pair_size: int, batch_size: int
    ) -> None:
        self.path = Path(path)
        self.pair_size = pair_size
        self.batch_size = batch_size
        if (self.path / SETTINGS_FILE).is_file():
            self.ranker, self.settings = load_ranker(self.path)
            self.kind = str(self.settings["kind"])
            self.ranker.to(device)
        elif (self.path / HEADS_FILE).is_file():
            self.model, self.processor = load_reward_model(self.path, dtype=dtype)
            self.model.to(device)
            self.kind = "classifier"
        else:
            raise InputError(
                "not a reward model or a baseline ranker",
                file=self.path,
                expected=f"{HEADS_FILE} (caig reward-train) or {SETTINGS_FILE} (caig baseline-train)",
            )

    def p_left(
        self,
        left_images: Sequence[str],
        right_images: Sequence[str],
        attributes: Sequence[Mapping[str, Any]],
        questions: Sequence[str],
        *,
        caption: bool,
        info: bool,
    ) -> np.ndarray:
        """Probability that each left ad gets more clicks than its right ad (float64)."""
        if self.kind != "classifier":
            titles = [str(a.get("title", "")) for a in attributes]
            return score_ranker_pairs(
                self.ranker, left_images, right_images, titles, batch_size=self.batch_size, settings=self.settings
            )
        prompts = [
            reward_prompt(question, attrs, caption=caption, info=info)
            for question, attrs in zip(questions, attributes, strict=True)
        ]
        return score_pairs(
            self.model, self.processor, left_images, right_images, prompts,
            pair_size=self.pair_size, batch_size=self.batch_size,
        )
