"""The shared core: padding never changes results, state carries, init is as documented."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seq2seq.kernels import activation
from seq2seq.kernels.padding import to_device
from seq2seq.models.recurrent import CELLS, Dropout, Recurrent, dropout, pack, reverse_padded, unpack

torch.manual_seed(0)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_padding_does_not_change_outputs_or_final_state(cell, bidirectional):
    rnn = Recurrent(5, [6, 7], cell, bidirectional).eval()
    lengths = torch.tensor([4, 2, 3])
    x = torch.randn(3, 4, 5)
    batched, state = rnn(x, lengths=lengths)
    for b, n in enumerate(lengths.tolist()):
        alone, alone_state = rnn(x[b : b + 1, :n])
        torch.testing.assert_close(batched[b, :n], alone[0], rtol=1e-5, atol=1e-5)
        assert torch.all(batched[b, n:] == 0)
        for layer, alone_layer in zip(state, alone_state):
            for t, t_alone in zip(layer, alone_layer):
                torch.testing.assert_close(t[:, b], t_alone[:, 0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cell", CELLS)
def test_carried_state_equals_one_long_sequence(cell):
    rnn = Recurrent(3, [4, 4], cell).eval()
    x = torch.randn(2, 10, 3)
    whole, _ = rnn(x)
    first, state = rnn(x[:, :6])
    second, _ = rnn(x[:, 6:], state)
    torch.testing.assert_close(torch.cat([first, second], 1), whole, rtol=1e-5, atol=1e-5)


def test_layers_of_different_sizes_like_the_sp500_lab():
    rnn = Recurrent(1, [50, 100])
    out, state = rnn(torch.randn(8, 50, 1))
    assert out.shape == (8, 50, 100)
    assert state[0][0].shape == (1, 8, 50) and state[1][1].shape == (1, 8, 100)


def test_lstm_init_forget_bias_one_and_orthogonal_recurrent_weights():
    rnn = Recurrent(4, [8], "lstm")
    lstm = rnn.layers[0]
    total = lstm.bias_ih_l0 + lstm.bias_hh_l0
    torch.testing.assert_close(total[8:16], torch.ones(8))
    assert torch.all(total[:8] == 0) and torch.all(total[16:] == 0)
    for block in lstm.weight_hh_l0.split(8):
        torch.testing.assert_close(block @ block.T, torch.eye(8), atol=1e-5, rtol=0)


def test_reverse_padded_keeps_padding_at_the_end():
    x = torch.tensor([[1, 2, 3], [4, 5, 0]]).unsqueeze(-1)
    out = reverse_padded(x, torch.tensor([3, 2])).squeeze(-1)
    assert out.tolist() == [[3, 2, 1], [5, 4, 0]]
    # without padding (a flip), batch first and time major, and its gradient
    leaf = torch.tensor([[1.0, 2, 3], [4, 5, 6]], requires_grad=True)
    x = leaf.unsqueeze(-1)
    out = reverse_padded(x, torch.tensor([3, 3]))
    assert out.squeeze(-1).tolist() == [[3, 2, 1], [6, 5, 4]]
    assert reverse_padded(x.transpose(0, 1), torch.tensor([3, 3]), time_major=True).squeeze(-1).t().tolist() == [
        [3, 2, 1], [6, 5, 4]]  # fmt: skip
    (out.squeeze(-1) * torch.tensor([[1.0, 10, 100], [1, 10, 100]])).sum().backward()
    assert leaf.grad.tolist() == [[100, 10, 1], [100, 10, 1]]


def test_pack_and_unpack_are_torchs_own():
    """`pack` / `unpack` are pack_padded_sequence / pad_packed_sequence without their host-device copies of the
    sort order (on a GPU those made the host wait at every batch); on a CPU `to_device` is a plain `.to`."""
    x, lengths = torch.randn(5, 6, 3), torch.tensor([3, 6, 1, 6, 4])
    ours, torchs = pack(x, lengths), pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    for field in ("data", "batch_sizes", "sorted_indices", "unsorted_indices"):
        assert torch.equal(getattr(ours, field), getattr(torchs, field)), field
    assert torch.equal(unpack(ours, 7), pad_packed_sequence(torchs, batch_first=True, total_length=7)[0])
    assert to_device(lengths, "cpu") is lengths


def test_unknown_cell_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown cell 'lstn'"):
        Recurrent(3, [3], "lstn")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dropout_keeps_1_minus_p_scaled_and_backpropagates_through_the_same_mask(dtype):
    torch.manual_seed(0)
    x = torch.ones(200, 500, dtype=dtype, requires_grad=True)
    y = dropout(x, 0.3)
    assert y.dtype == dtype
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.7) < 0.01  # 100,000 draws: the standard error is 0.0015
    assert torch.allclose(y[kept].float(), torch.full_like(y[kept].float(), 1 / 0.7), rtol=1e-2)
    y.sum().backward()
    assert torch.equal(x.grad != 0, kept)  # dropped elements get no gradient, kept ones get the same scale
    assert dropout(x, 0.3, training=False) is x and dropout(x, 0.0) is x
    odd = dropout(torch.ones(3, 7, 5, dtype=dtype), 0.5)  # 105 elements: not a multiple of the 4 per 64-bit draw
    assert odd.shape == (3, 7, 5) and set(odd.float().unique().tolist()) <= {0.0, 2.0}
    assert torch.equal(Dropout(0.3).eval()(x), x)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_padded_run_without_final_state_equals_the_packed_run_and_its_gradients(cell, bidirectional):
    torch.manual_seed(1)
    rnn = Recurrent(5, [6, 7], cell, bidirectional, dropout=0.0)
    lengths = torch.tensor([4, 2, 3, 1])
    x = torch.randn(4, 4, 5, requires_grad=True)
    weights = torch.randn(4, 4, rnn.output_size)
    packed, _ = rnn(x, lengths=lengths)
    (packed * weights).sum().backward()
    grads = [x.grad.clone()] + [p.grad.clone() for p in rnn.parameters()]
    x.grad = None
    rnn.zero_grad()
    padded, state = rnn(x, lengths=lengths, final_state=False)
    assert state is None
    torch.testing.assert_close(padded, packed, rtol=1e-5, atol=1e-6)  # padding is zero in both
    (padded * weights).sum().backward()
    for g, g_padded in zip(grads, [x.grad] + [p.grad for p in rnn.parameters()]):
        torch.testing.assert_close(g_padded, g, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("how", activation.KINDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_one_step_lstm_decoding_path_equals_the_fused_kernel(dtype, how, monkeypatch):
    """Without autograd, a one-step call on the CPU takes Recurrent._lstm_step (one matmul per layer); stepping a
    sequence through it gives what the fused kernel gives for the whole sequence, and the state it carries (its
    tanh computed by torch.tanh or as sigmoids)."""
    monkeypatch.setattr(activation, "_cpu_tanh", how)
    rnn = Recurrent(5, [6, 7], "lstm").eval().to(dtype)
    x = torch.randn(3, 4, 5, dtype=dtype)
    h0 = [(torch.randn(1, 3, n, dtype=dtype), torch.randn(1, 3, n, dtype=dtype)) for n in (6, 7)]
    fused, fused_state = rnn(x, h0)  # autograd on: the fused kernel
    state, steps = h0, []
    with torch.inference_mode():
        for t in range(4):
            out, state = rnn(x[:, t : t + 1], state)
            steps.append(out)
    assert rnn._joined[0][1].shape == (24, 11)  # the path ran: its joined weights are cached
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 0.05, "atol": 0.03}
    torch.testing.assert_close(torch.cat(steps, 1), fused.detach(), **tol)
    for layer, fused_layer in zip(state, fused_state):
        for t, t_fused in zip(layer, fused_layer):
            assert t.dtype == dtype
            torch.testing.assert_close(t, t_fused.detach(), **tol)


def test_one_step_path_sees_updated_weights():
    rnn = Recurrent(3, [4], "lstm").eval()
    x, h = torch.randn(2, 1, 3), (torch.zeros(1, 2, 4), torch.zeros(1, 2, 4))
    with torch.no_grad():
        before, _ = rnn(x, [h])
        rnn.layers[0].bias_ih_l0.add_(1.0)  # what an optimizer step does: in place
        after, _ = rnn(x, [h])
        expected, _ = rnn.layers[0](x, h)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, expected, rtol=1e-5, atol=1e-5)


def test_tanh_as_sigmoids_is_tanh(monkeypatch):
    x = torch.linspace(-12, 12, 4001)
    gates = torch.randn(7, 4 * 5) * 4
    expected = torch.cat([gates[:, :10].sigmoid(), gates[:, 10:15].tanh(), gates[:, 15:].sigmoid()], 1)
    for how in activation.KINDS:
        monkeypatch.setattr(activation, "_cpu_tanh", how)
        assert activation.via_sigmoid(x) == (how == "sigmoid")
        assert not activation.via_sigmoid(x.bfloat16())  # bf16 tanh is torch's own vector code
        torch.testing.assert_close(activation.tanh(x), torch.tanh(x), rtol=0, atol=3e-7)
        torch.testing.assert_close(activation.lstm_gates_(gates.clone()), expected, rtol=0, atol=3e-7)


def test_the_tanh_setting_is_checked(monkeypatch):
    monkeypatch.setattr(activation, "_cpu_tanh", None)  # restored after the test
    assert activation.choose_tanh("sigmoid") == "sigmoid" and activation.cpu_tanh() == "sigmoid"
    with pytest.raises(ValueError, match="tanh must be one of auto, native, sigmoid, got 'tan'"):
        activation.choose_tanh("tan")
    assert activation.cpu_tanh() == "sigmoid"  # a refused choice changes nothing
    assert activation.choose_tanh("auto") == activation.auto_tanh()  # the fixed rule for this CPU
