"""Attention over encoder states, for one decoder step or for all steps at once.

Scores (q: decoder state, k: encoder state):
    bahdanau  v^T tanh(W_q q + W_k k)        (additive; Bahdanau et al. 2015)
    luong     q^T W k                        ("general"; Luong et al. 2015)
The key projections do not depend on the query, so `project_keys` runs once per sentence, not once per step.
Bahdanau's energies tanh(W_q q + W_k k) run in float32 under bf16 autocast too: on the CPU a bf16 tanh over
270 x 15 x 512 values takes 1.6 ms against 0.35 ms in float32 (2 threads, Intel Sapphire Rapids).

Where float32 tanh is slow (`activation.cpu_tanh`), `energies` computes them as sigmoids, tanh(x) = 2 sigmoid(2x) -
1, and folds the affine part into v: v . tanh(x) = 2v . sigmoid(2x) - sum(v), and a constant per row changes no
softmax.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from seq2seq.kernels.activation import via_sigmoid

KINDS = ("bahdanau", "luong")


def energies(q: Tensor, keys: Tensor, v: Tensor) -> tuple[Tensor, Tensor, str]:
    """Bahdanau's energies of the float32 query projections q and keys (broadcast against each other), v (A,)
    -> (e, w, how): e . w equals v . tanh(q + keys) up to a constant per row. how "tanh": e = tanh(q + keys), w = v;
    "sigmoid": e = sigmoid(2 (q + keys)), w = 2v (the constant is -sum(v))."""
    how = "sigmoid" if via_sigmoid(q) else "tanh"
    if how == "sigmoid":
        return torch.add(q * 2, keys, alpha=2).sigmoid_(), v * 2, how
    return torch.add(q, keys).tanh_(), v, how


class Attention(nn.Module):
    def __init__(self, kind: str, query_size: int, key_size: int, attention_size: int) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"unknown attention {kind!r}; choose one of {', '.join(KINDS)}")
        self.kind = kind
        if kind == "bahdanau":
            self.key_proj = nn.Linear(key_size, attention_size, bias=False)
            self.query_proj = nn.Linear(query_size, attention_size, bias=True)
            self.v = nn.Linear(attention_size, 1, bias=False)
        else:
            self.key_proj = nn.Linear(key_size, query_size, bias=False)

    def project_keys(self, memory: Tensor) -> Tensor:
        """memory (B, S, K) -> keys (B, S, A) for bahdanau (float32: see forward), (B, S, Q) for luong."""
        keys = self.key_proj(memory)  # an int8 key_proj (models/int8.py) gives float32: luong's keys go back to bf16
        return keys.float() if self.kind == "bahdanau" else keys.to(memory.dtype)

    def forward(self, query: Tensor, keys: Tensor, memory: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """query (B, Tq, Q), keys from `project_keys`, memory (B, S, K), mask (B, S) True at real tokens
        -> context (B, Tq, K), weights (B, Tq, S) in float32."""
        if self.kind == "bahdanau":  # the energies in float32: the CPU's bf16 tanh is 5x slower than its float32 one
            q = self.query_proj(query).float().unsqueeze(2)  # (B, Tq, 1, A)
            energy, v, _ = energies(q, keys.float().unsqueeze(1), self.v.weight.float().squeeze(0))  # (B, Tq, S, A)
            scores = torch.mv(energy.flatten(0, -2), v).view(energy.shape[:-1])  # (B, Tq, S); mv stays float32
        else:
            scores = torch.bmm(query, keys.transpose(1, 2))  # (B, Tq, S)
        scores = scores.float().masked_fill(~mask.unsqueeze(1), float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        context = torch.bmm(weights.to(memory.dtype), memory)  # (B, Tq, K)
        return context, weights
