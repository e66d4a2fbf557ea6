"""End to end on generated data: train, checkpoint, translate, evaluate, resume."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import torch

from seq2seq import checkpoint, runlog
from seq2seq.data.parallel import load_parallel
from seq2seq.metrics import bleu
from seq2seq.tasks import build_training, load_for_inference, target_vocabulary
from seq2seq.tokenizer import BOS, EOS, PAD, UNK, Tokenizer
from seq2seq.translator import Translator, auto_inter_threads

from .conftest import ROOT, TOY_OVERRIDES, toy_recipe


def test_toy_pair_is_learned_to_bleu_90(toy_run, toy_data):
    translator = load_for_inference(toy_run, "best", "cpu")
    test = load_parallel("multi30k", "test_2016_flickr", "en", "fr")
    for beam in (1, 5):
        score = bleu(translator.translate(test["src"], beam=beam), [test["tgt"]]).value
        assert score >= 90, f"toy pair only reached BLEU {score:.1f} with beam {beam}"
    assert (toy_run / "curves.png").stat().st_size > 0
    assert Tokenizer((toy_run / "spm.model").read_bytes()).encode(["sa sb ."]) == translator.src_tok.encode(["sa sb ."])
    assert (toy_run / "metrics.jsonl").read_text().count('"valid"') == 4


def test_translator_api_n_best_and_attention(toy_run):
    translator = Translator.from_run(toy_run, device="cpu")
    assert translator.translate(["sa sb sc ."], beam=5) == ["TR TK TD ."]
    n_best = translator.translate_n_best(["sa sb sc .", ""], beam=4, n_best=3)
    assert len(n_best[0]) == 3 and n_best[1][0].text == ""
    assert [t.score for t in n_best[0]] == sorted((t.score for t in n_best[0]), reverse=True)
    best = n_best[0][0]
    assert len(best.attention) >= len(best.tgt_pieces) and len(best.attention[0]) == len(best.src_pieces)
    # the target is the source reversed: the first output word attends most to the last source word
    first_row = best.attention[0]
    assert max(range(len(first_row)), key=first_row.__getitem__) == best.src_pieces.index("▁sc")


def test_inter_threads_decode_batches_at_once_with_the_same_results(toy_run, toy_data):
    sources = load_parallel("multi30k", "test_2016_flickr", "en", "fr")["src"][:60]
    serial = Translator.from_run(toy_run, device="cpu", inter_threads=1)
    parallel = Translator.from_run(toy_run, device="cpu", inter_threads=2)
    threads = torch.get_num_threads()
    for beam in (1, 3):
        expected = serial.translate_n_best(sources, beam=beam, n_best=1, batch_size=7)
        got = parallel.translate_n_best(sources, beam=beam, n_best=1, batch_size=7)  # 9 batches over 2 threads
        assert [t[0].text for t in got] == [t[0].text for t in expected]
        assert [t[0].score for t in got] == pytest.approx([t[0].score for t in expected])
    assert torch.get_num_threads() == threads  # the caller's setting is back
    with pytest.raises(ValueError, match="inter_threads"):
        Translator.from_run(toy_run, device="cpu", inter_threads=0)
    # the default: two batches at once for beam search when there are threads to share, one for greedy search
    assert Translator.from_run(toy_run, device="cpu").inter_threads is None
    cpu = torch.device("cpu")
    assert auto_inter_threads(1, cpu) == 1 and auto_inter_threads(5, cpu) == (2 if threads >= 2 else 1)
    torch.set_num_threads(1)
    try:
        assert auto_inter_threads(5, cpu) == 1
    finally:
        torch.set_num_threads(threads)


def test_a_target_vocabulary_is_the_target_side_of_training(toy_run, toy_run_seen, toy_data, tmp_path):
    """model.target_vocabulary: seen: the decoder knows the target pieces seen in training only; translations map
    back to pieces; a resumed run keeps its vocabulary."""
    payload = checkpoint.load(toy_run_seen / "best.pt")
    ids = payload["model"]["target_ids"].tolist()
    assert ids == target_vocabulary(payload["target_pieces"]) and ids[:4] == [PAD, UNK, BOS, EOS]
    t = Translator.from_run(toy_run_seen, device="cpu")
    assert t.shortlist is None and t.model.generator.out_features == len(ids) < len(t.tgt_tok)
    test = load_parallel("multi30k", "test_2016_flickr", "en", "fr")
    allowed = {t.tgt_tok.sp.id_to_piece(i) for i in ids}
    for beam in (1, 4):
        got = t.translate_n_best(test["src"], beam=beam)
        assert all(set(x[0].tgt_pieces) <= allowed and x[0].tgt_pieces == t.tgt_tok.pieces(x[0].text) for x in got)
        assert bleu([x[0].text for x in got], [test["tgt"]]).value >= 90
    with pytest.raises(ValueError, match="share the target vocabulary"):
        Translator.from_run([toy_run, toy_run_seen], device="cpu")
    run = tmp_path / "run"
    shutil.copytree(toy_run_seen, run)
    resumed = build_training(toy_recipe("train.max_steps=810", "train.valid_every=200", "model.attention=bahdanau",
                                        "model.input_feeding=false", "model.target_vocabulary=seen"), run,
                             resume=True)  # fmt: skip
    assert resumed.model.target_ids.tolist() == ids
    resumed.fit()
    assert checkpoint.load(run / "last.pt")["trainer"]["step"] == 810


def test_the_shortlist_is_the_target_side_of_training_and_greedy_search_keeps_to_it(toy_run, toy_data, tmp_path):
    """Runs with every piece in the output layer: greedy search takes its argmax over the pieces seen in training."""
    payload = torch.load(toy_run / "best.pt", weights_only=False)
    pieces = payload["target_pieces"]
    assert pieces == sorted(set(pieces)) and EOS in pieces
    short, full = Translator.from_run(toy_run, device="cpu"), Translator.from_run(toy_run, device="cpu", shortlist=False)
    assert short.shortlist.tolist() == pieces and full.shortlist is None
    sources = load_parallel("multi30k", "test_2016_flickr", "en", "fr")["src"][:40]
    got = short.translate(sources)  # greedy: the argmax over the shortlist
    allowed = {short.tgt_tok.sp.id_to_piece(i) for i in pieces}
    assert all(set(short.tgt_tok.pieces(line)) <= allowed for line in got)
    assert got == full.translate(sources)  # the unseen pieces never win here
    beam = short.translate_n_best(sources, beam=4, attention=False)  # beam search scores every piece
    assert [t[0].score for t in beam] == [t[0].score for t in full.translate_n_best(sources, beam=4, attention=False)]
    src_only = sorted(set(range(len(short.tgt_tok))) - set(pieces))
    assert src_only and all(short.tgt_tok.sp.id_to_piece(i)[1:2] in ("", "s") for i in src_only[-5:])  # source words
    # a checkpoint from before the shortlist was kept: it comes from the run directory's tokenized training data
    del payload["target_pieces"]
    (tmp_path / "cache").symlink_to(toy_run / "cache")
    torch.save(payload, tmp_path / "best.pt")
    assert Translator.from_run(tmp_path, device="cpu").shortlist.tolist() == pieces


def test_ensemble_of_one_model_twice_equals_the_model(toy_run, tmp_path):
    single = Translator.from_run(toy_run, device="cpu")
    double = Translator.from_run([toy_run, toy_run], device="cpu")
    src = ["sa sb sc sd .", "st sk sa ."]
    for beam in (1, 3):
        a, b = single.translate_n_best(src, beam=beam), double.translate_n_best(src, beam=beam)
        assert [x[0].text for x in a] == [x[0].text for x in b]
        for x, y in zip(a, b):  # the ensemble averages float32 log-probabilities; beam search over one bf16 model
            # normalizes its candidates with a bf16 log-softmax (search.log_normalizer): < 0.004 per output piece
            per_piece = 1e-3 if beam == 1 else 4e-3
            assert x[0].score == pytest.approx(y[0].score, abs=per_piece * (len(x[0].tgt_pieces) + 1))


def test_checkpoint_averaging(toy_run, tmp_path):
    out = tmp_path / "avg.pt"
    r = subprocess.run([sys.executable, "scripts/average_checkpoints.py", str(out), str(toy_run / "best.pt"),
                        str(toy_run / "last.pt")], cwd=ROOT, capture_output=True)  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()
    a, b = checkpoint.load(toy_run / "best.pt")["model"], checkpoint.load(toy_run / "last.pt")["model"]
    avg = checkpoint.load(out)["model"]
    for name in a:
        expected = (a[name] + b[name]) / 2 if a[name].is_floating_point() else a[name]  # target_ids: kept
        torch.testing.assert_close(avg[name], expected)
    assert Translator.from_run(toy_run, which=str(out), device="cpu").translate(["sa sb ."]) != [""]


def test_resume_equals_uninterrupted(toy_data, tmp_path):
    """Stopping after 30 steps and resuming to 60 gives the weights of one 60-step run."""
    common = ["train.valid_every=30", "train.schedule=plateau", "data.valid_limit=20", "train.precision=fp32"]
    straight = build_training(toy_recipe("train.max_steps=60", *common), tmp_path / "a", resume=False)
    straight.fit()
    first = build_training(toy_recipe("train.max_steps=30", *common), tmp_path / "b", resume=False)
    first.fit()
    resumed = build_training(toy_recipe("train.max_steps=60", *common), tmp_path / "b", resume=True)
    assert resumed.progress.step == 30
    resumed.fit()
    a = checkpoint.load(tmp_path / "a" / "last.pt")["model"]
    b = checkpoint.load(tmp_path / "b" / "last.pt")["model"]
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6, msg=name)
    # and the same validations: decoding caches follow the weights the optimizer changed in place
    valid = [[{k: v for k, v in r.items() if k != "elapsed"} for r in runlog.read(tmp_path / run / "metrics.jsonl")
              if r["kind"] == "valid"] for run in "ab"]  # fmt: skip
    assert valid[0] == valid[1] and [r["step"] for r in valid[0]] == [30, 60]


def run_cli(*args: str, stdin: bytes = b"", env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], input=stdin, capture_output=True, env=env, timeout=300, cwd=ROOT)


def test_cli_train_translate_evaluate(toy_data, tmp_path):
    run = tmp_path / "cli-run"
    r = run_cli("seq2seq.train", "recipes/en-fr.yaml", *TOY_OVERRIDES, "train.max_steps=40", "--run-dir", str(run),
                "train.valid_every=20", "data.valid_limit=20")  # overrides on both sides of --run-dir
    assert r.returncode == 0, r.stderr.decode()
    assert "valid_limit: 20" in (run / "recipe.yaml").read_text()
    # a second start without --resume must not clobber the run
    again = run_cli("seq2seq.train", "recipes/en-fr.yaml", "--run-dir", str(run))
    assert again.returncode == 2 and b"--resume" in again.stderr
    # stdin -> stdout, one line per line, empty lines stay empty
    r = run_cli("seq2seq.translate", str(run), stdin=b"sa sb sc .\n\n   \nsd se .\n")
    assert r.returncode == 0, r.stderr.decode()
    lines = r.stdout.decode().split("\n")
    assert len(lines) == 5 and lines[1] == "" and lines[2] == "" and lines[0] and lines[3]
    # invalid UTF-8 names the line (a runtime error), after the translation of the line before it
    r = run_cli("seq2seq.translate", str(run), stdin=b"sa sb .\n\xff\xfe bad\n")
    assert r.returncode == 1 and b"line 2" in r.stderr and r.stdout.count(b"\n") == 1
    r = run_cli("seq2seq.evaluate", str(run), "--split", "test_2016_flickr")
    assert r.returncode == 0, r.stderr.decode()
    out = r.stdout.decode()
    assert "BLEU" in out and "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:" in out and "chrF" in out
    full = run_cli("seq2seq.evaluate", str(run), "--split", "test_2016_flickr", "--full-vocabulary")
    assert full.returncode == 0 and "BLEU" in full.stdout.decode(), full.stderr.decode()
    fp32 = run_cli("seq2seq.evaluate", str(run), "--split", "test_2016_flickr", "--precision", "fp32")
    assert fp32.returncode == 0 and "BLEU" in fp32.stdout.decode(), fp32.stderr.decode()
    assert "1 model, fp32 on cpu," in fp32.stdout.decode() and "1 model, bf16 on cpu," in r.stdout.decode()


def test_fp16_without_a_gpu_is_a_clear_error_before_any_work(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # torch sees no GPU, even on a machine with one
    r = run_cli("seq2seq.train", "recipes/en-fr.yaml", "train.precision=fp16", "--run-dir", str(tmp_path / "r"), env=env)
    assert r.returncode == 2 and b"fp16 needs a CUDA GPU" in r.stderr
    assert not (tmp_path / "r").exists()


def test_a_device_that_is_not_there_is_a_one_line_error(toy_run):
    """translate and evaluate report an unknown device and CUDA without a GPU in one line, with no traceback."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # torch sees no GPU, even on a machine with one
    for module, device, message in [("seq2seq.translate", "tpu0", b"unknown device 'tpu0'"),
                                    ("seq2seq.translate", "cuda", b"sees no CUDA GPU: use the CPU"),
                                    ("seq2seq.evaluate", "cuda", b"sees no CUDA GPU: use the CPU")]:  # fmt: skip
        r = run_cli(module, str(toy_run), "--device", device, env=env, stdin=b"sa sb .\n")
        assert r.returncode == 2 and r.stderr.startswith(b"error: ") and message in r.stderr, (module, r.stderr)


