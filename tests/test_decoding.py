"""One DecodeConfig for every command that decodes: the same options, generated from its fields; one error naming
the option for a bad value; the same checks for the server's requests and for Translator; a config round-trips
through the command line."""

from __future__ import annotations

import argparse
import dataclasses
import re

import pytest

from seq2seq import checkpoint, evaluate, generate, serve, serving, translate
from seq2seq.cli import ArgumentParser, UsageError
from seq2seq.config import ConfigError
from seq2seq.decoding import (
    ALIASES,
    ALL_FIELDS,
    CHECKS,
    EVALUATE_FIELDS,
    LM_FIELDS,
    SERVE_FIELDS,
    DecodeConfig,
    DecodeError,
    add_decode_options,
    decode_argv,
    decode_config,
    help_texts,
    option,
)

from .untrained import untrained_run

COMMANDS = {"translate": (translate, ALL_FIELDS), "evaluate": (evaluate, EVALUATE_FIELDS),
            "generate": (generate, LM_FIELDS), "serve": (serve, SERVE_FIELDS)}  # fmt: skip
DECODE_OPTIONS = {option(name) for name in ALL_FIELDS} | {flag for flag, _ in ALIASES.values()}


def expected_options(fields) -> set[str]:
    return {option(name) for name in fields} | {ALIASES[name][0] for name in fields if name in ALIASES}


def usage_options(module, capsys) -> set[str]:
    """The options in the usage line of a command's --help."""
    with pytest.raises(SystemExit):
        module.main(["--help"])
    usage = capsys.readouterr().out.split("\n\n")[0]
    return set(re.findall(r"\[(--[a-z0-9-]+)", usage))


@pytest.fixture
def no_loading(monkeypatch):
    monkeypatch.setattr(checkpoint, "load", lambda path: pytest.fail(f"loaded {path} before the usage error"))


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_that_decodes_takes_the_generated_options(name, capsys):
    module, fields = COMMANDS[name]
    assert usage_options(module, capsys) & DECODE_OPTIONS == expected_options(fields)


def test_translate_and_evaluate_take_the_same_options_but_n_best(capsys):
    shown = {name: usage_options(module, capsys) & DECODE_OPTIONS for name, (module, _) in COMMANDS.items()}
    assert shown["translate"] == shown["evaluate"] | {"--n-best"} == DECODE_OPTIONS
    assert shown["generate"] <= shown["translate"] and shown["serve"] <= shown["translate"]


def test_every_field_has_its_comment_as_help_and_a_check():
    texts = help_texts()
    assert set(texts) == set(ALL_FIELDS) and all(len(text) > 10 for text in texts.values())
    hints = {f.name: f.type for f in dataclasses.fields(DecodeConfig)}
    assert {name for name in ALL_FIELDS if "int" in hints[name] or "float" in hints[name]} == set(CHECKS)


BAD_VALUES = [(name, "-1") for name in CHECKS if name != "seed"] + [("precision", "fp8"), ("seed", "x")]


@pytest.mark.parametrize("name", COMMANDS)
def test_a_bad_value_is_one_usage_error_naming_the_option(name, tmp_path, no_loading, capsys):
    module, fields = COMMANDS[name]
    for field, value in BAD_VALUES:
        if field in fields:
            assert module.main([str(tmp_path), option(field), value]) == 2, field
            err = capsys.readouterr().err
            assert err.startswith("error: ") and err.count("\n") == 1 and option(field) in err, err


