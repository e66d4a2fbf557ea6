"""Decoding by feeding each predicted token back in: greedy, sampling and beam search.

Search knows models only through the step contract of seq2seq/models/step.py (STYLE.md principle 6), so
translation models, ensembles, language models and a `Shortlist` of a decoder all decode here:
    state = model.encode(src, src_lengths)
    step = model.decode_step(tokens, state)                    # step.scores: log-probabilities (B, V)
    step = model.decode_step(tokens, state, normalize=False)   # step.scores: logits (B, V), or (B, V') over a
                                                               # shortlist with step.ids (V',) naming their pieces
    state = step.state.select(index)
    state = step.state.beams(k)       # k copies of each row, side by side: beam search's starting state
Greedy search without scores asks for logits (an argmax needs no normalizer) and maps columns through step.ids;
every other search asks for log-probabilities, or for logits over every piece (beam search's top-k).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import repeat

import torch
import torch.nn.functional as F
from torch import Tensor

from seq2seq.kernels.topk import topk_rows
from seq2seq.tokenizer import BOS, EOS, PAD, UNK


@dataclass
class Hypothesis:
    tokens: list[int]  # without BOS/EOS
    score: float  # log-probability divided by the length penalty
    log_prob: float
    attention: list[list[float]] = field(default_factory=list)  # one row over the source per output step


def max_lengths(src_lengths: Tensor, ratio: float, extra: int = 10) -> Tensor:
    """Longest output allowed per sentence: ratio * source length + extra pieces."""
    return (src_lengths.float() * ratio).long() + extra


def row_bucket(live: int, rows: int) -> int:
    """Rows to decode on when `live` of the batch's `rows` are still live: `live` rounded up to a multiple of an
    eighth of its power of two (at least 4), at most `rows`. A CPU matrix product compiles oneDNN kernels for each
    new row count: while finished sentences left the batch one by one, a fresh process decoded greedily 30% slower
    than the same process's second pass (Sapphire Rapids; 14% on an AMD EPYC). With buckets a batch goes through at
    most 32 row counts, for about 4% more rows decoded (6% at most for each live count on average)."""
    if live == 0:
        return 0
    step = max(4, (1 << (live.bit_length() - 1)) // 8)
    return min(rows, -(-live // step) * step)


def bucket_rows(finished: Tensor, live: int) -> Tensor | None:
    """finished (N,) True at rows that are done, `live` the number of others -> the index of the rows to decode on:
    every live row and the first finished ones up to `row_bucket(live, N)` rows, in their order; None to keep all."""
    rows = row_bucket(live, finished.numel())
    if rows == finished.numel():
        return None
    return torch.sort(finished.to(torch.uint8), stable=True).indices[:rows].sort().values


def length_penalty(length: int | Tensor, alpha: float) -> float | Tensor:
    """GNMT (Wu et al. 2016): ((5 + |Y|) / 6) ** alpha; alpha = 0 means none."""
    return ((5 + length) / 6) ** alpha


def block_ngrams(log_probs: Tensor, history: Tensor, n: int) -> Tensor:
    """Forbid any token that would repeat an n-gram already in each row of `history` (N, t).

    history [a b c a b], n = 3: the last 2 tokens "a b" occurred before, followed by "c", so "c" is banned.
    """
    N, t = history.shape
    if n < 1 or t < n:
        return log_probs
    if n == 1:
        return log_probs.scatter(1, history, float("-inf"))
    windows = history.unfold(1, n, 1)  # (N, t-n+1, n): every n-gram so far
    tail = history[:, t - n + 1 :].unsqueeze(1)  # (N, 1, n-1): the last n-1 tokens
    match = (windows[:, :, :-1] == tail).all(-1)  # (N, W)
    banned = torch.where(match, windows[:, :, -1], torch.full_like(windows[:, :, -1], PAD))
    return log_probs.scatter(1, banned, float("-inf"))  # PAD stands for "no match": banning it costs nothing


def log_normalizer(logits: Tensor, top: Tensor) -> Tensor:
    """log sum_v exp(logits[:, v]) per row (R, 1), in float32, as the logit minus the log-probability of the entry
    `top` (R, 1) of each row (its largest). For bfloat16 logits, one fused bf16 log-softmax pass: half the time of a
    float32 copy and log-softmax, which took a quarter of a beam step. Its rounding moves the result by under 0.004
    when the top piece holds most of the probability, and up to 0.02 for a flat row (tests/test_search.py)."""
    log_probs = F.log_softmax(logits, -1)
    return logits.gather(1, top).float() - log_probs.gather(1, top).float()


def _mask(log_probs: Tensor, step: int, min_length: int, ban_unk: bool) -> Tensor:
    if step < min_length:
        log_probs = log_probs.index_fill(1, torch.tensor([EOS], device=log_probs.device), float("-inf"))
    if ban_unk:
        log_probs = log_probs.index_fill(1, torch.tensor([UNK], device=log_probs.device), float("-inf"))
    return log_probs


def _pick(log_probs: Tensor, temperature: float, top_k: int, top_p: float, generator) -> tuple[Tensor, Tensor]:
    """(token, its log-probability) per row: the argmax when temperature is 0, else a sample from the temperature /
    top-k / top-p filtered distribution."""
    if temperature <= 0:  # topk_rows: 1.6x faster than max(dim) over bfloat16 logits, 2.5x faster than argmax + gather
        best, tokens = topk_rows(log_probs, 1)
        return tokens.squeeze(1), best.squeeze(1)
    logits = log_probs / temperature
    if top_k > 0:
        kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if 0 < top_p < 1:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop = cumulative - sorted_logits.softmax(-1) >= top_p  # keep the smallest prefix reaching top_p
        logits = logits.scatter(1, order, sorted_logits.masked_fill(drop, float("-inf")))
    tokens = torch.multinomial(logits.softmax(-1), 1, generator=generator)
    return tokens.squeeze(1), log_probs.gather(1, tokens).squeeze(1)


@torch.inference_mode()
def sample(
    model,
    src: Tensor,
    src_lengths: Tensor,
    max_len_ratio: float = 1.5,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    min_length: int = 0,
    ban_unk: bool = False,
    generator: torch.Generator | None = None,
    start_tokens: Tensor | None = None,
    max_len: int | None = None,
    attention: bool = True,
    scores: bool = True,
) -> list[Hypothesis]:
    """One hypothesis per sentence: greedy (temperature 0) or sampled. Finished sentences leave the batch
    (kept as padding rows until the live ones fit a smaller `row_bucket`).

    start_tokens (B,): the first tokens fed in (default BOS; a language model continues from its prompt's last token).
    max_len: the most tokens generated per sentence, instead of the limit from max_len_ratio.
    attention: keep each step's attention weights in the hypotheses (False: leave them empty, which is faster).
    scores: compute each hypothesis's log-probability; greedy search without them (score and log_prob NaN) asks the
    model for logits (normalize=False) and skips the normalizer, a pass over the vocabulary at every step.
    """
    state = model.encode(src, src_lengths)
    B = src.shape[0]
    limits = max_lengths(src_lengths, max_len_ratio).to(src.device) if max_len is None else torch.full(
        (B,), max_len, device=src.device)  # fmt: skip
    alive = torch.arange(B, device=src.device)  # original index of each row, -1 for a finished row kept as padding
    tokens = torch.full((B,), BOS, dtype=torch.long) if start_tokens is None else start_tokens
    tokens = tokens.to(src.device)
    score = torch.zeros(B, device=src.device)
    steps: list[tuple[Tensor, Tensor, Tensor | None]] = []  # (alive, token, attention) per step, read at the end
    final = torch.zeros(B, device=src.device)
    t, live = 0, B
    while live > 0:
        logits_only = not scores and temperature <= 0 and t >= min_length and not ban_unk  # an argmax of logits
        log_probs, state, weights, ids = model.decode_step(tokens, state, normalize=not logits_only)
        if attention and weights is None:
            weights = log_probs.new_zeros(log_probs.shape[0], 0)
        if not logits_only:
            log_probs = _mask(log_probs, t, min_length, ban_unk)
        tokens, token_log_prob = _pick(log_probs, temperature, top_k, top_p, generator)
        if ids is not None:  # columns of a shortlist -> piece ids
            tokens = ids[tokens]
        score = score + token_log_prob
        steps.append((alive, tokens, weights if attention else None))
        t += 1
        done = (alive >= 0) & ((tokens == EOS) | (limits[alive] <= t))
        if bool(done.any()):
            final[alive[done]] = score[done]
            alive = alive.masked_fill(done, -1)
            live -= int(done.sum())
            keep = bucket_rows(alive < 0, live)
            if keep is not None:
                alive, tokens, score, state = alive[keep], tokens[keep], score[keep], state.select(keep)
    results = [Hypothesis([], 0.0, 0.0) for _ in range(B)]
    for rows, toks, att in steps:
        rows_weights = repeat(None) if att is None else att.float().tolist()
        for row, tok, weights in zip(rows.tolist(), toks.tolist(), rows_weights):
            if row < 0:
                continue
            if tok != EOS:
                results[row].tokens.append(tok)
            if weights is not None:
                results[row].attention.append(weights)
    for row, value in enumerate(final.tolist()):
        results[row].score = results[row].log_prob = value if scores else math.nan
    return results


def greedy(model, src: Tensor, src_lengths: Tensor, max_len_ratio: float = 1.5) -> list[list[int]]:
    """Batched greedy decoding -> token ids per sentence, without BOS/EOS."""
    return [h.tokens for h in sample(model, src, src_lengths, max_len_ratio)]


def top_tokens(scores: Tensor, width: int, normalized: bool) -> tuple[Tensor, Tensor]:
    """The `width` best tokens of each row of a step's scores (R, V) -> their log-probabilities (R, W) in float32
    and ids (R, W), best first. normalized=False: the scores are logits, which rank as the log-probabilities do:
    top-k on them, then normalize only those W (one pass over the vocabulary per row for the normalizer)."""
    row_scores, row_tokens = topk_rows(scores, min(width, scores.shape[-1]))
    if normalized:
        return row_scores, row_tokens
    return row_scores.float() - log_normalizer(scores, row_tokens[:, :1]), row_tokens


def candidates(beam_scores: Tensor, row_scores: Tensor, row_tokens: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The 2K best continuations of each sentence from its K beams.

    beam_scores (N, K): each beam's log-probability so far (-inf: no beam); row_scores, row_tokens (N*K, W): the W
    best next tokens of each beam (row n * K + k) and their log-probabilities (`top_tokens`). The 2K best
    continuations of a sentence are among the 2K best tokens of each of its beams, so with W = 2K the choice among
    K x W is exact. -> scores (N, C), beam (N, C) (which of the K), token (N, C), C = min(2K, K * W), best first.

    K = 2, W = 2, beam scores [-1, -2], row tokens [[5, 6], [7, 5]] with [-0.5, -1] and [-0.25, -3]:
    candidates -1.5 (beam 0, token 5), -2 (0, 6), -2.25 (1, 7), -5 (1, 5)."""
    N, K = beam_scores.shape
    W = row_scores.shape[-1]
    totals = (beam_scores.view(-1, 1) + row_scores).view(N, K * W)
    top_scores, top_index = totals.topk(min(2 * K, K * W), dim=-1)
    return top_scores, top_index // W, row_tokens.view(N, K * W).gather(1, top_index)


def finish(
    scores: Tensor, beam: Tensor, token: Tensor, at_limit: list[bool], live: Tensor, history: Tensor,
    attention: Tensor | None, alpha: float,
) -> list[tuple[int, Hypothesis]]:
    """The hypotheses that `candidates` (scores, beam, token: (N, C)) finish: those ending in EOS among each
    sentence's first K candidates (one below them would not have been kept as a beam either), and every one of
    the first K of a sentence at its length limit (at_limit: N flags). Only sentences with `live` (N,) True,
    only finite scores. history (N*K, t): each beam's tokens so far; attention (N*K, t, S) or None.
    -> (sentence block n, Hypothesis) pairs in row-major order; a hypothesis holds its tokens without EOS and its
    score divided by `length_penalty` of its length with EOS.

    K = 1, one sentence, history [[7]], candidates token [EOS, 5] with scores [-1, -2], alpha 0:
    [(0, Hypothesis([7], -1.0, -1.0))]."""
    N, K = live.shape[0], history.shape[0] // live.shape[0]
    ends = token == EOS
    if any(at_limit):
        ends |= torch.tensor(at_limit, device=token.device).unsqueeze(1)
    ends[:, K:] = False  # only the first K candidates may finish
    ends &= torch.isfinite(scores) & live.unsqueeze(1)
    if not bool(ends.any()):
        return []
    rows = (torch.arange(N, device=token.device).unsqueeze(1) * K + beam)[ends]
    seqs = torch.cat([history[rows], token[ends].unsqueeze(1)], 1).tolist()
    atts = attention[rows].tolist() if attention is not None else [[] for _ in seqs]
    found = []
    for n, seq, att, lp in zip(ends.nonzero()[:, 0].tolist(), seqs, atts, scores[ends].tolist()):
        out = seq[:-1] if seq[-1] == EOS else seq
        found.append((n, Hypothesis(out, lp / length_penalty(len(out) + 1, alpha), lp, att)))
    return found


def continuing(scores: Tensor, beam: Tensor, token: Tensor, K: int) -> tuple[Tensor, Tensor, Tensor]:
    """The K best candidates (N, C) of each sentence that do not end in EOS -> their scores, beam and token (N, K),
    best first (-inf where fewer than K are left)."""
    kept, pick = scores.masked_fill(token == EOS, float("-inf")).topk(K, dim=-1)
    return kept, beam.gather(1, pick), token.gather(1, pick)


def sentence_done(
    finished: list[Hypothesis], best_live: float, at_limit: bool, max_len: int, beam_size: int, n_best: int,
    alpha: float,
) -> bool:
    """Whether a sentence's search is over: it reached its length limit, has no live beam left (best_live -inf),
    has beam_size finished hypotheses, or (exactly: its n best cannot change) its n-th best finished score already
    beats what its best live beam could reach: a log-probability only falls, and the length penalty divides it by
    at most the penalty at the length limit (max_len + 1 with EOS; alpha >= 0 only, where the penalty grows).

    n_best 1, alpha 1, max_len 1 (penalty (5 + 2) / 6): a finished score of -1 beats a live -1.2 (-1.2 / (7 / 6)
    = -1.03), not a live -1.1 (-0.94)."""
    if at_limit or best_live == -math.inf or len(finished) >= beam_size:
        return True
    if alpha < 0 or len(finished) < n_best:
        return False
    nth = sorted((h.score for h in finished), reverse=True)[n_best - 1]
    return nth >= best_live / length_penalty(max_len + 1, alpha)


@torch.inference_mode()
def beam_search(
    model,
    src: Tensor,
    src_lengths: Tensor,
    beam_size: int = 5,
    n_best: int = 1,
    alpha: float = 0.6,
    max_len_ratio: float = 1.5,
    min_length: int = 0,
    no_repeat_ngram: int = 0,
    ban_unk: bool = False,
    start_tokens: Tensor | None = None,
    max_len: int | None = None,
    attention: bool = True,
) -> list[list[Hypothesis]]:
    """Batched beam search over sentences and beams at once -> the n best hypotheses of each sentence.

    Rows are laid out sentence-major: row b * K + k is beam k of sentence b. Each step takes the 2K best
    continuations of each sentence (`top_tokens`, `candidates`); those ending in EOS among the first K are finished
    (`finish`, scored with the GNMT `length_penalty`), the K best others go on (`continuing`). A sentence is done
    by `sentence_done`; done sentences leave the batch (their blocks kept as padding until the live ones fit a
    smaller `row_bucket`). The model scores every piece: a step over a shortlist is an error.
    start_tokens, max_len and attention are as in `sample`.
    """
    K = beam_size
    if n_best > K:
        raise ValueError(f"n_best ({n_best}) cannot exceed the beam size ({K})")
    B, device = src.shape[0], src.device
    state = model.encode(src, src_lengths)  # one row per sentence for the first step: its K beams start alike
    limits = max_lengths(src_lengths, max_len_ratio).tolist() if max_len is None else [max_len] * B
    sentence = torch.arange(B, device=device)  # original sentence of each block of K rows, -1: done, kept as padding
    live = B
    scores = torch.full((B, K), float("-inf"), device=device)
    scores[:, 0] = 0.0  # only the first beam is live at the start: the K beams would otherwise be copies
    tokens = torch.full((B,), BOS, dtype=torch.long, device=device) if start_tokens is None else start_tokens.to(device)
    history = torch.empty((B * K, 0), dtype=torch.long, device=device)
    attn_history: Tensor | None = None
    finished: list[list[Hypothesis]] = [[] for _ in range(B)]
    t = 0
    while live > 0:
        masked = t < min_length or ban_unk or no_repeat_ngram > 0  # forbidden tokens need log-probabilities
        step_scores, state, weights, ids = model.decode_step(tokens, state, normalize=masked)
        if ids is not None:
            raise ValueError("beam search scores every piece: give it the model, not a Shortlist of it")
        if masked:  # forbidden tokens leave the log-probabilities of the others as they are
            step_scores = _mask(step_scores, t, min_length, ban_unk)
            if no_repeat_ngram:
                step_scores = block_ngrams(step_scores, history, no_repeat_ngram)
        row_scores, row_tokens = top_tokens(step_scores, 2 * K, normalized=masked)  # (active*K, W)
        if t == 0:  # the first step ran once per sentence: now each sentence gets its K beams (only the first live)
            row_scores, row_tokens, state = row_scores.repeat_interleave(K, 0), row_tokens.repeat_interleave(K, 0), (
                state.beams(K))  # fmt: skip
        if attention:
            if weights is None:
                weights = row_scores.new_zeros(row_scores.shape[0], 0)
            elif t == 0:
                weights = weights.repeat_interleave(K, 0)
            attn_history = weights.float().unsqueeze(1) if attn_history is None else torch.cat(
                [attn_history, weights.float().unsqueeze(1)], 1)  # fmt: skip
        top_scores, beam, token = candidates(scores, row_scores, row_tokens)  # (active, 2K)
        t += 1
        sentences = sentence.tolist()
        at_limit = [s >= 0 and limits[s] <= t for s in sentences]
        for n, hyp in finish(top_scores, beam, token, at_limit, sentence >= 0, history, attn_history, alpha):
            if len(finished[sentences[n]]) < K:
                finished[sentences[n]].append(hyp)
        scores, beam, token = continuing(top_scores, beam, token, K)  # (active, K)
        rows = (torch.arange(len(sentences), device=device).unsqueeze(1) * K + beam).view(-1)
        history = torch.cat([history[rows], token.view(-1, 1)], 1)
        attn_history = attn_history[rows] if attention else None
        tokens = token.view(-1)
        state = state.select(rows)
        best_live = scores[:, 0].tolist()  # topk sorts: column 0 is the best
        stop = [s >= 0 and sentence_done(finished[s], best, limit, limits[s], K, n_best, alpha)
                for s, best, limit in zip(sentences, best_live, at_limit)]  # fmt: skip
        if any(stop):
            sentence = sentence.masked_fill(torch.tensor(stop, device=device), -1)
            live -= sum(stop)
            keep = bucket_rows(sentence < 0, live)  # a done sentence's block stays as padding until then
            if keep is not None:
                rows = (keep.unsqueeze(1) * K + torch.arange(K, device=device)).view(-1)
                sentence, scores, tokens = sentence[keep], scores[keep], tokens[rows]
                history, state = history[rows], state.select(rows)
                attn_history = attn_history[rows] if attention else None
    return [sorted(hyps, key=lambda h: -h.score)[:n_best] for hyps in finished]
