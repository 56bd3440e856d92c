"""The two preference objectives of CAIG's stage 3 as pure functions of sequence log-probabilities.

DPO compares two answers under one input; PCPO (product-centric preference optimisation) compares ONE answer,
the RM's winner y+, under the true product and under a mismatched product (masked image or another product's
text). Both are logistic losses on a difference of policy-vs-reference log-ratios:

    L_DPO  = -log sigma(beta     * [(pi(y+|x)  - ref(y+|x))  - (pi(y-|x)  - ref(y-|x))])
    L_PCPO = -log sigma(beta_pc  * [(pi(y+|x)  - ref(y+|x))  - (pi(y+|x') - ref(y+|x'))])

with log-probabilities summed over the answer tokens. Both return the per-sample loss (no reduction).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def logistic_preference_loss(
    policy_preferred: torch.Tensor,
    policy_other: torch.Tensor,
    ref_preferred: torch.Tensor,
    ref_other: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """-log sigma(beta * [(policy_preferred - ref_preferred) - (policy_other - ref_other)]) per sample."""
    if beta <= 0:
        raise ValueError(f"beta must be positive, got {beta}")
    margin = (policy_preferred - ref_preferred) - (policy_other - ref_other)
    return -F.logsigmoid(beta * margin)


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """Per-sample DPO loss on log pi(y+|x), log pi(y-|x) and the reference's log-probabilities."""
    return logistic_preference_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)


def pcpo_loss(
    policy_true: torch.Tensor,
    policy_mismatch: torch.Tensor,
    ref_true: torch.Tensor,
    ref_mismatch: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """Per-sample PCPO loss on log pi(y+|true product), log pi(y+|mismatched product) and the reference's."""
    return logistic_preference_loss(policy_true, policy_mismatch, ref_true, ref_mismatch, beta)
