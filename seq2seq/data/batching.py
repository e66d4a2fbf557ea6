"""Token-budget batches of similar length, padded into tensors.

Sorting by length before cutting batches keeps padding small: with a budget of 12 target tokens,

    lengths 2 5 3 6 2 4  ->  sorted 2 2 3 4 5 6  ->  [2 2 3] (3 x 3 = 9; adding 4 would make 4 x 4 = 16 > 12)
                                                     [4 5]   (2 x 5 = 10)
                                                     [6]

and the batch order is then shuffled, so each step still sees a random length.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from seq2seq.tokenizer import BOS, EOS, PAD


@dataclass
class Batch:
    src: torch.Tensor  # (B, S) source ids, PAD after each sentence's end
    src_lengths: torch.Tensor  # (B,) int64, on the CPU (packing wants it there)
    tgt_in: torch.Tensor  # (B, T) BOS y1 ... yn   (teacher forcing input)
    tgt_out: torch.Tensor  # (B, T) y1 ... yn EOS   (what to predict)
    n_tokens: int = -1  # real target tokens; counted once on the CPU, so a GPU step never waits to learn it

    def __post_init__(self) -> None:
        if self.n_tokens < 0:
            self.n_tokens = int((self.tgt_out != PAD).sum())

    def to(self, device: torch.device) -> Batch:
        return Batch(
            self.src.to(device, non_blocking=True),
            self.src_lengths,
            self.tgt_in.to(device, non_blocking=True),
            self.tgt_out.to(device, non_blocking=True),
            self.n_tokens,
        )


def pad(seqs: Sequence[Sequence[int]], value: int = PAD) -> torch.Tensor:
    out = torch.full((len(seqs), max(1, max(map(len, seqs)))), value, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
    return out


def collate(src: Sequence[Sequence[int]], tgt: Sequence[Sequence[int]]) -> Batch:
    return Batch(
        src=pad(src),
        src_lengths=torch.tensor([max(1, len(s)) for s in src], dtype=torch.long),
        tgt_in=pad([[BOS, *t] for t in tgt]),
        tgt_out=pad([[*t, EOS] for t in tgt]),
    )


def token_budget_batches(
    tgt_lengths: np.ndarray,
    src_lengths: np.ndarray,
    budget: int,
    seed: int,
    epoch: int,
    shuffle: bool = True,
) -> list[np.ndarray]:
    """Indices of each batch; at most `budget` padded target tokens per batch (a longer sentence goes alone)."""
    rng = np.random.default_rng([seed, epoch])
    tie = rng.random(len(tgt_lengths)) if shuffle else np.arange(len(tgt_lengths))
    order = np.lexsort((tie, src_lengths, tgt_lengths))  # by target length, then source length, then random
    batches, start, longest = [], 0, 0
    for i, idx in enumerate(order):
        longest_if_added = max(longest, int(tgt_lengths[idx]))
        if i > start and (i - start + 1) * longest_if_added > budget:
            batches.append(order[start:i])
            start, longest_if_added = i, int(tgt_lengths[idx])
        longest = longest_if_added
    if start < len(order):
        batches.append(order[start:])
    if shuffle:
        rng.shuffle(batches)
    return batches


class PairBatches:
    """Epochs of token-budget batches over tokenized pairs (`src_ids`, `tgt_ids` columns of a datasets table).

    A position in the stream is (epoch, index): the batches of an epoch depend only on (seed, epoch), so a resumed
    run continues with exactly the batches an uninterrupted one would have seen. With `world > 1` each rank takes
    every world-th batch of the same sequence.
    """

    def __init__(self, table, budget: int, seed: int, rank: int = 0, world: int = 1) -> None:
        self.table, self.budget, self.seed, self.rank, self.world = table, budget, seed, rank, world
        self.src_len = np.array([len(s) for s in table["src_ids"]])
        self.tgt_len = np.array([len(t) + 1 for t in table["tgt_ids"]])  # +1 for BOS/EOS

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[int, Batch]]:
        batches = token_budget_batches(self.tgt_len, self.src_len, self.budget, self.seed, epoch)
        usable = len(batches) - len(batches) % self.world if self.world > 1 else len(batches)
        for index in range(start, usable // self.world):
            rows = self.table[batches[index * self.world + self.rank].tolist()]
            yield index + 1, collate(rows["src_ids"], rows["tgt_ids"])
