"""The reward model (stage 2): which of two ad images of one product gets more clicks."""

from __future__ import annotations

from caig.reward.model import (
    RewardModel,
    RewardOutput,
    concat_pair,
    encode_rm_inputs,
    load_reward_model,
    parse_generative_answer,
    reward_prompt,
    save_reward_model,
)
from caig.reward.scoring import score_pairs, score_pairs_generative

__all__ = [
    "RewardModel",
    "RewardOutput",
    "concat_pair",
    "encode_rm_inputs",
    "load_reward_model",
    "parse_generative_answer",
    "reward_prompt",
    "save_reward_model",
    "score_pairs",
    "score_pairs_generative",
]
