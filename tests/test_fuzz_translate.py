"""Random bytes through translate's streaming path: whatever comes in, one translation per line comes out, or the
one documented error (a line that is not UTF-8, named) after the translations of every line before it."""

from __future__ import annotations

import argparse
import io
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seq2seq.cli import InputError, atomic_output
from seq2seq.translate import translate_stream
from seq2seq.translator import Translator

from .untrained import untrained_run

WORDS = [b"sa", b"sb", b"st", b".", b"Tk", b"caf\xc3\xa9", b"\xe2\x80\xa8", b"\xf0\x9f\x98\x80", b"\xef\xbb\xbf"]
ODD = [b"", b" ", b"\x00", b"\r", b"\t", b"\x0b\x0c", b"\x1b[31m", b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xc0\xaf"]


def line_bytes():
    """A line without its newline: toy words, odd bytes (NUL, CR, bad UTF-8), arbitrary bytes, or a long line."""
    piece = st.one_of(st.sampled_from(WORDS), st.sampled_from(ODD), st.binary(max_size=6))
    short = st.lists(piece, max_size=8).map(b" ".join)
    long = st.tuples(st.sampled_from([b"sa ", b"x", b"\xc3\xa9"]), st.integers(260, 1000)).map(lambda t: t[0] * t[1])
    return st.one_of(short, short, short, long).map(lambda b: b.replace(b"\n", b" "))


@pytest.fixture(scope="module")
def translator(tmp_path_factory):
    warnings: list[str] = []  # long lines are cut, with a warning each: not printed here
    # an untrained model seldom ends a sentence: a short length limit keeps its outputs (and the test) short
    return Translator.from_run(untrained_run(tmp_path_factory.mktemp("fuzz")), device="cpu", warn=warnings.append,
                               max_len_ratio=0.5)  # fmt: skip


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("outputs")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(line_bytes(), max_size=12), newline=st.sampled_from([b"\n", b"\r\n"]),
       last_newline=st.booleans(), beam=st.sampled_from([1, 2]), batch_size=st.sampled_from([1, 4]))  # fmt: skip
def test_random_bytes_give_one_line_per_line_or_the_named_error(translator, folder, lines, newline, last_newline, beam,
                                                                batch_size):  # fmt: skip
    data = newline.join(lines) + (newline if lines and last_newline else b"")
    count = len(io.BytesIO(data).readlines())  # what the stream holds, as a file iterator sees it
    bad = next((i for i, raw in enumerate(io.BytesIO(data), 1) if not is_utf8(raw)), None)
    args = argparse.Namespace(beam=beam, n_best=1, batch_size=batch_size)
    out = folder / "out.txt"
    out.write_text("an older file\n", encoding="utf-8")
    try:
        with atomic_output(out, keep_on=(InputError,)) as f:
            done = translate_stream(translator, io.BytesIO(data), f, args, {})
    except InputError as e:  # the one documented error
        assert bad is not None and re.fullmatch(rf"input line {bad} is not valid UTF-8 \(.+ at byte \d+\)", str(e))
        done = bad - 1
    else:
        assert bad is None and done == count
    written = out.read_bytes()
    assert written.count(b"\n") == done and (done == 0 or written.endswith(b"\n"))
    assert b"\r" not in written and is_utf8(written)


def is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
