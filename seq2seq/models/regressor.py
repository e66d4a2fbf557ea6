"""Sequence -> value: stacked recurrent layers, a fully connected layer, a linear output (the S&P 500 lab)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from seq2seq.losses import squared_error
from seq2seq.models.recurrent import Dropout, Recurrent


class Regressor(nn.Module):
    """x (B, T, F) -> the next value of feature 0, (B,). The lab's network is hidden_sizes (50, 100)."""

    def __init__(
        self,
        input_size: int,
        hidden_sizes: Sequence[int],
        cell: str = "lstm",
        fc_size: int = 32,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.rnn = Recurrent(input_size, hidden_sizes, cell, bidirectional=False, dropout=dropout)
        self.head = nn.Sequential(
            Dropout(dropout), nn.Linear(self.rnn.output_size, fc_size), nn.ReLU(), nn.Linear(fc_size, 1)
        )

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.rnn(x)  # (B, T, H_last)
        return self.head(out[:, -1]).squeeze(-1)  # the last step's output -> (B,)

    def loss(self, batch) -> tuple[Tensor, int]:
        """batch.x (B, T, F), batch.y (B,) -> (summed squared error, B)."""
        return squared_error(self(batch.x), batch.y)

    def rollout(self, x: Tensor, horizon: int, relative: bool = False) -> Tensor:
        """Forecast `horizon` steps by feeding predictions back in: x (B, T, F) -> (B, horizon), in x's space.

        Each step predicts feature 0 from the last T steps (true ones first, then predictions), appends the
        prediction and drops the oldest step. Features 1.. are not predicted, so they are carried forward.

        With `relative`, x holds windows normalised to their first step (w_i = p_i / p_0 - 1). A shifted window
        starts at a later step, so before each prediction it is re-normalised to its own first step, as in
        training, and the prediction is mapped back to x's base:

            seen_i = (1 + w_i) / (1 + w_0) - 1   (= p_i / p_first - 1)        y = (1 + y_seen) (1 + w_0) - 1
        """
        window, out = x, []
        for _ in range(horizon):
            first = 1.0 + window[:, :1]  # (B, 1, F)
            seen = (1.0 + window) / first - 1.0 if relative else window
            y = self(seen)  # (B,)
            if relative:
                y = (1.0 + y) * first[:, 0, 0] - 1.0
            step = torch.cat([y[:, None, None], window[:, -1:, 1:]], dim=-1)  # (B, 1, F)
            window = torch.cat([window[:, 1:], step], dim=1)
            out.append(y)
        return torch.stack(out, dim=1)