@pytest.mark.parametrize(("argv", "names"), [
    (["--beam", "2", "--n-best", "3"], ["--n-best 3 needs --beam of at least 3"]),
    (["--temperature", "0.5", "--beam", "3"], ["--temperature 0.5", "--beam 1"]),
    (["--top-k", "3", "--greedy"], ["--top-k 3", "--temperature"]),
    (["--top-p", "0.5", "--greedy"], ["--top-p 0.5", "--temperature"]),
    (["--int8", "--precision", "fp32"], ["--int8 and --precision fp32 disagree"]),
])  # fmt: skip
def test_options_that_disagree_are_one_usage_error_naming_them(argv, names, tmp_path, no_loading, capsys):
    assert translate.main([str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and all(n in err for n in names), err


def test_decode_config_checks_values_and_names_the_field():
    for values, message in [({"beam": 0}, "beam must be an integer, at least 1, got 0"),
                            ({"beam": True}, "beam must be an integer, got True"),
                            ({"alpha": float("nan")}, "alpha must be a finite number, got nan"),
                            ({"top_p": 1.5, "temperature": 1.0, "beam": 1}, "top_p must be a finite number, above 0"),
                            ({"beam": 2, "n_best": 3}, "n_best must be from 1 to 2"),
                            ({"ban_unk": "yes"}, "ban_unk must be true or false"),
                            ({"precision": "fp8"}, "precision must be one of fp32, bf16, fp16, int8")]:  # fmt: skip
        with pytest.raises(DecodeError, match=re.escape(message)) as e:
            DecodeConfig(**values)
        assert isinstance(e.value, ConfigError)
    assert DecodeConfig(alpha=1).alpha == 1.0 and isinstance(DecodeConfig(alpha=1).alpha, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        DecodeConfig().beam = 3  # type: ignore[misc]


def test_the_servers_requests_are_checked_by_decode_config():
    models = {"m": serving.LoadedModel("m", "bf16")}
    for fields, values in [({"beam": 2, "n_best": 3}, {"beam": 2, "n_best": 3}), ({"alpha": -1}, {"alpha": -1}),
                           ({"beam": 0}, {"beam": 0}), ({"precision": "fp8"}, {"precision": "fp8"})]:  # fmt: skip
        body = serving.json.dumps({"sentences": ["a"], **fields}).encode()
        with pytest.raises(serving.RequestError) as e:
            serving.parse_translate(body, serving.Limits(), models, "m", DecodeConfig())
        with pytest.raises(DecodeError) as expected:
            DecodeConfig(**values)
        assert e.value.status == 400 and e.value.message == str(expected.value)
    defaults = DecodeConfig(beam=3, alpha=1.0)  # the server's own options are the requests' defaults
    request = serving.parse_translate(b'{"sentences": ["a"]}', serving.Limits(), models, "m", defaults)
    assert (request.options.beam, request.options.n_best, request.options.alpha) == (3, 1, 1.0)


CONFIGS = [
    DecodeConfig(),
    DecodeConfig(beam=1, temperature=0.7, top_k=40, top_p=0.9, seed=3, min_length=2, ban_unk=True),
    DecodeConfig(beam=4, n_best=2, alpha=0.0, max_len_ratio=2.25, no_repeat_ngram=3, batch_size=7, inter_threads=2,
                 full_vocabulary=True, precision="int8"),
]  # fmt: skip


@pytest.mark.parametrize("config", CONFIGS)
def test_a_config_round_trips_through_the_command_line(config, tmp_path):
    parser = ArgumentParser(prog="test")
    add_decode_options(parser)
    assert decode_config(parser.parse_args(decode_argv(config))) == config
    assert translate.parse_args([str(tmp_path), *decode_argv(config)])[1] == config
    if config.n_best == 1:
        assert evaluate.parse_args([str(tmp_path), *decode_argv(config, EVALUATE_FIELDS)])[1] == config
    lm = DecodeConfig(**{name: getattr(config, name) for name in LM_FIELDS}, n_best=1)
    assert generate.parse_args([str(tmp_path), *decode_argv(lm, LM_FIELDS)])[1] == lm


def test_a_commands_defaults_and_aliases():
    assert generate.parse_args(["run"])[1] == DecodeConfig(beam=1)
    assert translate.parse_args(["run"])[1] == DecodeConfig()
    assert translate.parse_args(["run", "--greedy", "--int8"])[1] == DecodeConfig(beam=1, precision="int8")
    with pytest.raises(ValueError, match="not DecodeConfig fields"):
        add_decode_options(argparse.ArgumentParser(), ["beam", "bean"])
    with pytest.raises(UsageError, match="--n-best 2 needs --beam of at least 2"):
        decode_config(argparse.Namespace(beam=1, n_best=2))


@pytest.fixture(scope="module")
def translator(tmp_path_factory):
    from seq2seq.translator import Translator

    run = untrained_run(tmp_path_factory.mktemp("untrained"))
    return Translator.from_run(run, device="cpu", decode=DecodeConfig(max_len_ratio=0.5, inter_threads=1))


def test_translator_decodes_a_config_as_its_keyword_arguments_do(translator):
    lines = ["sa sb sc .", "", "sd se ."]
    assert translator.max_len_ratio == 0.5 and translator.inter_threads == 1  # loaded as the config says
    config = DecodeConfig(beam=3, n_best=2, alpha=0.2, min_length=1, no_repeat_ngram=2)
    got = [[(t.text, t.score) for t in hyps] for hyps in translator.decode(lines, config)]
    assert got == [[(t.text, t.score) for t in hyps] for hyps in translator.translate_n_best(
        lines, 3, 2, alpha=0.2, min_length=1, no_repeat_ngram=2)]  # fmt: skip
    sampled = DecodeConfig(beam=1, temperature=1.0, seed=5)
    assert translator.translate(lines, **sampled.settings()) == translator.translate(lines, **sampled.settings())
    with pytest.raises(DecodeError, match="n_best must be from 1 to 2"):
        translator.translate_n_best(lines, beam=2, n_best=3)
    with pytest.raises(DecodeError, match="precision fp32: this translator decodes in bf16"):
        translator.decode(lines, DecodeConfig(precision="fp32"))
