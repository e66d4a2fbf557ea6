"""Int8 decoding (seq2seq/models/int8.py): the products within their quantization error, the model's translations."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from seq2seq.models.int8 import (
    Int8Linear,
    default_kernel,
    quantize_decoder,
    quantize_rows,
)
from seq2seq.models.recurrent import Recurrent
from seq2seq.tasks import load_for_inference
from seq2seq.translate import main as translate_main

from .test_seq2seq import VARIANTS, collate, model, sentences

# the kernels this machine runs: torch._int_mm everywhere, the dynamic quantized kernels where the CPU has VNNI
KERNELS = ["int_mm"] + (["dynamic"] if default_kernel() == "dynamic" else [])


def _bound(x: torch.Tensor, layer: Int8Linear, weight: torch.Tensor) -> torch.Tensor:
    """The largest error of x W^T that rounding x and W to their int8 grids can make, per output: with
    |x - x^| <= s_x / 2 and |w - w^| <= s_w / 2, |x.w - x^.w^| <= sum |x| s_w / 2 + |w| s_x / 2 + s_x s_w / 4.
    s_x: per row for int_mm (symmetric, 127 steps each way); for the dynamic kernel one step for the whole tensor,
    its range with 0 in 255 steps (8 bits with a zero point)."""
    if layer.kernel == "int_mm":
        _, s_x = quantize_rows(x)
    else:
        s_x = (x.max().clamp_min(0) - x.min().clamp_max(0)) / 255
    s_w = layer.scale
    K = x.shape[1]
    return (x.abs() @ torch.ones(K, 1)) * s_w / 2 + s_x * (weight.abs().sum(1) / 2) + K * s_x * s_w / 4


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("rows", [7, 150])  # the dynamic kernel: FBGEMM's below SMALL_ROWS (64), oneDNN's from it
def test_int8_linear_is_within_its_rounding_bound_and_exact_on_the_grid(kernel, rows):
    torch.manual_seed(0)
    linear = nn.Linear(96, 40)
    x = torch.randn(rows, 96) * torch.logspace(-2, 1, rows).unsqueeze(1)  # rows of very different sizes
    layer = Int8Linear.from_linear(linear, kernel)
    assert layer.kernel == kernel
    y, exact = layer(x), linear(x).detach()
    assert y.dtype == torch.float32
    assert ((y - exact).abs() <= _bound(x, layer, linear.weight.detach()) + 1e-5).all()
    assert (y - exact).abs().max() > 0  # it did quantize
    # integers on the grids are exact: weight rows that reach 127, inputs whose rows reach -127 (int_mm) or that
    # span -128..127 (the dynamic kernel's 8 bits with a zero point)
    w = torch.randint(-127, 128, (5, 33)).float()
    w[:, 0] = 127
    x = torch.randint(-127, 128, (rows, 33)).float()
    x[:, 1] = -127
    x[0, 2], x[0, 3] = -128 if kernel == "dynamic" else -127, 127
    torch.testing.assert_close(Int8Linear(w, kernel=kernel)(x), x @ w.t(), rtol=0, atol=0)


def test_an_unknown_int8_kernel_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown int8 kernel 'fast'.*dynamic, int_mm"):
        Int8Linear(torch.ones(2, 3), kernel="fast")


@pytest.mark.parametrize("kernel", KERNELS)
def test_int8_rows_are_the_full_layers_columns_and_a_bf16_cast_keeps_the_scales(kernel):
    torch.manual_seed(0)
    layer = Int8Linear.from_linear(nn.Linear(32, 50), kernel)
    ids = torch.tensor([3, 0, 49, 17])
    x = torch.randn(6, 32)
    assert layer.rows(ids).kernel == kernel
    torch.testing.assert_close(layer.rows(ids)(x), layer(x)[:, ids], rtol=0, atol=0)
    model = nn.Sequential(layer).to(torch.bfloat16)
    assert layer.weight.dtype == torch.int8 and layer.scale.dtype == layer.bias.dtype == torch.float32
    assert model(x.bfloat16()).dtype == torch.float32


@pytest.mark.parametrize("kernel", KERNELS)
def test_int8_lstm_step_is_the_cell_on_int8_gates_within_their_bound(kernel):
    """The one-step decoding path with int8 products: each layer is the LSTM cell on the gates of its Int8Linear over
    [x; h], and those gates are within the rounding bound of the float ones."""
    torch.manual_seed(0)
    rnn = Recurrent(24, [32, 32]).eval()
    x, h = torch.randn(5, 1, 24), torch.randn(2, 1, 5, 32) * 0.5
    state = [(h[0], h[0].tanh()), (h[1], h[1].tanh())]
    with torch.no_grad():
        rnn.quantize_steps(kernel)
        assert all(layer.kernel == kernel for layer in rnn.step_weights)
        out, new = rnn(x, state)
        inputs = x[:, 0]
        for n, (layer, (h0, c0)) in enumerate(zip(rnn.layers, state)):
            joined = torch.cat([inputs, h0[0]], 1)
            weight = torch.cat([layer.weight_ih_l0, layer.weight_hh_l0], 1)
            gates = rnn.step_weights[n](joined)
            exact = joined @ weight.t() + layer.bias_ih_l0 + layer.bias_hh_l0
            assert ((gates - exact).abs() <= _bound(joined, rnn.step_weights[n], weight) + 1e-5).all()
            i, f, g, o = gates.chunk(4, 1)
            c = f.sigmoid() * c0[0] + i.sigmoid() * g.tanh()
            inputs = o.sigmoid() * c.tanh()
            torch.testing.assert_close(new[n][1][0], c, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(new[n][0][0], inputs, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(out[:, 0], inputs)


def test_quantize_decoder_is_for_inference_only(toy_run):
    model = load_for_inference(toy_run, "best", "cpu").model
    with pytest.raises(ValueError, match="eval"):
        quantize_decoder(model.train())


def test_int8_translations_match_bf16_on_the_toy_pair(toy_run, toy_data):
    """The toy model (fused decoder, Bahdanau attention, LSTM) translates the test split alike with int8 products:
    greedy (through the shortlist) and beam 5."""
    from seq2seq.data.parallel import load_parallel
    from seq2seq.metrics import bleu

    table = load_parallel("multi30k", "test_2016_flickr", "en", "fr")
    bf16, int8 = load_for_inference(toy_run, "best", "cpu"), load_for_inference(toy_run, "best", "cpu", "int8")
    assert isinstance(int8.model.generator, Int8Linear) and int8.model.decoder.step_weights is not None
    assert int8.shortlist is not None  # greedy search takes the int8 shortlist
    for beam in (1, 5):
        ours, ref = int8.translate(table["src"], beam=beam), bf16.translate(table["src"], beam=beam)
        assert sum(a == b for a, b in zip(ours, ref)) >= 0.95 * len(ref), beam
        assert bleu(ours, [table["tgt"]]).value > 90


def test_load_for_inference_takes_the_int8_kernel(toy_run):
    reference = load_for_inference(toy_run, "best", "cpu").translate(["sa sb sc .", "sd se ."])
    for kernel in KERNELS:
        translator = load_for_inference(toy_run, "best", "cpu", "int8", int8_kernel=kernel)
        model = translator.model
        assert model.generator.kernel == model.decoder.step_weights[0].kernel == kernel
        assert translator.translate(["sa sb sc .", "sd se ."]) == reference


def test_cli_translates_with_int8(toy_run, tmp_path, capsys):
    src = tmp_path / "in.en"
    src.write_text("sa sb sc .\nsd se .\n", encoding="utf-8")
    out = tmp_path / "out.fr"
    assert translate_main([str(toy_run), "--int8", "-i", str(src), "-o", str(out)]) == 0
    reference = tmp_path / "ref.fr"
    assert translate_main([str(toy_run), "-i", str(src), "-o", str(reference)]) == 0
    assert out.read_text(encoding="utf-8") == reference.read_text(encoding="utf-8")


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(str(x) for x in v.values()))
def test_every_decoder_variant_decodes_with_int8_products(variant, kernel):
    """Every cell, attention and feeding: the quantized copy runs the decoding steps in bf16 autocast, with log-
    probabilities near the float32 model's (int8 products for LSTM steps only: the other cells keep their kernels)."""
    m = model(**variant)
    q = quantize_decoder(copy.deepcopy(m), kernel).to(torch.bfloat16)
    assert q.generator.kernel == q.combine.kernel == q.attention.key_proj.kernel == kernel
    assert isinstance(q.generator, Int8Linear) and isinstance(q.combine, Int8Linear)
    assert (q.decoder.step_weights is not None) == (variant.get("cell", "lstm") == "lstm")
    batch = collate(sentences(6), sentences(6, seed=2))
    gaps = []
    with torch.inference_mode():
        state = m.encode(batch.src, batch.src_lengths)
        with torch.autocast("cpu", torch.bfloat16):
            state_q = q.encode(batch.src, batch.src_lengths)
        for t in range(3):
            log_probs, state, _, _ = m.decode_step(batch.tgt_in[:, t], state)
            with torch.autocast("cpu", torch.bfloat16):
                log_probs_q, state_q, _, _ = q.decode_step(batch.tgt_in[:, t], state_q)
            assert log_probs_q.dtype == torch.float32 and log_probs_q.shape == log_probs.shape
            gaps.append((log_probs_q - log_probs).abs().max().item())
    assert max(gaps) < 0.01, gaps  # 0.0001-0.0035 measured (bf16 kernels for the GRU and plain RNN cells)


def test_an_int8_ensemble_of_one_model_twice_equals_the_int8_model(toy_run):
    single = load_for_inference(toy_run, "best", "cpu", "int8")
    double = load_for_inference([toy_run, toy_run], "best", "cpu", "int8")
    assert all(isinstance(m.generator, Int8Linear) for m in double.model.models)
    src = ["sa sb sc sd .", "st sk sa .", "sq sr ss st sa sb ."]
    for beam in (1, 3):
        a, b = single.translate_n_best(src, beam=beam), double.translate_n_best(src, beam=beam)
        assert [x[0].text for x in a] == [x[0].text for x in b]
        for x, y in zip(a, b):  # float32 log-probabilities both ways (int8 logits are float32): rounding only
            assert x[0].score == pytest.approx(y[0].score, abs=1e-4 * (len(x[0].tgt_pieces) + 1))