def test_int8_on_cuda_is_a_clear_error_before_loading(toy_run, monkeypatch):
    from seq2seq.tasks import translation

    monkeypatch.setattr(translation, "resolve_device", lambda name: torch.device("cuda"))
    monkeypatch.setattr(translation.checkpoint, "load", lambda path: pytest.fail("loaded a checkpoint first"))
    with pytest.raises(ValueError, match="int8 decoding runs on the CPU, not on cuda: add --device cpu"):
        translation.load_for_inference(toy_run, "best", "auto", "int8")


def test_decoding_precision_is_float32_on_a_gpu_by_default_and_can_be_chosen(toy_run):
    from seq2seq.tasks import translation

    assert translation.decode_precision("bf16", torch.device("cuda")) == "fp32"
    assert translation.decode_precision("fp16", torch.device("cuda", 0)) == "fp32"
    cpu = torch.device("cpu")
    assert [translation.decode_precision(p, cpu) for p in ("bf16", "fp16", "fp32")] == ["bf16", "bf16", "fp32"]
    for precision, dtype in [(None, torch.bfloat16), ("bf16", torch.bfloat16), ("fp32", torch.float32)]:
        t = translation.load_for_inference(toy_run, "best", "cpu", precision)
        assert t.precision == (precision or "bf16") and next(t.model.parameters()).dtype == dtype
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        translation.load_for_inference(toy_run, "best", "cpu", "fp8")
    with pytest.raises(ValueError, match="fp16 decoding runs on CUDA, not on cpu: use bf16"):
        translation.load_for_inference(toy_run, "best", "cpu", "fp16")
    r = run_cli("seq2seq.translate", str(toy_run), "--int8", "--precision", "bf16", stdin=b"sa sb .\n")
    assert r.returncode == 2 and b"--int8 and --precision bf16 disagree" in r.stderr, r.stderr


