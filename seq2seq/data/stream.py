"""Training pairs streamed from disk, for corpora that do not fit in memory (data.stream: true).

Tokenization reads the corpus once, `pair_chunks` at a time, and writes the ids of the pairs within data.max_len to
shards of SHARD_PAIRS pairs each (int32 numpy files), plus every pair's two lengths:

    RUN_DIR/cache/train-<key>/  shard-00000.npz ... shard-00099.npz   src/tgt lengths and ids of 100,000 pairs each
                                lengths.npz                           every pair's lengths, the pieces seen as targets
                                meta.json                             pairs read and kept, the format

An epoch shuffles the shards (from seed and epoch) and cuts that order into pools of about data.pool_pairs pairs. The
pairs of one pool are sorted and batched by token budget exactly as an in-memory corpus is (`token_budget_batches`),
so memory holds one pool's ids and everyone's lengths (8 bytes a pair): a corpus of 10 million pairs keeps about
80 MB of lengths plus one pool. With torchrun each rank reads its own pools (pool p goes to rank p % world), and
the ranks take as many steps as the rank with the fewest batches has, each computing the counts from the lengths
alone. Like PairBatches, an epoch depends only on (seed, epoch), so a resumed run continues with the batches an
uninterrupted one would have seen.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from seq2seq.data.batching import Batch, Ragged, batch_of, token_budget_batches
from seq2seq.data.corpora import DataError
from seq2seq.tokenizer import EOS, Tokenizer

SHARD_PAIRS = 100_000
FORMAT = "seq2seq shards v1"  # change it when what a shard holds changes: every store is then rebuilt
POOL_STREAM = 11  # keeps the shuffle of the shards apart from the other draws of an epoch


def _flat(seqs: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int32, count=len(seqs))
    values = np.fromiter(itertools.chain.from_iterable(seqs), dtype=np.int32, count=int(lengths.sum()))
    return lengths, values


class _ShardWriter:
    """Collects tokenized pairs and writes a shard each time SHARD_PAIRS of them are there."""

    def __init__(self, folder: Path, shard_pairs: int, target_vocab: int) -> None:
        self.folder, self.shard_pairs = folder, shard_pairs
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []  # not yet written
        self.pending = 0
        self.lengths: list[tuple[np.ndarray, np.ndarray]] = []  # of every pair written, shard by shard
        self.seen = np.zeros(target_vocab, dtype=np.int64)

    def add(self, src: list[list[int]], tgt: list[list[int]]) -> None:
        (src_len, src_ids), (tgt_len, tgt_ids) = _flat(src), _flat(tgt)
        self.seen += np.bincount(tgt_ids, minlength=len(self.seen))[: len(self.seen)]
        self.parts.append((src_len, src_ids, tgt_len, tgt_ids))
        self.pending += len(src)
        while self.pending >= self.shard_pairs:
            self._write(self.shard_pairs)

    def close(self) -> None:
        if self.pending:
            self._write(self.pending)

    def _write(self, n: int) -> None:
        src_len, src_ids, tgt_len, tgt_ids = (np.concatenate(a) for a in zip(*self.parts))
        s_cut, t_cut = int(src_len[:n].sum()), int(tgt_len[:n].sum())
        np.savez(self.folder / f"shard-{len(self.lengths):05d}.npz", src_lengths=src_len[:n],
                 src_ids=src_ids[:s_cut], tgt_lengths=tgt_len[:n], tgt_ids=tgt_ids[:t_cut])  # fmt: skip
        self.lengths.append((src_len[:n].copy(), tgt_len[:n].copy()))
        rest = (src_len[n:], src_ids[s_cut:], tgt_len[n:], tgt_ids[t_cut:])
        self.parts, self.pending = ([rest] if len(rest[0]) else []), len(rest[0])


def write_shards(chunks: Iterable[tuple[list[str], list[str]]], src: Tokenizer, tgt: Tokenizer, max_len: int,
                 folder: Path, shard_pairs: int = SHARD_PAIRS) -> ShardStore:  # fmt: skip
    """Tokenize the pairs of `chunks` into a store at `folder`, keeping those with 1..max_len source pieces and at
    most max_len target pieces. The store is written beside and renamed into place when complete, so a killed run
    leaves no half store that a later one would read, and two writers of one store (a machine each, on a shared
    disk) leave the first one's."""
    part = folder.with_name(f"{folder.name}.part-{socket.gethostname()}-{os.getpid()}")  # one per writer
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir(parents=True)
    writer, read = _ShardWriter(part, shard_pairs, len(tgt)), 0
    with tqdm(desc="tokenizing", unit=" pairs", unit_scale=True, mininterval=2.0) as bar:
        for src_text, tgt_text in chunks:
            src_ids, tgt_ids = src.encode(src_text), tgt.encode(tgt_text)
            keep = [i for i, (s, t) in enumerate(zip(src_ids, tgt_ids)) if 0 < len(s) <= max_len and len(t) <= max_len]
            writer.add([src_ids[i] for i in keep], [tgt_ids[i] for i in keep])
            read += len(src_text)
            bar.update(len(src_text))
    writer.close()
    src_len = np.concatenate([s for s, _ in writer.lengths]) if writer.lengths else np.zeros(0, np.int32)
    tgt_len = np.concatenate([t for _, t in writer.lengths]) if writer.lengths else np.zeros(0, np.int32)
    sizes = np.array([len(s) for s, _ in writer.lengths], dtype=np.int64)
    np.savez(part / "lengths.npz", src=src_len, tgt=tgt_len, shard_sizes=sizes, seen=writer.seen)
    (part / "meta.json").write_text(json.dumps({"format": FORMAT, "read": read, "pairs": int(len(src_len))}))
    for path in part.iterdir():  # on disk before the rename makes the store complete
        with open(path, "rb") as f:
            os.fsync(f.fileno())
    try:
        os.rename(part, folder)
    except OSError:  # another writer (a process of another machine on a shared disk) was first: its store is ours
        if not ShardStore.complete(folder):
            raise
        shutil.rmtree(part, ignore_errors=True)
    return ShardStore.open(folder)


