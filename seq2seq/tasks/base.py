"""The interface each task implements (translation, lm, regression), and what the commands hand to it.

A command finds the task of a recipe (`tasks.get(recipe.task)`) or of a trained run (`tasks.of_run(run_dir)`) and
calls it; it never branches on the task's name itself. A task builds training from a recipe, loads a trained run
for inference on a device, evaluates a test set, and reads its checkpoint's payload into a typed record (what the
trainer stores besides the weights; `Payload.extra` is what it writes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch

from seq2seq import checkpoint
from seq2seq.config import Recipe, recipe_from_dict
from seq2seq.decoding import DecodeConfig
from seq2seq.tasks.common import check_task
from seq2seq.trainer import Trainer


@dataclass(frozen=True)
class TestSet:
    """What `Task.evaluate` scores on: a split of the run's corpus (`split`), aligned files (`src`, `ref`), or one of
    sacreBLEU's test sets (`sacrebleu`, with its `langpair` or None for the run's). Exactly one kind is given."""

    split: str | None = None
    src: Path | None = None
    ref: Path | None = None
    sacrebleu: str | None = None
    langpair: str | None = None
    lines: tuple[list[str], list[list[str]]] | None = None  # src's lines and ref's, where already read

    @property
    def kind(self) -> str:
        return "files" if self.src else "sacrebleu" if self.sacrebleu else "split"


@dataclass(frozen=True)
class Evaluation:
    """A task's scores on a test set, and the report a command prints."""

    scores: dict[str, Any]
    report: str


class Payload(Protocol):
    """A task's typed checkpoint payload: the recipe and what inference needs besides the weights."""

    recipe: Recipe

    def extra(self) -> dict[str, Any]:
        """The plain values the trainer writes into every checkpoint beside the weights."""
        ...


class Task(Protocol):
    name: ClassVar[str]  # the recipe's `task`
    default_split: ClassVar[str]  # the split `evaluate` scores where the test set names none

    def training(self, recipe: Recipe, run_dir: Path, resume: bool, device: torch.device, rank: int,
                 world: int) -> Trainer: ...  # fmt: skip

    def read_payload(self, saved: dict, where: str | Path) -> Payload: ...

    def load(self, run_dir: str | Path, which: str = "best", device: str = "auto") -> Any: ...

    def evaluate(self, run_dirs: Sequence[Path], test: TestSet, which: str = "best", device: str = "auto",
                 decode: DecodeConfig | None = None, output: Path | None = None,
                 lowercase_tokenized: bool = False) -> Evaluation:  # fmt: skip
        """Scores on `test` (a usage error for a kind of test set the task has no use for). decode, output and
        lowercase_tokenized: how a translation run decodes, where its translations go (default RUN_DIR/hyps.<test
        set>.<tgt_lang>), and whether the scores include lowercased tokenized BLEU; the other tasks take none."""
        ...


def saved_recipe(saved: dict, where: str | Path, task: str | None = None) -> Recipe:
    """The recipe stored in a checkpoint's payload; CheckpointError where it has none, and a usage error where it is
    not of `task` (a command was given another task's run)."""
    raw = saved.get("recipe")
    if not isinstance(raw, dict):
        raise checkpoint.CheckpointError(f"{where} holds no recipe: it was not written by python -m seq2seq.train")
    recipe = recipe_from_dict(raw, saved=True)
    if task is not None:
        check_task(recipe, task, where)
    return recipe


def payload_field(saved: dict, key: str, where: str | Path) -> Any:
    """`saved[key]`, or a CheckpointError naming the missing part of the payload."""
    if key not in saved:
        raise checkpoint.CheckpointError(f"{where} lacks its {key!r}: the checkpoint is incomplete or from another "
                                         "program")  # fmt: skip
    return saved[key]
