"""Corpora, tokenizer and batching."""

from __future__ import annotations

import urllib.request

import numpy as np
import pytest
import torch

from seq2seq.data import corpora
from seq2seq.data.batching import PairBatches, collate, token_budget_batches
from seq2seq.data.corpora import DataError
from seq2seq.data.parallel import load_parallel, read_aligned, tatoeba_split
from seq2seq.tokenizer import BOS, EOS, PAD, Tokenizer


def test_lines_are_stripped_and_misalignment_names_files_and_counts(tmp_path):
    (tmp_path / "a.en").write_text(" one \ntwo\n")
    (tmp_path / "a.fr").write_text("un\n")
    with pytest.raises(DataError, match=r"a.en has 2 lines but .*a.fr has 1"):
        read_aligned(tmp_path / "a.en", tmp_path / "a.fr")
    (tmp_path / "a.fr").write_text(" un  \ndeux\n")
    assert read_aligned(tmp_path / "a.en", tmp_path / "a.fr") == (["one", "two"], ["un", "deux"])


def test_invalid_utf8_names_the_line(tmp_path):
    (tmp_path / "x.en").write_bytes(b"fine\nbad \xff\n")
    with pytest.raises(DataError, match="line 2: invalid UTF-8"):
        corpora.read_lines(tmp_path / "x.en")


def test_offline_without_a_copy_says_both_ways_out(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQ2SEQ_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("SEQ2SEQ_CACHE", str(tmp_path / "cache"))

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DataError) as e:
        load_parallel("multi30k", "train", "en", "fr")
    assert "SEQ2SEQ_DATA" in str(e.value) and "internet" in str(e.value) and "multi30k/train.en" in str(e.value)