def wait_for_store(folder: Path, poll: float = 2.0) -> ShardStore:
    """The store at `folder` once another process of this machine has written it (`write_shards`): torchrun ends
    every process of a run when one fails, so a writer that fails does not leave the others waiting."""
    while not ShardStore.complete(folder):
        time.sleep(poll)
    return ShardStore.open(folder)


@dataclass
class ShardStore:
    """A folder written by `write_shards`: every pair's lengths in memory, the ids shard by shard on demand."""

    folder: Path
    src_len: np.ndarray  # (pairs,) int32: source pieces of each pair, shards in order
    tgt_len: np.ndarray  # (pairs,) int32: target pieces
    starts: np.ndarray  # (shards + 1,): the first pair of each shard, and the number of pairs
    seen: np.ndarray  # (target vocabulary,): how often each piece occurs on the target side
    read: int  # pairs read from the corpus, before the length filter

    @classmethod
    def open(cls, folder: Path) -> ShardStore:
        meta = json.loads((folder / "meta.json").read_text())
        if meta.get("format") != FORMAT:
            raise DataError(f"{folder} holds shards of another format ({meta.get('format')!r}); delete it")
        with np.load(folder / "lengths.npz") as z:
            sizes = z["shard_sizes"]
            return cls(folder, z["src"], z["tgt"], np.concatenate([[0], np.cumsum(sizes)]), z["seen"], meta["read"])

    @classmethod
    def complete(cls, folder: Path) -> bool:
        return (folder / "meta.json").is_file()

    @property
    def shards(self) -> int:
        return len(self.starts) - 1

    def __len__(self) -> int:
        return len(self.src_len)

    def target_pieces(self) -> list[int]:
        """The sorted ids of the pieces seen on the target side, and EOS (as tasks/translation.py's target_pieces)."""
        return np.union1d(np.flatnonzero(self.seen), [EOS]).tolist()

    def rows(self, shards) -> np.ndarray:
        """The numbers of the pairs of `shards`, one shard after the other."""
        return np.concatenate([np.arange(self.starts[i], self.starts[i + 1]) for i in shards])

    def load(self, shards: list[int]) -> tuple[Ragged, Ragged]:
        """The ids of `shards`, one after the other, as source and target Ragged (read one shard at a time into
        arrays of the pool's size: memory holds the pool and one shard, not the pool twice)."""
        rows = self.rows(shards)
        src_len, tgt_len = self.src_len[rows], self.tgt_len[rows]
        src_ids = np.empty(int(src_len.sum(dtype=np.int64)), dtype=np.int32)
        tgt_ids = np.empty(int(tgt_len.sum(dtype=np.int64)), dtype=np.int32)
        at_src = at_tgt = 0
        for i in shards:
            with np.load(self.folder / f"shard-{i:05d}.npz") as z:
                s, t = z["src_ids"], z["tgt_ids"]
            src_ids[at_src : at_src + len(s)], tgt_ids[at_tgt : at_tgt + len(t)] = s, t
            at_src, at_tgt = at_src + len(s), at_tgt + len(t)
        return Ragged.from_flat(src_len, src_ids), Ragged.from_flat(tgt_len, tgt_ids)


