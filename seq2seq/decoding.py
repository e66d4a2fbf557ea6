"""How to decode: one frozen `DecodeConfig` for translate, evaluate, generate, the HTTP server and `Translator`,
and its command-line options, generated here once from its fields.

    parser = ArgumentParser(prog="python -m seq2seq.translate")
    add_decode_options(parser)                     # --beam, --greedy, --n-best, --alpha, ..., --precision, --int8
    config = decode_config(parser.parse_args())    # a bad value: one UsageError naming the option
    Translator.from_run("runs/en-fr", decode=config).decode(lines, config)

Each field's comment (the lines right above it, then the one at the end of its line) is its --help text. Each range
is checked twice from one definition: by the argparse type in CHECKS that reads the option (seq2seq/cli.py), and on
the value in `__post_init__`, which raises DecodeError (a ConfigError) naming the field, as the server's requests
and Python callers need. A command takes the fields that apply to it: `add_decode_options(parser, LM_FIELDS)`.

Where the recipe comes in: `max_len_ratio` left out (None) means the run's `train.decode_max_ratio`. That recipe key
stays where it is, the length limit of validation decoding while training; a checkpoint carries it, so decoding a run
later starts from the same limit. Recipes need no decoding section, and old ones load unchanged.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import inspect
import math
import re
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from seq2seq.cli import (
    UsageError,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    probability,
)
from seq2seq.config import DECODE_PRECISIONS, ConfigError


class DecodeError(ConfigError):
    """A decoding setting that is wrong. The message names settings as `{field}` placeholders, so that each caller
    names them its own way: `n_best` in Python and in a server request, `--n-best` on the command line."""

    def __init__(self, template: str) -> None:
        self.template = template
        super().__init__(self.named(lambda name: name))

    def named(self, name: Callable[[str], str]) -> str:
        return self.template.format_map({f.name: name(f.name) for f in dataclasses.fields(DecodeConfig)})


@dataclass(frozen=True)
class DecodeConfig:
    """Search, limits and runtime of decoding; the defaults are translate's (generate starts from beam 1)."""

    beam: int = 5  # beam size (1 = greedy search, or sampling with --temperature)
    n_best: int = 1  # the N best of each sentence (translate prints them tab-separated, with their scores)
    alpha: float = 0.6  # GNMT length penalty for beam search (0 = none)
    # longest output, in target pieces per source piece, plus 10 (default: the recipe's train.decode_max_ratio)
    max_len_ratio: float | None = None
    min_length: int = 0  # no end of sentence before this many pieces
    no_repeat_ngram: int = 0  # beam search: forbid repeating n-grams of this size (0 = allow)
    ban_unk: bool = False  # never output the unknown token
    temperature: float | None = None  # sample at this temperature (above 0; needs beam 1); without it: greedy
    top_k: int = 0  # sample among the k most likely tokens (0 = all; needs --temperature)
    top_p: float = 1.0  # nucleus sampling: the smallest set with this much mass, in (0, 1] (needs --temperature)
    seed: int | None = None  # seed for sampling
    # sentences per batch (default: on a CPU 256 greedy, 512 / beam size; on a GPU 1,024 and 1,280 / beam size)
    batch_size: int | None = None
    # CPU: batches decoded at once, each on an equal share of the threads (default: 2 for beam search with 2 or
    # more threads, else 1)
    inter_threads: int | None = None
    # greedy search with a model trained with model.target_vocabulary: all: take the argmax over every target
    # piece, not only over those seen in training (the default shortlist, which is faster)
    full_vocabulary: bool = False
    # fp32 | bf16 | fp16 (CUDA) | int8 (CPU); default: on a CPU the training precision (bf16 for the recipes), on a
    # GPU fp32 (faster there for these models: docs/speed.md, Precision when decoding)
    precision: str | None = None

    def __post_init__(self) -> None:
        for name, parse in CHECKS.items():
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _checked(name, value, parse))
        for name in ("ban_unk", "full_vocabulary"):
            if not isinstance(getattr(self, name), bool):
                raise DecodeError(f"{{{name}}} must be true or false, got {_show(getattr(self, name))}")
        if self.precision is not None and self.precision not in DECODE_PRECISIONS:
            raise DecodeError(f"{{precision}} must be one of {', '.join(DECODE_PRECISIONS)}, got "
                              f"{_show(self.precision)}")  # fmt: skip
        if self.n_best > self.beam:
            raise DecodeError(f"{{n_best}} must be from 1 to {self.beam}, the beam size ({{n_best}} {self.n_best} "
                              f"needs {{beam}} of at least {self.n_best})")  # fmt: skip
        if self.temperature is not None and self.beam > 1:
            raise DecodeError(f"{{temperature}} {self.temperature:g} samples one output per sentence: it needs "
                              f"{{beam}} 1, got {self.beam}")  # fmt: skip
        for name, off in (("top_k", 0), ("top_p", 1.0)):
            if getattr(self, name) != off and self.temperature is None:
                raise DecodeError(f"{{{name}}} {getattr(self, name):g} filters what is sampled: it needs "
                                  "{temperature}")  # fmt: skip

    def search_options(self) -> dict[str, Any]:
        """Keyword arguments of search.beam_search (beam > 1) or search.sample (beam 1), besides the model's."""
        common = {"min_length": self.min_length, "ban_unk": self.ban_unk}
        if self.beam > 1:
            return {**common, "alpha": self.alpha, "no_repeat_ngram": self.no_repeat_ngram}
        return {**common, "temperature": self.temperature or 0.0, "top_k": self.top_k, "top_p": self.top_p}

    def settings(self) -> dict[str, Any]:
        """What `Translator.translate(lines, beam, batch_size, **settings)` takes besides beam, n_best and batch
        size: every field but those and the ones a model is loaded with (`load_options`)."""
        skip = {"beam", "n_best", "batch_size", "precision", "full_vocabulary"}
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip}

    def load_options(self) -> dict[str, Any]:
        """Keyword arguments of `Translator.from_run` (tasks.translation.load_for_inference): what a model is loaded with."""
        options = {"precision": self.precision, "shortlist": not self.full_vocabulary}
        if self.max_len_ratio is not None:
            options["max_len_ratio"] = self.max_len_ratio
        if self.inter_threads is not None:
            options["inter_threads"] = self.inter_threads
        return options

    def generator(self):
        """A torch.Generator seeded with `seed`, or None: sampling then draws from torch's global generator."""
        import torch

        return None if self.seed is None else torch.Generator().manual_seed(self.seed)


