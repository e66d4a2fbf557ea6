"""Int8 matrix products on the CPU (`Int8Linear`), for int8 decoding (`python -m seq2seq.translate --int8`,
`models/int8.py`).

Each weight matrix is quantized once, per output row (scale = the row's largest magnitude / 127); each product's input
is quantized per row as it comes (dynamic quantization, as CTranslate2's int8 compute type). torch._int_mm multiplies
the int8 matrices into int32 (oneDNN, VNNI on x86), and y = (x_q W_q^T) * s_x * s_w + b rescales. On 2 cores of an
AMD EPYC (Zen 4, avx512_vnni) the int8 product runs at 0.77-0.84 TOPS against 0.37-0.43 TFLOP/s in bf16,
and with the quantization of its input and the rescaling 1.45-1.6x faster: 510 rows x 512 -> 8,000 (the output layer
in beam 5) 7.3 ms against 11.1; 510 x 1,280 -> 2,048 (the first decoder layer's gates) 4.6 ms against 7.0. Half the
bytes of bf16 also halves what a small batch reads: 5 rows x 512 -> 8,000 0.22 ms against 0.41.

Two kernels do the product. Where the CPU has VNNI and torch has both x86 quantized engines, it is torch's dynamic
quantized linear (`torch.ops.quantized.linear_dynamic`, `kernel="dynamic"`): quantizing the input (per tensor, 8 bits
with a zero point), the int8 product and the rescaling in one call; FBGEMM's kernel below `SMALL_ROWS` rows, oneDNN's
from there on (each layer is packed for both; the crossing measured at 1 and 2 threads). Against `torch._int_mm` with
the quantization and rescaling as separate operations, on the AMD EPYC (2 threads, bf16 input): 5 rows x 1,280 ->
2,048 (a decoder layer's gates, beam 5 on one sentence) 63 against 170 us, 510 rows x 512 -> 8,000 (the output layer
in beam 5) 5.8 against 7.7 ms. Elsewhere the `torch._int_mm` path above runs (`kernel="int_mm"`): without VNNI the
dynamic kernels' 8-bit inputs could saturate (which is why torch's own modules quantize inputs to 7 bits), and torch
has deprecated its quantized tensors, so a torch without them falls back to it too (`default_kernel`).

The kernel is chosen once per process: `choose_kernel("auto" | "dynamic" | "int_mm")`, called by
`seq2seq.runtime.apply`; "auto" (also where nothing chose) is `default_kernel()`, a fixed rule on the CPU's
features and a probe product that both dynamic kernels must get exactly right. A layer built with a kernel named
keeps it. `int_mm_reference` is the plain product the "int_mm" kernel must equal up to float32 rounding; both
kernels must stay within the rounding bound of the int8 grids of the float product (tests/test_kernels.py).
"""

from __future__ import annotations

import functools
import warnings

import torch
from torch import Tensor, nn

SMALL_ROWS = 64  # the dynamic kernel: FBGEMM's below this many rows, oneDNN's from it (see the module's text)
KERNELS = ("dynamic", "int_mm")
CHOICES = ("auto", *KERNELS)  # what a recipe or --int8-kernel may say
_chosen: str | None = None  # choose_kernel's kernel; None: default_kernel()


def available() -> str | None:
    """None when int8 products run here, else why not."""
    if not hasattr(torch, "_int_mm"):
        return f"this torch ({torch.__version__}) has no torch._int_mm"
    return None


@functools.cache
def default_kernel() -> str:
    """The "auto" kernel: "dynamic" where the CPU multiplies 8-bit integers with VNNI and torch's
    FBGEMM and oneDNN dynamic kernels run (torch has deprecated its quantized tensors: a torch without them gets
    "int_mm"), else "int_mm"."""
    engines = torch.backends.quantized.supported_engines
    if not getattr(torch.cpu, "_is_vnni_supported", lambda: False)() or not {"fbgemm", "onednn"} <= set(engines):
        return "int_mm"
    try:  # a product that both kernels must get exactly right (integers on the int8 grid)
        q, x = torch.tensor([[127, -3], [5, 127]], dtype=torch.int8), torch.tensor([[-128.0, 127.0]])
        for engine in ("fbgemm", "onednn"):
            y = torch.ops.quantized.linear_dynamic(x, _prepack(q, torch.ones(2), None, engine), False)
            if not torch.equal(y, x @ q.float().t()):
                return "int_mm"
    except (AttributeError, RuntimeError):
        return "int_mm"
    return "dynamic"


def choose_kernel(choice: str) -> None:
    """Set the kernel of the Int8Linear layers built without one in this process ("auto": `default_kernel()`, found
    on first use). "dynamic" where it does not run here is an error naming why."""
    global _chosen
    if choice not in CHOICES:
        raise ValueError(f"int8 kernel must be one of {', '.join(CHOICES)}, got {choice!r}")
    if choice == "dynamic" and default_kernel() != "dynamic":
        raise ValueError("the dynamic int8 kernel does not run here (it needs a CPU with VNNI and torch's FBGEMM and "
                         "oneDNN quantized engines); choose int_mm or auto")
    _chosen = None if choice == "auto" else choice


