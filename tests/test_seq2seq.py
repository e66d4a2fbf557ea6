"""Model and search properties: teacher forcing == step-by-step, batched == one by one, padding-invariant."""

from __future__ import annotations

from dataclasses import fields

import pytest
import torch

from seq2seq import search
from seq2seq.data.batching import collate, pad
from seq2seq.models.seq2seq import Seq2Seq, Seq2SeqShape, TrainingLoss, sampling_probability
from seq2seq.tokenizer import BOS

V = 17
SHAPE_FIELDS = {f.name for f in fields(Seq2SeqShape)}


def model(**kw) -> Seq2Seq:
    """A small model in eval mode: kw are Seq2SeqShape fields and Seq2Seq's own arguments (dropout, target_ids, ...)."""
    torch.manual_seed(0)
    args = dict(embedding_size=8, encoder_hidden=6, encoder_layers=2, decoder_hidden=10, decoder_layers=2, dropout=0.0)
    args.update(kw)
    shape = Seq2SeqShape(V, V, **{k: v for k, v in args.items() if k in SHAPE_FIELDS})
    return Seq2Seq(shape, **{k: v for k, v in args.items() if k not in SHAPE_FIELDS}).eval()


def sentences(n: int, lo: int = 2, hi: int = 7, seed: int = 1) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(4, V, (int(torch.randint(lo, hi, (1,), generator=g)),), generator=g).tolist() for _ in range(n)]


VARIANTS = [
    dict(attention="bahdanau", input_feeding=True),
    dict(attention="luong", input_feeding=False),
    dict(attention="luong", input_feeding=True, tie_embeddings=True),
    dict(attention="bahdanau", input_feeding=False, cell="gru"),
    dict(attention="luong", input_feeding=True, cell="peephole", share_embeddings=True),
    dict(attention="bahdanau", input_feeding=False, cell="rnn", bidirectional=False),
    dict(attention="luong", input_feeding=False, context_feeding=True, decoder_layers=3),
    dict(attention="bahdanau", input_feeding=False, context_feeding=True, cell="gru"),
    dict(attention="bahdanau", input_feeding=True, bridge=False),
]


