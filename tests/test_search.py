"""Search properties on hand-built and random models: beam 1 == greedy, exact on a tiny vocabulary, batched ==
one at a time, the length penalty formula, the minimum length, n-gram blocking, unk ban, sampling filters."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import pytest
import torch

from seq2seq import search
from seq2seq.data.batching import pad
from seq2seq.kernels.topk import GROUPED_ROWS
from seq2seq.models.step import Shortlist, Step
from seq2seq.tokenizer import BOS, EOS, PAD, UNK

from .test_seq2seq import VARIANTS, V, model, sentences


@dataclass
class TableState:
    """State of the toy model below: the tokens so far, one row per hypothesis."""

    prefix: torch.Tensor  # (N, t)

    def select(self, index: torch.Tensor) -> TableState:
        return TableState(self.prefix.index_select(0, index))

    def beams(self, k: int) -> TableState:
        return self.select(torch.arange(self.prefix.shape[0]).repeat_interleave(k))


class TableModel:
    """A 'model' whose next-token distribution is a fixed random function of the whole prefix, so the best
    sequence can be found by brute force over every sequence."""

    def __init__(self, vocab: int = 6, seed: int = 0) -> None:
        self.vocab, self.seed = vocab, seed

    def encode(self, src, src_lengths) -> TableState:
        return TableState(torch.empty(src.shape[0], 0, dtype=torch.long))

    def log_probs_after(self, prefix: tuple[int, ...]) -> torch.Tensor:
        g = torch.Generator().manual_seed(hash((self.seed, prefix)) % (2**31))
        logits = torch.randn(self.vocab, generator=g) * 2
        logits[[PAD, BOS, UNK]] = float("-inf")
        return torch.log_softmax(logits, -1)

    def decode_step(self, tokens, state: TableState, normalize: bool = True):
        # log-probabilities are also valid unnormalized scores (normalize=False: a constant of 0 per row)
        prefix = torch.cat([state.prefix, tokens.unsqueeze(1)], 1)
        rows = [self.log_probs_after(tuple(p)) for p in prefix.tolist()]
        return Step(torch.stack(rows), TableState(prefix), None)


def brute_force_best(m: TableModel, max_len: int, alpha: float) -> tuple[list[int], float]:
    best, best_score = None, -math.inf
    words = range(EOS + 1, m.vocab)
    for n in range(max_len):
        for seq in itertools.product(words, repeat=n):
            full = (BOS, *seq)
            lp = sum(float(m.log_probs_after(full[: i + 1])[tok]) for i, tok in enumerate([*seq, EOS]))
            score = lp / search.length_penalty(n + 1, alpha)
            if score > best_score:
                best, best_score = list(seq), score
    return best, best_score


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_a_wide_beam_finds_the_brute_force_best(alpha):
    m = TableModel()
    max_len = 4  # sequences of up to 3 words + EOS; the 4th step is the length limit
    src = torch.zeros(1, 1, dtype=torch.long)
    hyps = search.beam_search(m, src, torch.tensor([1]), beam_size=64, alpha=alpha, max_len_ratio=0.0 + max_len - 10)
    # max_lengths = ratio * 1 + 10: choose the ratio so that the limit is max_len steps
    best, best_score = brute_force_best(m, max_len, alpha)
    assert hyps[0][0].tokens == best
    assert hyps[0][0].score == pytest.approx(best_score, abs=1e-4)


class EndsNowOrNever(TableModel):
    """EOS is nearly certain right after BOS and impossible later: one hypothesis finishes at the first step, and
    no other ever does before the length limit."""

    def __init__(self) -> None:
        super().__init__()
        self.steps = 0

    def log_probs_after(self, prefix: tuple[int, ...]) -> torch.Tensor:
        logits = torch.zeros(self.vocab)
        logits[[PAD, BOS, UNK]] = float("-inf")
        logits[EOS] = 8.0 if len(prefix) == 1 else float("-inf")
        return torch.log_softmax(logits, -1)

    def decode_step(self, tokens, state: TableState, normalize: bool = True):
        self.steps += 1
        return super().decode_step(tokens, state, normalize)


@pytest.mark.parametrize("alpha", [0.0, 0.6])
def test_beam_search_stops_once_no_live_beam_can_win(alpha):
    m = EndsNowOrNever()
    hyps = search.beam_search(m, torch.zeros(1, 3, dtype=torch.long), torch.tensor([3]), beam_size=4, alpha=alpha)
    assert hyps[0][0].tokens == [] and m.steps == 1  # not 3 * 1.5 + 10 steps waiting for 4 finished hypotheses
    m.steps = 0
    two = search.beam_search(m, torch.zeros(1, 3, dtype=torch.long), torch.tensor([3]), beam_size=4, n_best=2)
    assert len(two[0]) == 2 and m.steps == 14  # the second best can only come at the length limit


@pytest.mark.parametrize("kw", VARIANTS)
def test_beam_of_one_equals_greedy(kw):
    m = model(**kw)
    src = sentences(6)
    lengths = torch.tensor([len(s) for s in src])
    greedy = search.greedy(m, pad(src), lengths)
    beam = search.beam_search(m, pad(src), lengths, beam_size=1)
    assert [h[0].tokens for h in beam] == greedy


def test_without_attention_the_same_hypotheses_and_no_weights():
    m = model()
    src = sentences(5, seed=3)
    lengths = torch.tensor([len(s) for s in src])
    for decode in (search.sample, lambda *a, **k: [h[0] for h in search.beam_search(*a, beam_size=3, **k)]):
        kept, dropped = decode(m, pad(src), lengths), decode(m, pad(src), lengths, attention=False)
        assert [h.tokens for h in dropped] == [h.tokens for h in kept]
        assert [h.score for h in dropped] == [h.score for h in kept]
        assert all(h.attention for h in kept) and not any(h.attention for h in dropped)


def test_greedy_without_scores_asks_for_logits_and_picks_the_same_tokens():
    m = model()
    src = sentences(6, seed=4)
    lengths = torch.tensor([len(s) for s in src])
    scored, unscored = search.sample(m, pad(src), lengths), search.sample(m, pad(src), lengths, scores=False)
    assert [h.tokens for h in unscored] == [h.tokens for h in scored]
    assert all(math.isnan(h.score) and math.isnan(h.log_prob) for h in unscored)
    assert all(h.score < 0 for h in scored)
    logits = m.decode_step(torch.tensor([BOS]), m.encode(pad(src[:1]), lengths[:1]), normalize=False).scores
    log_probs = m.decode_step(torch.tensor([BOS]), m.encode(pad(src[:1]), lengths[:1])).scores
    torch.testing.assert_close(torch.log_softmax(logits.float(), -1), log_probs)


class AlwaysNormalized:
    """A model that ignores normalize=False: beam search then ranks and scores by the full log-softmax."""

    def __init__(self, m) -> None:
        self.m = m

    def encode(self, src, src_lengths):
        return self.m.encode(src, src_lengths)

    def decode_step(self, tokens, state, normalize: bool = True):
        return self.m.decode_step(tokens, state)


def test_beam_search_on_logits_equals_beam_search_on_log_probabilities():
    # float32: the same hypotheses and scores (in bfloat16 the normalizer's precision is test_log_normalizer's)
    m = model(**VARIANTS[1])
    src = sentences(6, seed=5)
    lengths = torch.tensor([len(s) for s in src])
    fast = search.beam_search(m, pad(src), lengths, beam_size=4, n_best=2)
    full = search.beam_search(AlwaysNormalized(m), pad(src), lengths, beam_size=4, n_best=2)
    assert [[h.tokens for h in hyps] for hyps in fast] == [[h.tokens for h in hyps] for hyps in full]
    for a, b in zip(fast, full):
        assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-5)


def test_greedy_search_takes_its_argmax_over_the_shortlist_and_beam_search_over_every_piece():
    m = model(**VARIANTS[1])
    src = sentences(6, seed=6)
    lengths = torch.tensor([len(s) for s in src])

    def greedy(decoder):
        return search.sample(decoder, pad(src), lengths, scores=False)

    plain = greedy(m)
    every = Shortlist(m, torch.arange(V).flip(0))  # every piece, in another order: the same search
    assert [h.tokens for h in greedy(every)] == [h.tokens for h in plain]
    short = Shortlist(m, torch.tensor([EOS, *range(4, V, 2)]))
    allowed = set(short.ids.tolist())
    assert all(set(h.tokens) <= allowed for h in greedy(short))
    assert any(set(h.tokens) - allowed for h in plain)  # without the shortlist, other pieces did come out
    # with scores, greedy search asks for log-probabilities, which a Shortlist gives over every piece
    scored = search.sample(short, pad(src), lengths)
    assert [(h.tokens, h.score) for h in scored] == [(h.tokens, h.score) for h in search.sample(m, pad(src), lengths)]
    # beam search scores need the normalizer over every piece: a shortlist's logits are an error
    with pytest.raises(ValueError, match="every piece"):
        search.beam_search(short, pad(src), lengths, beam_size=3, n_best=2)


def test_log_normalizer_is_logsumexp():
    logits = torch.randn(7, 1000) * 4
    logits[0, :500] = float("-inf")
    logits[1] = 0.0  # flat: the top entry's log-probability is log(1/1000)
    for dtype, tolerance in ((torch.float32, 1e-5), (torch.bfloat16, 0.02)):
        x = logits.to(dtype)
        got = search.log_normalizer(x, x.float().argmax(-1, keepdim=True))
        assert got.dtype == torch.float32 and got.shape == (7, 1)
        torch.testing.assert_close(got.squeeze(1), torch.logsumexp(x.float(), -1), rtol=0, atol=tolerance)


class RowCounter:
    """Passes decode_step through and records how many rows each step decoded."""

    def __init__(self, m) -> None:
        self.m, self.rows = m, []

    def encode(self, src, src_lengths):
        return self.m.encode(src, src_lengths)

    def decode_step(self, tokens, state, **kwargs):
        self.rows.append(tokens.shape[0])
        return self.m.decode_step(tokens, state, **kwargs)


@pytest.mark.parametrize("kw", VARIANTS[:3])
def test_batched_beam_equals_one_sentence_at_a_time(kw):
    m = RowCounter(model(**kw))
    src = sentences(12, seed=7)
    lengths = torch.tensor([len(s) for s in src])
    batched = search.beam_search(m, pad(src), lengths, beam_size=4, n_best=3, min_length=4)  # random models end early
    assert len(set(m.rows)) > 2 and all(rows % 4 == 0 for rows in m.rows[1:])  # blocks of 4 beams left in buckets
    for s, hyps in zip(src, batched):
        alone = search.beam_search(m.m, pad([s]), torch.tensor([len(s)]), beam_size=4, n_best=3, min_length=4)[0]
        assert [h.tokens for h in alone] == [h.tokens for h in hyps]
        assert [h.score for h in alone] == pytest.approx([h.score for h in hyps], abs=1e-4)
        assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)


def test_batched_greedy_equals_one_sentence_at_a_time_with_finished_rows_kept_as_padding():
    m = RowCounter(model(**VARIANTS[1]))
    src = sentences(40, seed=8)
    lengths = torch.tensor([len(s) for s in src])
    batched = search.sample(m, pad(src), lengths)
    limits = search.max_lengths(lengths, 1.5).tolist()
    ends = [min(len(h.tokens) + 1, limit) for h, limit in zip(batched, limits)]  # steps until EOS or the limit
    live = [sum(end > t for end in ends) for t in range(len(m.rows))]
    assert m.rows == [search.row_bucket(n, 40) for n in live]  # rows decoded = live sentences, rounded up
    assert any(rows > n for rows, n in zip(m.rows, live))  # finished rows were kept as padding
    for s, hyp in zip(src, batched):
        alone = search.sample(m.m, pad([s]), torch.tensor([len(s)]))[0]
        assert alone.tokens == hyp.tokens
        assert alone.score == pytest.approx(hyp.score, abs=1e-4)
        assert len(alone.attention) == len(hyp.attention)


def test_row_buckets_are_few_and_hold_every_live_row():
    buckets = [search.row_bucket(n, 256) for n in range(257)]
    assert buckets[0] == 0 and all(n <= b <= 256 for n, b in enumerate(buckets))
    assert all(b <= max(n + 3, n * 9 / 8) for n, b in enumerate(buckets))  # at most an eighth more (or 3 rows)
    assert len(set(buckets)) <= 33
    assert [search.row_bucket(n, 3) for n in range(4)] == [0, 3, 3, 3]  # a batch of 3 rows stays whole


def test_length_penalty_formula():
    assert search.length_penalty(1, 0.0) == 1.0
    assert search.length_penalty(1, 0.6) == pytest.approx(1.0)
    assert search.length_penalty(10, 0.6) == pytest.approx((15 / 6) ** 0.6)
    m = TableModel(seed=3)
    hyp = search.beam_search(m, torch.zeros(1, 1, dtype=torch.long), torch.tensor([1]), beam_size=3, alpha=0.6)[0][0]
    assert hyp.score == pytest.approx(hyp.log_prob / ((5 + len(hyp.tokens) + 1) / 6) ** 0.6)


@pytest.mark.parametrize("decode", ["beam", "greedy", "sample"])
def test_eos_is_never_emitted_before_the_minimum_length(decode):
    m = model(attention="luong", input_feeding=False)
    src = sentences(6)
    lengths = torch.tensor([len(s) for s in src])
    if decode == "beam":
        outs = [h[0].tokens for h in search.beam_search(m, pad(src), lengths, beam_size=3, min_length=12)]
    else:
        temperature = 1.0 if decode == "sample" else 0.0
        outs = [h.tokens for h in search.sample(m, pad(src), lengths, min_length=12, temperature=temperature)]
    assert all(len(o) >= 12 for o in outs)


def test_ngram_blocking_and_unk_ban():
    history = torch.tensor([[5, 6, 7, 5, 6]])
    blocked = search.block_ngrams(torch.zeros(1, 9), history, 3)
    assert blocked[0, 7] == float("-inf") and torch.isfinite(blocked[0, [4, 5, 6, 8]]).all()
    m = model(attention="bahdanau", input_feeding=True)
    src = sentences(4)
    lengths = torch.tensor([len(s) for s in src])
    for hyps in search.beam_search(m, pad(src), lengths, beam_size=3, no_repeat_ngram=2, ban_unk=True):
        toks = hyps[0].tokens
        bigrams = list(zip(toks, toks[1:]))
        assert len(bigrams) == len(set(bigrams)) and UNK not in toks


def test_sampling_filters():
    log_probs = torch.log_softmax(torch.tensor([[0.0, 0.0, 0.0, 5.0, 4.0, 3.0, 1.0]]), -1).repeat(500, 1)
    g = torch.Generator().manual_seed(0)
    top2 = search._pick(log_probs, 1.0, 2, 1.0, g)[0]
    assert set(top2.tolist()) == {3, 4}
    nucleus = search._pick(log_probs, 1.0, 0, 0.5, g)[0]
    assert set(nucleus.tolist()) == {3}
    assert set(search._pick(log_probs, 0.0, 0, 1.0, g)[0].tolist()) == {3}


@pytest.mark.parametrize("V", [8000, 8003, 50, 7])
@pytest.mark.parametrize("k", [1, 10])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_topk_rows_gives_torch_topk_values_and_matching_indices(V, k, dtype):
    torch.manual_seed(V)
    scores = torch.randn(GROUPED_ROWS + 2, V)
    scores[0, : min(V, 40)] = 2.5  # ties at the top
    scores[1] = torch.randn(V).bfloat16().float()  # bf16 logits: many equal values
    scores[2, -1] = 9.0  # the maximum in the columns left over by the groups of 8
    scores[3, 5:] = float("-inf")
    scores = scores.to(dtype)
    k = min(k, V)
    for rows in (scores, scores[:6]):  # grouped columns, and torch.topk for a few rows
        values, index = search.topk_rows(rows, k)
        assert values.dtype == dtype and index.shape == (rows.shape[0], k)
        torch.testing.assert_close(values, rows.topk(k, dim=-1).values)
        torch.testing.assert_close(rows.gather(1, index), values)  # the indices point at those values ...
        assert all(len(set(row)) == k for row in index.tolist())  # ... each once


# --- beam search's pieces, on hand-computed examples


def test_top_tokens_normalizes_only_the_chosen_logits():
    probs = torch.tensor([[0.1, 0.2, 0.3, 0.4]])
    for scores, normalized in ((probs.log() + 7.0, False), (probs.log(), True)):  # logits: any constant per row
        values, tokens = search.top_tokens(scores, 2, normalized)
        assert tokens.tolist() == [[3, 2]]
        torch.testing.assert_close(values, torch.tensor([[0.4, 0.3]]).log())
    assert search.top_tokens(probs.log(), 10, True)[1].shape == (1, 4)  # no wider than the vocabulary


def test_candidates_are_the_2k_best_continuations_of_each_sentence():
    beam_scores = torch.tensor([[-1.0, -2.0], [0.0, float("-inf")]])  # sentence 1: only its first beam is live
    row_scores = torch.tensor([[-0.5, -1.0], [-0.25, -3.0], [-0.5, -1.0], [-0.25, -3.0]])
    row_tokens = torch.tensor([[5, 6], [7, 5], [5, 6], [7, 5]])
    scores, beam, token = search.candidates(beam_scores, row_scores, row_tokens)
    assert scores.tolist() == [[-1.5, -2.0, -2.25, -5.0], [-0.5, -1.0, float("-inf"), float("-inf")]]
    assert beam[0].tolist() == [0, 0, 1, 1] and token[0].tolist() == [5, 6, 7, 5]
    assert beam[1, :2].tolist() == [0, 0] and token[1, :2].tolist() == [5, 6]


def test_finish_takes_eos_among_the_first_k_and_everything_at_the_length_limit():
    # K = 2, three sentences; history: the one token of each beam so far (rows 2n, 2n + 1 are sentence n's beams)
    history = torch.tensor([[5], [6], [7], [8], [9], [10]])
    token = torch.tensor([[EOS, 11, EOS, 12], [13, EOS, 14, 15], [EOS, 16, 17, 18]])
    beam = torch.tensor([[1, 0, 0, 1], [0, 1, 0, 1], [0, 1, 0, 1]])
    scores = torch.tensor([[-1.0, -2.0, -3.0, -4.0], [-0.5, -1.0, -6.0, -7.0], [-1.0, -2.0, -3.0, -4.0]])
    at_limit, live = [False, True, False], torch.tensor([True, True, False])  # sentence 2 is done already
    attention = torch.arange(6.0).view(6, 1, 1)  # (rows, steps, source): each row's weight is its number
    found = search.finish(scores, beam, token, at_limit, live, history, attention, alpha=1.0)
    # sentence 0: the EOS of beam 1 (rank 0) finishes, the one at rank 2 does not; sentence 1 is at its limit:
    # both of its first K finish, with or without EOS
    assert [(n, h.tokens, h.log_prob, h.attention) for n, h in found] == [
        (0, [6], -1.0, [[1.0]]), (1, [7, 13], -0.5, [[2.0]]), (1, [8], -1.0, [[3.0]])]  # fmt: skip
    assert [h.score for _, h in found] == pytest.approx([-1.0 / (7 / 6), -0.5 / (8 / 6), -1.0 / (7 / 6)])
    assert search.finish(scores, beam, token, [False] * 3, live, history, None, 0.0)[0][1].attention == []
    unfinished = token.masked_fill(token == EOS, 20)
    assert search.finish(scores, beam, unfinished, [False] * 3, live, history, None, 0.0) == []


def test_continuing_keeps_the_k_best_that_do_not_end():
    scores = torch.tensor([[-1.0, -2.0, -3.0, -4.0]])
    beam, token = torch.tensor([[0, 1, 0, 1]]), torch.tensor([[EOS, 9, 10, EOS]])
    kept, kept_beam, kept_token = search.continuing(scores, beam, token, 2)
    assert kept.tolist() == [[-2.0, -3.0]] and kept_beam.tolist() == [[1, 0]] and kept_token.tolist() == [[9, 10]]


def test_sentence_done_when_no_live_beam_can_beat_its_n_best():
    one = [search.Hypothesis([], -1.0, -1.0)]
    done = search.sentence_done  # (finished, best_live, at_limit, max_len, beam_size, n_best, alpha)
    # max_len 1: a live beam's score can grow to at most its log-probability / ((5 + 2) / 6)
    assert done(one, -1.2, False, 1, 2, 1, 1.0)  # -1.2 / (7 / 6) = -1.03 < -1
    assert not done(one, -1.1, False, 1, 2, 1, 1.0)  # -0.94 > -1
    assert not done(one, -1.2, False, 1, 2, 2, 1.0)  # two best wanted, one finished
    assert not done(one, -1.2, False, 1, 2, 1, -0.5)  # a negative alpha: the penalty shrinks, no bound
    assert done(one, -0.1, True, 1, 2, 1, 1.0)  # at the length limit
    assert done([], float("-inf"), False, 1, 2, 1, 1.0)  # no live beam left
    assert done(one * 2, -0.1, False, 1, 2, 2, 1.0)  # beam_size finished hypotheses
