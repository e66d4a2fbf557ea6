"""The pointwise part of an LSTM step in float32: the gates (`activation.lstm_gates_`, tanh as sigmoids where that
is faster) and the cell.

Gate order i, f, g, o, as torch's nn.LSTM. The decoder's one-step path (`Recurrent._lstm_step`, where
`fused_step_applies`) and the unrolled training loop (`models/unrolled.py`) form the gate pre-activations with one
product [x; h] W^T + b and call `lstm_cell_`; `lstm_cell_reference` is the plain formula it must equal up to rounding.
"""

from __future__ import annotations

import torch
from torch import Tensor

from seq2seq.kernels.activation import lstm_gates_, lstm_gates_reference, tanh


def lstm_cell_(gates: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """gates (R, 4H) float32 pre-activations, activated in place; c (R, H) the previous cell
    -> h (R, H), c_new (R, H), tanh(c_new) (R, H), all float32 (a backward pass keeps the gates and tanh(c_new))."""
    i, f, g, o = lstm_gates_(gates).split(c.shape[1], dim=1)
    c_new = torch.addcmul(f * c, i, g)
    tanh_c = tanh(c_new)
    return o * tanh_c, c_new, tanh_c


def lstm_cell_reference(gates: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """`lstm_cell_`'s h and c_new as the formulas: c' = f c + i g, h = o tanh(c')."""
    i, f, g, o = lstm_gates_reference(gates).chunk(4, dim=1)
    c_new = f * c + i * g
    return o * torch.tanh(c_new), c_new


def fused_step_applies(x: Tensor, training: bool) -> bool:
    """Whether one step x (R, 1, I) of unidirectional LSTM layers runs as a product per layer and `lstm_cell_`
    (`Recurrent._lstm_step`) rather than torch's fused kernel: on the CPU, where oneDNN spends about 0.6 ms per call
    on setup, most of a decoding step for a few rows; in evaluation without autograd only, since that path keeps no
    graph. GPUs keep the fused kernel."""
    return x.device.type == "cpu" and x.shape[1] == 1 and not training and not torch.is_grad_enabled()
