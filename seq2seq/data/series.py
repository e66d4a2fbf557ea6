"""Daily price series: CSV loading, a chronological split, windows, scaling and shuffled batches.

Rows are split in time order, never shuffled across the boundaries (N rows, test_fraction 0.15, valid 0.1):

    rows  0 ............................. n_train | ...... n_fit | ................ N-1
          train (fits the scaler, trains)   valid (selects)       test (last 15%, reported only)

and windows never straddle a boundary: each span is cut into its own windows of `window + 1` rows, the first
`window` being the input and the last the label. With window 3 and a span of rows 10..15:

    [10 11 12 | 13]  [11 12 13 | 14]  [12 13 14 | 15]      (6 rows -> 6 - 3 = 3 windows)
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seq2seq.data.corpora import DataError
from seq2seq.kernels.padding import to_device


@dataclass(frozen=True)
class Series:
    dates: np.ndarray  # (N,) datetime64[D], strictly increasing
    values: np.ndarray  # (N, F) float64, one column per feature; column 0 is the one predicted
    columns: tuple[str, ...]


def load_series(
    path: Path, columns: Sequence[str], date_column: str = "Date", date_format: str = "%d-%m-%y"
) -> Series:
    """Read `columns` of a CSV in file order, dates parsed with the explicit `date_format`.

    Every fault is a DataError naming the file, the line and the column: a date that does not parse, repeats an
    earlier one or comes before it (dates must strictly increase), and a value that is missing, not a number, NaN,
    infinite, zero or negative (prices and volumes are > 0; the window normalisation divides by a window's first
    value). A UTF-8 byte order mark at the start of the file (spreadsheet exports write one) is accepted and skipped.
    """
    with open(path, newline="", encoding="utf-8-sig") as f:  # utf-8-sig: strips a byte order mark
        reader = csv.DictReader(f)
        missing = [c for c in (date_column, *columns) if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(
                f"{path} has no column {missing[0]!r}; it has {', '.join(reader.fieldnames or [])}"
            )
        dates, values, seen = [], [], {}
        for row in reader:
            where = f"{path}, line {reader.line_num}"
            dates.append(_row_date(row, date_column, date_format, where))
            if dates[-1] in seen:
                raise DataError(f"{where}, column {date_column!r}: the date {dates[-1]} repeats line {seen[dates[-1]]}")
            if len(dates) > 1 and dates[-1] < dates[-2]:
                raise DataError(f"{where}, column {date_column!r}: the date {dates[-1]} comes before the previous "
                                f"line's {dates[-2]}; dates must increase (sort the file by date)")  # fmt: skip
            seen[dates[-1]] = reader.line_num
            values.append([_row_value(row, c, where) for c in columns])
    return Series(np.array(dates, dtype="datetime64[D]"), np.array(values, dtype=np.float64), tuple(columns))


def _row_date(row: dict, column: str, date_format: str, where: str):
    try:
        return datetime.strptime(row[column] or "", date_format).date()
    except ValueError as e:
        raise DataError(f"{where}, column {column!r}: {e} (dates are parsed as {date_format!r})") from None


def _row_value(row: dict, column: str, where: str) -> float:
    text = row[column]
    if text is None:
        raise DataError(f"{where}, column {column!r}: no value (the row is short)")
    try:
        value = float(text)
    except (ValueError, TypeError):  # TypeError: a short row has no field at all (None)
        raise DataError(f"{where}, column {column!r}: {text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise DataError(f"{where}, column {column!r}: {text!r} is not a price or volume (a finite number > 0)")
    return value


@dataclass(frozen=True)
class Split:
    """Row ranges of the three spans; `train` and `valid` together are the lab's training part."""

    train: slice
    valid: slice
    test: slice


