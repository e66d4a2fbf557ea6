"""A `Seq2Seq` model as two graphs of explicit tensors, for torch.onnx.export: the encoder, and one decoder step.

    encoder:  src (B, S) int64, src_lengths (B,) int64
              -> memory (B, S, K), keys (B, S, A), mask (B, S) bool, h (L, B, Hd), c (L, B, Hd)[, feed (B, O)]
    step:     tokens (B,) int64, h, c[, feed], memory, keys, mask
              -> log_probs (B, V) float32, h, c[, feed], attention (B, S)

The model's own `encode` / `decode_step` carry a `DecoderState` object and take CPU fast paths chosen at run time
(the padded biLSTM, the joined LSTM step, Bahdanau energies as sigmoids where tanh is slow): fine for PyTorch, but a
traced graph would freeze whichever branch the example took. These wrappers do the same arithmetic with plain
modules (one `nn.LSTM` per layer and direction, attention written out), share the model's weights, and hold no state.
`feed` (input feeding) is an input and an output only for models that have it. LSTM cells only: the state is (h, c).
Decoder columns are what the model's generator outputs (with a target vocabulary, column j is piece target_ids[j]).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seq2seq.models.seq2seq import Seq2Seq
from seq2seq.tokenizer import BOS


def check_exportable(model: Seq2Seq) -> None:
    if model.cell != "lstm":
        raise ValueError(f"ONNX export handles LSTM models; this one has {model.cell!r} cells")


def _single(layer: nn.LSTM, suffix: str = "") -> nn.LSTM:
    """One direction of a (possibly bidirectional) one-layer nn.LSTM as its own module, sharing the weights."""
    single = nn.LSTM(layer.input_size, layer.hidden_size, batch_first=True)
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        setattr(single, f"{name}_l0", getattr(layer, f"{name}_l0{suffix}"))
    return single


def reverse_within_lengths(x: Tensor, lengths: Tensor) -> Tensor:
    """x (B, T, I): each row's first lengths[b] steps reversed, the padding after them left in place.
    lengths [3, 2], T 4: row 0 takes steps [2, 1, 0, 3], row 1 [1, 0, 2, 3]. Applying it twice gives x back."""
    T = x.shape[1]
    t = torch.arange(T, device=x.device).unsqueeze(0)  # (1, T)
    last = lengths.unsqueeze(1) - 1  # (B, 1)
    index = torch.where(t <= last, last - t, t)  # (B, T)
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


class EncoderGraph(nn.Module):
    def __init__(self, model: Seq2Seq) -> None:
        super().__init__()
        check_exportable(model)
        self.embed, self.bridge, self.attention = model.src_embed, model.bridge, model.attention
        self.two_way = model.encoder.directions == 2
        self.forward_layers = nn.ModuleList(_single(layer) for layer in model.encoder.layers)
        self.backward_layers = nn.ModuleList(_single(layer, "_reverse") for layer in model.encoder.layers) if (
            self.two_way) else None  # fmt: skip
        self.layers, self.hidden = model.decoder_layers, model.decoder_hidden
        self.feed_size = model.output_size if model.input_feeding else 0

    def forward(self, src: Tensor, src_lengths: Tensor) -> tuple[Tensor, ...]:
        B = src.shape[0]
        real = torch.arange(src.shape[1], device=src.device).unsqueeze(0) < src_lengths.unsqueeze(1)  # (B, S)
        h = self.embed(src)
        for n, layer in enumerate(self.forward_layers):
            out, _ = layer(h)
            if self.backward_layers is not None:  # the backward direction starts at each sentence's real end
                back, _ = self.backward_layers[n](reverse_within_lengths(h, src_lengths))
                out = torch.cat([out, reverse_within_lengths(back, src_lengths)], dim=-1)
            h = out * real.unsqueeze(-1).to(out.dtype)  # padding zeroed, as the model's encoder does
        memory = h  # (B, S, K)
        if self.bridge is None:
            h0 = memory.new_zeros(B, self.hidden)
        else:  # forward direction at the last real token, backward direction at the first
            at_end = (src_lengths - 1).view(B, 1, 1).expand(B, 1, memory.shape[-1])
            last = memory.gather(1, at_end).squeeze(1)  # (B, K)
            if self.two_way:
                half = memory.shape[-1] // 2
                last = torch.cat([last[:, :half], memory[:, 0, half:]], dim=-1)
            h0 = torch.tanh(self.bridge(last))
        state = h0.unsqueeze(0).expand(self.layers, B, self.hidden).contiguous()  # (L, B, Hd)
        keys = self.attention.key_proj(memory)
        outputs = (memory, keys, real, state, state)
        return (*outputs, memory.new_zeros(B, self.feed_size)) if self.feed_size else outputs


class DecoderStepGraph(nn.Module):
    def __init__(self, model: Seq2Seq) -> None:
        super().__init__()
        check_exportable(model)
        self.embed, self.attention, self.combine = model.tgt_embed, model.attention, model.combine
        self.generator = model.generator
        self.bottom = nn.ModuleList(_single(layer) for layer in model.decoder.layers)
        self.upper = nn.ModuleList(_single(layer) for layer in model.upper.layers) if model.upper is not None else None
        self.input_feeding = model.input_feeding

    def _layers(self, layers: nn.ModuleList, x: Tensor, h: Tensor, c: Tensor, first: int):
        """x (B, 1, I) through `layers`, whose states are rows first.. of h and c (L, B, Hd)."""
        hs, cs = [], []
        for n, layer in enumerate(layers):
            x, (h_n, c_n) = layer(x, (h[first + n : first + n + 1], c[first + n : first + n + 1]))
            hs.append(h_n)
            cs.append(c_n)
        return x, hs, cs

    def _attend(self, query: Tensor, keys: Tensor, memory: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """query (B, 1, Hd) -> context (B, 1, K), weights (B, 1, S): `Attention.forward` written out."""
        if self.attention.kind == "bahdanau":
            q = self.attention.query_proj(query).unsqueeze(2)  # (B, 1, 1, A)
            energy = torch.tanh(q + keys.unsqueeze(1))  # (B, 1, S, A)
            scores = (energy * self.attention.v.weight.view(1, 1, 1, -1)).sum(-1)  # (B, 1, S)
        else:
            scores = torch.bmm(query, keys.transpose(1, 2))
        scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        return torch.bmm(weights, memory), weights

    def forward(self, tokens: Tensor, h: Tensor, c: Tensor, *rest: Tensor) -> tuple[Tensor, ...]:
        feed, (memory, keys, mask) = (rest[0], rest[1:]) if self.input_feeding else (None, rest)
        x = self.embed(tokens)  # (B, E)
        if feed is not None:
            x = torch.cat([x, feed], dim=-1)
        top, hs, cs = self._layers(self.bottom, x.unsqueeze(1), h, c, 0)  # (B, 1, Hd)
        context, weights = self._attend(top, keys, memory, mask)
        if self.upper is not None:  # context feeding: the upper layers read [h1_t; c_t]
            top, upper_h, upper_c = self._layers(self.upper, torch.cat([top, context], -1), h, c, len(self.bottom))
            hs, cs = hs + upper_h, cs + upper_c
        o = torch.tanh(self.combine(torch.cat([top, context], dim=-1))).squeeze(1)  # (B, O)
        log_probs = F.log_softmax(self.generator(o).float(), dim=-1)
        outputs = (log_probs, torch.cat(hs, 0), torch.cat(cs, 0))
        return (*outputs, o, weights.squeeze(1)) if feed is not None else (*outputs, weights.squeeze(1))


def input_names(model: Seq2Seq) -> tuple[list[str], list[str], list[str], list[str]]:
    """(encoder inputs, encoder outputs, step inputs, step outputs): the graphs' tensor names."""
    feed = ["feed"] if model.input_feeding else []
    return (["src", "src_lengths"], ["memory", "keys", "mask", "h", "c", *feed],
            ["tokens", "h", "c", *feed, "memory", "keys", "mask"], ["log_probs", "h_out", "c_out",
            *[f"{n}_out" for n in feed], "attention"])  # fmt: skip


