"""translate's input and output: a line that is not UTF-8 keeps every translation before it; --output is replaced
only by a finished file (or, after such a line, by the translations before it); the input is never overwritten."""

from __future__ import annotations

import argparse
import io
import os
import stat

import pytest
import torch

from seq2seq import evaluate, translate
from seq2seq.cli import InputError, atomic_output
from seq2seq.prompt import prompt_loop
from seq2seq.translator import Translation, Translator

from .untrained import untrained_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return untrained_run(tmp_path_factory.mktemp("untrained"))


class Echo:
    """A stand-in translator: upper-cases each line (its n-best: the line upper-cased, then as it came)."""

    device = torch.device("cpu")

    def translate(self, lines, beam=1, batch_size=None, first_line=1, **options):
        return [line.upper() for line in lines]

    def translate_n_best(self, lines, beam=5, n_best=1, batch_size=None, first_line=1, **options):
        return [[Translation(line.upper(), -1.0, [], [], []), Translation(line, -2.0, [], [], [])] for line in lines]


def stream_args(**kwargs) -> argparse.Namespace:
    return argparse.Namespace(**{"beam": 1, "n_best": 1, "batch_size": 1, **kwargs})  # chunks of 16 lines


@pytest.mark.parametrize("bad", [1, 3, 16, 17, 20, 33])
@pytest.mark.parametrize("n_best", [1, 2])
def test_a_line_that_is_not_utf8_keeps_every_translation_before_it(bad, n_best):
    lines = [f"line {i}".encode() for i in range(1, 41)]
    lines[bad - 1] = b"caf\xe9 au lait"
    out = io.StringIO()
    with pytest.raises(InputError, match=f"input line {bad} is not valid UTF-8"):
        translate.translate_stream(Echo(), io.BytesIO(b"\n".join(lines)), out, stream_args(n_best=n_best, beam=2), {})
    written = out.getvalue().splitlines()
    assert len(written) == bad - 1
    assert [w.split("\t")[0] for w in written] == [f"LINE {i}" for i in range(1, bad)]


def test_line_endings_and_a_last_line_without_newline():
    out = io.StringIO()
    n = translate.translate_stream(Echo(), io.BytesIO(b"a\r\nb\r\n\nc\rd\ne"), out, stream_args(), {})
    assert n == 5 and out.getvalue() == "A\nB\n\nC\rD\nE\n".replace("\r", " ")


def test_long_lines_are_named_by_their_line_in_the_file(run):
    warnings = []
    translator = Translator.from_run(run, device="cpu", warn=warnings.append)
    data = b"".join(b"sa .\n" if i != 20 else b"sa " * 300 + b".\n" for i in range(1, 23))
    out = io.StringIO()
    assert translate.translate_stream(translator, io.BytesIO(data), out, stream_args(), {}) == 22
    assert out.getvalue().count("\n") == 22
    assert len(warnings) == 1 and warnings[0].startswith("line 20 has ") and "its first 250" in warnings[0]


