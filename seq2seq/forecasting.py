"""The S&P 500 lab's three forecasts on the test span, naive baselines on the same windows, and their scores.

Test rows s .. N-1 and window T (50): window j holds rows s+j .. s+j+T-1 as inputs and row s+j+T as its label, so
every forecast covers the M = N - s - T days s+T .. N-1:

    point-by-point   day s+j+T from the true days before it (window j), for every j
    full sequence    all M days from window 0 alone, each prediction fed back in
    multi-sequence   every `horizon` days (j = 0, h, 2h, ...) the next h days from window j, fed back in

Baselines see exactly the same windows: persistence (tomorrow = today), drift (today plus the window's mean daily
change) and "always up" (a direction only). Scores are in index points and in the model's normalised space.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from seq2seq.checkpoint import write_atomic
from seq2seq.data.series import Scaler, Series, Split, to_tensors, windows
from seq2seq.metrics import direction_accuracy, regression_errors
from seq2seq.plots import plot_fans, plot_forecast


@dataclass
class Forecast:
    dates: np.ndarray  # (M,) the forecast days
    raw: np.ndarray  # (M, T + 1, F) raw test windows; raw[:, -1, 0] is the actual value of each day
    scaler: Scaler
    point: np.ndarray  # (M,) point-by-point predictions, index points
    point_norm: np.ndarray  # (M,) the same, as the model output them (normalised space)
    full: np.ndarray  # (M,) full-sequence predictions, index points
    fan_starts: np.ndarray  # (K,) offsets j of the multi-sequence windows
    fans: np.ndarray  # (K, horizon) multi-sequence predictions, index points (beyond day M-1: NaN)

    @property
    def actual(self) -> np.ndarray:
        return self.raw[:, -1, 0]

    @property
    def today(self) -> np.ndarray:
        return self.raw[:, -2, 0]

    def drift(self) -> np.ndarray:
        """Today plus the mean daily change over the window (its last input minus its first, over T - 1 steps)."""
        return self.today + (self.today - self.raw[:, 0, 0]) / (self.raw.shape[1] - 2)

    def normalised(self, predicted: np.ndarray) -> np.ndarray:
        """Index points (M,) -> the normalised space of each day's window, as the label would be normalised."""
        w = self.raw.copy()
        w[:, -1, 0] = predicted
        return self.scaler.normalise(w)[:, -1, 0]


def forecast(
    model: torch.nn.Module, series: Series, split: Split, scaler: Scaler, window: int, horizon: int
) -> Forecast:
    raw = windows(series.values[split.test], window)  # (M, T + 1, F)
    x, _ = to_tensors(raw, scaler)  # (M, T, F)
    model.eval()
    with torch.inference_mode():
        point_norm = torch.cat([model(x[i : i + 512]) for i in range(0, len(x), 512)]).double().numpy()
        full = model.rollout(x[:1], len(x), scaler.relative).double().numpy()  # (1, M)
        starts = np.arange(0, len(x), horizon)
        fans = model.rollout(x[starts], horizon, scaler.relative).double().numpy()  # (K, horizon)
    fans = scaler.to_values(fans, raw[starts])
    fans[(starts[:, None] + np.arange(horizon)[None, :]) >= len(x)] = np.nan  # past the end of the data
    return Forecast(
        dates=series.dates[split.test][window:],
        raw=raw,
        scaler=scaler,
        point=scaler.to_values(point_norm, raw),
        point_norm=point_norm,
        full=scaler.to_values(full, raw[:1])[0],
        fan_starts=starts,
        fans=fans,
    )


def next_day_scores(fc: Forecast) -> dict[str, dict[str, float | None]]:
    """Each method's errors (index points, and `norm_` in normalised space), direction accuracy and skill."""
    actual, today, actual_norm = fc.actual, fc.today, fc.normalised(fc.actual)
    methods = {"LSTM": (fc.point, fc.point_norm), "persistence": (today, fc.normalised(today))}
    methods["drift"] = (fc.drift(), fc.normalised(fc.drift()))
    scores: dict[str, dict[str, float | None]] = {}
    for name, (pred, pred_norm) in methods.items():
        row: dict[str, float | None] = dict(regression_errors(pred, actual))
        row.update({f"norm_{k}": v for k, v in regression_errors(pred_norm, actual_norm).items()})
        moves = pred - today  # persistence predicts no move at all, so it has no direction accuracy
        row["direction"] = direction_accuracy(moves, actual - today) if np.any(moves != 0) else None
        scores[name] = row
    for row in scores.values():
        row["skill"] = 1 - row["norm_mse"] / scores["persistence"]["norm_mse"]
        row["skill_points"] = 1 - row["mse"] / scores["persistence"]["mse"]
    scores["always up"] = {"direction": direction_accuracy(np.ones_like(actual), actual - today)}
    return scores


