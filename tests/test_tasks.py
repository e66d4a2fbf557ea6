"""The task interface (seq2seq/tasks/base.py): one per task, typed recipes and checkpoint payloads, and commands
that reach a task only through it."""

from __future__ import annotations

import inspect
import re
import typing

import pytest

from seq2seq import checkpoint, tasks
from seq2seq.config import RECIPES, DataConfig, LMModelConfig, TranslationModelConfig, load_recipe
from seq2seq.evaluate import main as evaluate_main
from seq2seq.tasks.base import Task

from .conftest import ROOT
from .test_lm import TINY as LM_TINY
from .test_lm import write_tiny_ptb
from .test_regression import SMALL, noisy_sine, write_csv


def test_every_task_implements_the_interface():
    assert set(tasks.TASKS) == set(RECIPES)
    methods = [n for n, v in vars(Task).items() if inspect.isfunction(v) and not n.startswith("_")]
    assert set(methods) == {"training", "read_payload", "load", "evaluate"}
    for name, task in tasks.TASKS.items():
        assert task.name == name and isinstance(task.default_split, str)
        for method in methods:
            wanted = list(inspect.signature(getattr(Task, method)).parameters)[1:]
            given = list(inspect.signature(getattr(task, method)).parameters)
            assert given[: len(wanted)] == wanted, f"{name}.{method}{given} does not take {wanted}"


def test_recipes_are_typed_per_task():
    hints = typing.get_type_hints(RECIPES["translation"])
    assert (hints["data"], hints["model"]) == (DataConfig, TranslationModelConfig)
    assert typing.get_type_hints(RECIPES["lm"])["model"] is LMModelConfig
    for path in sorted((ROOT / "recipes").glob("*.yaml")):
        recipe = load_recipe(path)
        assert type(recipe) is RECIPES[recipe.task], path.name
        hints = typing.get_type_hints(type(recipe))
        for section in ("data", "model"):
            assert isinstance(getattr(recipe, section), hints[section]), (path.name, section)


def test_a_runs_task_and_typed_payload_come_from_its_checkpoint(toy_run, tmp_path):
    task, payload = tasks.of_run(toy_run)
    assert task is tasks.get("translation") and isinstance(payload, tasks.TranslationPayload)
    saved = checkpoint.load(toy_run / "best.pt")
    assert payload.extra() == {k: saved[k] for k in ("recipe", "tokenizers", "target_pieces")}
    src, tgt = payload.tokenizer_pair()
    assert src is tgt  # the recipe's joint vocabulary: one tokenizer for both sides
    del saved["tokenizers"]
    with pytest.raises(checkpoint.CheckpointError, match=r"lacks its 'tokenizers'"):
        task.read_payload(saved, "x.pt")
    with pytest.raises(checkpoint.CheckpointError, match="holds no recipe"):
        task.read_payload({"model": {}}, "x.pt")
    with pytest.raises(Exception, match=r"is a translation run \(task translation\), not a language-model run"):
        tasks.get("lm").read_payload(checkpoint.load(toy_run / "best.pt"), toy_run)


def test_each_task_is_evaluated_by_the_same_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SEQ2SEQ_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SEQ2SEQ_DATA", str(tmp_path / "series"))
    write_csv(tmp_path / "series", noisy_sine(400))
    recipe = load_recipe(ROOT / "recipes/sp500.yaml", [*SMALL, "train.max_steps=20", "train.valid_every=10"])
    tasks.build_training(recipe, tmp_path / "sp", resume=False).fit()
    capsys.readouterr()
    assert evaluate_main([str(tmp_path / "sp")]) == 0
    out = capsys.readouterr().out
    assert "test span, next day" in out and "| LSTM |" in out and "| persistence |" in out
    assert evaluate_main([str(tmp_path / "sp"), "--split", "valid"]) == 2
    assert "scored on its test span" in capsys.readouterr().err

    monkeypatch.setenv("SEQ2SEQ_DATA", str(write_tiny_ptb(tmp_path / "ptb")))
    tasks.build_training(load_recipe(ROOT / "recipes/lm-ptb.yaml", LM_TINY), tmp_path / "lm", resume=False).fit()
    capsys.readouterr()
    assert evaluate_main([str(tmp_path / "lm")]) == 0  # without --split: the task's default split, test
    out = capsys.readouterr().out
    assert re.search(r"^test perplexity = \d+\.\d\d \(\d+ word tokens\)$", out, re.M), out
    (tmp_path / "a.txt").write_text("x\n")
    assert evaluate_main([str(tmp_path / "lm"), "--src", str(tmp_path / "a.txt"), "--ref", str(tmp_path / "a.txt")]) == 2
    assert "a language model is scored on a split of its corpus" in capsys.readouterr().err


def test_commands_reach_a_task_only_through_the_interface():
    """No module outside config.py and tasks/ branches on a recipe's task name."""
    package = ROOT / "seq2seq"
    branch = re.compile(r"\.task\s*[!=]=|match [\w.]*task\b|\[\"task\"\]|get\(\"task\"")
    found = [f"{path.relative_to(ROOT)}:{n}" for path in sorted(package.rglob("*.py"))
             if path.name != "config.py" and "tasks" not in path.relative_to(package).parts
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if branch.search(line)]  # fmt: skip
    assert not found, found

