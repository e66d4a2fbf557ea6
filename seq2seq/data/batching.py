"""Token-budget batches of similar length, padded into tensors.

Sorting by length before cutting batches keeps padding small: with a budget of 12 target tokens,

    lengths 2 5 3 6 2 4  ->  sorted 2 2 3 4 5 6  ->  [2 2 3] (3 x 3 = 9; adding 4 would make 4 x 4 = 16 > 12)
                                                     [4 5]   (2 x 5 = 10)
                                                     [6]

and the batch order is then shuffled, so each step still sees a random length.

A mixture of corpora (their tables stacked in order) is weighted by drawing an epoch's pairs before batching
(`mixture_rows`): weight 2 trains on each pair of a corpus twice per epoch, 0.5 on half of its pairs, a half drawn
anew each epoch from (seed, epoch).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from seq2seq.data.corpora import DataError
from seq2seq.kernels.padding import to_device
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
            to_device(self.src, device),
            self.src_lengths,
            to_device(self.tgt_in, device),
            to_device(self.tgt_out, device),
            self.n_tokens,
        )


class Ragged:
    """Sequences of ids stored flat (values + offsets), so that a batch of them is padded in a few numpy operations
    instead of a Python loop per sentence (7.4 ms per Multi30k batch before, 0.25 ms now; an H200 step is ~19 ms)."""

    def __init__(self, seqs: Sequence[Sequence[int]]) -> None:
        seqs = list(seqs)
        self.lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)])
        self.values = np.fromiter(itertools.chain.from_iterable(seqs), dtype=np.int64, count=int(self.offsets[-1]))

    @classmethod
    def from_flat(cls, lengths: np.ndarray, values: np.ndarray) -> Ragged:
        """Sequences already stored flat: each one's length, and all their ids one after the other."""
        ragged = cls.__new__(cls)
        ragged.lengths = lengths.astype(np.int64, copy=False)
        ragged.offsets = np.concatenate([[0], np.cumsum(ragged.lengths)])
        ragged.values = values
        return ragged

    def padded(self, rows: np.ndarray, before: int | None = None, after: int | None = None) -> torch.Tensor:
        """(len(rows), width) int64: each row's ids, optionally after `before` and followed by `after`, then PAD."""
        lengths, shift = self.lengths[rows], int(before is not None)
        width = max(1, int(lengths.max(initial=0)) + shift + int(after is not None))
        out = np.full((len(rows), width), PAD, dtype=np.int64)
        row = np.repeat(np.arange(len(rows)), lengths)
        col = np.arange(len(row)) - np.repeat(np.cumsum(lengths) - lengths, lengths)  # position within its row
        out[row, col + shift] = self.values[np.repeat(self.offsets[rows], lengths) + col]
        if before is not None:
            out[:, 0] = before
        if after is not None:
            out[np.arange(len(rows)), lengths + shift] = after
        return torch.from_numpy(out)


def batch_of(src: Ragged, tgt: Ragged, rows: np.ndarray) -> Batch:
    """The batch of pairs `rows`, in that order: sources, BOS + targets (input), targets + EOS (output)."""
    return Batch(
        src=src.padded(rows),
        src_lengths=torch.from_numpy(np.maximum(src.lengths[rows], 1)),
        tgt_in=tgt.padded(rows, before=BOS),
        tgt_out=tgt.padded(rows, after=EOS),
    )


def pad(seqs: Sequence[Sequence[int]]) -> torch.Tensor:
    """(len(seqs), longest) int64, PAD after each sequence's end."""
    return Ragged(seqs).padded(np.arange(len(seqs)))


def collate(src: Sequence[Sequence[int]], tgt: Sequence[Sequence[int]]) -> Batch:
    return batch_of(Ragged(src), Ragged(tgt), np.arange(len(src)))


def token_budget_batches(
    tgt_lengths: np.ndarray,
    src_lengths: np.ndarray,
    budget: int,
    seed: int,
    epoch: int | tuple[int, ...],
    shuffle: bool = True,
) -> list[np.ndarray]:
    """Indices of each batch; at most `budget` padded target tokens per batch (a longer sentence goes alone).
    epoch: an epoch, or a tuple of numbers that names a part of one (an epoch's pool of shards: data/stream.py)."""
    rng = np.random.default_rng([seed, *(epoch if isinstance(epoch, tuple) else (epoch,))])
    tie = rng.random(len(tgt_lengths)) if shuffle else np.arange(len(tgt_lengths))
    order = np.lexsort((tie, src_lengths, tgt_lengths))  # by target length, then source length, then random
    batches = [order[a:b] for a, b in itertools.pairwise(batch_bounds(np.asarray(tgt_lengths)[order], budget))]
    if shuffle:
        rng.shuffle(batches)
    return batches


