"""data.stream: a training corpus tokenized into shards on disk and batched one pool of shards at a time."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from seq2seq.config import ConfigError
from seq2seq.data import stream
from seq2seq.data.batching import batch_bounds, token_budget_batches
from seq2seq.data.corpora import DataError
from seq2seq.data.parallel import load_parallel, pair_chunks
from seq2seq.data.stream import ShardBatches, ShardStore, write_shards
from seq2seq.tasks import build_training
from seq2seq.tokenizer import Tokenizer

from .conftest import ROOT, TOY_OVERRIDES, toy_pair, toy_recipe


def step_per_sentence(lengths: np.ndarray, budget: int) -> list[int]:
    """batch_bounds' rule, one sentence at a time (how token_budget_batches cut batches before the search)."""
    bounds, start = [0], 0
    for i in range(len(lengths)):
        if i > start and (i - start + 1) * int(lengths[i]) > budget:
            bounds.append(i)
            start = i
    return bounds + [len(lengths)] if len(lengths) else bounds


def test_batch_bounds_equal_the_rule_applied_sentence_by_sentence():
    rng = np.random.default_rng(0)
    for _ in range(400):
        lengths = np.sort(rng.integers(1, 80, int(rng.integers(0, 400))))
        budget = int(rng.integers(1, 300))
        assert batch_bounds(lengths, budget) == step_per_sentence(lengths, budget)
    assert batch_bounds(np.array([2, 2, 3, 4, 5, 6]), 12) == [0, 3, 5, 6]  # the docstring's example


def write_text_corpus(folder, n: int, seed: int = 0, split: str = "train") -> list[tuple[str, str]]:
    rng = random.Random(seed)
    pairs = [toy_pair(rng) for _ in range(n)]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{split}.en").write_text("".join(f"{s}\n" for s, _ in pairs), encoding="utf-8")
    (folder / f"{split}.fr").write_text("".join(f"{t}\n" for _, t in pairs), encoding="utf-8")
    return pairs


def test_a_folder_of_text_files_is_a_corpus_read_in_chunks(tmp_path):
    pairs = write_text_corpus(tmp_path / "corpus", 25)
    chunks = list(pair_chunks(str(tmp_path / "corpus"), "train", "en", "fr", size=10))
    assert [len(s) for s, _ in chunks] == [10, 10, 5]
    assert [p for s, t in chunks for p in zip(s, t)] == pairs
    table = load_parallel(str(tmp_path / "corpus"), "train", "en", "fr")  # validation and evaluation read it whole
    assert list(zip(table["src"], table["tgt"])) == pairs
    with pytest.raises(DataError, match=r"has no split 'valid'.*its splits are train"):
        load_parallel(str(tmp_path / "corpus"), "valid", "en", "fr")


def test_a_hub_dataset_streams_from_its_arrow_table_in_chunks(tmp_path):
    """A hub dataset (here a local folder of JSON lines, which datasets.load_dataset reads as it reads wmt14) is
    read from its memory-mapped Arrow table a chunk at a time."""
    folder = tmp_path / "hub-style"
    folder.mkdir()
    rows = [{"translation": {"en": f"sentence {i}", "fr": f"phrase {i}"}} for i in range(23)]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    chunks = list(pair_chunks(str(folder), "train", "en", "fr", size=10))
    assert [len(s) for s, _ in chunks] == [10, 10, 3] and chunks[2] == (["sentence 20", "sentence 21", "sentence 22"],
                                                                         ["phrase 20", "phrase 21", "phrase 22"])


def test_a_misaligned_or_invalid_text_corpus_names_the_file_and_line(tmp_path):
    folder = tmp_path / "corpus"
    write_text_corpus(folder, 5)
    with open(folder / "train.fr", "a", encoding="utf-8") as f:
        f.write("une ligne de trop\n")
    with pytest.raises(DataError, match=r"misaligned corpus: .*train.en has 5 lines but .*train.fr has more"):
        list(pair_chunks(str(folder), "train", "en", "fr"))
    write_text_corpus(folder, 5)
    lines = (folder / "train.en").read_bytes().splitlines(keepends=True)
    (folder / "train.en").write_bytes(b"".join([*lines[:3], b"\xff" + lines[3], *lines[4:]]))
    with pytest.raises(DataError, match=r"train.en, line 4: invalid UTF-8"):
        list(pair_chunks(str(folder), "train", "en", "fr"))


@pytest.fixture(scope="module")
def toy_tokenizer() -> Tokenizer:
    rng = random.Random(5)
    return Tokenizer.train([p for _ in range(500) for p in toy_pair(rng)], vocab_size=60, model_type="word")


def chunks_of(pairs, size=64):
    for i in range(0, len(pairs), size):
        yield [s for s, _ in pairs[i : i + size]], [t for _, t in pairs[i : i + size]]