def chosen_kernel() -> str:
    """The kernel of Int8Linear layers built without one: `choose_kernel`'s, else `default_kernel()`."""
    return _chosen or default_kernel()


def _prepack(q: Tensor, scale: Tensor, bias: Tensor | None, engine: str):
    """int8 weight (N, K), its scales (N,) and bias -> the weight packed for `engine`'s linear_dynamic kernel."""
    with warnings.catch_warnings():  # torch 2.13 warns that quantized tensors are deprecated (default_kernel)
        warnings.simplefilter("ignore", UserWarning)
        zeros = torch.zeros_like(scale, dtype=torch.long)
        weight = torch._make_per_channel_quantized_tensor(q, scale.double(), zeros, 0)
    previous = torch.backends.quantized.engine
    try:
        torch.backends.quantized.engine = engine  # prepacking packs for the current engine
        return torch.ops.quantized.linear_prepack(weight, bias)
    finally:
        torch.backends.quantized.engine = previous


def quantize_rows(x: Tensor) -> tuple[Tensor, Tensor]:
    """x (M, K) -> int8 values (M, K), float32 scales (M, 1) with x ~ values * scales; each row's largest magnitude
    maps to 127 (symmetric: -128 is never used, so no product overflows its int32 sum at K < 2^17)."""
    x = x.float()
    scale = x.abs().amax(1, keepdim=True).clamp_min_(1e-30).div_(127)
    return torch.div(x, scale).round_().clamp_(-127, 127).to(torch.int8), scale


class Int8Linear(nn.Module):
    """A linear layer y = x W^T + b with W in int8 (per row), x quantized at each call (per tensor by the "dynamic"
    kernel, per row by "int_mm"); y in float32. `kernel` None: the process's choice (`chosen_kernel()`)."""

    def __init__(self, weight: Tensor, bias: Tensor | None = None, kernel: str | None = None) -> None:
        super().__init__()
        with torch.no_grad():
            q, scale = quantize_rows(weight.detach())
        self._set(q, scale.view(1, -1), None if bias is None else bias.detach().float().view(1, -1), kernel)

    def _set(self, q: Tensor, scale: Tensor, bias: Tensor | None, kernel: str | None) -> None:
        self.register_buffer("weight", q)  # (N, K) int8
        self.register_buffer("scale", scale)  # (1, N) float32
        self.register_buffer("bias", bias)  # (1, N) float32 or None
        self.in_features, self.out_features = q.shape[1], q.shape[0]
        self.kernel = kernel or chosen_kernel()
        if self.kernel not in KERNELS:
            raise ValueError(f"unknown int8 kernel {self.kernel!r}; choose one of {', '.join(KERNELS)}")
        self.packed = None  # the dynamic kernel's weights: (FBGEMM's, oneDNN's)
        if self.kernel == "dynamic":
            b = None if bias is None else bias.view(-1)
            self.packed = tuple(_prepack(q, scale.view(-1), b, engine) for engine in ("fbgemm", "onednn"))

    @classmethod
    def from_linear(cls, linear: nn.Linear, kernel: str | None = None) -> Int8Linear:
        return cls(linear.weight, linear.bias, kernel)

    def _apply(self, fn, recurse=True):
        """Moves with the model, but a cast of the model (model.to(torch.bfloat16)) keeps the scales in float32."""
        super()._apply(fn, recurse)
        self.scale = self.scale.float()
        if self.bias is not None:
            self.bias = self.bias.float()
        return self

    def forward(self, x: Tensor) -> Tensor:
        """x (..., K) in any float type -> (..., N) float32."""
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        if self.packed is not None:  # one call: quantize x, multiply, rescale, add the bias
            packed = self.packed[0 if x.shape[0] < SMALL_ROWS else 1]
            return torch.ops.quantized.linear_dynamic(x.float(), packed, False).view(*shape[:-1], self.out_features)
        xq, s = quantize_rows(x)
        y = torch._int_mm(xq, self.weight.t()).float().mul_(s).mul_(self.scale)
        if self.bias is not None:
            y.add_(self.bias)
        return y.view(*shape[:-1], self.out_features)

    def rows(self, ids: Tensor) -> Int8Linear:
        """The layer of the outputs `ids` only (an output shortlist), quantized alike."""
        out, ids = Int8Linear.__new__(Int8Linear), ids.to(self.weight.device)
        nn.Module.__init__(out)
        bias = None if self.bias is None else self.bias.index_select(1, ids)
        out._set(self.weight.index_select(0, ids), self.scale.index_select(1, ids), bias, self.kernel)
        return out

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"kernel={self.kernel}")


def int_mm_reference(x: Tensor, layer: Int8Linear) -> Tensor:
    """What the "int_mm" kernel computes, in float64: x quantized per row, times the layer's int8 weight, rescaled,
    plus the bias -> (..., N) float32."""
    xq, s = quantize_rows(x.reshape(-1, x.shape[-1]))
    w = layer.weight.double() * layer.scale.double().t()
    y = (xq.double() * s.double()) @ w.t()
    if layer.bias is not None:
        y = y + layer.bias.double()
    return y.float().view(*x.shape[:-1], layer.out_features)
