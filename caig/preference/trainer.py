"""``PCPOTrainer``: TRL's DPOTrainer with CAIG's product-centric term.

L = L_DPO + weight * L_PCPO. The DPO term is TRL's own (its beta, its metrics) on the [prompt+y+; prompt+y-]
rows of the batch. The PCPO term is computed here on the ``pcpo_*`` rows that ``PCPOCollator`` adds
([true input + y+; mismatched input + y+]) with its own beta, against the same frozen reference model as DPO.
It is computed with its own forward passes rather than through ``DPOTrainer._compute_loss``, which would
count the PCPO rows' tokens a second time and log them as DPO metrics; PCPO logs under ``pcpo/*``, and the
DPO term alone under ``loss/dpo``.
"""

from __future__ import annotations

from typing import Any

import torch
from trl import DPOTrainer

from caig.preference.data import PCPO_PREFIX
from caig.preference.loss import pcpo_loss
from caig.preference.mismatch import KINDS


class PCPOTrainer(DPOTrainer):
    """DPO + weight * PCPO; with ``pcpo_weight=0`` (or batches without ``pcpo_*`` rows) it is plain DPO."""

    def __init__(self, *args: Any, pcpo_weight: float = 1.0, pcpo_beta: float = 0.5, **kwargs: Any) -> None:
        if pcpo_weight < 0:
            raise ValueError(f"pcpo_weight must be >= 0, got {pcpo_weight}")
        if pcpo_beta <= 0:
            raise ValueError(f"pcpo_beta must be positive, got {pcpo_beta}")
        super().__init__(*args, **kwargs)
        if self.ref_model is None:
            raise ValueError("PCPOTrainer needs an explicit ref_model (the epoch-0 prompt model)")
        self.pcpo_weight = float(pcpo_weight)
        self.pcpo_beta = float(pcpo_beta)

    def _sequence_logps(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Sum of log-probabilities of the completion tokens of each row."""
        completion_mask = batch["completion_mask"]
        labels = batch["input_ids"].masked_fill(completion_mask == 0, -100)
        model_kwargs = {key: value for key, value in batch.items() if key != "completion_mask"}
        outputs = model(**model_kwargs, labels=labels, use_cache=False, fused_lm_head=True)
        shift_mask = completion_mask[:, 1:]
        per_token = outputs.log_probs[:, -shift_mask.shape[1] :]
        return (per_token * shift_mask).sum(dim=1)

    def _compute_loss(self, model: torch.nn.Module, inputs: dict[str, Any], return_outputs: bool) -> Any:
        dpo_inputs = {key: value for key, value in inputs.items() if not key.startswith(PCPO_PREFIX)}
        pcpo_inputs = {
            key.removeprefix(PCPO_PREFIX): value for key, value in inputs.items() if key.startswith(PCPO_PREFIX)
        }
        result = super()._compute_loss(model, dpo_inputs, return_outputs)
        dpo_value, outputs = result if return_outputs else (result, None)
        mode = "train" if self.model.training else "eval"
        dpo_logged = self.accelerator.gather_for_metrics(dpo_value.detach().reshape(1)).mean().item()
        self._metrics[mode]["loss/dpo"].append(dpo_logged)
        if not pcpo_inputs or self.pcpo_weight == 0:
            return result
        kinds = pcpo_inputs.pop("kind")
        policy = self._sequence_logps(model, pcpo_inputs)
        with torch.no_grad():
            reference = self._sequence_logps(self.ref_model, pcpo_inputs)
        rows = policy.shape[0] // 2
        per_row = pcpo_loss(policy[:rows], policy[rows:], reference[:rows], reference[rows:], self.pcpo_beta)
        pcpo_value = per_row.mean()
        self._log_pcpo(mode, per_row, policy, reference, kinds)
        loss = dpo_value + self.pcpo_weight * pcpo_value
        return (loss, outputs) if return_outputs else loss

    def _log_pcpo(
        self, mode: str, per_row: torch.Tensor, policy: torch.Tensor, reference: torch.Tensor, kinds: torch.Tensor
    ) -> None:
        rows = policy.shape[0] // 2
        margin = ((policy[:rows] - reference[:rows]) - (policy[rows:] - reference[rows:])).detach()
        gather = self.accelerator.gather_for_metrics
        self._metrics[mode]["loss/pcpo"].append(gather(per_row.detach()).mean().item())
        self._metrics[mode]["pcpo/margin"].append(gather(margin).mean().item())
        self._metrics[mode]["pcpo/accuracy"].append(gather((margin > 0).float()).mean().item())
        for index, kind in enumerate(KINDS):
            share = (kinds == index).float()
            self._metrics[mode][f"pcpo/share_{kind}"].append(gather(share).mean().item())