def batch_bounds(lengths: np.ndarray, budget: int) -> list[int]:
    """Where each batch of the ascending `lengths` starts, and their end: a batch from position s takes the
    positions up to i while (i - s + 1) * lengths[i] <= budget (at least one). That product only grows with i, so
    each batch's end is a search over at most budget // lengths[s] positions, one per batch rather than a Python
    step per sentence.

        lengths 2 2 3 4 5 6, budget 12  ->  [0, 3, 5, 6]: batches [2 2 3] [4 5] [6]
    """
    n, bounds, start = len(lengths), [0], 0
    lengths = lengths.astype(np.int64, copy=False)
    while start < n:
        # every length from here on is at least lengths[start]: a batch holds at most budget // lengths[start]
        window = lengths[start : start + max(1, budget // max(int(lengths[start]), 1)) + 1]
        tokens = np.arange(1, len(window) + 1) * window  # padded tokens of the batch up to each position
        end = start + max(1, int(np.searchsorted(tokens, budget, side="right")))
        bounds.append(end)
        start = end
    return bounds


MIXTURE_STREAM = 7  # keeps the draw of an epoch's pairs apart from token_budget_batches' shuffle of the same epoch


@dataclass(frozen=True)
class Mixture:
    """Corpora stacked in one table: `sizes[i]` rows of corpus i after those of corpus i - 1, each with its weight."""

    sizes: tuple[int, ...]
    weights: tuple[float, ...]


def mixture_rows(mixture: Mixture, seed: int, epoch: int) -> np.ndarray:
    """The rows of one epoch of a weighted mixture, as indices into the stacked table. Corpus i of n_i rows and weight
    w_i gives each of its rows int(w_i) times, then round((w_i - int(w_i)) * n_i) of its rows once more, drawn
    without replacement from (seed, epoch, i): round(w_i * n_i) rows in all (up to rounding).

        sizes (3, 4), weights (2, 0.5), one epoch  ->  0 1 2 0 1 2 and two of 3 4 5 6 (4 6, say; another epoch, 3 5)
    """
    parts, start = [], 0
    for i, (n, weight) in enumerate(zip(mixture.sizes, mixture.weights)):
        rows = np.arange(start, start + n)
        whole, extra = int(weight), round((weight - int(weight)) * n)
        parts.append(np.tile(rows, whole))
        if extra:
            rng = np.random.default_rng([seed, epoch, MIXTURE_STREAM, i])
            parts.append(np.sort(rng.choice(rows, size=extra, replace=False)))
        start += n
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


class PairBatches:
    """Epochs of token-budget batches over tokenized pairs (`src_ids`, `tgt_ids` columns of a datasets table).

    A position in the stream is (epoch, index): the batches of an epoch depend only on (seed, epoch), so a resumed
    run continues with exactly the batches an uninterrupted one would have seen. With `world > 1` each rank takes
    every world-th batch of the same sequence. With a `mixture` (the table is corpora stacked in order), an epoch
    is the weighted draw of `mixture_rows`, a function of (seed, epoch) too.
    """

    def __init__(self, table, budget: int, seed: int, rank: int = 0, world: int = 1,
                 mixture: Mixture | None = None) -> None:  # fmt: skip
        self.table, self.budget, self.seed, self.rank, self.world = table, budget, seed, rank, world
        self.src, self.tgt = Ragged(table["src_ids"]), Ragged(table["tgt_ids"])
        self.src_len, self.tgt_len = self.src.lengths, self.tgt.lengths + 1  # +1 for BOS/EOS
        if mixture is not None and sum(mixture.sizes) != len(self.tgt_len):
            raise ValueError(f"the mixture's corpora hold {sum(mixture.sizes)} pairs, the table {len(self.tgt_len)}")
        self.mixture = mixture

    def batches(self, epoch: int) -> list[np.ndarray]:
        """The row indices of each batch of `epoch`, in training order (before the ranks take their share)."""
        if self.mixture is None:
            return token_budget_batches(self.tgt_len, self.src_len, self.budget, self.seed, epoch)
        rows = mixture_rows(self.mixture, self.seed, epoch)
        batches = token_budget_batches(self.tgt_len[rows], self.src_len[rows], self.budget, self.seed, epoch)
        return [rows[b] for b in batches]

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[int, Batch]]:
        batches = self.batches(epoch)
        usable = len(batches) - len(batches) % self.world if self.world > 1 else len(batches)
        if usable == 0:  # every rank sees this together (the same count of batches), so none waits for another
            raise DataError(
                f"rank {self.rank} of {self.world} got no batch: the {len(self.tgt_len)} training pairs make "
                f"{len(batches)} batches of at most {self.budget} target tokens (train.batch_tokens), fewer than the "
                f"{self.world} processes; train with fewer processes or a smaller train.batch_tokens"
                if self.world > 1 else "no training batch: the table of training pairs is empty"
            )
        for index in range(start, usable // self.world):
            yield index + 1, batch_of(self.src, self.tgt, batches[index * self.world + self.rank])
