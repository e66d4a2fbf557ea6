"""The language model: vocabulary and streams, exact perplexity, carried BPTT state, training, evaluate, generate."""

from __future__ import annotations

import io
import json
import math
import random
from pathlib import Path

import pytest
import torch

from seq2seq import evaluate, generate, search
from seq2seq.config import ConfigError, load_recipe
from seq2seq.data.text import (
    LMBatch,
    PieceVocabulary,
    StreamBatches,
    Vocabulary,
    batchify,
    split_lines,
    vocabulary_from,
)
from seq2seq.models.lm import LanguageModel
from seq2seq.models.recurrent import CELLS
from seq2seq.tokenizer import EOS, UNK

from .conftest import ROOT

SUBJECTS, VERBS, OBJECTS = (
    ["the cat", "a dog", "the company", "<unk>"],
    ["said", "saw", "sold"],
    ["N shares", "it"],
)


def write_tiny_ptb(root: Path, seed: int = 0) -> Path:
    """A PTB-shaped corpus (one sentence per line, leading and trailing space) from a small grammar."""
    rng = random.Random(seed)
    folder = root / "ptb"
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in [("train", 400), ("valid", 40), ("test", 40)]:
        lines = [f" {rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} \n" for _ in range(n)]
        (folder / f"ptb.{split}.txt").write_text("".join(lines), encoding="utf-8")
    return root


@pytest.fixture
def tiny_ptb(tmp_path, monkeypatch) -> Path:
    root = write_tiny_ptb(tmp_path / "data")
    monkeypatch.setenv("SEQ2SEQ_DATA", str(root))
    monkeypatch.setenv("SEQ2SEQ_CACHE", str(tmp_path / "cache"))
    return root


TINY = [
    "model.embedding_size=24",
    "model.hidden_size=24",
    "model.layers=2",
    "data.bptt=6",
    "data.batch_size=4",
    "train.max_steps=60",
    "train.valid_every=30",
    "train.log_every=10",
    "train.max_minutes=0",
    "train.lr=5",  # the recipe's SGD lr 20 is for batches of 20 x 35 tokens; these are 4 x 6
]


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory) -> Path:
    """A tiny language model trained for 60 steps (bf16 autocast, a few seconds)."""
    from seq2seq.tasks import build_training

    root = tmp_path_factory.mktemp("lm")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEQ2SEQ_DATA", str(write_tiny_ptb(root / "data")))
        build_training(load_recipe(ROOT / "recipes/lm-ptb.yaml", TINY), root / "run", resume=False).fit()
    return root / "run"


def tiny_model(cell: str = "lstm", vocab: int = 12, seed: int = 0) -> LanguageModel:
    torch.manual_seed(seed)
    return LanguageModel(vocab, 8, 10, 2, cell).eval()


# --------------------------------------------------------------------------------------------- data


def test_vocabulary_maps_corpus_specials_to_fixed_ids():
    vocab = Vocabulary.from_lines([" the cat <unk> ", "a cat "], "word")
    assert vocab.tokens == ["<pad>", "<unk>", "<bos>", "<eos>", "the", "cat", "a"]
    assert vocab.stream(["the cat <unk>", "a dog"]).tolist() == [4, 5, UNK, EOS, 6, UNK, EOS]  # dog: unseen
    assert vocab.decode([4, 5, EOS, 6]) == "the cat\na"
    chars = Vocabulary.from_lines(["ab a"], "char")
    assert chars.stream(["ab a"]).tolist() == [4, 5, 6, 4, EOS]
    assert chars.decode(chars.prompt("ba")) == "ba"


def test_batchify_cuts_parallel_streams():
    assert batchify(torch.arange(13), 3).tolist() == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]


def test_stream_batches_resume_and_cover_every_column():
    batches = StreamBatches(
        torch.arange(23), batch_size=2, bptt=4
    )  # rows of 11: 10 input columns -> 3 batches
    seen = list(batches.epoch(1))
    assert [i for i, _ in seen] == [1, 2, 3]
    assert torch.cat([b.inputs for _, b in seen], 1).tolist() == [list(range(10)), list(range(11, 21))]
    assert torch.cat([b.targets for _, b in seen], 1).tolist() == [list(range(1, 11)), list(range(12, 22))]
    assert len({id(b.carry) for _, b in seen}) == 1  # one box per epoch ...
    assert next(iter(batches.epoch(2)))[1].carry is not seen[0][1].carry  # ... and a fresh one the next epoch
    assert [i for i, _ in batches.epoch(1, start=2)] == [3]


