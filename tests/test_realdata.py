"""On the real corpora under $SEQ2SEQ_DATA (CI sets ../shared/data): loading and a short training run."""

from __future__ import annotations

import json

import pytest

from seq2seq.config import load_recipe
from seq2seq.data.corpora import CORPORA, corpus_file
from seq2seq.data.parallel import load_parallel
from seq2seq.tasks import build_training

from .conftest import ROOT

pytestmark = pytest.mark.realdata

COUNTS = {"train": 29000, "val": 1014, "test_2016_flickr": 1000, "test_2017_flickr": 1000}


@pytest.mark.parametrize("split", COUNTS)
def test_multi30k_splits_load_aligned_and_stripped(real_data, split):
    table = load_parallel("multi30k", split, "en", "fr")
    assert len(table) == COUNTS[split]
    assert all(t == t.strip() and t for t in table["tgt"][:2000])


def test_tatoeba_split_sizes(real_data):
    sizes = {s: len(load_parallel("tatoeba", s, "en", "fr")) for s in ("train", "val", "test")}
    assert sum(sizes.values()) == 167130
    assert 1500 < sizes["val"] < 3500 and 1500 < sizes["test"] < 3500


@pytest.mark.parametrize("corpus", sorted(CORPORA))
def test_local_copies_match_the_published_sha256(real_data, corpus):
    import hashlib

    for name, source in CORPORA[corpus].items():
        path = corpus_file(corpus, name)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == source.sha256, path


def test_a_few_hundred_steps_on_multi30k_lower_the_validation_loss(real_data, tmp_path, monkeypatch):
    monkeypatch.setenv("SEQ2SEQ_CACHE", str(tmp_path / "cache"))
    recipe = load_recipe(
        ROOT / "recipes" / "en-fr.yaml",
        [
            "tokenizer.vocab_size=2000", "model.embedding_size=64", "model.encoder_hidden=64",
            "model.encoder_layers=1", "model.decoder_hidden=128", "model.decoder_layers=1", "model.dropout=0.1",
            "train.batch_tokens=2000", "train.max_steps=500", "train.valid_every=100", "train.max_minutes=0",
            "data.valid_limit=200", "train.early_stopping=0",
        ],
    )  # fmt: skip
    build_training(recipe, tmp_path / "run", resume=False).fit()
    valid = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open() if '"valid"' in line]
    losses = [v["loss"] for v in valid]
    assert len(losses) == 5
    assert losses[-1] < losses[0] - 0.3, losses
