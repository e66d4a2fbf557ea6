"""Fuzzing load_recipe: whatever the overrides or the file say, it returns a Recipe or raises ConfigError, quickly."""

from __future__ import annotations

import dataclasses
import signal
import typing
from contextlib import contextmanager

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seq2seq.config import TASKS, ConfigError, Recipe, TrainConfig, load_recipe

from .conftest import ROOT

RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))
SECTIONS = {"train": TrainConfig} | {name: cls for sections in TASKS.values() for name, cls in sections.items() if cls}
KEYS = sorted({"name", "task", "base", *SECTIONS, *(f"{s}.{f.name}" for task in TASKS.values()
                                                     for s, cls in {**task, "train": TrainConfig}.items() if cls
                                                     for f in dataclasses.fields(cls))})  # fmt: skip
CHOICES = sorted({str(c) for task in TASKS.values() for cls in [*task.values(), TrainConfig] if cls
                  for hint in typing.get_type_hints(cls).values() if typing.get_origin(hint) is typing.Literal
                  for c in typing.get_args(hint)})  # fmt: skip
YAMLISH = [
    "0", "1", "-1", "2", "7", "8", "0.5", "1.0", "-0.0", "1e-5", "1.5e300", "1e400", ".nan", ".NaN", ".inf", "-.inf",
    str(2**63), str(2**64), "9" * 60, "0x1f", "0o17", "1_000", "true", "false", "yes", "off", "null", "~", "''", '""',
    "'1 epoch'", "'2 epochs'", "'0.5 epoch'", "'0 epochs'", "'-1 epoch'", "epoch", "[0.9, 0.99]", "[0.9]", "[]", "{}",
    "[1", "{a: 1}", "{", "}", "]", "[[1, 2], [3]]", "&a [*a]", "*a", "&a 1", "!!python/object:os.system x",
    "!!binary aGk=", "!!timestamp 2001-12-14", "2001-12-14", "12:30", "cuda:0", "cuda:", "mps", "a: b", "- a", "|",
    ">", "'", '"', "#", "%YAML 1.1", "---", "...", "@", "`", "../x", "a/b", "..", ".", "\t", "é", "\x00", "\ufeff",
]  # fmt: skip


def fragments() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(YAMLISH),
        st.sampled_from(CHOICES),
        st.integers(min_value=-(2**70), max_value=2**70).map(str),
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.text(max_size=12),
    )


def values() -> st.SearchStrategy[str]:
    return st.one_of(
        fragments(),
        st.lists(fragments(), max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]"),
        st.tuples(fragments(), fragments()).map(lambda kv: "{" + f"{kv[0]}: {kv[1]}" + "}"),
        st.lists(fragments(), min_size=2, max_size=3).map(" ".join),
    )


def keys() -> st.SearchStrategy[str]:
    real = st.sampled_from(KEYS)
    return st.one_of(real, real, real, st.tuples(real, st.sampled_from([".", "..", ".x", " ", "=", "x"])).map("".join),
                     st.text(max_size=10))  # fmt: skip


@contextmanager
def time_limit(seconds: int):
    def hang(signum, frame):
        raise TimeoutError(f"load_recipe ran for more than {seconds} s")

    old = signal.signal(signal.SIGALRM, hang)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def loads_or_refuses(path, overrides=()) -> None:
    with time_limit(10):
        try:
            assert isinstance(load_recipe(path, overrides), Recipe)
        except ConfigError as e:
            assert str(e) and len(str(e)) < 2000, "an error message should be short"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(RECIPES), overrides=st.lists(st.tuples(keys(), values()).map("=".join), max_size=4))
def test_any_override_gives_a_recipe_or_a_config_error(path, overrides):
    loads_or_refuses(path, overrides)


LINES = st.tuples(st.sampled_from(["", "  ", "    ", "\t"]), st.sampled_from([*KEYS, *SECTIONS, "base", "- x", "x"]),
                  st.sampled_from([": ", ":", " "]), values()).map("".join)  # fmt: skip


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])  # fmt: skip
@given(lines=st.lists(LINES, max_size=8), raw=st.binary(max_size=20))
def test_any_recipe_file_gives_a_recipe_or_a_config_error(tmp_path, lines, raw):
    path = tmp_path / "fuzzed.yaml"
    path.write_bytes("\n".join(lines).encode("utf-8") + raw)
    loads_or_refuses(path)
