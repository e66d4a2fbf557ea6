"""Teacher forcing with input feeding, fast: a decoder loop over time whose parameter gradients are formed once.

With input feeding the decoder's next input depends on the attentional output of the step before, so training
loops over the target one step at a time. Written with a fused-kernel call and autograd's modules per step, every
step's backward forms its own gradient for each weight (the LSTM layers, the attention keys and memory, the
combination layer) and adds it to the sum: products of a few hundred rows, and a full-size addition each. Here the
steps keep what a weight's gradient needs (their inputs and output gradients), and the step whose backward runs
last, the first (every later step depends on its state), forms each weight's gradient for all steps in one product:

    dW = sum_t dY_t^T X_t = [dY_0; ...; dY_T]^T [X_0; ...; X_T]

Also: the inputs known in advance (the target embeddings) are projected for all steps at once, an LSTM step is
one product [x_t; h_{t-1}] W^T and its gates with a hand-written backward (float32), Luong attention's backward is
one (R x S) product per step, and Bahdanau attention's (R x S x A) work runs in float32 (the CPU's bf16 tanh is
slow). Same results as the plain loop up to rounding (tests/test_seq2seq.py). LSTM-medium, 2 CPU threads, bf16:
input feeding with Luong attention 4,516 -> 7,354 target tokens/s, with Bahdanau 5,518 -> 5,969 (README, Speed).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from seq2seq.models.recurrent import Recurrent, State, dropout


def _flush(stash: list) -> Tensor:
    """sum_t dY_t^T X_t over the (X_t, dY_t) pairs the steps kept, as one product; empties the stash."""
    inputs, grads = zip(*stash)
    stash.clear()
    return torch.mm(torch.cat(grads).t(), torch.cat(inputs))


class UnrolledLSTM:
    """The LSTM layers of a `Recurrent`, stepped by the caller's loop. x (B, T, X) is the bottom layer's input
    known in advance; at step t the bottom layer reads [x_t; extra_t]. State entries are (h (B, H) in the compute
    dtype, c (B, H) in float32)."""

    def __init__(self, rnn: Recurrent, x: Tensor, dtype: torch.dtype) -> None:
        if rnn.cell != "lstm" or rnn.directions != 1:
            raise ValueError("UnrolledLSTM runs unidirectional LSTM layers")
        layers, X = rnn.layers, x.shape[-1]
        bottom = layers[0]
        bias = bottom.bias_ih_l0 + bottom.bias_hh_l0
        self.pre = F.linear(x.to(dtype), bottom.weight_ih_l0[:, :X].to(dtype), bias.to(dtype)).unbind(1)
        self.weights = [torch.cat([bottom.weight_ih_l0[:, X:], bottom.weight_hh_l0], dim=1).to(dtype)]
        self.weights += [torch.cat([layer.weight_ih_l0, layer.weight_hh_l0], dim=1).to(dtype) for layer in layers[1:]]
        self.biases = [None] + [(layer.bias_ih_l0 + layer.bias_hh_l0).to(dtype) for layer in layers[1:]]
        self.stashes: list[list] = [[] for _ in layers]
        self.dtype, self.p, self.training = dtype, rnn.dropout, rnn.training

    def initial(self, state: State) -> list[tuple[Tensor, Tensor]]:
        """A `Recurrent` state ((1, B, H) tensors) -> this loop's state."""
        return [(h[0].to(self.dtype), c[0].float()) for h, c in state]

    def step(self, t: int, extra: Tensor, state: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, list]:
        """extra (B, E) -> the top layer's h_t (B, H), the next state."""
        new, h_in = [], extra
        for i, (h, c) in enumerate(state):
            if i == 0:
                pre = self.pre[t]
            else:
                pre, h_in = self.biases[i], dropout(h_in, self.p, self.training)
            inp = torch.cat([h_in.to(self.dtype), h], dim=1)
            h_in, c = _LSTMStep.apply(pre, inp, c, self.weights[i], self.stashes[i], t == 0)
            new.append((h_in, c))
        return h_in, new


