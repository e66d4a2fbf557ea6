"""The shared recurrent core: a stack of LSTM (default), GRU, plain RNN or peephole-LSTM layers.

Translation, language modelling and regression all run on `Recurrent`. LSTM, GRU and RNN layers are torch's fused
kernels (oneDNN on CPU, cuDNN on GPU), which run in bf16 under autocast; the peephole LSTM (Gers & Schmidhuber 2000),
which no fused kernel offers, is a readable loop over time.

State is a list with one entry per layer: `(h, c)` for LSTM and peephole layers, `(h,)` for GRU and RNN layers,
each tensor shaped (D, B, H) where D is 2 for a bidirectional layer. Layers may differ in size (the S&P 500 lab
stacks 50 and then 100 units).

The core imports only torch and seq2seq/kernels, where its fast paths live (the one-step LSTM cell, packing and
reversal within lengths, dropout), each beside its reference; it knows no recipe, tokenizer or batch type.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from seq2seq.kernels.dropout import dropout
from seq2seq.kernels.int8 import Int8Linear
from seq2seq.kernels.lstm import fused_step_applies, lstm_cell_
from seq2seq.kernels.padding import (
    batch_first_masked,
    pack,
    padded_run_applies,
    reverse_padded,
    to_device,
    unpack,
)

__all__ = ["CELLS", "Dropout", "PeepholeLSTM", "Recurrent", "State", "detach_state", "dropout", "pack",
           "reverse_padded", "select_state", "unpack"]

CELLS = ("lstm", "gru", "rnn", "peephole")
State = list[tuple[Tensor, ...]]


def select_state(state: State, index: Tensor) -> State:
    """Reorder/select batch entries (dim 1) of every tensor in a state, e.g. for beam search."""
    return [tuple(t.index_select(1, index) for t in layer) for layer in state]


def detach_state(state: State) -> State:
    return [tuple(t.detach() for t in layer) for layer in state]


class PeepholeLSTM(nn.Module):
    """One LSTM layer whose gates also see the cell (Gers & Schmidhuber 2000):

    i = σ(W_i x + U_i h + p_i ⊙ c_{t-1} + b_i)      c_t = f ⊙ c_{t-1} + i ⊙ tanh(W_g x + U_g h + b_g)
    f = σ(W_f x + U_f h + p_f ⊙ c_{t-1} + b_f)      o   = σ(W_o x + U_o h + p_o ⊙ c_t + b_o),   h_t = o ⊙ tanh(c_t)
    """

    def __init__(self, input_size: int, hidden_size: int, bidirectional: bool = False) -> None:
        super().__init__()
        self.hidden_size, self.directions = hidden_size, 2 if bidirectional else 1
        D, H = self.directions, hidden_size
        self.weight_ih = nn.Parameter(torch.empty(D, 4 * H, input_size))
        self.weight_hh = nn.Parameter(torch.empty(D, 4 * H, H))
        self.bias = nn.Parameter(torch.zeros(D, 4 * H))
        self.peephole = nn.Parameter(torch.zeros(D, 3, H))  # p_i, p_f, p_o
        bound = 1 / math.sqrt(H)
        nn.init.uniform_(self.weight_ih, -bound, bound)
        nn.init.uniform_(self.weight_hh, -bound, bound)

    def forward(
        self, x: Tensor, state: tuple[Tensor, Tensor] | None = None, lengths: Tensor | None = None
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        B, T, _ = x.shape
        H = self.hidden_size
        if state is None:
            zeros = x.new_zeros(self.directions, B, H)
            state = (zeros, zeros)
        lengths = lengths if lengths is not None else torch.full((B,), T, dtype=torch.long)
        mask = to_device(torch.arange(T).unsqueeze(0) < lengths.cpu().unsqueeze(1), x.device).to(x.dtype)  # (B, T)
        outputs, finals_h, finals_c = [], [], []
        for d in range(self.directions):
            seq = x if d == 0 else reverse_padded(x, lengths)
            gates_x = F.linear(seq, self.weight_ih[d], self.bias[d])  # (B, T, 4H), all steps at once
            h, c = state[0][d], state[1][d]
            p_i, p_f, p_o = self.peephole[d]
            out = []
            for t in range(T):
                gi, gf, gg, go = (gates_x[:, t] + h @ self.weight_hh[d].T).chunk(4, dim=-1)
                c_new = torch.sigmoid(gf + p_f * c) * c + torch.sigmoid(gi + p_i * c) * torch.tanh(gg)
                h_new = torch.sigmoid(go + p_o * c_new) * torch.tanh(c_new)
                m = mask[:, t : t + 1]  # padding steps keep the state and output zeros
                h, c = m * h_new + (1 - m) * h, m * c_new + (1 - m) * c
                out.append(m * h_new)
            out = torch.stack(out, dim=1)
            outputs.append(out if d == 0 else reverse_padded(out, lengths))
            finals_h.append(h)
            finals_c.append(c)
        return torch.cat(outputs, dim=-1), (torch.stack(finals_h), torch.stack(finals_c))


class Recurrent(nn.Module):
    """Stacked recurrent layers, batch first: (B, T, input_size) -> (B, T, D * hidden_sizes[-1]).

    With `lengths`, fused layers run on packed sequences, so padding never enters the state and a bidirectional
    layer's backward pass starts at each sentence's real end.
    """

    def __init__(
        self,
        input_size: int,
        hidden_sizes: Sequence[int],
        cell: str = "lstm",
        bidirectional: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"unknown cell {cell!r}; choose one of {', '.join(CELLS)}")
        self.cell, self.dropout = cell, dropout
        self.directions = 2 if bidirectional else 1
        self.hidden_sizes = list(hidden_sizes)
        self.layers = nn.ModuleList()
        size = input_size
        for hidden in self.hidden_sizes:
            if cell == "peephole":
                layer = PeepholeLSTM(size, hidden, bidirectional)
            else:
                fused = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell]
                layer = fused(size, hidden, batch_first=True, bidirectional=bidirectional)
            self.layers.append(layer)
            size = hidden * self.directions
        self.output_size = size
        # Decoding's step products (`_lstm_step`): the joined float weights of each layer, rebuilt when a weight
        # changes, or int8 products once `quantize_steps` made them (inference only). Owned here, not by the layers.
        self._joined: dict[int, tuple] = {}
        self.step_weights: nn.ModuleList | None = None
        self.reset_parameters()

    def quantize_steps(self, kernel: str | None = None) -> None:
        """Int8 step products for decoding, one `Int8Linear` per unidirectional LSTM layer over [x; h] with the bias
        b_ih + b_hh (seq2seq/kernels/int8.py). For inference: the products have no gradients."""
        if self.cell != "lstm" or self.directions != 1:
            raise ValueError("int8 step products are for unidirectional LSTM layers")
        layers = []
        for layer in self.layers:
            weight = torch.cat([layer.weight_ih_l0, layer.weight_hh_l0], dim=1).float()
            layers.append(Int8Linear(weight, layer.bias_ih_l0.float() + layer.bias_hh_l0.float(), kernel))
        self.step_weights = nn.ModuleList(layers)

    def reset_parameters(self) -> None:
        """Orthogonal recurrent weights (per gate block), forget-gate bias 1 for LSTM layers."""
        for layer in self.layers:
            for name, p in layer.named_parameters():
                if "weight_hh" in name:
                    for block in p.data.view(-1, p.shape[-1]).split(p.shape[-1]):
                        nn.init.orthogonal_(block)
                elif "bias" in name and isinstance(layer, nn.LSTM):
                    H = p.shape[0] // 4
                    p.data.zero_()
                    if "bias_ih" in name:
                        p.data[H : 2 * H] = 1.0  # gate order i, f, g, o: bias_ih + bias_hh = 1 for f
                elif "bias" in name and isinstance(layer, PeepholeLSTM):
                    H = p.shape[-1] // 4
                    p.data.zero_()
                    p.data[:, H : 2 * H] = 1.0

    def forward(
        self, x: Tensor, state: State | None = None, lengths: Tensor | None = None, final_state: bool = True
    ) -> tuple[Tensor, State | None]:
        """x (B, T, I), lengths (B,) on the CPU or None -> output (B, T, D*H_last), new state.

        With lengths and final_state=False (the translation encoder, which reads only the outputs), no state is
        returned (None), and where `padded_run_applies` (on the CPU, whose packed kernels are a per-step loop) fused
        layers run on the padded batch instead of packed sequences. The outputs are the same (padding zeroed).
        One step of unidirectional LSTM layers from a state runs as `_lstm_step` where `fused_step_applies`.
        """
        if lengths is not None and not final_state and self.cell != "peephole" and padded_run_applies(x):
            return self._padded(x, state, lengths), None
        if state is not None and self.cell == "lstm" and self.directions == 1 and fused_step_applies(x, self.training):
            return self._lstm_step(x, state)
        T = x.shape[1]
        packed = lengths is not None and self.cell != "peephole"
        h: Tensor | PackedSequence = pack(x, lengths) if packed else x
        new_state: State = []
        for i, layer in enumerate(self.layers):
            if i > 0 and self.dropout > 0:
                h = _dropout(h, self.dropout, self.training)
            layer_state = None if state is None else state[i]
            if self.cell == "peephole":
                h, s = layer(h, layer_state, lengths)
            elif self.cell == "lstm":
                h, s = layer(h, layer_state)
            else:
                h, s = layer(h, None if layer_state is None else layer_state[0])
                s = (s,)
            new_state.append(s if isinstance(s, tuple) else tuple(s))
        if packed:
            h = unpack(h, T)
        return h, new_state if final_state else None

    def _lstm_step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """One decoding step of unidirectional LSTM layers on the CPU, without autograd: per layer one matrix product
        [x; h] W^T + b and the gates in float32. The oneDNN kernel spends about 0.6 ms per call on setup, which is
        most of a step for a few rows (beam 5 on one sentence: 1.0 ms against 0.4 ms per layer, 1 thread), and still
        wins nothing at 320 rows. Same result as nn.LSTM up to rounding (tests/test_recurrent.py)."""
        h_in, new_state = x[:, 0], []
        dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
        for n, (h, c) in enumerate(state):
            joined = torch.cat([h_in.to(dtype), h[0].to(dtype)], dim=1)
            if self.step_weights is not None:  # int8 products (quantize_steps)
                gates = self.step_weights[n](joined)
            else:
                weight, bias = self._joined_weights(n, dtype)
                gates = torch.addmm(bias, joined, weight.t()).float()
            h_new, c_new, _ = lstm_cell_(gates, c[0])  # float32; the gates activated in place
            h_new = h_new.to(dtype)
            new_state.append((h_new.unsqueeze(0), c_new.to(dtype).unsqueeze(0)))
            h_in = h_new
        return h_in.unsqueeze(1), new_state

    def _joined_weights(self, n: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """(W_ih | W_hh) and b_ih + b_hh of one-direction LSTM layer n in `dtype`, kept while its weights are
        unchanged (an optimizer step or load_state_dict changes a weight's version counter or storage: the key)."""
        layer = self.layers[n]
        params = (layer.weight_ih_l0, layer.weight_hh_l0, layer.bias_ih_l0, layer.bias_hh_l0)
        key = (dtype, *((p.data_ptr(), p._version, p.dtype) for p in params))
        cached = self._joined.get(n)
        if cached is None or cached[0] != key:
            with torch.no_grad():
                weight = torch.cat([layer.weight_ih_l0, layer.weight_hh_l0], dim=1).to(dtype)
                bias = (layer.bias_ih_l0.float() + layer.bias_hh_l0.float()).to(dtype)
            cached = self._joined[n] = (key, weight, bias)
        return cached[1], cached[2]

    def _padded(self, x: Tensor, state: State | None, lengths: Tensor) -> Tensor:
        """Exact outputs without packing: padding sits after each sequence, so it cannot reach a real position of
        the forward direction; the backward direction runs forward over each sequence reversed within its length.
        The layers run time-major, the kernels' own layout (batch first, each call would transpose its input and its
        output): one transposition on the way in, and the way out is the multiplication that zeroes the padding."""
        B, T, _ = x.shape
        kernel = {"lstm": torch.lstm, "gru": torch.gru, "rnn": torch.rnn_tanh}[self.cell]
        h = x.transpose(0, 1).contiguous()  # (T, B, I)
        for i, layer in enumerate(self.layers):
            if i > 0 and self.dropout > 0:
                h = dropout(h, self.dropout, self.training)
            outputs = []
            for d in range(self.directions):
                suffix = "_reverse" if d else ""
                params = [getattr(layer, f"{name}_l0{suffix}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
                if state is None:
                    hx = [h.new_zeros(1, B, layer.hidden_size)] * (2 if self.cell == "lstm" else 1)
                else:
                    hx = [t[d : d + 1] for t in state[i]]
                seq = h if d == 0 else reverse_padded(h, lengths, time_major=True)
                out = kernel(seq, hx if self.cell == "lstm" else hx[0], params, True, 1, 0.0, self.training, False, False)[0]
                outputs.append(out if d == 0 else reverse_padded(out, lengths, time_major=True))
            h = torch.cat(outputs, dim=-1) if self.directions == 2 else outputs[0]  # (T, B, D * H)
        real = torch.arange(T, device=x.device).unsqueeze(1) < to_device(lengths, x.device).unsqueeze(0)  # (T, B)
        return batch_first_masked(h, real.unsqueeze(-1).to(h.dtype))


class Dropout(nn.Module):
    """nn.Dropout through `dropout` (seq2seq/kernels/dropout.py)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def _dropout(h: Tensor | PackedSequence, p: float, training: bool) -> Tensor | PackedSequence:
    if isinstance(h, PackedSequence):
        return h._replace(data=dropout(h.data, p, training))
    return dropout(h, p, training)