def chronological_split(n_rows: int, test_fraction: float, valid_fraction: float, window: int) -> Split:
    n_fit = int(n_rows * (1 - test_fraction))  # the lab's split: int(len * 0.85) rows for training
    n_train = n_fit - int(n_fit * valid_fraction)
    spans = Split(slice(0, n_train), slice(n_train, n_fit), slice(n_fit, n_rows))
    for name in ("train", "valid", "test"):
        span = getattr(spans, name)
        if span.stop - span.start <= window:
            raise DataError(
                f"the {name} span has {span.stop - span.start} rows, too few for windows of {window} + 1"
            )
    return spans


def windows(values: np.ndarray, window: int) -> np.ndarray:
    """(N, F) -> (N - window, window + 1, F): every run of `window` inputs followed by its label row."""
    if len(values) <= window:
        return np.empty((0, window + 1, values.shape[1]), dtype=values.dtype)
    index = (
        np.arange(window + 1)[None, :] + np.arange(len(values) - window)[:, None]
    )  # (N - window, window + 1)
    return values[index]


@dataclass(frozen=True)
class Scaler:
    """`window`: each column of a window divided by its first value, minus 1 (nothing is fitted).
    `global`: (value - mean) / std per column, mean and std fitted on the training rows only."""

    kind: str
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    @staticmethod
    def fit(kind: str, train_values: np.ndarray) -> Scaler:
        if kind == "window":
            return Scaler("window")
        if kind == "global":
            std = np.maximum(train_values.std(axis=0), 1e-12)
            return Scaler("global", tuple(train_values.mean(axis=0).tolist()), tuple(std.tolist()))
        raise ValueError(f"unknown normalisation {kind!r}; choose window or global")

    @property
    def relative(self) -> bool:
        """Whether each window is normalised to its own first step (a rollout must then re-normalise)."""
        return self.kind == "window"

    def normalise(self, w: np.ndarray) -> np.ndarray:
        """Windows (N, T, F) of raw values -> normalised, same shape."""
        if self.relative:
            return w / w[:, :1] - 1.0
        return (w - np.array(self.mean)) / np.array(self.std)

    def to_values(self, y: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Normalised predictions y (N, ...) of column 0 for raw windows w (N, T, F) -> raw values, shape of y."""
        if self.relative:
            return (1.0 + y) * w[:, 0, 0].reshape(-1, *([1] * (y.ndim - 1)))
        return y * self.std[0] + self.mean[0]

    def state(self) -> dict[str, Any]:
        return {"kind": self.kind, "mean": list(self.mean), "std": list(self.std)}

    @staticmethod
    def from_state(state: dict[str, Any]) -> Scaler:
        return Scaler(state["kind"], tuple(state["mean"]), tuple(state["std"]))


@dataclass
class SeriesBatch:
    x: torch.Tensor  # (B, T, F) normalised inputs
    y: torch.Tensor  # (B,) normalised label of column 0

    def to(self, device: torch.device) -> SeriesBatch:
        return SeriesBatch(to_device(self.x, device), to_device(self.y, device))


def to_tensors(raw_windows: np.ndarray, scaler: Scaler) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw windows (N, T + 1, F) -> normalised inputs (N, T, F) and labels (N,), float32."""
    w = torch.as_tensor(scaler.normalise(raw_windows), dtype=torch.float32)
    return w[:, :-1], w[:, -1, 0]


class WindowBatches:
    """Shuffled batches of windows; the order depends only on (seed, epoch), so a resumed run sees the same."""

    def __init__(
        self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int, shuffle: bool = True
    ) -> None:
        self.x, self.y, self.batch_size, self.seed, self.shuffle = x, y, batch_size, seed, shuffle

    def __len__(self) -> int:
        return -(-len(self.y) // self.batch_size)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[int, SeriesBatch]]:
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.y)) if self.shuffle else None
        for index in range(start, len(self)):
            rows = slice(index * self.batch_size, (index + 1) * self.batch_size)
            pick = torch.as_tensor(order[rows]) if order is not None else rows
            yield index + 1, SeriesBatch(self.x[pick], self.y[pick])
