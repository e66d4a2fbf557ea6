"""tanh where torch's float32 tanh is slow.

torch's CPU build computes float32 tanh with MKL's vector math library and sigmoid with its own vector code. On an
AMD EPYC (Zen 4, torch 2.13, 2 threads) tanh ran at 0.7 billion values per second against 4 billion for sigmoid; on
an Intel Sapphire Rapids tanh is the fast one. Where sigmoid is much faster, tanh runs as 2 sigmoid(2x) - 1 (the
same function; rounding apart). `cpu_tanh` decides once per process by timing both; SEQ2SEQ_TANH=tanh|sigmoid sets
it. Users: Bahdanau attention's energies (`attention.energies`, which folds the affine part into v) and the LSTM
gates of the decoder's one-step path and of the unrolled training loop.
"""

from __future__ import annotations

import os
import time

import torch
from torch import Tensor

KINDS = ("tanh", "sigmoid")
_cpu_tanh: str | None = None  # decided on first use: cpu_tanh()


def cpu_tanh() -> str:
    """How float32 tanh runs on the CPU in this process: "tanh", or "sigmoid" where this CPU computes float32 sigmoid
    more than 1.5x faster than tanh (timed once, on 2^18 values: a few milliseconds) or SEQ2SEQ_TANH says so."""
    global _cpu_tanh
    if _cpu_tanh is None:
        chosen = os.environ.get("SEQ2SEQ_TANH", "")
        if chosen and chosen not in KINDS:
            raise ValueError(f"SEQ2SEQ_TANH must be one of {', '.join(KINDS)}, got {chosen!r}")
        _cpu_tanh = chosen or ("sigmoid" if _sigmoid_faster() else "tanh")
    return _cpu_tanh


def _sigmoid_faster() -> bool:
    """Whether float32 sigmoid runs more than 1.5x faster than tanh here (best of 5 runs each)."""
    x = torch.linspace(-4, 4, 1 << 18)
    out = torch.empty_like(x)

    def best(f) -> float:
        f(x, out=out)
        times = []
        for _ in range(5):
            start = time.perf_counter()
            f(x, out=out)
            times.append(time.perf_counter() - start)
        return min(times)

    return 1.5 * best(torch.sigmoid) < best(torch.tanh)


def via_sigmoid(x: Tensor) -> bool:
    """Whether tanh of float32 x runs as 2 sigmoid(2x) - 1."""
    return x.device.type == "cpu" and x.dtype == torch.float32 and cpu_tanh() == "sigmoid"


def tanh(x: Tensor) -> Tensor:
    """torch.tanh(x), as 2 sigmoid(2x) - 1 where that is faster."""
    return torch.sigmoid(x * 2).mul_(2).sub_(1) if via_sigmoid(x) else torch.tanh(x)


def lstm_gates_(gates: Tensor) -> Tensor:
    """LSTM gate pre-activations (R, 4H), order i, f, g, o, in place: sigmoid of i, f, o and tanh of g."""
    H = gates.shape[1] // 4
    g = gates[:, 2 * H : 3 * H]
    if via_sigmoid(gates):  # one sigmoid pass over all four: tanh(g) = 2 sigmoid(2g) - 1
        g.mul_(2)
        gates.sigmoid_()
        g.mul_(2).sub_(1)
    else:
        gates[:, : 2 * H].sigmoid_()
        g.tanh_()
        gates[:, 3 * H :].sigmoid_()
    return gates
