"""What every task's composition shares: the device, the model from its recipe section, the optimizer."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from seq2seq import checkpoint
from seq2seq.config import ConfigError, Recipe
from seq2seq.models.lm import LanguageModel
from seq2seq.models.regressor import Regressor
from seq2seq.models.seq2seq import Seq2Seq, Seq2SeqShape


def resolve_device(name: str) -> torch.device:
    """auto | cpu | cuda[:N] -> the device; ConfigError (a ValueError, which every command reports in one line) for a
    name torch does not know, or CUDA without a GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was asked for, but torch sees no CUDA GPU: use the CPU (train.device=cpu "
                          "in a recipe, --device cpu on the command line)")
    if device.type == "cuda" and device.index is None:  # under torchrun, the GPU train.py selected for this rank
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def build_model(recipe: Recipe, src_vocab: int = 0, tgt_vocab: int = 0, target_ids=None) -> torch.nn.Module:
    """The task's model; translation needs both vocabulary sizes, the language model `tgt_vocab`. target_ids:
    translation's target vocabulary (`Seq2Seq`; None: every piece)."""
    m = recipe.model
    match recipe.task:
        case "translation":
            shape = Seq2SeqShape(
                src_vocab=src_vocab, tgt_vocab=tgt_vocab, embedding_size=m.embedding_size,
                encoder_hidden=m.encoder_hidden, encoder_layers=m.encoder_layers, bidirectional=m.bidirectional,
                decoder_hidden=m.decoder_hidden, decoder_layers=m.decoder_layers, cell=m.cell, attention=m.attention,
                input_feeding=m.input_feeding, tie_embeddings=m.tie_embeddings, share_embeddings=m.share_embeddings,
                context_feeding=m.context_feeding, bridge=m.bridge,
            )  # fmt: skip
            return Seq2Seq(shape, dropout=m.dropout, target_ids=target_ids)
        case "regression":
            return Regressor(len(recipe.data.features), m.hidden_sizes, m.cell, m.fc_size, m.dropout)
        case "lm":
            return LanguageModel(
                tgt_vocab, m.embedding_size, m.hidden_size, m.layers, m.cell, m.dropout, m.embedding_dropout,
                m.tie_embeddings, m.recurrence,
            )  # fmt: skip
        case _:
            raise ValueError(f"no model for task {recipe.task!r}")


RUN_KINDS = {"translation": "translation run", "lm": "language-model run", "regression": "regression run"}
COMMANDS = {  # what to run on each kind of run instead
    "translation": "python -m seq2seq.translate, or python -m seq2seq.evaluate for its scores",
    "lm": "python -m seq2seq.generate to continue text, or python -m seq2seq.evaluate for its perplexity",
    "regression": "python -m seq2seq.forecast, or python -m seq2seq.evaluate for its next-day scores",
}


def check_task(recipe: Recipe, task: str, where: str | Path) -> None:
    """ConfigError (a usage error) unless the run at `where` is of `task`: a command was given another kind of run."""
    if recipe.task != task:
        raise ConfigError(f"{where} is a {RUN_KINDS.get(recipe.task, recipe.task)} (task {recipe.task}), not a "
                          f"{RUN_KINDS[task]}; use {COMMANDS.get(recipe.task, 'the command for that task')}")  # fmt: skip


def load_weights(model: torch.nn.Module, state: dict, where: str | Path) -> None:
    """`model.load_state_dict(state)`, or a one-line CheckpointError naming what does not fit: the weights of a
    checkpoint whose recipe was edited, or that another version of the model wrote."""
    own, problems = model.state_dict(), []
    for word, names in [("lacks", [k for k in own if k not in state]), ("has unknown", [k for k in state if k not in own])]:
        if names:
            problems.append(f"it {word} {', '.join(names[:3])}{f' and {len(names) - 3} more' if len(names) > 3 else ''}")
    problems += [f"{k} is {tuple(state[k].shape)} there but {tuple(v.shape)} in the model" for k, v in own.items()
                 if k in state and getattr(state[k], "shape", None) != v.shape]  # fmt: skip
    if problems:
        raise checkpoint.CheckpointError(f"the weights in {where} do not fit the model its recipe describes: "
                                         f"{'; '.join(problems[:3])}{'; ...' if len(problems) > 3 else ''}")  # fmt: skip
    model.load_state_dict(state)


def build_optimizer(recipe: Recipe, model: torch.nn.Module) -> torch.optim.Optimizer:
    t = recipe.train
    if t.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[t.optimizer]
    # fused: one kernel over all parameters (CPU and CUDA): 11 ms per step instead of 54 for the 15.5M parameters
    # of recipes/en-fr.yaml on 2 CPU threads, where the per-tensor loop was 6% of a training step.
    return cls(model.parameters(), lr=t.lr, betas=t.betas, weight_decay=t.weight_decay, fused=True)


def write_recipe(run_dir: Path, recipe: Recipe) -> None:
    """RUN_DIR/recipe.yaml: the validated recipe of a new run, every default spelled out."""
    checkpoint.write_atomic(run_dir / "recipe.yaml", yaml.safe_dump(recipe.to_dict(), sort_keys=False))
