"""Teacher forcing with input feeding, fast: a decoder loop over time whose parameter gradients are formed once.

With input feeding the decoder's next input depends on the attentional output of the step before, so training
loops over the target one step at a time. Written with a fused-kernel call and autograd's modules per step, every
step's backward forms its own gradient for each weight (the LSTM layers, the attention keys and memory, the
combination layer) and adds it to the sum: products of a few hundred rows, and a full-size addition each. Here the
steps keep what a weight's gradient needs (their inputs and output gradients, written into (T, B, .) buffers as they
run: `_Kept`), and the step whose backward runs last, the first (every later step depends on its state), forms each
weight's gradient for all steps in one product:

    dW = sum_t dY_t^T X_t = [dY_0; ...; dY_T]^T [X_0; ...; X_T]

Also: the inputs known in advance (the target embeddings) are projected for all steps at once, an LSTM step is
one product [x_t; h_{t-1}] W^T and its gates with a hand-written backward (float32), Luong attention's backward is
one (R x S) product per step, and Bahdanau attention's (R x S x A) work runs in float32 (the CPU's bf16 tanh is
slow). Same results as the plain loop up to rounding (tests/test_seq2seq.py); the training speed it gives is in
docs/speed.md.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from seq2seq.kernels.lstm import lstm_cell_
from seq2seq.models.attention import energies
from seq2seq.models.recurrent import Recurrent, State, dropout


class _Kept:
    """What the steps of a loop keep for one weight's gradient: each step's input X_t (B, X), written into a
    (T, B, X) buffer as the step runs (its parts joined there, with no separate concatenation), and its output
    gradient dY_t (B, Y), written into a (T, B, Y) buffer by its backward. dW = dY^T X is then one product."""

    def __init__(self, steps: int) -> None:
        self.steps, self.inputs, self.grads, self.written = steps, None, None, [False] * steps

    def input(self, t: int, parts: tuple[Tensor, ...]) -> Tensor:
        """Step t's input, the parts (B, X_k) joined: -> X_t (B, X)."""
        if self.inputs is None:
            B, X = parts[0].shape[0], sum(part.shape[1] for part in parts)
            self.inputs = parts[0].new_empty(self.steps, B, X)
        return torch.cat(parts, dim=1, out=self.inputs[t])

    def grad(self, t: int, d_y: Tensor) -> Tensor:
        """Keeps step t's output gradient (B, Y), in the inputs' dtype: -> the kept copy."""
        if self.grads is None:
            self.grads = self.inputs.new_empty(self.steps, *d_y.shape)
        self.written[t] = True
        return self.grads[t].copy_(d_y)

    def weight_grad(self) -> Tensor:
        """sum_t dY_t^T X_t over all steps (0 for a step whose backward did not run)."""
        for t in range(self.steps):
            if not self.written[t]:
                self.grads[t].zero_()
        return torch.mm(self.grads.flatten(0, 1).t(), self.inputs.flatten(0, 1))


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
        self.kept = [_Kept(x.shape[1]) for _ in layers]
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
            h_in, c = _LSTMStep.apply(pre, h_in.to(self.dtype), h, c, self.weights[i], self.kept[i], t)
            new.append((h_in, c))
        return h_in, new


class _LSTMStep(torch.autograd.Function):
    """gates = pre + [x; h] W^T -> (h, c) of one LSTM step: gate order i, f, g, o; the gates in float32. `pre` is
    the step's precomputed input projection (R, 4H) or a bias (4H,), in x's dtype. W's gradient is formed by step 0."""

    @staticmethod
    def forward(ctx, pre: Tensor, x: Tensor, h: Tensor, c: Tensor, weight: Tensor, kept: _Kept, t: int):
        inp = kept.input(t, (x, h))
        gates = torch.addmm(pre, inp, weight.t()).float()
        h_new, c_new, tanh_c = lstm_cell_(gates, c)  # the gates activated in place
        ctx.save_for_backward(c, gates, tanh_c, weight)
        ctx.kept, ctx.t, ctx.pre_dims, ctx.x_size = kept, t, pre.dim(), x.shape[1]
        return h_new.to(inp.dtype), c_new

    @staticmethod
    def backward(ctx, dh: Tensor, dc: Tensor):
        c, gates, tanh_c, weight = ctx.saved_tensors
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
        derivative = torch.addcmul(gates, gates, gates, value=-1)  # sigmoid: s (1 - s)
        torch.addcmul(torch.ones((), device=g.device), g, g, value=-1, out=derivative[:, 2 * H : 3 * H])  # tanh: 1 - g^2
        d_low = ctx.kept.grad(ctx.t, d_gates.mul_(derivative))
        d_weight = ctx.kept.weight_grad() if ctx.t == 0 else None
        d_pre = d_gates.sum(0).to(d_low.dtype) if ctx.pre_dims == 1 else d_low
        d_x, d_h = torch.mm(d_low, weight).split([ctx.x_size, H], dim=1)
        return d_pre, d_x, d_h, dc * f, d_weight, None, None


