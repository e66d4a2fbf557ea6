"""Regression (the S&P 500 lab): series, chronological split, scaler, the trainer with validation MSE."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from seq2seq import checkpoint
from seq2seq.cli import UsageError
from seq2seq.config import ConfigError, Recipe, RegressionRecipe
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
from seq2seq.decoding import DecodeConfig
from seq2seq.models.regressor import Regressor
from seq2seq.tasks.base import Evaluation, TestSet, payload_field, saved_recipe
from seq2seq.tasks.common import build_model, build_optimizer, load_weights, write_recipe
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
        extra=RegressionPayload(recipe, scaler.state()).extra(),
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
    file = checkpoint.find(run_dir, which)
    saved = checkpoint.load(file)
    payload = RegressionPayload.read(saved, run_dir)
    model = build_model(payload.recipe)
    load_weights(model, saved["model"], file)
    return payload.recipe, model.eval(), Scaler.from_state(payload.scaler)


@dataclass(frozen=True)
class RegressionPayload:
    """What a regression checkpoint holds besides the weights."""

    recipe: RegressionRecipe
    scaler: dict[str, Any]  # `Scaler.state()`: the normalisation fitted on the training rows

    def extra(self) -> dict[str, Any]:
        return {"recipe": self.recipe.to_dict(), "scaler": self.scaler}

    @classmethod
    def read(cls, saved: dict, where: str | Path) -> RegressionPayload:
        return cls(saved_recipe(saved, where, "regression"), payload_field(saved, "scaler", where))


class RegressionTask:
    name = "regression"
    default_split = "test"

    def training(self, recipe: RegressionRecipe, run_dir: Path, resume: bool, device: torch.device, rank: int = 0,
                 world: int = 1) -> Trainer:  # fmt: skip
        if world > 1:  # the series batches are not sharded; each rank would train on everything
            raise ConfigError("the regression task trains in one process; run it without torchrun")
        return regression_training(recipe, run_dir, resume, device)

    def read_payload(self, saved: dict, where: str | Path) -> RegressionPayload:
        return RegressionPayload.read(saved, where)

    def load(self, run_dir: str | Path, which: str = "best", device: str = "auto"):
        """(recipe, model in eval mode, scaler); the forecasts run on the CPU (a series of a few thousand days)."""
        if device not in ("auto", "cpu"):
            raise UsageError(f"--device {device}: a regression run forecasts on the CPU")
        return load_regressor(run_dir, which)

    def evaluate(self, run_dirs: Sequence[Path], test: TestSet, which: str = "best", device: str = "auto",
                 decode: DecodeConfig | None = None, output: Path | None = None,
                 lowercase_tokenized: bool = False) -> Evaluation:  # fmt: skip
        """Next-day errors on the test span, the model's beside persistence and drift (python -m seq2seq.forecast
        adds the multi-day forecasts, their plots and files)."""
        from seq2seq.forecasting import NEXT_DAY_COLUMNS, forecast, markdown, next_day_scores

        if test.kind != "split" or (test.split or "test") != "test" or len(run_dirs) > 1:
            raise UsageError("a regression run is scored on its test span, one run at a time: give no test set "
                             "(or --split test)")  # fmt: skip
        recipe, model, scaler = self.load(run_dirs[0], which, device)
        series, split = series_split(recipe)
        window = recipe.data.window
        scores = next_day_scores(forecast(model, series, split, scaler, window, window))
        days = len(range(*split.test.indices(len(series.dates)))) - window
        return Evaluation(scores, f"test span, next day ({days} days):\n" + markdown(scores, NEXT_DAY_COLUMNS))
