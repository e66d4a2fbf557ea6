"""Translation's data from a recipe: the training corpora (one, or a weighted mixture), the SentencePiece models
trained on them, the tokenized and cached training table, and the validation sets.

A mixture stacks its corpora's training tables in data.corpus's order; `Mixture` keeps their sizes and weights, and
PairBatches draws each epoch's pairs from them (seq2seq/data/batching.py, `mixture_rows`).
"""

from __future__ import annotations

import hashlib
import itertools
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np

from seq2seq.config import Recipe
from seq2seq.data.batching import Mixture, mixture_rows
from seq2seq.data.corpora import DataError
from seq2seq.data.parallel import _load_one, corpus_names, load_parallel, pair_chunks, split_parts, text_files
from seq2seq.data.stream import ShardStore, store_key, wait_for_store, write_shards
from seq2seq.tokenizer import Tokenizer


@dataclass
class Corpus:
    """One training corpus of a recipe: its name, split, weight and untokenized pairs."""

    name: str
    split: str
    weight: float
    table: datasets.Dataset


@dataclass
class ValidationSet:
    """One validation split: `label` names its metrics (bleu_<label>), "" where it is the only one."""

    label: str
    table: datasets.Dataset  # src, tgt: the untokenized pairs
    ids: datasets.Dataset | None = None  # src_ids, tgt_ids: set once the tokenizers are known


def training_corpora(recipe: Recipe) -> list[Corpus]:
    """data.train_split of each corpus of data.corpus, with its weight (1 where data.weights is left out)."""
    d = recipe.data
    parts = split_parts(d.corpus, d.train_split)
    weights = d.weights or (1.0,) * len(corpus_names(d.corpus))
    if len(parts) != len(weights):  # a qualified train_split names one corpus of several
        raise DataError(f"data.train_split {d.train_split!r} names one corpus, but data.corpus has {len(weights)}: "
                        f"give an unqualified split ({d.train_split.rpartition('/')[2]}) that each corpus has")
    return [Corpus(c, s, w, load_parallel(c, s, d.src_lang, d.tgt_lang, d.hub_config))
            for (c, s), w in zip(parts, weights)]  # fmt: skip


def mixture_of(corpora: list[Corpus], sizes: list[int]) -> Mixture | None:
    """The Mixture of `corpora` holding `sizes` pairs each; None for one corpus of weight 1 (every pair once)."""
    if len(corpora) == 1 and corpora[0].weight == 1.0:
        return None
    return Mixture(tuple(sizes), tuple(c.weight for c in corpora))


def tokenizer_sample(corpora: list[Corpus], seed: int) -> tuple[datasets.Dataset, np.ndarray | None]:
    """The pairs the tokenizers learn from: the stacked tables and the rows of the first epoch's weighted draw
    (None: every row once), so a corpus of weight 2 counts twice, one of weight 0.5 by half of its pairs."""
    tables = [c.table for c in corpora]
    mixture = mixture_of(corpora, [len(t) for t in tables])
    table = tables[0] if len(tables) == 1 else datasets.concatenate_datasets(tables)
    return table, None if mixture is None else mixture_rows(mixture, seed, epoch=1)


def train_tokenizers(recipe: Recipe, table, rows: np.ndarray | None = None) -> tuple[Tokenizer, Tokenizer]:
    """SentencePiece models from the pairs of `table` (`src` and `tgt` columns): its `rows` (repeats count as often
    as they occur), or every row once."""
    tc = recipe.tokenizer
    args = dict(vocab_size=tc.vocab_size, model_type=tc.model_type, character_coverage=tc.character_coverage)
    src, tgt = list(table["src"]), list(table["tgt"])
    if rows is not None:
        src, tgt = [src[i] for i in rows], [tgt[i] for i in rows]
    if tc.joint:
        joint = Tokenizer.train([*src, *tgt], **args)
        return joint, joint
    return Tokenizer.train(src, **args), Tokenizer.train(tgt, **args)


def tokenize(table: datasets.Dataset, src: Tokenizer, tgt: Tokenizer, cache: Path | None) -> datasets.Dataset:
    """Add `src_ids` and `tgt_ids` columns (a cached `map` when `cache` is given)."""
    if cache is not None and cache.is_file():
        return datasets.Dataset.from_file(str(cache))

    def encode(batch: dict) -> dict:
        return {"src_ids": src.encode(batch["src"]), "tgt_ids": tgt.encode(batch["tgt"])}

    return table.map(
        encode, batched=True, batch_size=2000, cache_file_name=str(cache) if cache else None, desc="tokenizing"
    )