# The argparse type of each numeric field: it reads the option and checks its range; __post_init__ applies the
# same check to values.
CHECKS: dict[str, Callable[[str], Any]] = {
    "beam": positive_int, "n_best": positive_int, "alpha": non_negative_float, "max_len_ratio": positive_float,
    "min_length": non_negative_int, "no_repeat_ngram": non_negative_int, "temperature": positive_float,
    "top_k": non_negative_int, "top_p": probability, "seed": int, "batch_size": positive_int,
    "inter_threads": positive_int,
}  # fmt: skip
ALL_FIELDS = tuple(f.name for f in dataclasses.fields(DecodeConfig))
# translate and evaluate take them all (evaluate scores the best translation only: no n-best); a language model
# has no source sentence to take a length ratio of, and loads no translation model
EVALUATE_FIELDS = tuple(name for name in ALL_FIELDS if name != "n_best")
LM_FIELDS = ("beam", "alpha", "min_length", "no_repeat_ngram", "ban_unk", "temperature", "top_k", "top_p", "seed")
# the server's defaults for requests (a request may change beam, n_best and alpha) and how its models load
SERVE_FIELDS = ("beam", "alpha", "max_len_ratio", "min_length", "no_repeat_ngram", "ban_unk", "inter_threads",
                "full_vocabulary", "precision")  # fmt: skip
INT8_HELP = ("CPU: the decoder's matrix products in 8-bit integers, the rest in bf16 (seq2seq/models/int8.py; "
             "faster, translations nearly the same: docs/speed.md, Int8 decoding on the CPU); the same as --precision int8")
