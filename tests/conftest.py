"""Shared fixtures: a generated toy language pair laid out as a corpus folder, and tiny recipes."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import torch

from seq2seq.config import load_recipe

ROOT = Path(__file__).resolve().parents[1]
SRC_WORDS = [f"s{c}" for c in "abcdefghijklmnopqrst"]
TGT_WORDS = [f"T{c}" for c in "ABCDEFGHIJKLMNOPQRST"]


def toy_pair(rng: random.Random) -> tuple[str, str]:
    """English-like source; its 'French' is each word mapped through a fixed permutation, in reverse order."""
    words = [rng.randrange(len(SRC_WORDS)) for _ in range(rng.randint(3, 8))]
    src = " ".join(SRC_WORDS[w] for w in words) + " ."
    tgt = " ".join(TGT_WORDS[(7 * w + 3) % len(TGT_WORDS)] for w in reversed(words)) + " ."
    return src, tgt


def write_toy_corpus(root: Path, n_train: int = 3000, n_val: int = 200, seed: int = 0) -> Path:
    rng = random.Random(seed)
    folder = root / "multi30k"
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in [("train", n_train), ("val", n_val), ("test_2016_flickr", n_val), ("test_2017_flickr", n_val)]:
        pairs = [toy_pair(rng) for _ in range(n)]
        (folder / f"{split}.en").write_text("".join(s + "\n" for s, _ in pairs), encoding="utf-8")
        (folder / f"{split}.fr").write_text("".join(t + "\n" for _, t in pairs), encoding="utf-8")
    return root


TOY_OVERRIDES = [
    "tokenizer.model_type=word",
    "tokenizer.vocab_size=60",
    "model.embedding_size=64",
    "model.encoder_hidden=64",
    "model.encoder_layers=1",
    "model.decoder_hidden=128",
    "model.decoder_layers=1",
    "model.dropout=0.0",
    "train.lr=0.003",
    "train.warmup_steps=0",  # the recipe's 500-step warm-up would leave the toy runs of 40-800 steps half-trained
    "train.batch_tokens=1200",
    "train.label_smoothing=0.0",
    "train.log_every=20",
    "train.max_minutes=0",
    "train.early_stopping=0",
]


def use_data(root: Path, tmp_path: Path, monkeypatch) -> Path:
    """Point SEQ2SEQ_DATA at `root` and the download cache at the test's own folder; returns `root`."""
    monkeypatch.setenv("SEQ2SEQ_DATA", str(root))
    monkeypatch.setenv("SEQ2SEQ_CACHE", str(tmp_path / "cache"))
    return root


@pytest.fixture
def toy_data(tmp_path, monkeypatch) -> Path:
    return use_data(write_toy_corpus(tmp_path / "data"), tmp_path, monkeypatch)


def toy_recipe(*overrides: str):
    return load_recipe(ROOT / "recipes" / "en-fr.yaml", [*TOY_OVERRIDES, *overrides])


@pytest.fixture(scope="session")
def toy_run(tmp_path_factory) -> Path:
    """A model trained once per test session on the toy pair (800 steps, about 20 s on 2 cores)."""
    return train_toy_run(tmp_path_factory.mktemp("toy"))


@pytest.fixture(scope="session")
def toy_run_seen(tmp_path_factory) -> Path:
    """toy_run's training with a target vocabulary (model.target_vocabulary: seen): embeddings and output layer
    over the target pieces of the training data only."""
    return train_toy_run(tmp_path_factory.mktemp("toy_seen"), "model.target_vocabulary=seen")


def train_toy_run(root: Path, *overrides: str) -> Path:
    from seq2seq.tasks import build_training

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEQ2SEQ_DATA", str(write_toy_corpus(root / "data")))
        mp.setenv("SEQ2SEQ_CACHE", str(root / "cache"))
        # The fused decoder: with input feeding (the recipe's decoder) how fast this toy is learned depends on
        # rounding: 100 BLEU at step 800 on 2 threads, 68.6 on 1 (the stalls of docs/experiments.md, in miniature).
        # The unrolled input-feeding loop is checked against the plain loop in tests/test_seq2seq.py instead.
        recipe = toy_recipe("train.max_steps=800", "train.valid_every=200", "train.precision=bf16",
                            "model.attention=bahdanau", "model.input_feeding=false", *overrides)
        build_training(recipe, root / "run", resume=False).fit()
    return root / "run"


REAL_CORPORA = ("multi30k", "tatoeba-fra-eng", "ptb", "wikitext-2", "sp500")
NO_REAL_DATA = ("real corpora not found: set SEQ2SEQ_DATA to a folder holding " + ", ".join(REAL_CORPORA)
                + " (CI uses ../shared/data when it exists) to run the real-data tests")


@pytest.fixture
def real_data() -> Path:
    """The folder of real corpora; the real-data tests skip, all with one reason, where there is none."""
    root = os.environ.get("SEQ2SEQ_DATA")
    if not root or not all((Path(root) / name).is_dir() for name in REAL_CORPORA):
        pytest.skip(NO_REAL_DATA)
    return Path(root)


@pytest.fixture(autouse=True)
def keep_threads():
    """A test that trains in-process with runtime.threads sets torch's threads for the rest of
    the test session: put them back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