def test_default_batch_sizes_are_larger_on_a_gpu():
    from seq2seq.translator import default_batch_size

    assert [default_batch_size(b) for b in (1, 5)] == [256, 102]
    assert [default_batch_size(b, torch.device("cpu")) for b in (1, 5)] == [256, 102]
    assert [default_batch_size(b, torch.device("cuda", 0)) for b in (1, 5, 2000)] == [1024, 256, 1]


def test_corrupt_checkpoint_is_a_clear_error(toy_data, tmp_path):
    bad = tmp_path / "run"
    bad.mkdir()
    (bad / "best.pt").write_bytes(b"not a checkpoint at all")
    r = run_cli("seq2seq.translate", str(bad), stdin=b"sa .\n")
    assert r.returncode == 1 and b"corrupt" in r.stderr  # a runtime error: the run directory and file are there


def test_sigterm_saves_last_and_the_run_resumes(toy_data, tmp_path):
    """A killed run (SIGTERM, as from a scheduler) finishes its step, saves last.pt and exits; --resume goes on."""
    import signal
    import time

    run = tmp_path / "killed"
    args = [sys.executable, "-m", "seq2seq.train", "recipes/en-fr.yaml", *TOY_OVERRIDES, "train.max_steps=100000",
            "train.valid_every=100000", "train.log_every=5", "--run-dir", str(run)]  # fmt: skip
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not (run / "metrics.jsonl").exists() and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()[-2000:]
    saved = checkpoint.load(run / "last.pt")["trainer"]["step"]
    assert saved >= 5
    # resuming with a recipe that trains something else is refused, naming the difference; the run is untouched
    before = (run / "last.pt").read_bytes()
    r = run_cli("seq2seq.train", "recipes/en-fr.yaml", *TOY_OVERRIDES, "train.batch_tokens=123",
                "train.valid_every=100000", "--run-dir", str(run), "--resume")  # fmt: skip
    assert r.returncode == 2 and b"train.batch_tokens" in r.stderr and b"recipe.yaml --run-dir" in r.stderr
    assert (run / "last.pt").read_bytes() == before
    assert b"--allow-changes" in r.stderr
    r = run_cli("seq2seq.train", "recipes/en-fr.yaml", *TOY_OVERRIDES, f"train.max_steps={saved + 3}",
                "train.valid_every=100000", "train.clip_norm=0.5", "--run-dir", str(run), "--resume",
                "--allow-changes")  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    assert "train.clip_norm 1.0 -> 0.5" in r.stdout.decode()  # a change on purpose is carried out and said
    assert checkpoint.load(run / "last.pt")["trainer"]["step"] == saved + 3