def test_shards_hold_the_pairs_within_max_len_in_order(tmp_path, toy_tokenizer):
    rng = random.Random(1)
    pairs = [toy_pair(rng) for _ in range(1000)] + [("", "rien")]  # an empty source is never trained on
    store = write_shards(chunks_of(pairs), toy_tokenizer, toy_tokenizer, 7, tmp_path / "store", shard_pairs=150)
    kept = [(s, t) for s, t in zip(toy_tokenizer.encode([s for s, _ in pairs]), toy_tokenizer.encode([t for _, t in pairs]))
            if 0 < len(s) <= 7 and len(t) <= 7]  # fmt: skip
    assert store.read == 1001 and len(store) == len(kept) and 0 < len(kept) < 1000
    assert store.shards == -(-len(kept) // 150) and not (tmp_path / "store.part").exists()
    src, tgt = store.load(list(range(store.shards)))
    for i in (0, 149, 150, len(kept) - 1):
        assert src.values[src.offsets[i] : src.offsets[i + 1]].tolist() == kept[i][0]
        assert tgt.values[tgt.offsets[i] : tgt.offsets[i + 1]].tolist() == kept[i][1]
    assert store.target_pieces() == sorted({*[p for _, t in kept for p in t], 3})
    reopened = ShardStore.open(tmp_path / "store")
    assert (reopened.src_len == store.src_len).all() and (reopened.starts == store.starts).all()


@pytest.fixture(scope="module")
def store(tmp_path_factory, toy_tokenizer) -> ShardStore:
    rng = random.Random(2)
    pairs = [toy_pair(rng) for _ in range(2000)]
    return write_shards(chunks_of(pairs), toy_tokenizer, toy_tokenizer, 100, tmp_path_factory.mktemp("s") / "store",
                        shard_pairs=100)  # fmt: skip


def epoch_rows(batches: ShardBatches, epoch: int) -> list[list[int]]:
    """Each batch of `epoch` as the store's pair numbers (its rows of the pools mapped back through their shards)."""
    out = []
    for shards, pool in batches.plan(epoch):
        pairs = np.concatenate([np.arange(batches.store.starts[i], batches.store.starts[i + 1]) for i in shards])
        out += [pairs[rows].tolist() for rows in pool]
    return out


def test_an_epoch_takes_every_pair_once_in_batches_within_the_budget(store):
    batches = ShardBatches(store, budget=120, seed=3, pool=500)
    assert batches.pool_shards == 5 and len(batches.pools(1)) == 4
    rows = epoch_rows(batches, 1)
    assert sorted(r for b in rows for r in b) == list(range(len(store)))
    assert all(len(b) * (int(store.tgt_len[b].max()) + 1) <= 120 or len(b) == 1 for b in rows)
    assert rows == epoch_rows(ShardBatches(store, budget=120, seed=3, pool=500), 1)  # a function of (seed, epoch)
    assert rows != epoch_rows(batches, 2)
    assert len(batches) == len(rows)
    # the batches of a pool are those an in-memory corpus of the pool's pairs gets
    shards, pool = batches.plan(1)[0]
    pairs = np.concatenate([np.arange(store.starts[i], store.starts[i + 1]) for i in shards])
    alike = token_budget_batches(store.tgt_len[pairs] + 1, store.src_len[pairs], 120, 3, (1, stream.POOL_STREAM, 0))
    assert all((a == b).all() for a, b in zip(pool, alike))


def test_ranks_read_their_own_pools_and_take_as_many_steps_as_the_shortest(store):
    ranks = [ShardBatches(store, budget=120, seed=3, rank=r, world=3, pool=500) for r in range(3)]
    plans = [r.plan(1) for r in ranks]
    shards = [{int(s) for shards, _ in plan for s in shards} for plan in plans]
    assert all(not (shards[a] & shards[b]) for a in range(3) for b in range(a + 1, 3))  # each reads its own shards
    assert len({len(r) for r in ranks}) == 1 > 0  # and all take the same number of steps
    counts = [len(ranks[0].pool_batches(1, p, s)) for p, s in enumerate(ranks[0].pools(1))]
    assert len(ranks[0]) == min(sum(counts[r::3]) for r in range(3))
    with pytest.raises(DataError, match="fewer than the 30 processes"):
        ShardBatches(store, budget=120, seed=3, rank=0, world=30)


def test_a_resumed_epoch_continues_with_the_same_batches_and_skips_the_pools_before(store, monkeypatch):
    batches = ShardBatches(store, budget=120, seed=3, pool=500)
    whole = [(i, b.tgt_out) for i, b in batches.epoch(2)]
    first_pool = len(batches.plan(2)[0][1])
    loaded = []
    monkeypatch.setattr(ShardStore, "load", lambda self, shards, real=ShardStore.load: loaded.append(shards) or real(self, shards))
    tail = [(i, b.tgt_out) for i, b in batches.epoch(2, start=first_pool + 3)]
    assert [i for i, _ in tail] == [i for i, _ in whole][first_pool + 3 :]
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(tail, whole[first_pool + 3 :]))
    assert len(loaded) == 3  # the pools from the resumed position on; the first is not read


