"""Int8 decoding on the CPU: the decoder's matrix products in 8-bit integers (`python -m seq2seq.translate --int8`).

The products are `Int8Linear` layers (seq2seq/kernels/int8.py, where the kernels, their speed and their choice
are described). Quantized: the unidirectional LSTM layers' step product [x; h] (W_ih | W_hh)^T + b, the attention's
key projection (once per sentence) and Bahdanau's query projection, the combination layer and the output layer
(with its shortlist). The encoder, the attention over the memory and the nonlinearities stay as they are (bf16
autocast). Only for inference: the quantized modules have no gradients.
"""

from __future__ import annotations

import torch
from torch import nn

from seq2seq.kernels.int8 import KERNELS, Int8Linear, available, default_kernel, quantize_rows

__all__ = ["KERNELS", "Int8Linear", "available", "default_kernel", "quantize_decoder", "quantize_lstm_steps",
           "quantize_rows"]


def quantize_lstm_steps(recurrent: nn.Module, kernel: str | None = None) -> None:
    """Give a unidirectional LSTM `Recurrent` int8 step products (`Recurrent.step_weights`): one Int8Linear per
    layer over [x; h], with the bias b_ih + b_hh."""
    layers = []
    for layer in recurrent.layers:
        weight = torch.cat([layer.weight_ih_l0, layer.weight_hh_l0], dim=1).float()
        layers.append(Int8Linear(weight, layer.bias_ih_l0.float() + layer.bias_hh_l0.float(), kernel))
    recurrent.step_weights = nn.ModuleList(layers)


def quantize_decoder(model: nn.Module, kernel: str | None = None) -> nn.Module:
    """A translation model (Seq2Seq) for int8 decoding, in place; returns it. Call on the float32 model (before a
    cast to bf16), in eval mode: it is for inference only. `kernel`: Int8Linear's."""
    if reason := available():
        raise RuntimeError(f"int8 decoding is not available: {reason}")
    if model.training:
        raise ValueError("quantize_decoder is for inference: call model.eval() first")
    for recurrent in (model.decoder, model.upper):
        if recurrent is not None and recurrent.cell == "lstm" and recurrent.directions == 1:
            quantize_lstm_steps(recurrent, kernel)
    attention = model.attention
    attention.key_proj = Int8Linear.from_linear(attention.key_proj, kernel)  # once per sentence
    if attention.kind == "bahdanau":
        attention.query_proj = Int8Linear.from_linear(attention.query_proj, kernel)
    model.combine = Int8Linear.from_linear(model.combine, kernel)
    model.generator = Int8Linear.from_linear(model.generator, kernel)
    return model