CACHE_FORMAT = b"src_ids,tgt_ids v1"  # change it when what tokenize() stores changes: every cache is then rebuilt


def tokenized_cache(folder: Path, split: str, table: datasets.Dataset, src: Tokenizer, tgt: Tokenizer) -> Path:
    """FOLDER/<split>-<key>.arrow, where the key hashes the SentencePiece models' bytes and the pairs (datasets'
    fingerprint of the table: a hash of its content, or of a hub dataset's cache files, computed when the table is
    made). A run directory left by a start with other tokenizers or other data (an interrupted start, another
    recipe) thus never feeds its ids to this run: a new key tokenizes anew, and the split's other caches are removed."""
    h = hashlib.sha256()
    for part in (CACHE_FORMAT, src.proto, tgt.proto, str(table._fingerprint).encode()):
        h.update(hashlib.sha256(part).digest())  # hashes of the parts: no two sets of parts run together alike
    path = folder / f"{split}-{h.hexdigest()[:16]}.arrow"
    for stale in [folder / f"{split}.arrow", *folder.glob(f"{split}-????????????????.arrow")]:
        if stale != path:
            stale.unlink(missing_ok=True)
    return path


def training_table(recipe: Recipe, corpora: list[Corpus], src: Tokenizer, tgt: Tokenizer, cache_dir: Path | None
                   ) -> tuple[datasets.Dataset, Mixture | None]:  # fmt: skip
    """The tokenized training pairs within data.max_len, the corpora stacked in order, and their Mixture.
    cache_dir: where each corpus's tokenized pairs are kept (cache/train-<key>.arrow for one corpus,
    cache/<corpus>.train-<key>.arrow for each of a mixture); None: nowhere."""
    max_len, tables = recipe.data.max_len, []
    for c in corpora:
        name = c.split if len(corpora) == 1 else f"{c.name}.{c.split}"
        name = re.sub(r"[^\w.-]", "_", name)  # a hub id's slash, a qualified split's
        cache = tokenized_cache(cache_dir, name, c.table, src, tgt) if cache_dir else None
        tokenized = tokenize(c.table, src, tgt, cache)
        kept = tokenized.filter(lambda r: 0 < len(r["src_ids"]) <= max_len and len(r["tgt_ids"]) <= max_len)
        if len(kept) == 0:  # every epoch would be empty, or lack this corpus
            raise no_training_pair(recipe, tokenized, c)
        tables.append(kept)
    table = tables[0] if len(tables) == 1 else datasets.concatenate_datasets(tables)
    return table, mixture_of(corpora, [len(t) for t in tables])


def no_training_pair(recipe: Recipe, tokenized: datasets.Dataset, corpus: Corpus) -> DataError:
    """The error for a training split that the length filter leaves empty, naming the filter that emptied it."""
    d = recipe.data
    where = f"the {corpus.split} split of {corpus.name} ({d.src_lang}-{d.tgt_lang})"
    if len(tokenized) == 0:
        return DataError(f"{where} has no sentence pairs")
    if not any(len(ids) for ids in tokenized["src_ids"]):
        return DataError(f"every source sentence of {where} is empty")
    return DataError(f"no training pair is at most data.max_len={d.max_len} pieces long on both sides: all "
                     f"{len(tokenized)} pairs of {where} were filtered out; raise data.max_len")


def validation_sets(recipe: Recipe) -> list[ValidationSet]:
    """data.valid_split's tables (each cut to data.valid_limit pairs): one split, or one per corpus and split.
    Labels: the corpus's name, or corpus_split where two splits of one corpus are validated on."""
    d = recipe.data
    splits = (d.valid_split,) if isinstance(d.valid_split, str) else d.valid_split
    parts = [part for split in splits for part in split_parts(d.corpus, split)]
    if len(set(parts)) < len(parts):
        raise DataError(f"data.valid_split names a split twice: {', '.join(f'{c}/{s}' for c, s in parts)}")
    names = [c for c, _ in parts]
    out = []
    for corpus, split in parts:
        table = load_parallel(corpus, split, d.src_lang, d.tgt_lang, d.hub_config)
        if d.valid_limit:
            table = table.select(range(min(d.valid_limit, len(table))))
        label = "" if len(parts) == 1 else corpus if names.count(corpus) == 1 else f"{corpus}_{split}"
        out.append(ValidationSet(re.sub(r"\W+", "_", label), table))
    return out


