"""Each fast path of seq2seq/kernels agrees with its plain reference, over a few random shapes (fixed seeds)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seq2seq.kernels import activation, int8, linear, lstm, nll, padding, topk
from seq2seq.kernels.dropout import dropout

SHAPES = [(1, 1), (3, 5), (7, 40), (64, 129)]  # rows, hidden units (or columns)
DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]  # where a kernel chooses by device, each branch


@pytest.fixture(params=activation.KINDS)
def tanh_kind(request, monkeypatch):
    """Each way float32 tanh runs; the process's own choice is restored afterwards."""
    monkeypatch.setattr(activation, "_cpu_tanh", request.param)
    return request.param


@pytest.mark.parametrize("rows, hidden", SHAPES)
def test_tanh_and_the_lstm_gates_equal_torchs(tanh_kind, rows, hidden):
    torch.manual_seed(rows * 1000 + hidden)
    x = torch.randn(rows, hidden) * 6
    assert activation.via_sigmoid(x) == (tanh_kind == "sigmoid") and not activation.via_sigmoid(x.bfloat16())
    torch.testing.assert_close(activation.tanh(x), torch.tanh(x), rtol=0, atol=3e-7)
    gates = torch.randn(rows, 4 * hidden) * 4
    expected = activation.lstm_gates_reference(gates)
    torch.testing.assert_close(activation.lstm_gates_(gates.clone()), expected, rtol=0, atol=3e-7)