# ----------------------------------------------------------------------------------- exact perplexity


def test_stream_nll_matches_a_hand_computation():
    """All weights zero except the output bias = log unigram frequencies: the model is a unigram model, so the
    NLL is -sum_w count(w) log(count(w) / N), computed here without the model."""
    ids = torch.tensor([4, 5, 4, EOS, 6, 4, EOS, 5, 4, EOS])
    counts = {t: ids.tolist().count(t) for t in set(ids.tolist())}
    model = LanguageModel(8, 4, 5, 2, "lstm").eval()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for t, c in counts.items():
            model.output.bias[t] = math.log(c / len(ids))
        model.output.bias[[0, 1, 2, 7]] = -1e9  # tokens that never occur
    expected = -sum(c * math.log(c / len(ids)) for c in counts.values())
    total, count = model.stream_nll(ids, chunk=3)
    assert count == len(ids)
    assert total == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("cell", CELLS)
def test_stream_nll_equals_feeding_one_token_at_a_time(cell):
    model = tiny_model(cell)
    ids = torch.randint(4, 12, (40,))
    state, total, previous = model.encode(torch.zeros(1, 0, dtype=torch.long)), 0.0, EOS
    with torch.inference_mode():
        for t in ids.tolist():
            logits = model.decode_step(torch.tensor([previous]), state, normalize=False).scores
            log_probs, state, _, _ = model.decode_step(torch.tensor([previous]), state)
            torch.testing.assert_close(torch.log_softmax(logits.float(), -1), log_probs)  # what greedy search skips
            total, previous = total - float(log_probs[0, t]), t
    assert model.stream_nll(ids, chunk=7)[0] == pytest.approx(total, rel=1e-5)


@pytest.mark.parametrize("chunk", [1, 5, 35, 1000])
def test_evaluation_chunk_length_does_not_change_perplexity(chunk):
    model, ids = tiny_model(), torch.randint(4, 12, (300,))
    assert model.stream_nll(ids, chunk=chunk)[0] == pytest.approx(
        model.stream_nll(ids, chunk=300)[0], rel=1e-5
    )


def test_carried_state_equals_one_long_sequence():
    model, ids = tiny_model(), torch.randint(4, 12, (2 * 25,))
    batches = StreamBatches(ids, batch_size=2, bptt=4)
    with torch.inference_mode():
        carried = sum(float(model.loss(b)[0]) for _, b in batches.epoch(1))
        rows = batches.data  # (2, 25): each row is one long sequence
        whole = float(model.loss(LMBatch(rows[:, :-1], rows[:, 1:]))[0])
    assert carried == pytest.approx(whole, rel=1e-5)


def test_carried_state_is_detached_between_batches():
    model = tiny_model().train()
    _, batch = next(iter(StreamBatches(torch.randint(4, 12, (60,)), batch_size=2, bptt=5).epoch(1)))
    model.loss(batch)[0].backward()
    assert all(not t.requires_grad for layer in batch.carry.state for t in layer)


def test_tied_embeddings_share_one_matrix_and_need_equal_sizes():
    model = LanguageModel(20, 16, 16, 1, tie_embeddings=True)
    assert model.output.weight is model.embedding.weight
    with pytest.raises(ConfigError, match="hidden_size == model.embedding_size"):
        load_recipe(ROOT / "recipes/lm-ptb.yaml", ["model.tie_embeddings=true", "model.hidden_size=300"])


# ------------------------------------------------------------------------------------------ generation