ALIASES = {"beam": ("--greedy", "greedy search (same as --beam 1)"), "precision": ("--int8", INT8_HELP)}


def _checked(name: str, value: Any, parse: Callable[[str], Any]) -> Any:
    """`value` of field `name`, as the type `parse` reads it (an int where a float goes becomes that float)."""
    kind = getattr(parse, "kind", int)
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int and not (number and isinstance(value, int)):
        raise DecodeError(f"{{{name}}} must be an integer, got {_show(value)}")
    if kind is float and not (number and math.isfinite(value)):
        raise DecodeError(f"{{{name}}} must be a finite number, got {_show(value)}")
    if hasattr(parse, "accepts") and not parse.accepts(value):
        what = "an integer" if kind is int else "a finite number"
        raise DecodeError(f"{{{name}}} must be {what}, {parse.requirement}, got {_show(value)}")
    return kind(value)


def _show(value: Any) -> str:
    return repr(value).replace("{", "{{").replace("}", "}}")  # the message is a template: its braces name fields


def option(name: str) -> str:
    """The command-line option of a field: n_best -> --n-best."""
    return "--" + name.replace("_", "-")


@functools.cache
def help_texts() -> dict[str, str]:
    """Each field's comment: the comment lines right above it, then the one at the end of its line."""
    texts, above = {}, []
    for line in inspect.getsource(DecodeConfig).splitlines():
        text = line.strip()
        if text.startswith("#"):
            above.append(text[1:].strip())
            continue
        match = re.match(r"(\w+): [^#=]+=[^#]*?(?:#\s*(.*))?$", text)
        if match and match[1] in ALL_FIELDS:
            texts[match[1]] = " ".join([*above, match[2] or ""]).strip()
        above = []
    return texts


def add_decode_options(parser: argparse.ArgumentParser, fields: Sequence[str] = ALL_FIELDS, **defaults: Any) -> None:
    """One option per field of `fields` (DecodeConfig's order), with --greedy beside --beam and --int8 beside
    --precision; `defaults` replaces DecodeConfig's (generate: beam=1)."""
    unknown = set(fields).union(defaults) - set(ALL_FIELDS)
    if unknown:
        raise ValueError(f"not DecodeConfig fields: {sorted(unknown)}")
    hints, texts = typing.get_type_hints(DecodeConfig), help_texts()
    for f in dataclasses.fields(DecodeConfig):
        if f.name not in fields:
            continue
        text = texts[f.name].replace("%", "%%")
        default = defaults.get(f.name, f.default)
        if hints[f.name] is bool:
            parser.add_argument(option(f.name), action="store_true", help=text)
        elif f.name == "precision":
            parser.add_argument(option(f.name), choices=DECODE_PRECISIONS, default=default, help=text)
        else:
            parser.add_argument(option(f.name), type=CHECKS[f.name], default=default, help=text)
        if f.name in ALIASES:
            flag, text = ALIASES[f.name]
            parser.add_argument(flag, action="store_true", help=text)


def decode_config(args: argparse.Namespace) -> DecodeConfig:
    """The DecodeConfig of parsed options (those `add_decode_options` added; the others keep their defaults).
    UsageError, naming the options, for a value out of range or options that disagree."""
    values = {name: getattr(args, name) for name in ALL_FIELDS if hasattr(args, name)}
    if getattr(args, "greedy", False):
        values["beam"] = 1
    if getattr(args, "int8", False):
        if values.get("precision") not in (None, "int8"):
            raise UsageError(f"--int8 and --precision {values['precision']} disagree: give one of them")
        values["precision"] = "int8"
    try:
        return DecodeConfig(**values)
    except DecodeError as e:
        raise UsageError(e.named(option)) from None


def decode_argv(config: DecodeConfig, fields: Sequence[str] = ALL_FIELDS) -> list[str]:
    """The options that give `config`'s values of `fields`: parse_args, then decode_config, read it back."""
    argv: list[str] = []
    for name in fields:
        value = getattr(config, name)
        if value is not None and value is not False:
            argv += [option(name)] if value is True else [option(name), str(value)]
    return argv