@pytest.mark.parametrize("rows, hidden", SHAPES)
@pytest.mark.parametrize("cell_dtype", [torch.float32, torch.bfloat16])
def test_lstm_cell_equals_the_formulas(tanh_kind, rows, hidden, cell_dtype):
    torch.manual_seed(rows + hidden)
    gates, c = torch.randn(rows, 4 * hidden) * 3, (torch.randn(rows, hidden) * 2).to(cell_dtype)
    h_ref, c_ref = lstm.lstm_cell_reference(gates, c.float())
    h, c_new, tanh_c = lstm.lstm_cell_(gates.clone(), c)
    assert h.dtype == c_new.dtype == tanh_c.dtype == torch.float32
    torch.testing.assert_close(c_new, c_ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(h, h_ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(tanh_c, torch.tanh(c_ref), rtol=0, atol=1e-6)


@pytest.mark.parametrize("vendor, machine, mkl, kind", [
    ("AuthenticAMD", "x86_64", True, "sigmoid"),  # MKL's generic tanh kernel
    ("GenuineIntel", "x86_64", True, "native"),
    ("AuthenticAMD", "x86_64", False, "native"),  # a torch without MKL computes tanh itself
    ("", "arm64", False, "native"),
    ("", "x86_64", True, "native"),  # a vendor that cannot be read: torch's own choice
])  # fmt: skip
def test_the_auto_tanh_rule_is_a_function_of_the_cpu(vendor, machine, mkl, kind):
    assert activation.auto_tanh(vendor, machine, mkl) == kind
    assert activation.auto_tanh() in activation.KINDS


def _int8_bound(x: torch.Tensor, layer: int8.Int8Linear, weight: torch.Tensor) -> torch.Tensor:
    """The largest error of x W^T that rounding x and W to their int8 grids can make, per output (as tests/test_int8.py
    derives it): per-row steps of x for int_mm, one step over the tensor's range (255 steps) for the dynamic kernel."""
    if layer.kernel == "int_mm":
        _, s_x = int8.quantize_rows(x)
    else:
        s_x = (x.max().clamp_min(0) - x.min().clamp_max(0)) / 255
    s_w, K = layer.scale, x.shape[1]
    return (x.abs() @ torch.ones(K, 1)) * s_w / 2 + s_x * (weight.abs().sum(1) / 2) + K * s_x * s_w / 4


INT8_KERNELS = ["int_mm"] + (["dynamic"] if int8.default_kernel() == "dynamic" else [])


@pytest.mark.parametrize("kernel", INT8_KERNELS)
@pytest.mark.parametrize("rows, k, n", [(1, 8, 3), (5, 96, 40), (70, 33, 17), (130, 256, 64)])
def test_int8_products_equal_the_dequantized_product_and_stay_within_the_grids(kernel, rows, k, n):
    torch.manual_seed(rows * k + n)
    weight, bias = torch.randn(n, k), torch.randn(n)
    x = torch.randn(rows, k) * torch.logspace(-2, 1, rows).unsqueeze(1)
    layer = int8.Int8Linear(weight, bias, kernel)
    y = layer(x)
    assert y.dtype == torch.float32 and y.shape == (rows, n)
    if kernel == "int_mm":  # int32 products are exact: only the float32 rescaling rounds
        torch.testing.assert_close(y, int8.int_mm_reference(x, layer), rtol=1e-5, atol=1e-5)
    assert ((y - F.linear(x, weight, bias)).abs() <= _int8_bound(x, layer, weight) + 1e-5).all()


def test_the_int8_kernel_choice_is_explicit_and_checked(monkeypatch):
    monkeypatch.setattr(int8, "_chosen", None)  # restored after the test
    assert int8.chosen_kernel() == int8.default_kernel()
    int8.choose_kernel("int_mm")
    assert int8.Int8Linear(torch.ones(2, 3)).kernel == "int_mm"
    assert int8.Int8Linear(torch.ones(2, 3), kernel=int8.default_kernel()).kernel == int8.default_kernel()
    with pytest.raises(ValueError, match="int8 kernel must be one of auto, dynamic, int_mm, got 'fast'"):
        int8.choose_kernel("fast")
    if int8.default_kernel() != "dynamic":
        with pytest.raises(ValueError, match="dynamic int8 kernel does not run here"):
            int8.choose_kernel("dynamic")
    int8.choose_kernel("auto")
    assert int8.chosen_kernel() == int8.default_kernel()


@pytest.mark.parametrize("rows, vocab", [(1, 7), (13, 50), (40, 3000), (20, 70_000)])  # 70,000: 7 rows per block
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_smoothed_nll_and_its_gradient_equal_cross_entropy(rows, vocab, dtype, smoothing):
    torch.manual_seed(rows + vocab)
    logits = (3 * torch.randn(rows, vocab)).to(dtype).requires_grad_()
    targets = torch.randint(1, vocab, (rows,))
    targets[::3] = 0  # padding rows (ignore_index 0)
    scale = 0.37
    loss = nll.SmoothedNLL.apply(logits, targets, smoothing, scale, 0)
    (scale * loss).backward()
    grad, logits.grad = logits.grad, None
    expected = nll.smoothed_nll_reference(logits, targets, smoothing, 0)
    (scale * expected).backward()
    assert loss.dtype == torch.float32 and grad.dtype == dtype
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(grad, logits.grad, rtol=1e-2 if dtype == torch.bfloat16 else 1e-4, atol=1e-5)
    assert torch.all(grad[::3] == 0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("rows, vocab", [(1, 7), (40, 3000)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_smoothed_nll_equals_the_reference_on_every_device(device, rows, vocab, dtype):
    """`smoothed_nll`, the loss the models call: the blocked pass on the CPU (the same numbers as SmoothedNLL), the
    reference elsewhere; the value and the gradient of the loss times `scale` are the reference's either way."""
    torch.manual_seed(rows + vocab)
    logits = (3 * torch.randn(rows, vocab)).to(device, dtype).requires_grad_()
    targets = torch.randint(1, vocab, (rows,), device=device)
    targets[::3] = 0
    scale = 0.37
    loss = nll.smoothed_nll(logits, targets, 0.1, scale, 0)
    (scale * loss).backward()
    grad, logits.grad = logits.grad, None
    expected = nll.smoothed_nll_reference(logits, targets, 0.1, 0)
    (scale * expected).backward()
    assert loss.dtype == torch.float32 and grad.dtype == dtype
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(grad, logits.grad, rtol=1e-2 if dtype == torch.bfloat16 else 1e-4, atol=1e-5)
    if device == "cpu":
        logits.grad = None
        blocked = nll.SmoothedNLL.apply(logits, targets, 0.1, scale, 0)
        (scale * blocked).backward()
        assert torch.equal(loss, blocked) and torch.equal(grad, logits.grad)


def test_smoothed_nll_chooses_its_path_by_device(monkeypatch):
    """The blocked pass on the CPU only: with it removed the CPU fails, and a tensor of another device (meta, which
    has shapes but no values) never reaches it."""

    class Absent:
        @staticmethod
        def apply(*args):
            raise AssertionError("the blocked pass ran")

    monkeypatch.setattr(nll, "SmoothedNLL", Absent)
    with pytest.raises(AssertionError, match="blocked pass ran"):
        nll.smoothed_nll(torch.randn(4, 7), torch.tensor([1, 2, 0, 3]), 0.1)
    loss = nll.smoothed_nll(torch.randn(4, 7, device="meta"), torch.zeros(4, dtype=torch.long, device="meta"), 0.1)
    assert loss.device.type == "meta" and loss.shape == ()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("rows, inputs, outputs", [(1, 1, 1), (3, 8, 11), (40, 64, 1000)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_with_the_bias_in_the_matrix_product_equals_f_linear(device, rows, inputs, outputs, bias):
    torch.manual_seed(rows + inputs + outputs)
    x = torch.randn(rows, 5, inputs, device=device, requires_grad=True)
    layer = torch.nn.Linear(inputs, outputs, bias=bias).to(device)
    params = [x, *layer.parameters()]
    (linear.linear(x, layer.weight, layer.bias) ** 2).sum().backward()
    grads = [t.grad.clone() for t in params]
    for t in params:
        t.grad = None
    expected = linear.linear_reference(x, layer.weight, layer.bias)
    (expected**2).sum().backward()
    torch.testing.assert_close(linear.linear(x, layer.weight, layer.bias), expected)
    for got, t in zip(grads, params):
        torch.testing.assert_close(got, t.grad)


def test_linear_under_bf16_autocast_stays_within_bf16_of_f_linear():
    torch.manual_seed(3)
    x, layer = torch.randn(6, 7, 32), torch.nn.Linear(32, 300)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, expected = linear.linear(x, layer.weight, layer.bias), linear.linear_reference(x, layer.weight, layer.bias)
    assert got.dtype == expected.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), expected.float(), rtol=2e-2, atol=2e-2)


def test_the_core_fast_paths_apply_on_the_cpu_only():
    """`fused_step_applies` (one LSTM step as a product and `lstm_cell_`) and `padded_run_applies` (padded sequences
    without packing): the agreement of each path with torch's is in tests/test_recurrent.py; here, where each
    applies. A meta tensor stands for another device."""
    step, meta = torch.randn(3, 1, 5), torch.empty(3, 1, 5, device="meta")
    with torch.no_grad():
        assert lstm.fused_step_applies(step, training=False)
        assert not lstm.fused_step_applies(step, training=True)  # training keeps torch's kernel
        assert not lstm.fused_step_applies(torch.randn(3, 2, 5), training=False)  # one step only
        assert not lstm.fused_step_applies(meta, training=False)
    assert not lstm.fused_step_applies(step, training=False)  # the path keeps no graph: not with autograd on
    assert padding.padded_run_applies(torch.randn(2, 4, 3)) and not padding.padded_run_applies(meta)


@pytest.mark.parametrize("rows, vocab, k", [(16, 64, 1), (17, 8003, 5), (40, 1000, 10), (3, 500, 4), (20, 30, 2)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_topk_rows_gives_torch_topk_values(rows, vocab, k, dtype):
    torch.manual_seed(rows + vocab + k)
    scores = torch.randn(rows, vocab).to(dtype)
    scores[0, : min(vocab, 20)] = 3.0  # ties at the top
    values, index = topk.topk_rows(scores, k)
    assert torch.equal(values, scores.topk(k, dim=-1).values)
    assert torch.equal(scores.gather(1, index), values)
    assert all(len(set(row)) == k for row in index.tolist())


def _lengths(batch: int, steps: int, seed: int) -> torch.Tensor:
    lengths = torch.randint(1, steps + 1, (batch,), generator=torch.Generator().manual_seed(seed))
    lengths[0] = steps  # the longest fills the batch, as after padding
    return lengths


@pytest.mark.parametrize("batch, steps", [(1, 1), (2, 3), (5, 6), (9, 17)])
def test_pack_unpack_and_reversal_equal_torchs_and_the_loop(batch, steps):
    torch.manual_seed(batch * steps)
    lengths = _lengths(batch, steps, batch + steps)
    x = torch.randn(batch, steps, 3, requires_grad=True)
    ours, torchs = padding.pack(x, lengths), pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    for field in ("data", "batch_sizes", "sorted_indices", "unsorted_indices"):
        assert torch.equal(getattr(ours, field), getattr(torchs, field)), field
    expected = pad_packed_sequence(torchs, batch_first=True, total_length=steps + 2)[0]
    assert torch.equal(padding.unpack(ours, steps + 2), expected)
    reference = padding.reverse_padded_reference(x, lengths)
    assert torch.equal(padding.reverse_padded(x, lengths), reference)
    time_major = padding.reverse_padded(x.transpose(0, 1), lengths, time_major=True)
    assert torch.equal(time_major.transpose(0, 1), reference)
    weights = torch.randn_like(x)
    grad_ours = torch.autograd.grad((padding.reverse_padded(x, lengths) * weights).sum(), x)[0]
    grad_ref = torch.autograd.grad((reference * weights).sum(), x)[0]
    assert torch.equal(grad_ours, grad_ref)
    assert padding.to_device(lengths, "cpu") is lengths


@pytest.mark.parametrize("steps, batch, width", [(1, 1, 1), (4, 3, 5), (17, 9, 32)])
def test_batch_first_masked_equals_the_product_transposed(steps, batch, width):
    torch.manual_seed(steps + batch + width)
    h = torch.randn(steps, batch, width, requires_grad=True)
    mask = (torch.rand(steps, batch, 1) < 0.7).float()
    ours, reference = padding.batch_first_masked(h, mask), padding.batch_first_masked_reference(h, mask)
    assert ours.is_contiguous() and torch.equal(ours, reference)
    weights = torch.randn_like(reference)
    grad_ours = torch.autograd.grad((ours * weights).sum(), h)[0]
    assert torch.equal(grad_ours, torch.autograd.grad((reference * weights).sum(), h)[0])


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dropout_keeps_and_scales_as_f_dropout(p, dtype):
    """The random streams differ, so the masks do: what matters is that an element is kept with the same
    probability and a kept one is scaled by the same 1 / (1 - p)."""
    torch.manual_seed(int(p * 10))
    x = torch.rand(300, 400).add_(0.5).to(dtype)  # 120,000 draws: the kept fraction's standard error is < 0.0015
    ours, reference = dropout(x, p), F.dropout(x, p)
    kept, kept_ref = ours != 0, reference != 0
    assert abs(kept.float().mean().item() - kept_ref.float().mean().item()) < 0.01
    assert abs(kept.float().mean().item() - (1 - p)) < 0.01
    assert ours.dtype == dtype
    torch.testing.assert_close(ours[kept], x[kept] * (1 / (1 - p)))  # the dtype's tolerance: the scale is rounded
    torch.testing.assert_close(reference[kept_ref], x[kept_ref] * (1 / (1 - p)))
