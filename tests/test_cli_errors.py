"""Every command's errors: one line on stderr, exit 2 for a usage error (found before anything loads), 1 for a
runtime error; --debug or SEQ2SEQ_DEBUG=1 shows the traceback instead."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
import torch

from seq2seq import average, checkpoint, evaluate, generate, score, translate
from seq2seq.cli import UsageError
from seq2seq.config import load_recipe
from seq2seq.tasks import build_model

from .conftest import ROOT
from .untrained import untrained_run

COMMANDS = {"translate": translate, "evaluate": evaluate, "generate": generate, "score": score, "average": average}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return untrained_run(tmp_path_factory.mktemp("untrained"))


@pytest.fixture
def no_loading(monkeypatch):
    """Any checkpoint load fails the test: a usage error must be found before."""
    monkeypatch.setattr(checkpoint, "load", lambda path: pytest.fail(f"loaded {path} before the usage error"))


def stdin_bytes(monkeypatch, data: bytes) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("name", COMMANDS)
def test_every_help_documents_debug(name, capsys):
    with pytest.raises(SystemExit) as e:
        COMMANDS[name].main(["--help"])
    assert e.value.code == 0 and "--debug" in capsys.readouterr().out


BAD_OPTIONS = [
    ("translate", ["--n-best", "0"], "--n-best: must be at least 1"),
    ("translate", ["--n-best", "-2"], "--n-best: must be at least 1"),
    ("translate", ["--beam", "0"], "--beam: must be at least 1"),
    ("translate", ["--beam", "two"], "'two' is not an integer"),
    ("translate", ["--alpha", "nan"], "--alpha: must be a finite number"),
    ("translate", ["--alpha", "-0.5"], "--alpha: must be 0 or more"),
    ("translate", ["--batch-size", "0"], "--batch-size: must be at least 1"),
    ("translate", ["--max-len-ratio", "0"], "--max-len-ratio: must be above 0"),
    ("translate", ["--max-len-ratio", "nan"], "--max-len-ratio: must be a finite number"),
    ("translate", ["--max-len-ratio", "inf"], "--max-len-ratio: must be a finite number"),
    ("translate", ["--min-length", "-1"], "--min-length: must be 0 or more"),
    ("translate", ["--no-repeat-ngram", "-1"], "--no-repeat-ngram: must be 0 or more"),
    ("translate", ["--inter-threads", "0"], "--inter-threads: must be at least 1"),
    ("translate", ["--beam", "2", "--n-best", "3"], "--n-best 3 needs --beam of at least 3"),
    ("translate", ["--int8", "--precision", "fp32"], "--int8 and --precision fp32 disagree"),
    ("translate", ["--precision", "fp8"], "invalid choice: 'fp8'"),
    ("evaluate", ["--beam", "0"], "--beam: must be at least 1"),
    ("evaluate", ["--alpha", "nan"], "--alpha: must be a finite number"),
    ("evaluate", ["--batch-size", "0"], "--batch-size: must be at least 1"),
    ("generate", ["--temperature", "nan"], "--temperature: must be a finite number"),
    ("generate", ["--temperature", "0"], "--temperature: must be above 0"),
    ("generate", ["--temperature", "-1"], "--temperature: must be above 0"),
    ("generate", ["--top-p", "0"], "--top-p: must be above 0 and at most 1"),
    ("generate", ["--top-p", "1.01"], "--top-p: must be above 0 and at most 1"),
    ("generate", ["--top-k", "-1"], "--top-k: must be 0 or more"),
    ("generate", ["--max-tokens", "0"], "--max-tokens: must be at least 1"),
    ("generate", ["--beam", "0"], "--beam: must be at least 1"),
    ("generate", ["--prompt", "caf\udce9"], "--prompt: is not valid UTF-8"),
]


@pytest.mark.parametrize(("name", "options", "message"), BAD_OPTIONS)
def test_bad_option_values_are_one_line_usage_errors_before_loading(name, options, message, tmp_path, no_loading,
                                                                   capsys):  # fmt: skip
    assert COMMANDS[name].main([str(tmp_path), *options]) == 2  # checked before the run directory
    assert message in one_error_line(capsys)


def test_missing_files_and_folders_are_usage_errors_before_loading(run, tmp_path, no_loading, monkeypatch, capsys):
    stdin_bytes(monkeypatch, b"sa .\n")
    cases = [
        (translate, [str(tmp_path / "nope")], "run directory"),
        (translate, [str(run), "--checkpoint", str(tmp_path / "avg.pt")], "no such file"),
        (translate, [str(run), "--checkpoint", "middle"], "has no middle.pt (it has: best.pt, last.pt)"),
        (translate, [str(run), "-i", str(tmp_path / "in.txt")], "no such file"),
        (translate, [str(run), "-i", str(tmp_path)], "is a folder"),
        (translate, [str(run), "-o", str(tmp_path / "no" / "out.txt")], "folder"),
        (translate, [str(run), "-o", str(tmp_path)], "is a folder"),
        (translate, [str(run), "--plot-attention", str(tmp_path / "no" / "a.png")], "does not exist"),
        (evaluate, [str(run), "--output", str(tmp_path / "no" / "hyps.fr")], "does not exist"),
        (evaluate, [str(tmp_path / "nope")], "run directory"),
        (generate, [str(tmp_path / "nope"), "--prompt", "the"], "run directory"),
        (score, [str(tmp_path / "hyp"), str(tmp_path / "ref")], "no such file"),
        (average, [str(tmp_path / "no" / "avg.pt"), str(run / "best.pt")], "does not exist"),
        (average, [str(tmp_path / "avg.pt"), str(tmp_path / "a.pt")], "no such file"),
    ]
    for module, argv, message in cases:
        assert module.main(argv) == 2, argv
        assert message in one_error_line(capsys), argv


def test_debug_shows_the_traceback(tmp_path, monkeypatch, capsys):
    with pytest.raises(UsageError, match="does not exist"):
        translate.main([str(tmp_path / "nope"), "--debug"])
    monkeypatch.setenv("SEQ2SEQ_DEBUG", "1")
    with pytest.raises(UsageError, match="--beam: must be at least 1"):
        translate.main([str(tmp_path), "--beam", "0"])


def test_a_subprocess_prints_one_line_without_debug_and_the_traceback_with_it(tmp_path):
    args = [sys.executable, "-m", "seq2seq.translate", str(tmp_path / "nope")]
    plain = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, input="sa .\n", timeout=120)
    assert plain.returncode == 2 and plain.stderr.count("\n") == 1 and "Traceback" not in plain.stderr
    debug = subprocess.run([*args, "--debug"], capture_output=True, text=True, cwd=ROOT, input="sa .\n", timeout=120)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "UsageError" in debug.stderr


def fake_run(run_dir, recipe, model) -> None:
    run_dir.mkdir()
    checkpoint.save(run_dir / "best.pt", {"recipe": recipe.to_dict(), "model": model.state_dict()})


def test_translating_a_language_model_or_a_regression_run_says_which_command_to_use(tmp_path, monkeypatch, capsys):
    lm = load_recipe(ROOT / "recipes/lm-ptb.yaml", ["model.embedding_size=8", "model.hidden_size=8", "model.layers=1"])
    fake_run(tmp_path / "lm", lm, build_model(lm, tgt_vocab=12))
    sp = load_recipe(ROOT / "recipes/sp500.yaml", ["model.hidden_sizes=[4, 4]", "model.fc_size=4"])
    fake_run(tmp_path / "sp", sp, build_model(sp))
    for run, words in [("lm", "is a language-model run (task lm), not a translation run; use python -m seq2seq.generate"),
                       ("sp", "is a regression run (task regression), not a translation run; use python -m "
                              "seq2seq.forecast")]:  # fmt: skip
        stdin_bytes(monkeypatch, b"a sentence\n")
        assert translate.main([str(tmp_path / run), "--device", "cpu"]) == 2
        assert words in one_error_line(capsys)


def test_generate_on_a_translation_run_says_which_command_to_use(run, capsys):
    assert generate.main([str(run), "--prompt", "the"]) == 2
    assert "is a translation run (task translation), not a language-model run" in one_error_line(capsys)


def test_weights_that_do_not_fit_the_recipe_are_a_one_line_checkpoint_error(run, tmp_path, monkeypatch, capsys):
    payload = checkpoint.load(run / "best.pt")
    payload["recipe"]["model"]["embedding_size"] = 32  # the recipe now describes other shapes than the weights
    payload["model"]["extra.weight"] = torch.zeros(2)
    (tmp_path / "run").mkdir()
    checkpoint.save(tmp_path / "run" / "best.pt", payload)
    stdin_bytes(monkeypatch, b"sa .\n")
    assert translate.main([str(tmp_path / "run"), "--device", "cpu"]) == 1
    err = one_error_line(capsys)
    assert "do not fit the model its recipe describes" in err and "Traceback" not in err
    assert "there but" in err and "in the model" in err, err
    assert "has unknown extra.weight" in err


def test_a_corrupt_checkpoint_is_a_runtime_error(tmp_path, monkeypatch, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "best.pt").write_bytes(b"not a checkpoint")
    stdin_bytes(monkeypatch, b"sa .\n")
    assert translate.main([str(tmp_path / "run"), "--device", "cpu"]) == 1
    assert "corrupt" in one_error_line(capsys)


def test_score_and_average_run_as_modules_and_through_the_old_scripts(run, tmp_path):
    hyp, ref = tmp_path / "hyp", tmp_path / "ref"
    hyp.write_text("a b c d\n", encoding="utf-8")
    ref.write_text("a b c d\n", encoding="utf-8")
    for command in (["-m", "seq2seq.score"], ["scripts/score.py"]):
        r = subprocess.run([sys.executable, *command, str(hyp), str(ref)], cwd=ROOT, capture_output=True, text=True,
                           timeout=120)  # fmt: skip
        assert r.returncode == 0 and r.stdout.startswith("BLEU = 100.00"), r.stderr
    ref.write_text("a\nb\n", encoding="utf-8")
    assert score.main([str(hyp), str(ref)]) == 2  # misaligned
    out = tmp_path / "avg.pt"
    r = subprocess.run([sys.executable, "-m", "seq2seq.average", str(out), str(run / "best.pt"),
                        str(run / "best.pt")], cwd=ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0 and out.is_file(), r.stderr
