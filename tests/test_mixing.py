"""Corpus mixtures: data.corpus as a list with data.weights, qualified splits (corpus/split), the tokenizer trained
on the weighted draw, validation per corpus, exact resume; on the generated toy pair and a second toy corpus laid
out as Tatoeba's file."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch

from seq2seq import checkpoint
from seq2seq.config import ConfigError, load_recipe
from seq2seq.data.batching import Mixture, PairBatches, mixture_rows
from seq2seq.data.corpora import DataError
from seq2seq.data.parallel import load_parallel
from seq2seq.tasks import build_training, train_tokenizers
from seq2seq.tasks.translation_data import tokenizer_sample, training_corpora, validation_sets

from .conftest import ROOT, TOY_OVERRIDES, toy_recipe, use_data, write_toy_corpus

OTHER_SRC = [f"u{c}" for c in "abcdefghij"]  # the second corpus's words: none of them in the toy pair
OTHER_TGT = [f"U{c}" for c in "ABCDEFGHIJ"]
MIXED = ["data.corpus=[multi30k, tatoeba]", "data.weights=[2, 0.5]", "data.valid_split=[multi30k/val, tatoeba/val]",
         "tokenizer.vocab_size=80", "runtime.threads=1", "train.precision=fp32", "data.valid_limit=5",
         "train.valid_every=10", "train.schedule=plateau"]  # fmt: skip


def write_toy_tatoeba(root: Path, n: int = 1500, seed: int = 1) -> Path:
    """ROOT/tatoeba-fra-eng/fra.txt: `English<TAB>French<TAB>attribution` lines of a second toy pair."""
    rng, lines = random.Random(seed), []
    for _ in range(n):
        words = [rng.randrange(len(OTHER_SRC)) for _ in range(rng.randint(2, 5))]
        en = " ".join(OTHER_SRC[w] for w in words) + " ."
        fr = " ".join(OTHER_TGT[(3 * w + 1) % len(OTHER_TGT)] for w in reversed(words)) + " ."
        lines.append(f"{en}\t{fr}\tCC-BY 2.0 (France)\n")
    (root / "tatoeba-fra-eng").mkdir(parents=True, exist_ok=True)
    (root / "tatoeba-fra-eng" / "fra.txt").write_text("".join(lines), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def mixed_root(tmp_path_factory) -> Path:
    return write_toy_tatoeba(write_toy_corpus(tmp_path_factory.mktemp("mixing") / "data", n_train=300, n_val=20))


@pytest.fixture
def mixed_data(mixed_root, tmp_path, monkeypatch) -> Path:
    return use_data(mixed_root, tmp_path, monkeypatch)


def fit(run: Path, *overrides: str, resume: bool = False):
    return build_training(toy_recipe(*MIXED, *overrides), run, resume=resume).fit()


@pytest.fixture(scope="module")
def mixed_run(mixed_root, tmp_path_factory) -> Path:
    """30 steps on the mixture, uninterrupted (about 5 epochs of the weighted draw)."""
    run = tmp_path_factory.mktemp("mixed") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEQ2SEQ_DATA", str(mixed_root))
        threads = torch.get_num_threads()
        fit(run, "train.max_steps=30")
    torch.set_num_threads(threads)
    return run


# ------------------------------------------------------------------------------------------ weights per epoch


def stacked(sizes: tuple[int, ...]) -> datasets.Dataset:
    lengths = np.random.default_rng(0).integers(1, 12, size=sum(sizes)).tolist()
    return datasets.Dataset.from_dict({"src_ids": [[5] * n for n in lengths], "tgt_ids": [[6] * n for n in lengths]})


def test_each_epoch_draws_every_corpus_by_its_weight():
    mixture = Mixture(sizes=(30, 40, 10), weights=(2.0, 0.5, 1.5))
    data = PairBatches(stacked(mixture.sizes), budget=40, seed=3, mixture=mixture)
    draws = []
    for epoch in (1, 2):
        counts = Counter(np.concatenate(data.batches(epoch)).tolist())
        assert all(counts[r] == 2 for r in range(30))  # weight 2: every pair twice
        half = {r for r in range(30, 70) if counts[r]}
        assert len(half) == 20 and all(counts[r] == 1 for r in half)  # weight 0.5: a half, each pair once
        assert sorted(counts[r] for r in range(70, 80)) == [1] * 5 + [2] * 5  # 1.5: all once, half of them again
        assert sum(counts.values()) == 60 + 20 + 15
        draws.append(half)
    assert draws[0] != draws[1]  # the half is drawn anew each epoch ...
    again = PairBatches(stacked(mixture.sizes), budget=40, seed=3, mixture=mixture)
    assert all(np.array_equal(a, b) for a, b in zip(data.batches(2), again.batches(2)))  # ... from (seed, epoch)
    assert not np.array_equal(mixture_rows(mixture, 4, 2), mixture_rows(mixture, 3, 2))
    for batch in data.batches(1):  # still batches by the token budget
        assert len(batch) == 1 or len(batch) * int(data.tgt_len[batch].max()) <= 40


def test_weights_of_one_batch_exactly_as_one_corpus_and_ranks_share_the_draw():
    table = stacked((25, 35))
    plain = PairBatches(table, budget=30, seed=1)
    ones = PairBatches(table, budget=30, seed=1, mixture=Mixture((25, 35), (1.0, 1.0)))
    assert all(np.array_equal(a, b) for a, b in zip(plain.batches(2), ones.batches(2)))
    mixture = Mixture((25, 35), (1.0, 0.5))
    single = [b.tgt_out for _, b in PairBatches(table, 30, 1, mixture=mixture).epoch(1)]
    ranks = [[b.tgt_out for _, b in PairBatches(table, 30, 1, r, 2, mixture).epoch(1)] for r in (0, 1)]
    interleaved = [b for pair in zip(*ranks) for b in pair]
    assert all(torch.equal(a, b) for a, b in zip(single, interleaved)) and len(interleaved) >= len(single) - 1
    with pytest.raises(ValueError, match="hold 50 pairs, the table 60"):
        PairBatches(table, 30, 1, mixture=Mixture((25, 25), (1.0, 1.0)))


# ------------------------------------------------------------------------------------------ recipe and splits


def test_qualified_splits_override_the_corpus_and_mixed_splits_concatenate(mixed_data):
    tatoeba_val = load_parallel("tatoeba", "val", "en", "fr")
    assert 0 < len(tatoeba_val) < 100 and tatoeba_val["src"][0].startswith("u")
    assert list(load_parallel("multi30k", "tatoeba/val", "en", "fr")["tgt"]) == list(tatoeba_val["tgt"])
    both = load_parallel(("multi30k", "tatoeba"), "val", "en", "fr")
    assert list(both["src"]) == [*load_parallel("multi30k", "val", "en", "fr")["src"], *tatoeba_val["src"]]
    assert load_parallel(["multi30k", "tatoeba"], "multi30k/test_2017_flickr", "en", "fr").num_rows == 20


def test_a_split_not_in_every_corpus_is_an_error_listing_the_qualified_names(mixed_data):
    with pytest.raises(DataError, match=r"split 'test_2016_flickr' is not in every corpus \(tatoeba has none\); "
                                        r"name one corpus's split as corpus/split: multi30k/train, .*"
                                        r"multi30k/test_2017_flickr, tatoeba/train, tatoeba/val, tatoeba/test"):
        load_parallel(("multi30k", "tatoeba"), "test_2016_flickr", "en", "fr")
    with pytest.raises(DataError, match="corpus 'tatoeba' has no split 'dev'; its splits are train, val, test"):
        load_parallel("multi30k", "tatoeba/dev", "en", "fr")
    with pytest.raises(DataError, match=r"split '/val' must be a split name \(val\) or a qualified one"):
        load_parallel("multi30k", "/val", "en", "fr")
    with pytest.raises(DataError, match="names one corpus, but data.corpus has 2: give an unqualified split"):
        training_corpora(toy_recipe(*MIXED, "data.train_split=tatoeba/train"))
    with pytest.raises(DataError, match="data.valid_split names a split twice: multi30k/val, tatoeba/val, multi30k"):
        validation_sets(toy_recipe(*MIXED, "data.valid_split=[val, multi30k/val]"))


@pytest.mark.parametrize("override, message", [
    ("data.weights=[1]", r"data.weights gives 1 weight for 2 corpora \(multi30k, tatoeba\): one per corpus"),
    ("data.weights=[1, 0]", r"data.weights must be > 0, got \(1.0, 0.0\)"),
    ("data.corpus=[tatoeba, tatoeba]", "data.corpus names a corpus twice"),
    ("data.weights=[a, 1]", r"data.weights must be of type tuple, got \['a', 1\]"),
])  # fmt: skip
def test_recipe_errors_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        toy_recipe(*MIXED, override)


def test_every_recipe_loads_and_single_corpus_recipes_keep_one_name():
    for path in sorted((ROOT / "recipes").glob("*.yaml")):
        recipe = load_recipe(path)
        if recipe.task == "translation" and not path.stem.startswith("en-fr-general"):
            assert recipe.data.corpus == "multi30k" and recipe.data.weights is None, path
    general = load_recipe(ROOT / "recipes" / "en-fr-general.yaml")
    assert general.data.corpus == ("multi30k", "tatoeba") and general.train.max_minutes == 180
    assert load_recipe(ROOT / "recipes" / "en-fr-general-1h.yaml").train.max_minutes == 60


def test_validation_sets_are_labelled_by_corpus(mixed_data):
    labels = [v.label for v in validation_sets(toy_recipe(*MIXED, "data.valid_split=val"))]
    assert labels == ["multi30k", "tatoeba"]  # an unqualified split: validated in each corpus
    sets = validation_sets(toy_recipe(*MIXED, "data.valid_split=[val, multi30k/test_2016_flickr]"))
    assert [v.label for v in sets] == ["multi30k_val", "tatoeba", "multi30k_test_2016_flickr"]
    assert [len(v.table) for v in sets] == [5, 5, 5]  # data.valid_limit, each
    assert [v.label for v in validation_sets(toy_recipe(*MIXED, "data.valid_split=tatoeba/val"))] == [""]


# ------------------------------------------------------------------------------------------ training


def test_the_tokenizer_learns_from_the_weighted_draw_of_both_corpora(mixed_data):
    recipe = toy_recipe(*MIXED)
    corpora = training_corpora(recipe)
    assert [(c.name, c.weight) for c in corpora] == [("multi30k", 2.0), ("tatoeba", 0.5)]
    table, rows = tokenizer_sample(corpora, seed=1)
    n_toy, n_other = (len(c.table) for c in corpora)
    assert n_toy == 300 and 1300 < n_other < 1500
    per_corpus = Counter(int(r >= n_toy) for r in rows)
    assert per_corpus == {0: 2 * n_toy, 1: round(0.5 * n_other)}
    tok, _ = train_tokenizers(recipe, table, rows)
    for word in ["sa", "st", "TA", "TT", *OTHER_SRC, *OTHER_TGT]:  # a word piece of each corpus's words
        assert tok.sp.piece_to_id("\u2581" + word) != tok.sp.unk_id(), word


def test_validation_reports_each_corpus_and_their_mean(mixed_run):
    valid = [json.loads(line) for line in (mixed_run / "metrics.jsonl").open() if '"valid"' in line]
    assert [v["step"] for v in valid] == [10, 20, 30]
    for v in valid:
        for key in ("loss", "ppl", "bleu", "chrf"):
            assert f"{key}_multi30k" in v and f"{key}_tatoeba" in v, v
        for key in ("loss", "bleu", "chrf"):
            assert v[key] == pytest.approx((v[f"{key}_multi30k"] + v[f"{key}_tatoeba"]) / 2)
    best = max(valid, key=lambda v: v["bleu"])  # best.pt follows the mean
    assert best["best"] and checkpoint.load(mixed_run / "best.pt")["trainer"]["step"] == best["step"]
    assert [v["step"] for v in valid if v["best"]][-1] == best["step"]
    assert checkpoint.load(mixed_run / "last.pt")["trainer"]["epoch"] > 2  # several draws of the mixture


def test_resume_of_a_mixture_equals_an_uninterrupted_run(mixed_data, tmp_path):
    """Across draws of the mixture (epochs 1-4), with validation BLEU deciding the plateau schedule: equal weights,
    losses and validation scores."""
    steps = ["train.log_every=1"]
    fit(tmp_path / "whole", "train.max_steps=30", *steps)
    fit(tmp_path / "parts", "train.max_steps=20", *steps)
    from seq2seq.train import main as train  # the command: it checks the recipe against the run's recipe.yaml

    assert train([str(ROOT / "recipes" / "en-fr.yaml"), *TOY_OVERRIDES, *MIXED, "train.max_steps=30", *steps,
                  "--run-dir", str(tmp_path / "parts"), "--resume"]) == 0  # fmt: skip
    (ours, theirs), losses = (checkpoint.load(tmp_path / r / "last.pt") for r in ("parts", "whole")), []
    assert {**ours["trainer"], "elapsed": 0} == {**theirs["trainer"], "elapsed": 0} and ours["trainer"]["epoch"] > 3
    assert all(torch.equal(ours["model"][k], theirs["model"][k]) for k in theirs["model"])
    for run in ("parts", "whole"):
        records = [json.loads(line) for line in (tmp_path / run / "metrics.jsonl").open()]
        losses.append([(r["step"], r["kind"], r["loss"], r.get("bleu"), r.get("bleu_tatoeba")) for r in records])
    assert losses[0] == losses[1] and len(losses[0]) == 33  # every step's training loss, and 3 validations


def test_evaluate_takes_a_qualified_split_of_a_mixed_run(mixed_data, mixed_run, tmp_path, capsys):
    from seq2seq.evaluate import main

    n_test = len(load_parallel("tatoeba", "test", "en", "fr"))
    out = tmp_path / "hyps.fr"
    assert main([str(mixed_run), "--split", "tatoeba/test", "--greedy", "--device", "cpu", "--output", str(out)]) == 0
    assert len(out.read_text(encoding="utf-8").splitlines()) == n_test
    assert "tatoeba/test: " in capsys.readouterr().out
    assert main([str(mixed_run), "--split", "tatoeba/test", "--greedy", "--device", "cpu"]) == 0  # RUN/hyps.*
    written = Path(capsys.readouterr().out.split("translations in ")[1].split("\n")[0])
    assert written.parent == mixed_run and len(written.read_text(encoding="utf-8").splitlines()) == n_test
    assert main([str(mixed_run), "--split", "test_2016_flickr", "--device", "cpu", "--output", str(out)]) == 1
    assert "name one corpus's split as corpus/split: multi30k/train" in capsys.readouterr().err


@pytest.mark.realdata
def test_the_general_recipe_loads_multi30k_and_tatoeba(real_data, tmp_path, monkeypatch):
    monkeypatch.setenv("SEQ2SEQ_CACHE", str(tmp_path / "cache"))
    recipe = load_recipe(ROOT / "recipes" / "en-fr-general.yaml")
    corpora = training_corpora(recipe)
    assert [(c.name, c.split, c.weight, len(c.table)) for c in corpora] == [
        ("multi30k", "train", 1.0, 29000), ("tatoeba", "train", 1.0, 162161)]  # fmt: skip
    assert [(v.label, len(v.table)) for v in validation_sets(recipe)] == [("multi30k", 1014), ("tatoeba", 2548)]
    assert len(load_parallel(recipe.data.corpus, "tatoeba/test", "en", "fr")) == 2421  # 167,130 pairs in all
