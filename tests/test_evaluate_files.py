"""evaluate on any pair of files (--src, --ref) and on sacreBLEU's own test sets (--sacrebleu NAME -l SRC-TGT),
end to end on the toy run. sacreBLEU's download path runs for real, offline: $SACREBLEU points at a folder that
holds the files sacreBLEU keeps for a test set, and any download goes to a closed port."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from seq2seq import checkpoint, evaluate

from .conftest import ROOT

SIGNATURE = "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:"
NO_NETWORK = "http://127.0.0.1:9"  # the discard port: nothing listens there, so a download fails at once


@pytest.fixture
def pair(toy_data):
    """The toy test split as two files: sources and references."""
    folder = toy_data / "multi30k"
    return folder / "test_2016_flickr.en", folder / "test_2016_flickr.fr"


def printed_scores(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith(("BLEU", "chrF", "TER"))]


def test_a_pair_of_files_scores_as_the_split_they_hold(toy_run, pair, tmp_path, capsys):
    src, ref = pair
    argv = [str(toy_run), "--greedy", "--device", "cpu"]
    assert evaluate.main([*argv, "--src", str(src), "--ref", str(ref), "--output", str(tmp_path / "hyps.fr")]) == 0
    files = capsys.readouterr().out
    assert files.startswith("test_2016_flickr.en: 200 sentences, greedy, 1 model") and SIGNATURE in files
    assert len((tmp_path / "hyps.fr").read_text(encoding="utf-8").splitlines()) == 200
    assert evaluate.main([*argv, "--split", "test_2016_flickr", "--output", str(tmp_path / "split.fr")]) == 0
    split = capsys.readouterr().out
    assert printed_scores(files) == printed_scores(split) and len(printed_scores(files)) == 3
    assert float(printed_scores(files)[0].split()[2]) > 90  # the toy pair is learned


def test_without_output_the_translations_go_next_to_the_run(toy_run, pair, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(toy_run, run, ignore=shutil.ignore_patterns("cache"))
    src, ref = pair
    assert evaluate.main([str(run), "--greedy", "--device", "cpu", "--src", str(src), "--ref", str(ref)]) == 0
    out = run / "hyps.test_2016_flickr.en.fr"
    assert f"translations in {out}" in capsys.readouterr().out
    assert len(out.read_text(encoding="utf-8").splitlines()) == 200


@pytest.fixture
def no_loading(monkeypatch):
    monkeypatch.setattr(checkpoint, "load", lambda path: pytest.fail(f"loaded {path} before the usage error"))


def test_files_that_do_not_align_are_one_usage_error_naming_both_counts(toy_run, pair, tmp_path, no_loading, capsys):
    src, ref = pair
    short = tmp_path / "short.fr"
    short.write_text("".join(ref.read_text(encoding="utf-8").splitlines(keepends=True)[:-3]), encoding="utf-8")
    assert evaluate.main([str(toy_run), "--src", str(src), "--ref", str(short)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has 200 lines" in err and "has 197" in err and str(short) in err


@pytest.mark.parametrize(("argv", "message"), [
    (["--src", "{src}"], "--src and --ref go together"),
    (["--ref", "{ref}"], "--src and --ref go together"),
    (["--split", "val", "--src", "{src}", "--ref", "{ref}"], "--split and --src/--ref: give one test set"),
    (["--sacrebleu", "multi30k/2018", "--split", "val"], "give one test set"),
    (["-l", "en-fr"], "-l/--langpair names the language pair of a --sacrebleu test set"),
    (["--sacrebleu", "multi30k/2019"], "no such sacreBLEU test set; did you mean multi30k/"),
    (["--sacrebleu", "multi30k/2017", "-l", "en-cs"], "multi30k/2017 has no pair en-cs; it has en-fr, en-de"),
    (["--src", "{src}", "--ref", "{tmp}/nope.fr"], "no such file"),
])  # fmt: skip
def test_test_set_options_are_checked_before_loading(argv, message, toy_run, pair, tmp_path, no_loading, capsys):
    names = {"src": pair[0], "ref": pair[1], "tmp": tmp_path}
    assert evaluate.main([str(toy_run), *(a.format(**names) for a in argv)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_a_line_that_is_not_utf8_is_named_with_its_file(toy_run, pair, tmp_path, capsys):
    bad = tmp_path / "bad.en"
    bad.write_bytes(pair[0].read_bytes().replace(b"\n", b"\n\xff", 1))
    assert evaluate.main([str(toy_run), "--src", str(bad), "--ref", str(pair[1])]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--src {bad}: input line 2 is not valid UTF-8" in err


def evaluate_offline(run, sacrebleu_dir, *argv: str) -> subprocess.CompletedProcess:
    """python -m seq2seq.evaluate in a process of its own: sacreBLEU reads $SACREBLEU when it is imported."""
    env = {**os.environ, "SACREBLEU": str(sacrebleu_dir), "http_proxy": NO_NETWORK, "https_proxy": NO_NETWORK,
           "HTTP_PROXY": NO_NETWORK, "HTTPS_PROXY": NO_NETWORK, "OMP_NUM_THREADS": "1"}  # fmt: skip
    for name in ("no_proxy", "NO_PROXY"):
        env.pop(name, None)
    return subprocess.run([sys.executable, "-m", "seq2seq.evaluate", str(run), "--greedy", "--device", "cpu", *argv],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip


def test_a_sacrebleu_test_set_from_its_folder(toy_run, pair, tmp_path):
    """sacreBLEU keeps a plain-text test set as $SACREBLEU/NAME/NAME_WITH_UNDERSCORES.PAIR.src and .ref; where both
    are there, it reads them without downloading anything."""
    src, ref = pair
    folder = tmp_path / "sacrebleu" / "multi30k" / "2018"
    folder.mkdir(parents=True)
    shutil.copy(src, folder / "multi30k_2018.en-fr.src")
    shutil.copy(ref, folder / "multi30k_2018.en-fr.ref")
    r = evaluate_offline(toy_run, tmp_path / "sacrebleu", "--sacrebleu", "multi30k/2018", "-l", "en-fr",
                         "--output", str(tmp_path / "hyps.fr"))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("multi30k/2018: 200 sentences, greedy") and SIGNATURE in r.stdout
    files = evaluate_offline(toy_run, tmp_path / "sacrebleu", "--src", str(src), "--ref", str(ref), "--output",
                             str(tmp_path / "files.fr"))  # fmt: skip
    assert files.returncode == 0, files.stderr
    assert printed_scores(r.stdout) == printed_scores(files.stdout) and len(printed_scores(r.stdout)) == 3
    assert (tmp_path / "hyps.fr").read_text() == (tmp_path / "files.fr").read_text()
    # without -l: the run's language pair
    default = evaluate_offline(toy_run, tmp_path / "sacrebleu", "--sacrebleu", "multi30k/2018", "--output",
                               str(tmp_path / "default.fr"))  # fmt: skip
    assert default.returncode == 0 and printed_scores(default.stdout) == printed_scores(r.stdout), default.stderr


def test_a_test_set_that_cannot_be_fetched_says_how_to_give_its_files(toy_run, tmp_path):
    r = evaluate_offline(toy_run, tmp_path / "empty", "--sacrebleu", "multi30k/2016", "-l", "en-fr",
                         "--output", str(tmp_path / "hyps.fr"))  # fmt: skip
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    assert "sacreBLEU test set multi30k/2016 (en-fr)" in r.stderr and str(tmp_path / "empty") in r.stderr
    assert "needs the network once, or give its files with --src FILE --ref FILE" in r.stderr
    assert not (tmp_path / "hyps.fr").exists()