class _LSTMStep(torch.autograd.Function):
    """gates = pre + inp W^T -> (h, c) of one LSTM step: gate order i, f, g, o; the gates in float32. `pre` is the
    step's precomputed input projection (R, 4H) or a bias (4H,), in inp's dtype."""

    @staticmethod
    def forward(ctx, pre: Tensor, inp: Tensor, c: Tensor, weight: Tensor, stash: list, first: bool):
        gates = torch.addmm(pre, inp, weight.t()).float()
        H = c.shape[1]
        gates[:, : 2 * H].sigmoid_()
        gates[:, 2 * H : 3 * H].tanh_()
        gates[:, 3 * H :].sigmoid_()
        i, f, g, o = gates.split(H, dim=1)
        c_new = torch.addcmul(f * c, i, g)
        tanh_c = torch.tanh(c_new)
        ctx.save_for_backward(inp, c, gates, tanh_c, weight)
        ctx.stash, ctx.first, ctx.pre_dims = stash, first, pre.dim()
        return (o * tanh_c).to(inp.dtype), c_new

    @staticmethod
    def backward(ctx, dh: Tensor, dc: Tensor):
        inp, c, gates, tanh_c, weight = ctx.saved_tensors
        H = c.shape[1]
        i, f, g, o = gates.split(H, dim=1)
        dh = dh.float()
        dc = torch.addcmul(dc, dh * o, 1 - tanh_c * tanh_c)  # through c_{t+1} and through h_t
        d_gates = torch.empty_like(gates)  # dL/d(activated gate), then times the activation's derivative
        d_i, d_f, d_g, d_o = d_gates.split(H, dim=1)
        torch.mul(dc, g, out=d_i)
        torch.mul(dc, c, out=d_f)
        torch.mul(dc, i, out=d_g)
        torch.mul(dh, tanh_c, out=d_o)
        derivative = gates - gates * gates  # sigmoid: s (1 - s)
        derivative[:, 2 * H : 3 * H].add_(1).sub_(g)  # tanh: 1 - g^2 = (g - g^2) + 1 - g
        d_low = d_gates.mul_(derivative).to(inp.dtype)
        ctx.stash.append((inp, d_low))
        d_weight = _flush(ctx.stash) if ctx.first else None
        d_pre = d_gates.sum(0).to(inp.dtype) if ctx.pre_dims == 1 else d_low
        return d_pre, torch.mm(d_low, weight), dc * f, d_weight, None, None


class _LinearStep(torch.autograd.Function):
    """x W^T for one step of a loop; dW deferred to the step marked `first`."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, stash: list, first: bool):
        ctx.save_for_backward(x, weight)
        ctx.stash, ctx.first = stash, first
        return torch.mm(x, weight.t())

    @staticmethod
    def backward(ctx, dy: Tensor):
        x, weight = ctx.saved_tensors
        ctx.stash.append((x, dy))
        return torch.mm(dy, weight), _flush(ctx.stash) if ctx.first else None, None, None


class LinearSteps:
    """A bias-free nn.Linear applied once per step of the caller's loop, in `dtype`."""

    def __init__(self, weight: Tensor, dtype: torch.dtype) -> None:
        self.weight, self.dtype, self.stash = weight.to(dtype), dtype, []

    def __call__(self, t: int, x: Tensor) -> Tensor:
        return _LinearStep.apply(x.to(self.dtype), self.weight, self.stash, t == 0)


def _context(weights: Tensor, memory: Tensor) -> Tensor:
    """Attention weights (R, S) float32, memory (R, S, K) -> context (R, K) in memory's dtype."""
    return torch.bmm(weights.to(memory.dtype).unsqueeze(1), memory).squeeze(1)


def _context_backward(weights: Tensor, memory: Tensor, d_context: Tensor) -> tuple[Tensor, Tensor]:
    """`_context` after a softmax, backward: -> d_context in memory's dtype, d_scores (R, S) float32 (0 at padding)."""
    d_context = d_context.to(memory.dtype)
    d_weights = torch.bmm(memory, d_context.unsqueeze(2)).squeeze(2).float()
    return d_context, weights * (d_weights - (weights * d_weights).sum(-1, keepdim=True))


def _summed_over_steps(pairs: list) -> Tensor:
    """Per row, sum_t a_t^T b_t over the (a_t (R, X), b_t (R, Y)) pairs the steps kept: (R, X, Y), one product."""
    a, b = (torch.stack(column, dim=1) for column in zip(*pairs))
    pairs.clear()
    return torch.bmm(a.transpose(1, 2), b)