def multi_step_scores(fc: Forecast) -> dict[str, dict[str, float]]:
    """Full sequence and 50-day fans against the flat (persistence) and drift forecasts from the same windows."""
    M, actual = len(fc.actual), fc.actual
    steps = np.arange(1, M + 1)
    slope = (fc.today - fc.raw[:, 0, 0]) / (fc.raw.shape[1] - 2)  # (M,) each window's mean daily change
    h = fc.fans.shape[1]
    days = fc.fan_starts[:, None] + np.arange(h)[None, :]  # (K, h) the day each fan value forecasts
    valid = days < M
    fan_actual, fan_today = actual[days[valid]], fc.today[fc.fan_starts][:, None].repeat(h, 1)[valid]
    fan_drift = (fc.today[fc.fan_starts][:, None] + slope[fc.fan_starts][:, None] * (np.arange(h) + 1))[valid]
    cases = {
        "full sequence: LSTM": (fc.full, actual),
        "full sequence: persistence": (np.full(M, fc.today[0]), actual),
        "full sequence: drift": (fc.today[0] + slope[0] * steps, actual),
        f"{h}-day fans: LSTM": (fc.fans[valid], fan_actual),
        f"{h}-day fans: persistence": (fan_today, fan_actual),
        f"{h}-day fans: drift": (fan_drift, fan_actual),
    }
    scores = {name: regression_errors(pred, act) for name, (pred, act) in cases.items()}
    for name, row in scores.items():
        row["skill_points"] = 1 - row["mse"] / scores[name.split(":")[0] + ": persistence"]["mse"]
    return scores


def markdown(scores: dict[str, dict], columns: dict[str, str]) -> str:
    """A markdown table: one row per method, `columns` maps score keys to headers; missing scores are '—'."""

    def cell(value: float | None, key: str) -> str:
        if value is None:
            return "—"
        if key in ("direction", "mape", "norm_mape"):
            return f"{value:.1f}"
        if "skill" in key:
            return f"{value:.3f}"
        return f"{value:.2e}" if key.startswith("norm_") else f"{value:.2f}"

    lines = ["| method | " + " | ".join(columns.values()) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, row in scores.items():
        lines.append(f"| {name} | " + " | ".join(cell(row.get(k), k) for k in columns) + " |")
    return "\n".join(lines)


NEXT_DAY_COLUMNS = {
    "rmse": "RMSE (pts)", "mae": "MAE (pts)", "mape": "MAPE %", "norm_mse": "MSE (norm)", "norm_rmse": "RMSE (norm)",
    "norm_mae": "MAE (norm)", "norm_mape": "MAPE % (norm)", "direction": "direction %", "skill": "skill (norm)",
    "skill_points": "skill (pts)",
}  # fmt: skip
MULTI_STEP_COLUMNS = {
    "rmse": "RMSE (pts)",
    "mae": "MAE (pts)",
    "mape": "MAPE %",
    "skill_points": "skill (pts)",
}


def json_scores(scores: dict, path: Path) -> dict:
    """`scores` with every NaN or infinite number as None (JSON null: JSON has no NaN), and a warning naming them."""
    bad = []

    def clean(value, where: str):
        if isinstance(value, dict):
            return {k: clean(v, f"{where}/{k}") for k, v in value.items()}
        if isinstance(value, float) and not math.isfinite(value):
            bad.append(f"{where[1:]} ({value})")
            return None
        return value

    cleaned = clean(scores, "")
    if bad:
        print(f"warning: {path}: {len(bad)} scores are not finite and are written as null: {', '.join(bad[:4])}"
              + (" ..." if len(bad) > 4 else ""), file=sys.stderr)
    return cleaned


def report(fc: Forecast, out_dir: Path) -> str:
    """Write predictions.csv, scores.json and the three PNGs to `out_dir`; return the two tables as markdown."""
    out_dir.mkdir(parents=True, exist_ok=True)
    next_day, multi = next_day_scores(fc), multi_step_scores(fc)
    scores = json_scores({"next_day": next_day, "multi_step": multi}, out_dir / "scores.json")
    write_atomic(out_dir / "scores.json", json.dumps(scores, indent=1, allow_nan=False) + "\n")
    h = fc.fans.shape[1]
    multi_by_day = fc.fans.reshape(-1)[: len(fc.actual)]  # fans start every h days, so they tile the span
    drift = fc.drift()
    with open(out_dir / "predictions.csv", "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["date", "actual", "previous", "point_by_point", "persistence", "drift", "full_sequence",
                      "multi_sequence", "fan_first_day"])  # fmt: skip
        for i, day in enumerate(fc.dates):
            out.writerow([str(day), f"{fc.actual[i]:.4f}", f"{fc.today[i]:.4f}", f"{fc.point[i]:.4f}",
                          f"{fc.today[i]:.4f}", f"{drift[i]:.4f}", f"{fc.full[i]:.4f}",
                          f"{multi_by_day[i]:.4f}", str(fc.dates[fc.fan_starts[i // h]])])  # fmt: skip
    plot_forecast(fc.dates, fc.actual, {"LSTM, point by point": fc.point}, "Next day from true history",
                  out_dir / "point_by_point.png")  # fmt: skip
    plot_forecast(fc.dates, fc.actual, {"LSTM, full sequence": fc.full}, "Whole test span fed back from one window",
                  out_dir / "full_sequence.png")  # fmt: skip
    fans = [(int(j), fc.fans[k][: len(fc.actual) - j]) for k, j in enumerate(fc.fan_starts)]
    plot_fans(
        fc.dates,
        fc.actual,
        fans,
        f"{h}-day forecasts fed back, one every {h} days",
        out_dir / "multi_sequence.png",
    )
    return (
        f"next day, {len(fc.actual)} test windows ({fc.dates[0]} .. {fc.dates[-1]}):\n"
        + markdown(next_day, NEXT_DAY_COLUMNS)
        + "\n\nmulti-step, index points:\n"
        + markdown(multi, MULTI_STEP_COLUMNS)
    )
