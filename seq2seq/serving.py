"""The server's request checks, without a web framework: the bytes of a body in, a TranslateRequest or a
RequestError (an HTTP status and a message saying what was wrong and what would be right) out. A request's decoding
fields (beam, n_best, alpha, precision) replace those of the server's DecodeConfig, which checks them as it checks
the command line's (seq2seq/decoding.py); the server adds its limits (max_beam) and the loaded precision.

    POST /translate  {"sentences": ["A dog runs."], "beam": 5, "n_best": 1, "alpha": 0.6, "attention": false,
                      "precision": "bf16", "model": "en-fr"}          # all but "sentences" optional

Nothing in a request names a file: `model` picks one of the models loaded at start, by name.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass
from typing import Any

from seq2seq.batcher import Options
from seq2seq.decoding import DecodeConfig, DecodeError

MiB = 1 << 20


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = MiB  # the whole request body
    max_sentences: int = 64  # per request
    max_chars: int = 2000  # per sentence
    max_beam: int = 16


@dataclass(frozen=True)
class LoadedModel:
    """What request checks need to know of a loaded model."""

    name: str
    precision: str


@dataclass(frozen=True)
class TranslateRequest:
    sentences: list[str]
    options: Options


class RequestError(ValueError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


FIELDS = ("sentences", "beam", "n_best", "alpha", "attention", "precision", "model")
EXAMPLE = '{"sentences": ["A dog runs."], "beam": 5}'


def check_length_header(value: str | None, limits: Limits) -> None:
    """The Content-Length header, before the body is read: 413 when it announces more than the limit."""
    if value is None:
        return
    if not value.strip().isdigit():
        raise RequestError(400, f"Content-Length must be a number of bytes, got {value!r}")
    if int(value) > limits.max_body_bytes:
        raise RequestError(413, f"the body is {int(value)} bytes; the limit is {limits.max_body_bytes}")


def too_long(limits: Limits) -> RequestError:
    return RequestError(413, f"the body is longer than the limit of {limits.max_body_bytes} bytes")


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(body: bytes) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RequestError(400, f"the body is not valid UTF-8 ({e.reason} at byte {e.start})") from None
    try:
        return json.loads(text, parse_constant=_reject_constant)  # NaN and Infinity are not JSON
    except json.JSONDecodeError as e:
        raise RequestError(400, f"the body is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except ValueError as e:
        raise RequestError(400, f"the body is not valid JSON: {e}") from None


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array",
            dict: "an object", type(None): "null"}.get(type(value), type(value).__name__)  # fmt: skip


def _sentences(raw: dict, limits: Limits) -> list[str]:
    if "sentences" not in raw:
        raise RequestError(400, f"the body needs a field \"sentences\", a list of strings: {EXAMPLE}")
    sentences = raw["sentences"]
    if not isinstance(sentences, list) or not sentences:
        raise RequestError(400, f"sentences must be a non-empty list of strings, got {_type_name(sentences)}"
                           if not isinstance(sentences, list) else "sentences must not be empty")  # fmt: skip
    if len(sentences) > limits.max_sentences:
        raise RequestError(413, f"{len(sentences)} sentences in one request; the limit is {limits.max_sentences}")
    for i, s in enumerate(sentences):
        if not isinstance(s, str):
            raise RequestError(400, f"sentences[{i}] must be a string, got {_type_name(s)}")
        if len(s) > limits.max_chars:
            raise RequestError(413, f"sentences[{i}] has {len(s)} characters; the limit is {limits.max_chars}")
        try:
            s.encode("utf-8")
        except UnicodeEncodeError:
            raise RequestError(400, f"sentences[{i}] holds an unpaired surrogate (a lone \\ud800-\\udfff escape)"
                               ) from None  # fmt: skip
    return sentences


def parse_translate(body: bytes, limits: Limits, models: dict[str, LoadedModel], default_model: str,
                    defaults: DecodeConfig | None = None) -> TranslateRequest:  # fmt: skip
    """The body of POST /translate -> the sentences and their decode options; RequestError when anything is off.
    defaults: the server's decoding settings, which a request's beam, n_best and alpha replace."""
    if len(body) > limits.max_body_bytes:
        raise too_long(limits)
    raw = parse_json(body)
    if not isinstance(raw, dict):
        raise RequestError(400, f"the body must be a JSON object, got {_type_name(raw)}: {EXAMPLE}")
    for key in raw:
        if key not in FIELDS:
            near = difflib.get_close_matches(key, FIELDS, n=1)
            hint = f"did you mean {near[0]!r}? " if near else ""
            raise RequestError(400, f"unknown field {key!r}; {hint}(fields: {', '.join(FIELDS)})")
    sentences = _sentences(raw, limits)
    name = raw.get("model", default_model)
    if not isinstance(name, str) or name not in models:
        raise RequestError(400, f"model must be one of {', '.join(map(repr, models))}, got {name!r}"
                           if isinstance(name, str) else f"model must be a string, got {_type_name(name)}")
    model, defaults = models[name], defaults or DecodeConfig()
    try:
        config = dataclasses.replace(defaults, **{key: raw[key] for key in ("beam", "n_best", "alpha") if key in raw},
                                     precision=raw.get("precision", model.precision))  # fmt: skip
    except DecodeError as e:
        raise RequestError(400, str(e)) from None
    if config.beam > limits.max_beam:
        raise RequestError(400, f"beam must be from 1 to {limits.max_beam}, got {config.beam}")
    if config.precision != model.precision:
        raise RequestError(400, f"model {name!r} decodes in {model.precision} (chosen when the server started, "
                           f"with --precision); a request can name only that precision, got {config.precision!r}")
    attention = raw.get("attention", False)
    if not isinstance(attention, bool):
        raise RequestError(400, f"attention must be true or false, got {_type_name(attention)}")
    return TranslateRequest(sentences, Options(name, config.beam, config.n_best, config.alpha, attention))


def response(request: TranslateRequest, results: list, precision: str) -> dict:
    """The JSON answer: the best translation per sentence; with n_best > 1 also the n best with their scores; with
    attention, per sentence the source and output pieces and a weight per (output piece, source piece)."""
    o = request.options
    out: dict[str, Any] = {"model": o.model, "precision": precision, "beam": o.beam,
                           "translations": [hyps[0].text for hyps in results]}  # fmt: skip
    if o.n_best > 1:
        out["n_best"] = [[{"text": h.text, "score": h.score} for h in hyps] for hyps in results]
    if o.attention:  # a row per output step: the pieces, then the end of the sentence ("</s>") when it was reached
        out["attention"] = [{"source": h.src_pieces, "weights": h.attention,
                             "target": h.tgt_pieces + ["</s>"] * (len(h.attention) - len(h.tgt_pieces))}
                            for h in (hyps[0] for hyps in results)]  # fmt: skip
    return out