OPSET = 17
ENCODER_FILE, STEP_FILE = "encoder.onnx", "decoder_step.onnx"


def export_onnx(model: Seq2Seq, folder: Path) -> dict:
    """Write ENCODER_FILE and STEP_FILE (float32, dynamic batch and source length) to `folder` -> the graphs'
    description for config.json. The TorchScript-based exporter (dynamo=False) traces these loop-free graphs
    as they are and needs no further package."""
    model = model.float().eval()
    enc_in, enc_out, step_in, step_out = input_names(model)
    src = torch.tensor([[5, 6, 7, 8, 9], [5, 6, 7, 0, 0]])  # any ids: only shapes are traced
    lengths = torch.tensor([5, 3])
    encoder, step = EncoderGraph(model).eval(), DecoderStepGraph(model).eval()
    batch, source = {0: "batch"}, {0: "batch", 1: "source"}
    axes = {"src": source, "src_lengths": batch, "memory": source, "keys": source, "mask": source,
            "h": {1: "batch"}, "c": {1: "batch"}, "feed": batch, "tokens": batch, "log_probs": batch,
            "h_out": {1: "batch"}, "c_out": {1: "batch"}, "feed_out": batch, "attention": source}  # fmt: skip
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on tracing and on its own deprecation
        states = encoder(src, lengths)
        torch.onnx.export(encoder, (src, lengths), str(folder / ENCODER_FILE), input_names=enc_in,
                          output_names=enc_out, dynamic_axes={n: axes[n] for n in enc_in + enc_out},
                          opset_version=OPSET, dynamo=False)  # fmt: skip
        memory, keys, mask, h, c, *feed = states
        step_args = (torch.full((2,), BOS), h, c, *feed, memory, keys, mask)
        torch.onnx.export(step, step_args, str(folder / STEP_FILE), input_names=step_in, output_names=step_out,
                          dynamic_axes={n: axes[n] for n in step_in + step_out}, opset_version=OPSET,
                          dynamo=False)  # fmt: skip
    return {"encoder": ENCODER_FILE, "decoder_step": STEP_FILE, "opset": OPSET, "encoder_inputs": enc_in,
            "encoder_outputs": enc_out, "step_inputs": step_in, "step_outputs": step_out}  # fmt: skip
