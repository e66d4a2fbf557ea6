"""Losses that return (sum, count), so that batches of any size add up exactly."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from seq2seq.tokenizer import PAD


def token_nll(logits: Tensor, targets: Tensor, label_smoothing: float = 0.0) -> tuple[Tensor, int]:
    """logits (B, T, V), targets (B, T) with PAD ignored -> (summed loss in float32, number of real tokens)."""
    loss = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(),
        targets.reshape(-1),
        ignore_index=PAD,
        reduction="sum",
        label_smoothing=label_smoothing,
    )
    return loss, int((targets != PAD).sum())


def squared_error(predictions: Tensor, targets: Tensor) -> tuple[Tensor, int]:
    """predictions, targets (B, ...) -> (summed squared error, number of values)."""
    return F.mse_loss(predictions.float(), targets.float(), reduction="sum"), targets.numel()