def test_recurrence_runs_in_float32_under_bf16_autocast_unless_asked_otherwise():
    torch.manual_seed(0)
    fp32 = LanguageModel(50, 16, 16, 2, tie_embeddings=True).eval()
    low = LanguageModel(50, 16, 16, 2, tie_embeddings=True, recurrence="autocast").eval()
    low.load_state_dict(fp32.state_dict())
    tokens = torch.randint(0, 50, (3, 7))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        (a, state_a), (b, state_b) = fp32(tokens), low(tokens)
    assert state_a[0][0].dtype == torch.float32 and state_b[0][0].dtype == torch.bfloat16
    assert not torch.equal(a, b)
    torch.testing.assert_close(a.float(), b.float(), atol=0.05, rtol=0.05)  # the same model, in another precision


def test_max_len_and_start_tokens_in_search():
    model = tiny_model()
    with torch.no_grad():
        model.output.bias[EOS] = -1e4  # never ends by itself
    prompt, lengths = torch.tensor([[EOS, 5, 6]]), torch.tensor([3])
    out = search.sample(model, prompt, lengths, max_len=7, start_tokens=torch.tensor([7]))[0]
    assert len(out.tokens) == 7
    beams = search.beam_search(model, prompt, lengths, beam_size=3, max_len=4, start_tokens=torch.tensor([7]))
    assert len(beams[0][0].tokens) == 4


