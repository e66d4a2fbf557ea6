"""The composition root: the only package that reads a Recipe and turns it into data, model and trainer.

Each task (translation, lm, regression) implements the interface of tasks/base.py in its own module; a command
finds it by name (`get`) or from a trained run (`of_run`) and calls it, without branching on the task itself.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

from seq2seq import checkpoint
from seq2seq.config import Recipe
from seq2seq.tasks.base import Evaluation, Payload, Task, TestSet, saved_recipe
from seq2seq.tasks.common import build_model, build_optimizer, resolve_device
from seq2seq.tasks.lm import LMPayload, LMTask, lm_split_perplexity, load_language_model
from seq2seq.tasks.regression import RegressionPayload, RegressionTask, load_regressor, series_split
from seq2seq.tasks.translation import (
    TranslationPayload,
    TranslationTask,
    load_for_inference,
    target_pieces,
    target_vocabulary,
    tokenize,
    tokenizers_from,
    train_tokenizers,
)
from seq2seq.trainer import Trainer

__all__ = [
    "TASKS",
    "Evaluation",
    "LMPayload",
    "Payload",
    "RegressionPayload",
    "Task",
    "TestSet",
    "TranslationPayload",
    "build_model",
    "build_optimizer",
    "build_training",
    "get",
    "lm_split_perplexity",
    "load_for_inference",
    "load_language_model",
    "load_regressor",
    "of_run",
    "resolve_device",
    "series_split",
    "target_pieces",
    "target_vocabulary",
    "tokenize",
    "tokenizers_from",
    "train_tokenizers",
]

TASKS: dict[str, Task] = {task.name: task for task in (TranslationTask(), LMTask(), RegressionTask())}


def get(name: str) -> Task:
    """The task of that name (a recipe's `task`, which config.py has validated)."""
    return TASKS[name]


def of_run(run_dir: str | Path, which: str = "best") -> tuple[Task, Payload]:
    """The task of a trained run and its checkpoint's payload, read from the checkpoint `which` names."""
    file = checkpoint.find(run_dir, which)
    recipe = saved_recipe(saved := checkpoint.load(file), file)
    task = get(recipe.task)
    return task, task.read_payload(saved, file)


def build_training(recipe: Recipe, run_dir: Path, resume: bool, rank: int = 0, world: int = 1) -> Trainer:
    """Everything `python -m seq2seq.train` needs: the seed here, then the task's data, model and trainer."""
    t = recipe.train
    torch.manual_seed(t.seed)
    random.seed(t.seed)
    device = resolve_device(t.device)
    run_dir.mkdir(parents=True, exist_ok=True)
    return get(recipe.task).training(recipe, run_dir, resume, device, rank, world)