class _LuongStep(torch.autograd.Function):
    """Luong ("general") attention for one step: query (R, Q), keys (R, S, Q), memory (R, S, K), mask (R, S)
    -> context (R, K). The gradients of keys and memory are deferred to the step marked `first`."""

    @staticmethod
    def forward(ctx, query: Tensor, keys: Tensor, memory: Tensor, mask: Tensor, acc: dict, first: bool):
        scores = torch.bmm(keys, query.unsqueeze(2)).squeeze(2).float().masked_fill_(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1)  # (R, S) float32
        ctx.save_for_backward(query, keys, memory, weights)
        ctx.acc, ctx.first = acc, first
        return _context(weights, memory)

    @staticmethod
    def backward(ctx, d_context: Tensor):
        query, keys, memory, w = ctx.saved_tensors
        d_context, d_scores = _context_backward(w, memory, d_context)
        d_scores = d_scores.to(keys.dtype)
        d_query = torch.bmm(d_scores.unsqueeze(1), keys).squeeze(1)
        ctx.acc.setdefault("memory", []).append((w.to(memory.dtype), d_context))  # d_memory = W^T dC
        ctx.acc.setdefault("keys", []).append((d_scores, query))  # d_keys = dS^T Q
        if not ctx.first:
            return d_query, None, None, None, None, None
        return d_query, _summed_over_steps(ctx.acc["keys"]), _summed_over_steps(ctx.acc["memory"]), None, None, None


class LuongSteps:
    """Luong attention over one memory, once per step of the caller's loop."""

    def __init__(self, keys: Tensor, memory: Tensor, mask: Tensor, dtype: torch.dtype) -> None:
        self.keys, self.memory, self.mask, self.dtype, self.acc = keys.to(dtype), memory.to(dtype), mask, dtype, {}

    def __call__(self, t: int, query: Tensor) -> Tensor:
        return _LuongStep.apply(query.to(self.dtype), self.keys, self.memory, self.mask, self.acc, t == 0)


class _BahdanauStep(torch.autograd.Function):
    """Bahdanau (additive) attention for one step: projected query q (R, A), keys (R, S, A) and v (A,) in float32,
    memory (R, S, K), mask (R, S) -> context (R, K). Its (R, S, A) work runs in float32: the CPU's bf16 tanh is
    5x slower than its float32 one (1.6 ms against 0.35 ms for 270 x 15 x 512, 2 threads). The gradients of keys,
    v and memory are summed over the steps in `acc` and returned by the step marked `first`."""

    @staticmethod
    def forward(ctx, q: Tensor, keys: Tensor, v: Tensor, memory: Tensor, mask: Tensor, acc: dict, first: bool):
        e = torch.add(keys, q.float().unsqueeze(1)).tanh_()  # (R, S, A)
        scores = torch.mv(e.flatten(0, 1), v).view(e.shape[:2])  # mv stays float32 under autocast (matmul would not)
        weights = torch.softmax(scores.masked_fill_(~mask, float("-inf")), dim=-1)  # (R, S) float32
        ctx.save_for_backward(e, v, memory, weights)
        ctx.acc, ctx.first, ctx.q_dtype = acc, first, q.dtype
        return _context(weights, memory)

    @staticmethod
    def backward(ctx, d_context: Tensor):
        e, v, memory, w = ctx.saved_tensors
        acc = ctx.acc
        d_context, d_scores = _context_backward(w, memory, d_context)
        d_v = torch.mm(d_scores.reshape(1, -1), e.reshape(-1, e.shape[-1])).squeeze(0)
        d_pre = torch.addcmul(torch.ones((), device=e.device), e, e, value=-1)  # tanh' = 1 - e^2
        d_pre.mul_(v).mul_(d_scores.unsqueeze(2))  # (R, S, A)
        d_q = d_pre.sum(1).to(ctx.q_dtype)
        for name, grad in (("keys", d_pre), ("v", d_v)):
            acc[name] = grad if name not in acc else acc[name].add_(grad)
        acc.setdefault("memory", []).append((w.to(memory.dtype), d_context))
        if not ctx.first:
            return d_q, None, None, None, None, None, None
        return d_q, acc.pop("keys"), acc.pop("v"), _summed_over_steps(acc["memory"]), None, None, None


class BahdanauSteps:
    """Bahdanau attention (`Attention`'s query_proj and v) over one memory, once per step of the caller's loop."""

    def __init__(self, attention, keys: Tensor, memory: Tensor, mask: Tensor, dtype: torch.dtype) -> None:
        self.query = LinearSteps(attention.query_proj.weight, dtype)
        self.bias = attention.query_proj.bias.float()
        self.keys, self.v = keys.float(), attention.v.weight.float().squeeze(0)  # keys: float32 already
        self.memory, self.mask, self.acc = memory.to(dtype), mask, {}

    def __call__(self, t: int, query: Tensor) -> Tensor:
        q = self.query(t, query).float() + self.bias
        return _BahdanauStep.apply(q, self.keys, self.v, self.memory, self.mask, self.acc, t == 0)
