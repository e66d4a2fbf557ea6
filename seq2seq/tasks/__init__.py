"""The composition root: the only package that reads a Recipe and turns it into data, model and trainer.

One `match recipe.task` here; each task's wiring lives in its own module (translation, regression, lm)."""

from __future__ import annotations

import random
from pathlib import Path

import torch

from seq2seq import checkpoint
from seq2seq.tasks.common import build_model, build_optimizer, resolve_device
from seq2seq.tasks.lm import lm_split_perplexity, lm_training, load_language_model
from seq2seq.tasks.regression import load_regressor, regression_training, series_split
from seq2seq.tasks.translation import (
    load_for_inference,
    target_pieces,
    target_vocabulary,
    tokenize,
    tokenizers_from,
    train_tokenizers,
    translation_training,
)
from seq2seq.config import ConfigError, Recipe
from seq2seq.trainer import Trainer

__all__ = [
    "build_model",
    "build_optimizer",
    "build_training",
    "lm_split_perplexity",
    "load_for_inference",
    "load_language_model",
    "load_regressor",
    "resolve_device",
    "run_task",
    "series_split",
    "target_pieces",
    "target_vocabulary",
    "tokenize",
    "tokenizers_from",
    "train_tokenizers",
]


def build_training(recipe: Recipe, run_dir: Path, resume: bool, rank: int = 0, world: int = 1) -> Trainer:
    """Everything `python -m seq2seq.train` needs: seed and threads here, then the task's data, model and trainer."""
    t = recipe.train
    torch.manual_seed(t.seed)
    random.seed(t.seed)
    if t.threads > 0:
        torch.set_num_threads(t.threads)
    device = resolve_device(t.device)
    run_dir.mkdir(parents=True, exist_ok=True)
    match recipe.task:
        case "translation":
            return translation_training(recipe, run_dir, resume, device, rank, world)
        case "regression":
            if world > 1:  # the series batches are not sharded; each rank would train on everything
                raise ConfigError("the regression task trains in one process; run it without torchrun")
            return regression_training(recipe, run_dir, resume, device)
        case "lm":
            if world > 1:  # the BPTT streams are not sharded
                raise ConfigError("the lm task trains in one process; run it without torchrun")
            return lm_training(recipe, run_dir, resume, device)
        case _:
            raise ValueError(f"no training for task {recipe.task!r}")


def run_task(run_dir: str | Path, which: str = "best") -> str:
    """The task of a trained run, read from its checkpoint's recipe."""
    return str(checkpoint.load(checkpoint.find(run_dir, which))["recipe"].get("task", "translation"))