def test_training_evaluate_and_generate_flags(lm_run, tiny_ptb, capsys):
    valid = [
        r for r in map(json.loads, (lm_run / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "valid"
    ]
    assert valid[-1]["loss"] < valid[0]["loss"] and valid[-1]["ppl"] == pytest.approx(
        math.exp(valid[-1]["loss"])
    )
    assert evaluate.main([str(lm_run), "--split", "test"]) == 0
    printed = capsys.readouterr().out
    tokens = sum(len(line.split()) + 1 for line in split_lines("ptb", "test"))
    assert printed.startswith("test perplexity = ") and printed.strip().endswith(f"({tokens} word tokens)")

    def run(*flags: str) -> str:
        assert generate.main([str(lm_run), "--prompt", "the company", *flags]) == 0
        return capsys.readouterr().out.strip()

    assert run() == run()  # greedy is deterministic
    assert run("--temperature", "1", "--seed", "3") == run("--temperature", "1", "--seed", "3")
    assert run("--temperature", "0.8", "--top-k", "3", "--top-p", "0.9", "--seed", "1").startswith(
        "the company"
    )
    assert run("--beam", "3").startswith("the company")
    for text in [run("--max-tokens", "2", "--temperature", "2", "--seed", str(s)) for s in range(5)]:
        assert len(text.split()) <= 2 + 2


def test_sentencepiece_vocabulary_round_trips_and_keeps_corpus_unk():
    lines = [" the cat <unk> sat ", " <unk> <unk> a dog said N ", "hello world"] * 30
    vocab = PieceVocabulary.from_lines(lines, vocab_size=40)
    ids = vocab.stream(lines[:3]).tolist()
    assert ids.count(UNK) == 3 and ids.count(EOS) == 3  # one UNK per corpus <unk>, one EOS per line
    assert vocab.decode(ids) == "the cat <unk> sat\n<unk> <unk> a dog said N\nhello world\n"
    assert vocab.prompt("the cat") == ids[: len(vocab.prompt("the cat"))]
    again = vocabulary_from(vocab.state(), "sentencepiece")
    assert again.stream(lines).tolist() == vocab.stream(lines).tolist()


def test_sentencepiece_language_model_reports_word_level_perplexity(tiny_ptb, tmp_path, capsys):
    from seq2seq.tasks import build_training

    recipe = load_recipe(ROOT / "recipes/lm-ptb.yaml", [*TINY, "data.tokens=sentencepiece", "data.vocab_size=40",
                                                        "train.max_steps=20", "train.valid_every=10"])  # fmt: skip
    build_training(recipe, tmp_path / "run", resume=False).fit()
    capsys.readouterr()
    assert evaluate.main([str(tmp_path / "run"), "--split", "test"]) == 0
    first, second = capsys.readouterr().out.strip().splitlines()
    ppl, tokens = float(first.split()[3]), int(first.split("(")[1].split()[0])
    word_ppl, words = float(second.split()[4]), int(second.split("(")[1].split()[0])
    assert words == sum(len(line.split()) + 1 for line in split_lines("ptb", "test"))
    # one total NLL, two denominators: log(ppl) * tokens == log(word_ppl) * words
    assert math.log(ppl) * tokens == pytest.approx(math.log(word_ppl) * words, rel=1e-3)
    assert generate.main([str(tmp_path / "run"), "--prompt", "the company", "--max-tokens", "3"]) == 0
    assert capsys.readouterr().out.startswith("the company")


def test_generate_reads_prompts_from_stdin(lm_run, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("the cat\n\n"))  # an empty prompt starts from a sentence start
    assert generate.main([str(lm_run), "--max-tokens", "5"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("the cat") and out.count("\n") == 2  # one line per prompt


def test_generate_on_a_device_that_is_not_there_is_a_one_line_error(lm_run, monkeypatch, capsys):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    for device, message in [("cuda", "sees no CUDA GPU: use the CPU"), ("tpu0", "unknown device 'tpu0'")]:
        assert generate.main([str(lm_run), "--device", device, "--prompt", "the"]) == 2
        assert message in capsys.readouterr().err


def test_generate_names_the_line_of_invalid_utf8_on_a_pipe(lm_run, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"the cat\nthe \xff dog\n")))
    assert generate.main([str(lm_run), "--max-tokens", "3"]) == 1  # a runtime error, after the lines before it
    out, err = capsys.readouterr()
    assert out.startswith("the cat") and "line 2 is not valid UTF-8" in err


def test_generate_interactive_prompt_survives_bad_input(lm_run, tmp_path):
    import os
    import sys

    import pexpect

    env = {**os.environ, "HOME": str(tmp_path), "PYTHONIOENCODING": "utf-8", "OMP_NUM_THREADS": "1"}
    child = pexpect.spawn(sys.executable, ["-m", "seq2seq.generate", str(lm_run), "--max-tokens", "4"], cwd=str(ROOT),
                          env=env, timeout=60, encoding="utf-8", codec_errors="replace")  # fmt: skip
    child.expect("Ctrl-D quits")
    child.expect("> ")
    child.sendline("the company")
    child.expect("the company")
    child.expect("> ")
    os.write(child.child_fd, b"the \xff\xfe\r")  # invalid UTF-8 bytes
    child.expect("not valid UTF-8")
    child.sendintr()  # Ctrl-C at the prompt
    child.sendline("a dog")
    child.expect("a dog")
    child.expect("> ")
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert (tmp_path / ".seq2seq_history").read_bytes().count(b"the company") == 1  # readline kept the history


# ------------------------------------------------------------------------------------------- real data


@pytest.mark.realdata
def test_ptb_word_vocabulary_and_token_counts(real_data):
    lines = split_lines("ptb", "train")
    vocab = Vocabulary.from_lines(lines, "word")
    corpus_words = {w for line in lines for w in line.split()} | {"<eos>"}
    assert len(corpus_words) == 10_000 and "<unk>" in corpus_words
    assert (
        len(vocab) == 10_000 + 2
    )  # the corpus's 10k with <unk> and <eos> at ids 1 and 3, plus <pad> and <bos>
    assert vocab.index["<unk>"] == UNK and vocab.index["<eos>"] == EOS
    assert vocab.stream(lines).numel() == 929_589
    assert [vocab.stream(split_lines("ptb", s)).numel() for s in ("valid", "test")] == [73_760, 82_430]


@pytest.mark.realdata
def test_ptb_sentencepiece_vocabulary_round_trips_the_test_split(real_data):
    vocab = PieceVocabulary.from_lines(split_lines("ptb", "train"), vocab_size=4000)
    test = split_lines("ptb", "test")
    ids = vocab.stream(test)
    assert len(vocab) == 4000 and ids.numel() > 82_430  # pieces: more tokens than words
    assert (ids == EOS).sum() == len(test) and (ids == UNK).sum() == sum(line.split().count("<unk>") for line in test)
    decoded = vocab.decode(ids.tolist()).split("\n")
    assert [" ".join(line.split()) for line in test] == decoded[: len(test)]  # the text comes back word for word
