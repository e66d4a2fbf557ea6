"""Decoding by feeding each predicted token back in.

Search knows models only through the step contract (STYLE.md principle 6):
    state = model.encode(src, src_lengths)
    log_probs, state, attention = model.decode_step(tokens, state)     # log_probs (B, V)
    state = state.select(index)
"""

from __future__ import annotations

import torch
from torch import Tensor

from seq2seq.tokenizer import BOS, EOS, PAD


def max_lengths(src_lengths: Tensor, ratio: float, extra: int = 10) -> Tensor:
    """Longest output allowed per sentence: ratio * source length + extra pieces."""
    return (src_lengths.float() * ratio).long() + extra


@torch.inference_mode()
def greedy(model, src: Tensor, src_lengths: Tensor, max_len_ratio: float = 1.5) -> list[list[int]]:
    """Batched greedy decoding -> token ids per sentence, without BOS/EOS.

    Finished sentences leave the batch (`state.select`), so long sentences do not make short ones pay.
    """
    state = model.encode(src, src_lengths)
    limits = max_lengths(src_lengths, max_len_ratio).to(src.device)
    B = src.shape[0]
    results: list[list[int]] = [[] for _ in range(B)]
    alive = torch.arange(B, device=src.device)  # original index of each row still decoding
    tokens = torch.full((B,), BOS, dtype=torch.long, device=src.device)
    steps: list[tuple[Tensor, Tensor]] = []  # (alive, token) per step, read back once at the end
    t = 0
    while alive.numel() > 0:
        log_probs, state, _ = model.decode_step(tokens, state)
        tokens = log_probs.argmax(dim=-1)
        steps.append((alive, tokens))
        t += 1
        done = (tokens == EOS) | (limits[alive] <= t)
        if bool(done.any()):
            keep = (~done).nonzero().squeeze(1)
            alive, tokens, state = alive[keep], tokens[keep], state.select(keep)
    for rows, toks in steps:
        for row, tok in zip(rows.tolist(), toks.tolist()):
            if tok != EOS and tok != PAD:
                results[row].append(tok)
    return results
