"""Losses that return (sum, count), so that batches of any size add up exactly."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from seq2seq.kernels.nll import smoothed_nll
from seq2seq.tokenizer import PAD


def token_nll(
    logits: Tensor, targets: Tensor, label_smoothing: float = 0.0, count: int | None = None
) -> tuple[Tensor, int]:
    """logits (B, T, V), targets (B, T) with PAD ignored -> (summed loss in float32, number of real tokens).

    The loss is F.cross_entropy's (label-smoothed: (1 - ε)·NLL + ε·mean over the vocabulary of -log p), computed by
    `smoothed_nll` (seq2seq/kernels/nll.py: a blocked pass on the CPU, F.cross_entropy in float32 elsewhere).
    Pass `count` when it is known on the host: counting on a GPU makes the host wait for it."""
    flat, gold = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
    scale = 1.0 / count if count else 1.0  # the trainer backpropagates the loss divided by the count: scale for that
    loss = smoothed_nll(flat, gold, label_smoothing, scale, PAD)
    return loss, int((targets != PAD).sum()) if count is None else count


def squared_error(predictions: Tensor, targets: Tensor) -> tuple[Tensor, int]:
    """predictions, targets (B, ...) -> (summed squared error, number of values)."""
    return F.mse_loss(predictions.float(), targets.float(), reduction="sum"), targets.numel()