def store_key(*parts: bytes) -> str:
    """The 16 hex digits naming a store: a hash of the format, the tokenizers, the corpus and the length filter."""
    h = hashlib.sha256()
    for part in (FORMAT.encode(), *parts):
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:16]


class ShardBatches:
    """Epochs of token-budget batches over a ShardStore, one pool of shards in memory at a time (module docstring).
    The same interface as PairBatches: `epoch(epoch, start)` yields (index in epoch, Batch)."""

    def __init__(self, store: ShardStore, budget: int, seed: int, rank: int = 0, world: int = 1,
                 pool: int = 1_000_000) -> None:  # fmt: skip
        if store.shards < world:
            raise DataError(f"the training corpus fills {store.shards} shard{'s' if store.shards > 1 else ''} "
                            f"({len(store):,} pairs), fewer than the {world} processes, each of which reads its own: "
                            "lower data.shard_pairs, train with fewer processes, or set data.stream: false")  # fmt: skip
        self.store, self.budget, self.seed, self.rank, self.world = store, budget, seed, rank, world
        mean = len(store) / store.shards
        # shards per pool: about `pool` pairs, but never so many that a rank is left without a pool
        self.pool_shards = max(1, min(round(pool / mean), store.shards // world))

    def pools(self, epoch: int) -> list[np.ndarray]:
        """The shards of each pool of `epoch`, in order (pool p is read by rank p % world)."""
        order = np.random.default_rng([self.seed, epoch, POOL_STREAM]).permutation(self.store.shards)
        return [order[i : i + self.pool_shards] for i in range(0, len(order), self.pool_shards)]

    def pool_batches(self, epoch: int, p: int, shards: np.ndarray) -> list[np.ndarray]:
        """The batches of pool p as rows of the pool's pairs (its shards' pairs one after the other)."""
        rows = self.store.rows(shards)
        return token_budget_batches(self.store.tgt_len[rows] + 1, self.store.src_len[rows], self.budget, self.seed,
                                    (epoch, POOL_STREAM, p))  # fmt: skip

    def plan(self, epoch: int) -> list[tuple[np.ndarray, list[np.ndarray]]]:
        """This rank's pools of `epoch` with their batches, cut to the count of the rank with the fewest batches."""
        pools = self.pools(epoch)
        batches = [self.pool_batches(epoch, p, shards) for p, shards in enumerate(pools)]
        counts = [sum(len(b) for b in batches[r :: self.world]) for r in range(self.world)]
        left, mine = min(counts), []
        for shards, pool in list(zip(pools, batches))[self.rank :: self.world]:
            mine.append((shards, pool[:left]))
            left -= len(mine[-1][1])
        return [(shards, pool) for shards, pool in mine if pool]

    def __len__(self) -> int:
        """Steps in an epoch (the first; another epoch's pools may cut into a few batches more or fewer)."""
        return sum(len(pool) for _, pool in self.plan(1))

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[int, Batch]]:
        index = 0
        for shards, pool in self.plan(epoch):
            if index + len(pool) <= start:  # wholly before a resumed run's position: not read
                index += len(pool)
                continue
            src = tgt = None  # the last pool's ids go before the next pool's come
            src, tgt = self.store.load(list(shards))
            for rows in pool:
                index += 1
                if index > start:
                    yield index, batch_of(src, tgt, rows)