def translate_main(run, monkeypatch, stdin: bytes, *argv: str) -> int:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8"))
    return translate.main([str(run), "--device", "cpu", "--greedy", *argv])


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_with_output_the_lines_before_a_bad_line_replace_the_file(run, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out.txt"
    out.write_text("an older file\n" * 9, encoding="utf-8")
    assert translate_main(run, monkeypatch, b"sa sb .\nsc .\n\xff\xfe sd\nse .\n", "-o", str(out)) == 1
    err = capsys.readouterr().err
    assert err == "error: input line 3 is not valid UTF-8 (invalid start byte at byte 0)\n"
    assert len(out.read_text(encoding="utf-8").splitlines()) == 2 and leftovers(tmp_path) == []
    assert translate_main(run, monkeypatch, b"sa sb .\nsc .\n\xff\xfe sd\nse .\n") == 1  # the same on stdout
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_any_other_failure_leaves_the_output_as_it_was(run, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out.txt"
    out.write_text("an older file\n", encoding="utf-8")
    calls, failure = [], []

    def fail_on_the_second_chunk(self, lines, *args, **kwargs):
        calls.append(len(lines))
        if len(calls) == 2:
            raise failure[0]
        return ["x"] * len(lines)

    monkeypatch.setattr(Translator, "translate", fail_on_the_second_chunk)
    for error, code in [(RuntimeError("the model broke"), 1), (KeyboardInterrupt(), 130), (OSError(28, "No space"), 1)]:
        calls.clear()
        failure[:] = [error]
        assert translate_main(run, monkeypatch, b"sa .\n" * 40, "-o", str(out), "--batch-size", "1") == code
        assert len(calls) == 2 and out.read_text(encoding="utf-8") == "an older file\n"
        assert leftovers(tmp_path) == []
    capsys.readouterr()


def test_a_finished_output_replaces_the_file_and_keeps_its_mode(run, tmp_path, monkeypatch):
    out = tmp_path / "out.txt"
    out.write_text("an older file\n", encoding="utf-8")
    os.chmod(out, 0o640)
    link = tmp_path / "link.txt"
    link.symlink_to(out)
    assert translate_main(run, monkeypatch, b"sa .\n\nsb .\n", "-o", str(link)) == 0
    assert link.is_symlink() and len(out.read_text(encoding="utf-8").splitlines()) == 3
    assert stat.S_IMODE(out.stat().st_mode) == 0o640 and leftovers(tmp_path) == []


def test_the_output_may_not_be_the_input(run, tmp_path, monkeypatch, capsys):
    src = tmp_path / "src.txt"
    src.write_bytes(b"sa sb .\n")
    for argv in (["-i", str(src), "-o", str(src)], ["-i", str(src), "-o", str(tmp_path / "." / "src.txt")]):
        assert translate_main(run, monkeypatch, b"", *argv) == 2
        assert "is the input file" in capsys.readouterr().err
    (tmp_path / "hard.txt").hardlink_to(src)
    assert translate_main(run, monkeypatch, b"", "-i", str(src), "-o", str(tmp_path / "hard.txt")) == 2
    with open(src, "rb") as f:  # translate < src.txt -o src.txt
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(f, encoding="utf-8"))
        assert translate.main([str(run), "-o", str(src)]) == 2
    assert "is standard input" in capsys.readouterr().err
    assert src.read_bytes() == b"sa sb .\n"


def test_atomic_output_writes_in_place_what_is_not_a_regular_file():
    with atomic_output(os.devnull) as f:
        f.write("gone\n")


def test_atomic_output_keeps_the_old_file_on_an_error_and_commits_on_keep_on(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("old\n", encoding="utf-8")
    with pytest.raises(ValueError), atomic_output(path) as f:
        f.write("new\n")
        raise ValueError
    assert path.read_text(encoding="utf-8") == "old\n" and leftovers(tmp_path) == []
    with pytest.raises(InputError), atomic_output(path, keep_on=(InputError,)) as f:
        f.write("partial\n")
        raise InputError("line 2")
    assert path.read_text(encoding="utf-8") == "partial\n" and leftovers(tmp_path) == []


def test_evaluate_writes_its_translations_only_when_every_sentence_is_done(run, toy_data, tmp_path, monkeypatch,
                                                                            capsys):  # fmt: skip
    hyps = tmp_path / "hyps.fr"
    hyps.write_text("an older file\n", encoding="utf-8")
    argv = [str(run), "--device", "cpu", "--greedy", "--split", "val", "--output", str(hyps)]
    def broken(*args, **kwargs):
        raise RuntimeError("the model broke")

    with monkeypatch.context() as m:
        m.setattr(Translator, "translate", broken)
        assert evaluate.main(argv) == 1 and hyps.read_text(encoding="utf-8") == "an older file\n"
    assert evaluate.main(argv) == 0
    assert len(hyps.read_text(encoding="utf-8").splitlines()) == 200 and leftovers(tmp_path) == []
    assert "BLEU" in capsys.readouterr().out


def test_the_prompt_answers_after_bytes_that_are_not_utf8(monkeypatch, tmp_path, capsys):
    """A terminal under a C.UTF-8 locale hands bad bytes over as surrogate escapes; the tokenizer would raise."""
    typed = iter(["sa \udcff\udcfe bad bytes \udcc3(", "", "sd\x01se .", "fail", "sb ."])
    monkeypatch.setattr("seq2seq.prompt.HISTORY", tmp_path / "history")
    monkeypatch.delenv("SEQ2SEQ_DEBUG", raising=False)
    answered = []

    def respond(line: str) -> None:
        if line == "fail":
            raise ValueError("no answer")
        answered.append(line)

    def end(prompt):
        try:
            return next(typed)
        except StopIteration:
            raise EOFError from None

    monkeypatch.setattr("builtins.input", end)
    prompt_loop(respond, "hint")
    err = capsys.readouterr().err
    assert answered == ["", "sd\x01se .", "sb ."]
    assert "error: that line is not valid UTF-8 (invalid start byte at byte 3); try again" in err
    assert "error: ValueError: no answer" in err