def test_stream_needs_one_corpus():
    with pytest.raises(ConfigError, match="data.stream reads one corpus"):
        toy_recipe("data.stream=true", "data.corpus=[multi30k, tatoeba]")


STREAM = ["data.stream=true", "data.shard_pairs=500", "data.pool_pairs=1000", "train.max_steps=30",
          "train.valid_every=15", "train.log_every=5", "data.valid_limit=20", "train.precision=fp32"]  # fmt: skip


def test_a_streamed_recipe_trains_resumes_and_reuses_its_shards(toy_data, tmp_path):
    corpus = str(toy_data / "multi30k")  # the toy corpus as a folder of text files
    recipe = toy_recipe(*STREAM, f"data.corpus={corpus}", "model.input_feeding=false")
    trainer = build_training(recipe, tmp_path / "run", resume=False)
    assert isinstance(trainer.data, ShardBatches) and trainer.data.store.shards == 6  # 3,000 pairs
    trainer.fit()
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    train = [r["loss"] for r in records if r["kind"] == "train"]
    valid = [r for r in records if r["kind"] == "valid"]
    assert train[-1] < train[0] and [r["step"] for r in valid] == [15, 30] and valid[1]["loss"] < valid[0]["loss"]
    (store,) = (tmp_path / "run" / "cache").glob("train-shards-*")
    written = store.stat().st_mtime_ns
    # interrupted at step 15 and resumed: the same weights as the run above
    half = build_training(toy_recipe(*STREAM, f"data.corpus={corpus}", "model.input_feeding=false",
                                     "train.max_steps=15"), tmp_path / "half", resume=False)  # fmt: skip
    half.fit()
    resumed = build_training(recipe, tmp_path / "half", resume=True)
    resumed.fit()
    for a, b in zip(trainer.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    build_training(recipe, tmp_path / "run", resume=True)  # the shards are read, not written again
    assert store.stat().st_mtime_ns == written


def test_a_corpus_larger_than_the_memory_it_may_use_streams_in_bounded_memory():
    """Two million generated pairs (310 MB of text; their ids 296 MB): tokenizing them into shards and batching an
    epoch from pools of 100,000 pairs raise the peak RSS by less than a third of what the ids alone would take in
    memory, and the first batch reads one pool's shards only (scripts/bench.py stream, which prints the speeds)."""
    cmd = [sys.executable, "scripts/bench.py", "stream", "--pairs", "2000000", "--pool-pairs", "100000"]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=900)
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    out = json.loads(r.stdout.decode().strip().splitlines()[-1])
    print(out)
    assert out["pairs"] == out["read"] == 2_000_000 and out["shards"] == 20
    grown = (out["peak_rss_gib"] - out["peak_rss_gib_before"]) * 2**30
    assert out["store_bytes"] > 250e6 and grown < out["store_bytes"] / 3, out
    assert out["shards_read_for_first_batch"] == [out["pool_shards"]] == [1]


def test_two_gloo_processes_read_their_own_shards_and_train_like_one_on_the_union(toy_data, tmp_path):
    """torchrun with data.stream: each rank batches its own pools; the losses equal one process's on the union of
    the two ranks' batches at each step (as tests/test_distributed.py checks for in-memory corpora)."""
    from .test_distributed import STEPS, Union, train_losses

    corpus = f"data.corpus={toy_data / 'multi30k'}"
    overrides = [*STEPS, corpus, "data.stream=true", "data.shard_pairs=500", "model.input_feeding=false"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "seq2seq.train",
           "recipes/en-fr.yaml", *TOY_OVERRIDES, *overrides, "--run-dir", str(tmp_path / "ddp")]  # fmt: skip
    r = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, timeout=600)
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    ddp = train_losses(tmp_path / "ddp")
    assert len(ddp) == 12

    torch.set_num_threads(1)
    single = build_training(toy_recipe(*overrides), tmp_path / "single", resume=False)
    store, budget, seed = single.data.store, single.data.budget, single.data.seed
    ranks = [ShardBatches(store, budget, seed, rank, 2, pool=1_000_000) for rank in (0, 1)]
    assert not {int(s) for shards, _ in ranks[0].plan(1) for s in shards} & {
        int(s) for shards, _ in ranks[1].plan(1) for s in shards}  # fmt: skip
    single.data = Union(ranks)
    single.fit()
    torch.testing.assert_close(torch.tensor(ddp), torch.tensor(train_losses(tmp_path / "single")), rtol=2e-4, atol=2e-4)