def test_download_is_verified_by_sha256(tmp_path, monkeypatch):
    import gzip
    import io

    monkeypatch.delenv("SEQ2SEQ_DATA", raising=False)
    monkeypatch.setenv("SEQ2SEQ_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: io.BytesIO(gzip.compress(b"tampered\n")))
    with pytest.raises(DataError, match="sha256 mismatch"):
        corpora.corpus_file("multi30k", "val.en")
    assert not (tmp_path / "cache" / "multi30k" / "val.en").exists()


def test_unknown_split_lists_the_real_ones(toy_data):
    with pytest.raises(DataError, match="no split 'tst'.*test_2016_flickr"):
        load_parallel("multi30k", "tst", "en", "fr")


def test_tatoeba_split_is_deterministic_and_disjoint_by_english_sentence(tmp_path):
    lines = [f"Sentence {i % 700}.\tPhrase {i}." for i in range(3000)]
    path = tmp_path / "fra.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    parts = {s: tatoeba_split(path, s, "en") for s in ("train", "val", "test")}
    assert sum(len(p["src"]) for p in parts.values()) == 3000
    assert len(parts["val"]["src"]) > 0 and len(parts["test"]["src"]) > 0
    assert not set(parts["train"]["src"]) & (set(parts["val"]["src"]) | set(parts["test"]["src"]))
    path.write_text("\n".join(reversed(lines)) + "\n", encoding="utf-8")
    assert set(tatoeba_split(path, "val", "en")["src"]) == set(parts["val"]["src"])


def test_tokenizer_fixed_ids_and_round_trip():
    text = ["un chien court dans le parc .", "a dog runs in the park ."] * 50
    tok = Tokenizer.train(text, vocab_size=40, model_type="bpe")
    assert (tok.sp.pad_id(), tok.sp.unk_id(), tok.sp.bos_id(), tok.sp.eos_id()) == (PAD, 1, BOS, EOS)
    ids = tok.encode(["a dog runs ."])
    assert tok.decode(ids) == ["a dog runs ."]
    assert Tokenizer(tok.proto).encode(["a dog runs ."]) == ids


def test_token_budget_batches_cover_every_sentence_once_within_budget():
    rng = np.random.default_rng(0)
    tgt, src = rng.integers(1, 30, 500), rng.integers(1, 30, 500)
    batches = token_budget_batches(tgt, src, budget=100, seed=3, epoch=1)
    assert sorted(np.concatenate(batches).tolist()) == list(range(500))
    for b in batches:
        assert len(b) == 1 or len(b) * tgt[b].max() <= 100
    again = token_budget_batches(tgt, src, budget=100, seed=3, epoch=1)
    assert all((x == y).all() for x, y in zip(batches, again))
    other = token_budget_batches(tgt, src, budget=100, seed=3, epoch=2)
    assert any(len(x) != len(y) or (x != y).any() for x, y in zip(batches, other))


def test_ranks_take_disjoint_shares_of_the_same_batches():
    import datasets

    rng = np.random.default_rng(0)
    table = datasets.Dataset.from_dict(
        {"src_ids": [[5] * int(n) for n in rng.integers(1, 9, 200)], "tgt_ids": [[6] * int(n) for n in rng.integers(1, 9, 200)]}
    )
    one = list(PairBatches(table, 40, seed=1).epoch(1))
    r0 = list(PairBatches(table, 40, seed=1, rank=0, world=2).epoch(1))
    r1 = list(PairBatches(table, 40, seed=1, rank=1, world=2).epoch(1))
    assert len(r0) == len(r1) == len(one) // 2
    assert all(a[1].src.shape == b[1].src.shape for a, b in zip(one[0::2], r0))


def test_collate_shapes_and_specials():
    b = collate([[5, 6, 7], [8]], [[9], [10, 11]])
    assert b.src.tolist() == [[5, 6, 7], [8, PAD, PAD]] and b.src_lengths.tolist() == [3, 1]
    assert b.tgt_in.tolist() == [[BOS, 9, PAD], [BOS, 10, 11]]
    assert b.tgt_out.tolist() == [[9, EOS, PAD], [10, 11, EOS]]
    assert b.n_tokens == 5 and b.to(torch.device("cpu")).n_tokens == 5  # counted once, carried to the device


def test_vectorised_batches_equal_padding_sentence_by_sentence():
    import datasets

    def padded(seqs):
        width = max(1, max(map(len, seqs)))
        return [list(q) + [PAD] * (width - len(q)) for q in seqs]

    rng = np.random.default_rng(1)
    src = [rng.integers(4, 50, int(n)).tolist() for n in rng.integers(0, 12, 300)]  # empty sources included
    tgt = [rng.integers(4, 50, int(n)).tolist() for n in rng.integers(0, 12, 300)]
    data = PairBatches(datasets.Dataset.from_dict({"src_ids": src, "tgt_ids": tgt}), 60, seed=2)
    rows = token_budget_batches(data.tgt_len, data.src_len, 60, seed=2, epoch=1)
    for (_, b), r in zip(data.epoch(1), rows, strict=True):
        s_, t_ = [src[i] for i in r], [tgt[i] for i in r]
        assert b.src.tolist() == padded(s_) and b.src_lengths.tolist() == [max(1, len(q)) for q in s_]
        assert b.tgt_in.tolist() == padded([[BOS, *q] for q in t_]) and b.tgt_out.tolist() == padded([[*q, EOS] for q in t_])
        assert b.n_tokens == sum(len(q) + 1 for q in t_)


def test_a_hub_style_dataset_loads_through_the_same_code_path(tmp_path):
    """A name that is not a local corpus goes to datasets.load_dataset, as `wmt14` would online; a local folder of
    JSON lines with a `translation` column exercises that path here."""
    import json

    folder = tmp_path / "my-corpus"
    folder.mkdir()
    rows = [{"translation": {"en": f" sentence {i} ", "fr": f"phrase {i}"}} for i in range(5)]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    table = load_parallel(str(folder), "train", "en", "fr")
    assert table["src"] == [f"sentence {i}" for i in range(5)] and table["tgt"][2] == "phrase 2"
    with pytest.raises(DataError, match="neither a local corpus"):
        load_parallel(str(tmp_path / "missing"), "train", "en", "fr")