@pytest.mark.parametrize("kw", VARIANTS)
def test_teacher_forced_forward_equals_step_by_step_decoding(kw):
    m = model(**kw)
    batch = collate(sentences(4), sentences(4, seed=2))
    with torch.no_grad():
        logits = m(batch.src, batch.src_lengths, batch.tgt_in)  # (B, T, V)
        state = m.encode(batch.src, batch.src_lengths)
        for t in range(batch.tgt_in.shape[1]):
            log_probs, state, _, _ = m.decode_step(batch.tgt_in[:, t], state)
            torch.testing.assert_close(log_probs, torch.log_softmax(logits[:, t], -1), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kw", VARIANTS)
def test_batched_greedy_equals_one_sentence_at_a_time(kw):
    m = model(**kw)
    src = sentences(6)
    batched = search.greedy(m, pad(src), torch.tensor([len(s) for s in src]))
    for s, hyp in zip(src, batched):
        alone = search.greedy(m, pad([s]), torch.tensor([len(s)]))
        assert alone[0] == hyp


def test_context_feeding_attends_from_the_bottom_layer_and_feeds_the_layers_above():
    m = model(attention="luong", input_feeding=False, context_feeding=True, decoder_layers=3)
    assert len(m.decoder.layers) == 1 and len(m.upper.layers) == 2
    assert m.upper.layers[0].input_size == 10 + 12  # [h1_t; c_t]: decoder hidden + the biLSTM memory
    batch = collate(sentences(3), sentences(3, seed=2))
    with torch.no_grad():
        state = m.encode(batch.src, batch.src_lengths)
        emb = m.tgt_embed(batch.tgt_in)
        h1, _ = m.decoder(emb, state.rnn[:1])
        _, weights = m._context(h1, state)  # the query is the bottom layer's output
        _, _, got = m._decode(emb, state)
        torch.testing.assert_close(got, weights)
        state = m.encode(batch.src, batch.src_lengths)
        state = m.decode_step(batch.tgt_in[:, 0], state).state
        assert len(state.rnn) == 3  # one state per decoder layer, bottom first
    for bad in (dict(input_feeding=True), dict(input_feeding=False, decoder_layers=1)):
        with pytest.raises(ValueError, match="context_feeding needs"):
            model(context_feeding=True, **bad)


def _outputs_and_gradients(m: Seq2Seq, batch, precision: torch.dtype | None = None):
    m.zero_grad()
    with torch.autocast("cpu", dtype=precision or torch.float32, enabled=precision is not None):
        logits = m(batch.src, batch.src_lengths, batch.tgt_in)
    logits.float().sin().sum().backward()  # a loss whose gradient differs at every output
    return logits.detach().float(), {name: p.grad.clone() for name, p in m.named_parameters()}


@pytest.mark.parametrize("attention", ["luong", "bahdanau"])
@pytest.mark.parametrize("layers", [1, 3])
def test_unrolled_input_feeding_loop_trains_like_the_plain_loop(attention, layers):
    """UnrolledLSTM, the deferred weight gradients and Luong attention's hand-written backward against a loop of
    the fused layers and autograd: same logits and parameter gradients (float32), close ones under bf16."""
    m = model(attention=attention, input_feeding=True, decoder_layers=layers).train()
    batch = collate(sentences(5), sentences(5, hi=9, seed=2))
    results = {}
    for unrolled in (True, False):
        m.unrolled = unrolled
        results[unrolled] = _outputs_and_gradients(m, batch), _outputs_and_gradients(m, batch, torch.bfloat16)
    (fast, fast_bf16), (plain, plain_bf16) = results[True], results[False]
    torch.testing.assert_close(fast[0], plain[0], rtol=1e-5, atol=1e-6)
    assert fast[1].keys() == plain[1].keys()
    for name, grad in plain[1].items():
        torch.testing.assert_close(fast[1][name], grad, rtol=1e-4, atol=1e-6, msg=name)
    torch.testing.assert_close(fast_bf16[0], plain_bf16[0], rtol=0.05, atol=0.02)
    # bf16 rounding in a different order: within 5% of each gradient's largest entry, plus 0.1% of the largest
    # entry of all (Bahdanau's query projection starts with gradients ~1e-7, below bf16's resolution of the rest)
    largest = max(grad.abs().max().item() for grad in plain_bf16[1].values())
    for name, grad in plain_bf16[1].items():
        error = (fast_bf16[1][name] - grad).abs().max().item()
        assert error <= 0.05 * grad.abs().max().item() + 1e-3 * largest, name


@pytest.mark.parametrize("input_feeding", [True, False])
def test_tanh_as_sigmoids_trains_and_decodes_like_tanh(monkeypatch, input_feeding):
    """tanh(x) = 2 sigmoid(2x) - 1 (Bahdanau's energies with the affine part folded into v, the LSTM gates): the same
    logits and parameter gradients (float32) through the unrolled input-feeding loop's hand-written backward and
    through autograd, and the same decoding step (the one-step LSTM path)."""
    from seq2seq.kernels import activation

    m = model(attention="bahdanau", input_feeding=input_feeding).train()
    batch = collate(sentences(5), sentences(5, hi=9, seed=2))
    results = {}
    for how in activation.KINDS:
        monkeypatch.setattr(activation, "_cpu_tanh", how)
        with torch.no_grad():
            state = m.encode(batch.src, batch.src_lengths)
            state = m.decode_step(batch.tgt_in[:, 0], state).state
            step = m.decode_step(batch.tgt_in[:, 1], state)
        results[how] = _outputs_and_gradients(m, batch), step
    (tanh, tanh_step), (sigmoid, sigmoid_step) = results["native"], results["sigmoid"]
    torch.testing.assert_close(sigmoid[0], tanh[0], rtol=1e-5, atol=1e-6)
    for name, grad in tanh[1].items():
        torch.testing.assert_close(sigmoid[1][name], grad, rtol=1e-4, atol=1e-6, msg=name)
    for a, b in zip(sigmoid_step[::2], tanh_step[::2]):  # log-probabilities and attention weights
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def _adam_losses(m: Seq2Seq, batch, steps: int = 40) -> list[float]:
    """Per-token training loss of `steps` Adam steps (lr 0.01) on one batch."""
    m.train()
    opt = torch.optim.Adam(m.parameters(), lr=0.01)
    losses = []
    for _ in range(steps):
        loss, n = m.loss(batch)
        opt.zero_grad()
        (loss / n).backward()
        opt.step()
        losses.append(loss.item() / n)
    return losses


def test_unrolled_loop_trains_like_the_plain_loop_with_dropout():
    """Dropout between layers and on the attentional output, in the plain loop's order (the same random draws),
    and Adam steps on the deferred weight gradients: the same loss trajectory, and it falls."""
    batch = collate(sentences(8), sentences(8, seed=2))
    trajectories = []
    for unrolled in (True, False):
        m = model(attention="luong", input_feeding=True, dropout=0.2, decoder_hidden=32)
        m.unrolled = unrolled
        trajectories.append(_adam_losses(m, batch))
    fast, plain = trajectories
    assert fast == pytest.approx(plain, rel=1e-4)
    assert fast[-1] < 0.6 * fast[0]


def test_without_a_bridge_the_decoder_starts_from_zeros_and_still_learns():
    m = model(attention="bahdanau", input_feeding=True, bridge=False, decoder_hidden=32)
    assert m.bridge is None and not any("bridge" in name for name, _ in m.named_parameters())
    batch = collate(sentences(8), sentences(8, seed=2))
    state = m.encode(batch.src, batch.src_lengths)
    assert all(bool((t == 0).all()) for layer in state.rnn for t in layer)
    losses = _adam_losses(m, batch)
    assert losses[-1] < 0.6 * losses[0]


def test_padding_does_not_change_the_loss():
    m = model()
    src, tgt = sentences(5), sentences(5, seed=3)
    total, count = m.loss(collate(src, tgt))
    parts = [m.loss(collate([s], [t])) for s, t in zip(src, tgt)]
    torch.testing.assert_close(total, sum(p[0] for p in parts), rtol=1e-4, atol=1e-4)
    assert count == sum(p[1] for p in parts) == sum(len(t) + 1 for t in tgt)


def test_greedy_respects_the_length_limit_and_strips_specials():
    m = model()
    src = sentences(3)
    out = search.greedy(m, pad(src), torch.tensor([len(s) for s in src]), max_len_ratio=0.5)
    for s, hyp in zip(src, out):
        assert len(hyp) <= int(len(s) * 0.5) + 10
        assert BOS not in hyp


def test_attention_ignores_padding():
    m = model(attention="bahdanau")
    state = m.encode(pad([[5, 6, 7], [8, 9]]), torch.tensor([3, 2]))
    weights = m.decode_step(torch.tensor([BOS, BOS]), state).attention
    assert weights[1, 2] == 0
    torch.testing.assert_close(weights.sum(-1), torch.ones(2))


def test_bf16_autocast_matches_fp32_on_a_small_case():
    m = model(attention="luong", input_feeding=False)
    batch = collate(sentences(8), sentences(8, seed=4))
    with torch.no_grad():
        fp32, n = m.loss(batch)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16, _ = m.loss(batch)
    assert abs(float(bf16) - float(fp32)) / float(fp32) < 0.02


def test_scheduled_sampling_schedules_rise_to_their_maximum():
    steps = (0, 50, 100, 200, 10_000)
    lin = [sampling_probability(step, "linear", 0.4, 100) for step in steps]
    sig = [sampling_probability(step, "inverse_sigmoid", 0.4, 100) for step in steps]
    for values in (lin, sig):
        assert values == sorted(values) and values[-1] == pytest.approx(0.4, abs=1e-3)
    assert lin[:3] == pytest.approx([0.0, 0.2, 0.4])
    assert sig[2] == pytest.approx(0.2)
    assert [sampling_probability(step, "off", 0.4, 100) for step in steps] == [0.0] * len(steps)
    assert sampling_probability(10**9, "inverse_sigmoid", 0.4, 100) == pytest.approx(0.4)  # z clamped: no overflow
    with pytest.raises(ValueError, match="unknown scheduled sampling"):
        sampling_probability(5, "cosine")
    with pytest.raises(ValueError, match="unknown scheduled sampling"):
        TrainingLoss(0.1, "cosine")


def test_full_scheduled_sampling_feeds_the_models_own_predictions():
    """With p = 1 every decoder input after the first is the model's previous argmax: the same path as greedy."""
    m = model(attention="luong", input_feeding=True)
    src, tgt = sentences(3, lo=4, hi=5), sentences(3, lo=6, hi=7, seed=9)  # equal lengths: no padding
    batch = collate(src, tgt)
    with torch.no_grad():
        logits = m(batch.src, batch.src_lengths, batch.tgt_in, sampling=1.0)
        state, tokens = m.encode(batch.src, batch.src_lengths), batch.tgt_in[:, 0]
        for t in range(batch.tgt_in.shape[1]):
            log_probs, state, _, _ = m.decode_step(tokens, state)
            torch.testing.assert_close(log_probs, torch.log_softmax(logits[:, t], -1), rtol=1e-4, atol=1e-5)
            tokens = log_probs.argmax(-1)
        # p = 0: plain teacher forcing again, in training mode too
        torch.testing.assert_close(m.train()(batch.src, batch.src_lengths, batch.tgt_in, sampling=0.0),
                                   model(attention="luong", input_feeding=True)(batch.src, batch.src_lengths,
                                                                                 batch.tgt_in))  # fmt: skip


def test_the_training_loss_smooths_and_samples_by_the_step_and_leaves_the_model_as_it_was():
    """TrainingLoss turns the step into the sampling probability and passes it with the label smoothing to
    Seq2Seq.loss; the model keeps nothing of it: the same loss afterwards, and nothing of training in its state."""
    m = model(attention="luong", input_feeding=True, target_ids=list(range(V - 2)))
    batch = collate(sentences(4), sentences(4, seed=5))
    loss = TrainingLoss(label_smoothing=0.1, scheduled_sampling="linear", sampling_max=1.0, sampling_steps=4)
    assert [loss.sampling(step) for step in (0, 2, 4, 9)] == [0.0, 0.5, 1.0, 1.0]
    with torch.no_grad():
        plain, count = m.loss(batch)
        assert torch.equal(m.loss(batch, label_smoothing=0.0, sampling=0.0)[0], plain)  # the defaults: plain NLL
        smoothed = m.loss(batch, label_smoothing=0.1)[0]
        assert not torch.equal(smoothed, plain)
        assert torch.equal(loss(m, batch, 0)[0], smoothed)  # p(0) = 0: teacher forcing
        sampled = loss(m, batch, 9)  # p = 1: no random draw decides, so the same each time
        assert sampled[1] == count and torch.equal(sampled[0], m.loss(batch, label_smoothing=0.1, sampling=1.0)[0])
        assert not torch.equal(sampled[0], smoothed)
        assert torch.equal(m.loss(batch)[0], plain)
    assert not hasattr(m, "step") and not hasattr(m, "set_step") and not hasattr(m, "label_smoothing")
    # checkpoints hold the weights and the target vocabulary only: nothing of the training step or loss
    assert set(m.state_dict()) == {name for name, _ in m.named_parameters()} | {"target_ids"}


def test_beam_state_shares_memory_while_rows_keep_their_sentence():
    torch.manual_seed(0)
    model = Seq2Seq(Seq2SeqShape(20, 20, 8, 8, 1, True, 16, 1, attention="luong", input_feeding=False)).eval()
    batch = collate([[5, 6, 7], [8, 9], [10]], [[5], [6], [7]])
    beams = model.encode(batch.src, batch.src_lengths).beams(2)  # rows 2b, 2b+1: two hypotheses of sentence b
    assert beams.memory.shape[0] == 3 and beams.rnn[0][0].shape[1] == 6
    shuffled = beams.select(torch.tensor([1, 0, 3, 3, 4, 5]))  # hypotheses reordered within their sentences
    assert shuffled.memory is beams.memory and shuffled.keys is beams.keys and shuffled.mask is beams.mask
    dropped = shuffled.select(torch.tensor([0, 1, 4, 5]))  # sentence 1 is done: its rows leave
    assert dropped.group == 2 and torch.equal(dropped.memory, beams.memory[[0, 2]])
    assert torch.equal(dropped.mask, beams.mask[[0, 2]])
    h_rows = [layer[0][0] for layer in dropped.rnn]
    assert torch.equal(h_rows[0], beams.rnn[0][0][0][[1, 0, 4, 5]])  # the recurrent state follows the hypotheses
    mixed = beams.select(torch.tensor([0, 2, 5]))  # not blocks of one sentence: each row gets its own memory again
    assert mixed.group == 1 and torch.equal(mixed.memory, beams.memory[[0, 1, 2]])


@pytest.mark.parametrize("kw", VARIANTS)
def test_shared_beam_memory_decodes_like_one_memory_per_row(kw):
    m = model(**kw)
    batch = collate(sentences(3), sentences(3, seed=2))
    k = 3
    with torch.no_grad():
        state = m.encode(batch.src, batch.src_lengths)
        shared, per_row = state.beams(k), state.select(torch.arange(3).repeat_interleave(k))
        assert shared.group == k and per_row.group == 1
        tokens = torch.randint(4, V, (3 * k,))
        for index in (torch.tensor([2, 0, 1, 3, 3, 5, 8, 7, 6]), torch.tensor([0, 1, 2, 6, 7, 8]), torch.tensor([4, 1])):
            a, shared, wa, _ = m.decode_step(tokens, shared)
            b, per_row, wb, _ = m.decode_step(tokens, per_row)
            torch.testing.assert_close(a, b)
            torch.testing.assert_close(wa, wb)
            shared, per_row, tokens = shared.select(index), per_row.select(index), tokens[index]
        assert shared.group == 1  # the last index broke the blocks
        torch.testing.assert_close(m.decode_step(tokens, shared)[0], m.decode_step(tokens, per_row)[0])


def test_a_target_vocabulary_trains_and_decodes_in_its_own_columns():
    """target_ids: embeddings and output layer have a row per listed piece; the loss maps pieces to columns
    (unlisted pieces -> UNK) and scores the logits over those columns only; to_pieces maps search output back."""
    from seq2seq.losses import token_nll
    from seq2seq.tokenizer import UNK

    ids = [0, 1, 2, 3, 4, 6, 9, 10, 13, 16]
    m = model(attention="bahdanau", input_feeding=True, target_ids=ids)
    assert m.generator.weight.shape[0] == m.tgt_embed.weight.shape[0] == len(ids)
    assert m.to_pieces([4, 5, 9, 3]) == [4, 6, 16, 3]
    tgt = [[4, 6, 9], [16, 5, 10, 13], [8, 4]]  # 5 and 8 are not listed
    batch = collate(sentences(3), tgt)
    columns = {p: c for c, p in enumerate(ids)}
    to_col = torch.tensor([columns.get(p, UNK) for p in range(V)])
    with torch.no_grad():
        total, count = m.loss(batch)
        logits = m(batch.src, batch.src_lengths, to_col[batch.tgt_in])
        expected, n = token_nll(logits, to_col[batch.tgt_out], 0.0, batch.n_tokens)
        ce = torch.nn.functional.cross_entropy(logits.reshape(-1, len(ids)), to_col[batch.tgt_out].reshape(-1),
                                               ignore_index=0, reduction="sum")  # fmt: skip
    assert count == n == 3 + 4 + 2 + 3  # the pieces and an EOS per sentence
    torch.testing.assert_close(total, expected)
    torch.testing.assert_close(total, ce, rtol=1e-5, atol=1e-5)
    hyps = search.greedy(m, batch.src, batch.src_lengths, max_len_ratio=2.0)
    assert all(0 <= t < len(ids) for h in hyps for t in h)
    # every piece listed, in order: the model without a target vocabulary, weights and all
    same, plain = model(target_ids=list(range(V))), model()
    for (name, a), (_, b) in zip(same.named_parameters(), plain.named_parameters()):
        torch.testing.assert_close(a, b, msg=name)
    with torch.no_grad():
        torch.testing.assert_close(same.loss(batch)[0], plain.loss(batch)[0])
    for bad in ([1, 2, 3, 5], [0, 1, 2, 3, 6, 5], [0, 1, 2, 3, V]):
        with pytest.raises(ValueError, match="target_ids"):
            model(target_ids=bad)
    with pytest.raises(ValueError, match="share_embeddings"):
        model(target_ids=ids, share_embeddings=True)
