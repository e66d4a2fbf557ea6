"""tanh where torch's float32 tanh is slow: as 2 sigmoid(2x) - 1, the same function up to rounding.

torch's CPU build computes float32 tanh with MKL's vector math library and sigmoid with its own vector code. MKL
picks its fast code by CPU vendor: on an Intel Sapphire Rapids tanh is the fast one, on an AMD EPYC (Zen 4, torch
2.13, 1 thread) MKL runs its generic kernel, 0.46 billion values per second against 4.5 billion for sigmoid
(docs/speed.md, "tanh as sigmoids"). Users: Bahdanau attention's energies (`attention.energies`, which folds the
affine part into v) and the LSTM gates (`lstm_gates_`) of the decoder's one-step path and of the unrolled
training loop (`lstm.py`).

The choice is process-wide and explicit: `choose_tanh("auto" | "native" | "sigmoid")`, called by
`seq2seq.runtime.apply`. "auto" (also where nothing chose) is a fixed rule, `auto_tanh`: sigmoids where torch has MKL
and the x86 CPU is not Intel's, else torch.tanh. Nothing is timed and nothing is read from the environment.
"""

from __future__ import annotations

import platform
from pathlib import Path

import torch
from torch import Tensor

CHOICES = ("auto", "native", "sigmoid")  # what a recipe or --tanh may say
KINDS = ("native", "sigmoid")  # how float32 tanh runs on the CPU once "auto" is resolved
_cpu_tanh: str | None = None  # the resolved kind; None: "auto", resolved on first use by auto_tanh()


def choose_tanh(choice: str) -> str:
    """Set how float32 tanh runs on the CPU in this process; returns the kind in effect ("native" or "sigmoid")."""
    global _cpu_tanh
    if choice not in CHOICES:
        raise ValueError(f"tanh must be one of {', '.join(CHOICES)}, got {choice!r}")
    _cpu_tanh = None if choice == "auto" else choice
    return cpu_tanh()


def cpu_tanh() -> str:
    """How float32 tanh runs on the CPU in this process: "native" (torch.tanh) or "sigmoid"."""
    global _cpu_tanh
    if _cpu_tanh is None:
        _cpu_tanh = auto_tanh()
    return _cpu_tanh


def auto_tanh(vendor: str | None = None, machine: str | None = None, mkl: bool | None = None) -> str:
    """"sigmoid" where torch computes float32 tanh with MKL on an x86 CPU of another vendor than Intel (MKL's generic
    kernel then runs), else "native". The arguments default to this machine's."""
    vendor = cpu_vendor() if vendor is None else vendor
    machine = (platform.machine() if machine is None else machine).lower()
    mkl = torch.backends.mkl.is_available() if mkl is None else mkl
    x86 = machine in ("x86_64", "amd64", "i686", "i386")
    return "sigmoid" if mkl and x86 and vendor not in ("", "GenuineIntel") else "native"


def cpu_vendor() -> str:
    """The CPU's vendor string ("GenuineIntel", "AuthenticAMD", ...), or "" where it cannot be read."""
    cpuinfo = Path("/proc/cpuinfo")
    try:
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("vendor_id"):
                return line.partition(":")[2].strip()
    except OSError:  # not Linux
        pass
    described = platform.processor()  # Windows: "AMD64 Family 25 Model 17 Stepping 1, AuthenticAMD"
    return next((v for v in ("GenuineIntel", "AuthenticAMD", "HygonGenuine") if v in described), "")


def via_sigmoid(x: Tensor) -> bool:
    """Whether tanh of float32 x runs as 2 sigmoid(2x) - 1."""
    return x.device.type == "cpu" and x.dtype == torch.float32 and cpu_tanh() == "sigmoid"


def tanh(x: Tensor) -> Tensor:
    """torch.tanh(x), as 2 sigmoid(2x) - 1 where that is faster. Reference: torch.tanh."""
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


def lstm_gates_reference(gates: Tensor) -> Tensor:
    """`lstm_gates_` as the formulas, out of place."""
    i, f, g, o = gates.chunk(4, dim=1)
    return torch.cat([torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)], dim=1)
