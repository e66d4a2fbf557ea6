"""Int8 decoding on the CPU: the decoder's matrix products in 8-bit integers (`python -m seq2seq.translate --int8`).

The products are `Int8Linear` layers (seq2seq/kernels/int8.py, where the kernels, their speed and their choice
are described). Quantized: the unidirectional LSTM layers' step product [x; h] (W_ih | W_hh)^T + b, the attention's
key projection (once per sentence) and Bahdanau's query projection, the combination layer and the output layer
(with its shortlist). The encoder, the attention over the memory and the nonlinearities stay as they are (bf16
autocast). Only for inference: the quantized modules have no gradients.
"""

from __future__ import annotations

from torch import nn

from seq2seq.kernels.int8 import KERNELS, Int8Linear, available, default_kernel, quantize_rows

__all__ = ["KERNELS", "Int8Linear", "available", "default_kernel", "quantize_decoder", "quantize_rows"]


def quantize_decoder(model: nn.Module, kernel: str | None = None) -> nn.Module:
    """A translation model (Seq2Seq) for int8 decoding, in place; returns it. Call on the float32 model (before a
    cast to bf16), in eval mode: it is for inference only. `kernel`: Int8Linear's."""
    if reason := available():
        raise RuntimeError(f"int8 decoding is not available: {reason}")
    if model.training:
        raise ValueError("quantize_decoder is for inference: call model.eval() first")
    for recurrent in (model.decoder, model.upper):
        if recurrent is not None and recurrent.cell == "lstm" and recurrent.directions == 1:
            recurrent.quantize_steps(kernel)
    attention = model.attention
    attention.key_proj = Int8Linear.from_linear(attention.key_proj, kernel)  # once per sentence
    if attention.kind == "bahdanau":
        attention.query_proj = Int8Linear.from_linear(attention.query_proj, kernel)
    model.combine = Int8Linear.from_linear(model.combine, kernel)
    model.generator = Int8Linear.from_linear(model.generator, kernel)
    return model