# ------------------------------------------------------------------------------------------- data.stream: true


def stream_part(recipe: Recipe) -> tuple[str, str]:
    """The (corpus, split) that a streamed recipe trains on: one corpus (DataConfig refuses a mixture)."""
    ((corpus, split),) = split_parts(recipe.data.corpus, recipe.data.train_split)
    return corpus, split


def streamed_chunks(recipe: Recipe):
    """The training pairs of a streamed recipe, chunk by chunk, read anew from disk at each call."""
    d = recipe.data
    return pair_chunks(*stream_part(recipe), d.src_lang, d.tgt_lang, d.hub_config)


def train_tokenizers_streamed(recipe: Recipe) -> tuple[Tokenizer, Tokenizer]:
    """SentencePiece models learned from a corpus read from disk: SentencePiece keeps a sample of at most 2 million
    sentences (drawn from train.seed), so the corpus never sits in memory."""
    tc, seed = recipe.tokenizer, recipe.train.seed
    args = dict(vocab_size=tc.vocab_size, model_type=tc.model_type, character_coverage=tc.character_coverage, seed=seed)

    def side(i: int):
        return (text for chunk in streamed_chunks(recipe) for text in chunk[i])

    if tc.joint:  # every source sentence, then every target sentence, as train_tokenizers gives them
        joint = Tokenizer.train(itertools.chain(side(0), side(1)), **args)
        return joint, joint
    return Tokenizer.train(side(0), **args), Tokenizer.train(side(1), **args)


def corpus_identity(recipe: Recipe) -> bytes:
    """What names a streamed corpus's contents for the store's key: each text file's path, size and modification
    time, or datasets' fingerprint of another corpus's table (a hash of its content or of the hub's cache files)."""
    d = recipe.data
    corpus, split = stream_part(recipe)
    files = text_files(corpus, split, d.src_lang, d.tgt_lang)
    if files is None:
        return str(_load_one(corpus, split, d.src_lang, d.tgt_lang, d.hub_config)._fingerprint).encode()
    stats = [(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    return repr(stats).encode()


def shard_folder(recipe: Recipe, src: Tokenizer, tgt: Tokenizer, cache_dir: Path) -> Path:
    """cache_dir/<split>-shards-<key>, where the key hashes the tokenizers, the corpus, data.max_len and
    data.shard_pairs."""
    d = recipe.data
    key = store_key(src.proto, tgt.proto, corpus_identity(recipe), f"{d.max_len} {d.shard_pairs}".encode())
    name = re.sub(r"[^\w.-]", "_", d.train_split)
    return cache_dir / f"{name}-shards-{key}"


def write_shard_store(recipe: Recipe, src: Tokenizer, tgt: Tokenizer, cache_dir: Path) -> None:
    """Tokenize a streamed recipe's training pairs into shards (`write_shards`), unless its store is there; a store
    of other tokenizers or other data is removed."""
    folder = shard_folder(recipe, src, tgt, cache_dir)
    if not ShardStore.complete(folder):
        for stale in cache_dir.glob(folder.name.rpartition("-")[0] + "-*"):
            if stale.name.partition(".part")[0] != folder.name:  # another key's (not another writer's of this one)
                shutil.rmtree(stale, ignore_errors=True)
        write_shards(streamed_chunks(recipe), src, tgt, recipe.data.max_len, folder, recipe.data.shard_pairs)


def shard_store(recipe: Recipe, src: Tokenizer, tgt: Tokenizer, cache_dir: Path) -> ShardStore:
    """The store that `write_shard_store` wrote (here, or in another process of this machine: waited for), checked
    to hold at least one pair."""
    d = recipe.data
    store = wait_for_store(shard_folder(recipe, src, tgt, cache_dir))
    if len(store) == 0:
        corpus, split = stream_part(recipe)
        where = f"the {split} split of {corpus} ({d.src_lang}-{d.tgt_lang})"
        raise DataError(f"{where} has no sentence pairs" if store.read == 0 else
                        f"no training pair of {where} has 1 to data.max_len={d.max_len} source pieces and at most "
                        f"{d.max_len} target pieces: all {store.read} were filtered out; raise data.max_len")  # fmt: skip
    return store
