"""Regression (the S&P 500 lab): series, chronological split, scaler, the trainer with validation MSE."""

from __future__ import annotations

from pathlib import Path

import torch

from seq2seq import checkpoint
from seq2seq.tasks.common import build_model, build_optimizer, write_recipe
from seq2seq.config import Recipe, recipe_from_dict
from seq2seq.data.corpora import corpus_file
from seq2seq.data.series import (
    Scaler,
    Series,
    Split,
    WindowBatches,
    chronological_split,
    load_series,
    to_tensors,
    windows,
)
from seq2seq.models.regressor import Regressor
from seq2seq.trainer import Trainer


def series_split(recipe: Recipe) -> tuple[Series, Split]:
    """The regression recipe's series and its chronological train / valid / test rows."""
    d = recipe.data
    series = load_series(corpus_file(d.corpus, d.file), d.features, d.date_column, d.date_format)
    return series, chronological_split(len(series.dates), d.test_fraction, d.valid_fraction, d.window)


def regression_training(recipe: Recipe, run_dir: Path, resume: bool, device) -> Trainer:
    """Series, split, a scaler fitted on the training rows only, model, optimizer and validation MSE."""
    d, t = recipe.data, recipe.train
    series, split = series_split(recipe)
    scaler = Scaler.fit(d.normalisation, series.values[split.train])
    train_x, train_y = to_tensors(windows(series.values[split.train], d.window), scaler)
    valid_x, valid_y = to_tensors(windows(series.values[split.valid], d.window), scaler)
    if not resume:
        write_recipe(run_dir, recipe)
    model = build_model(recipe).to(device)
    trainer = Trainer(
        model=model,
        optimizer=build_optimizer(recipe, model),
        data=WindowBatches(train_x, train_y, d.batch_size, t.seed),
        evaluate=regression_evaluator(valid_x, valid_y, device),
        cfg=t,
        run_dir=run_dir,
        device=device,
        extra={"recipe": recipe.to_dict(), "scaler": scaler.state()},
    )
    if resume:
        trainer.resume(run_dir / "last.pt")
    return trainer


def regression_evaluator(x: torch.Tensor, y: torch.Tensor, device):
    """Validation MSE in normalised space, and its skill against persistence (tomorrow = today, i.e. x[:, -1, 0])."""
    persistence_mse = float(((x[:, -1, 0] - y) ** 2).mean())

    def evaluate(model: torch.nn.Module) -> dict[str, float]:
        with torch.inference_mode():
            pred = torch.cat([model(x[i : i + 1024].to(device)).float().cpu() for i in range(0, len(y), 1024)])
        mse = float(((pred - y) ** 2).mean())
        return {"loss": mse, "rmse": mse**0.5, "skill": 1 - mse / persistence_mse}

    return evaluate


def load_regressor(run_dir: str | Path, which: str = "best") -> tuple[Recipe, Regressor, Scaler]:
    """A trained regression run: its recipe, the model (eval mode, CPU) and the scaler fitted at training time."""
    payload = checkpoint.load(checkpoint.find(run_dir, which))
    recipe = recipe_from_dict(payload["recipe"])
    if recipe.task != "regression":
        raise checkpoint.CheckpointError(f"{run_dir} holds a {recipe.task} run, not a regression run")
    model = build_model(recipe)
    model.load_state_dict(payload["model"])
    return recipe, model.eval(), Scaler.from_state(payload["scaler"])