class _LinearStep(torch.autograd.Function):
    """[x_1; ...; x_k] W^T for one step of a loop; W's gradient is formed by step 0."""

    @staticmethod
    def forward(ctx, kept: _Kept, t: int, weight: Tensor, *parts: Tensor):
        ctx.save_for_backward(weight)
        ctx.kept, ctx.t, ctx.sizes = kept, t, [part.shape[1] for part in parts]
        return torch.mm(kept.input(t, parts), weight.t())

    @staticmethod
    def backward(ctx, dy: Tensor):
        (weight,) = ctx.saved_tensors
        dy = ctx.kept.grad(ctx.t, dy)
        d_weight = ctx.kept.weight_grad() if ctx.t == 0 else None
        return None, None, d_weight, *torch.mm(dy, weight).split(ctx.sizes, dim=1)


class LinearSteps:
    """A bias-free nn.Linear applied once per step of the caller's loop of `steps` steps, in `dtype`; its input
    may come in parts, joined in the order given."""

    def __init__(self, weight: Tensor, steps: int, dtype: torch.dtype) -> None:
        self.weight, self.dtype, self.kept = weight.to(dtype), dtype, _Kept(steps)

    def __call__(self, t: int, *parts: Tensor) -> Tensor:
        return _LinearStep.apply(self.kept, t, self.weight, *(part.to(self.dtype) for part in parts))


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
    5x slower than its float32 one (1.6 ms against 0.35 ms for 270 x 15 x 512, 2 threads), and as sigmoids where
    float32 tanh is slow (`attention.energies`). The gradients of keys, v and memory are summed over the steps in
    `acc` and returned by the step marked `first`."""

    @staticmethod
    def forward(ctx, q: Tensor, keys: Tensor, v: Tensor, memory: Tensor, mask: Tensor, acc: dict, first: bool):
        e, w, how = energies(q.float().unsqueeze(1), keys, v)  # (R, S, A): tanh(q + keys) or sigmoid(2 (q + keys))
        scores = torch.mv(e.flatten(0, 1), w).view(e.shape[:2])  # mv stays float32 under autocast (matmul would not)
        weights = torch.softmax(scores.masked_fill_(~mask, float("-inf")), dim=-1)  # (R, S) float32
        ctx.save_for_backward(e, v, memory, weights)
        ctx.acc, ctx.first, ctx.q_dtype, ctx.sigmoid = acc, first, q.dtype, how == "sigmoid"
        return _context(weights, memory)

    @staticmethod
    def backward(ctx, d_context: Tensor):
        e, v, memory, w = ctx.saved_tensors
        acc = ctx.acc
        d_context, d_scores = _context_backward(w, memory, d_context)
        d_v = torch.mm(d_scores.reshape(1, -1), e.reshape(-1, e.shape[-1])).squeeze(0)
        if ctx.sigmoid:  # e = sigmoid(2x): tanh(x) = 2e - 1, tanh'(x) = 4 e (1 - e)
            d_v = d_v.mul_(2)  # tanh's d_v is this minus sum(dS), which is 0: dS is a softmax's gradient
            slope, v = torch.addcmul(e, e, e, value=-1), v * 4  # (R, S, A); the 4 joins v
        else:
            slope = torch.addcmul(torch.ones((), device=e.device), e, e, value=-1)  # tanh' = 1 - e^2, (R, S, A)
        # dL/d(keys + q) = slope * v * dS: its sum over S is one (1 x S) product per row, and v multiplies the
        # keys' gradient once, after the sum over steps (2 passes over (R, S, A) per step instead of 4)
        d_q = (torch.bmm(d_scores.unsqueeze(1), slope).squeeze(1) * v).to(ctx.q_dtype)
        if "keys" in acc:
            acc["keys"].addcmul_(slope, d_scores.unsqueeze(2))
            acc["v"].add_(d_v)
        else:
            acc["keys"], acc["v"] = slope.mul_(d_scores.unsqueeze(2)), d_v
        acc.setdefault("memory", []).append((w.to(memory.dtype), d_context))
        if not ctx.first:
            return d_q, None, None, None, None, None, None
        return d_q, acc.pop("keys").mul_(v), acc.pop("v"), _summed_over_steps(acc["memory"]), None, None, None


class BahdanauSteps:
    """Bahdanau attention (`Attention`'s query_proj and v) over one memory, once per step of the caller's loop."""

    def __init__(self, attention, keys: Tensor, memory: Tensor, mask: Tensor, steps: int, dtype: torch.dtype) -> None:
        self.query = LinearSteps(attention.query_proj.weight, steps, dtype)
        self.bias = attention.query_proj.bias.float()
        self.keys, self.v = keys.float(), attention.v.weight.float().squeeze(0)  # keys: float32 already
        self.memory, self.mask, self.acc = memory.to(dtype), mask, {}

    def __call__(self, t: int, query: Tensor) -> Tensor:
        q = self.query(t, query).float() + self.bias
        return _BahdanauStep.apply(q, self.keys, self.v, self.memory, self.mask, self.acc, t == 0)
