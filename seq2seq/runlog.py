"""RUN_DIR/metrics.jsonl: one JSON record per line, appended by the trainer, read back by figures and resumes.

    {"kind": "train", "step": 20, "epoch": 1, "loss": 3.1, "lr": 0.003, "tokens_per_s": 19180.0}
    {"kind": "valid", "step": 20, "epoch": 1, "elapsed": 4.2, "best": true, "loss": 2.9, "bleu": 1.9, ...}

A NaN or infinite number is written as null (JSON has neither). A line torn by a full disk or a kill is skipped with
a warning when read, and `trim` drops it for good.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any


def line(record: dict[str, Any]) -> str:
    """The record as one line of strict JSON."""
    clean = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}
    return json.dumps(clean, allow_nan=False) + "\n"


def append(path: Path, record: dict[str, Any]) -> None:
    from seq2seq.checkpoint import CheckpointError  # torch; the readers of this module need none

    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line(record))
    except OSError as e:
        raise CheckpointError(f"could not append to {path}: {e.strerror or e}") from e


def read(path: Path) -> list[dict]:
    """The records of a metrics.jsonl, in order. A line that is not a JSON object (torn by a full disk or a kill)
    is skipped with a one-line warning naming the file and the line."""
    records = []
    for number, text in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except ValueError:
            record = None
        if isinstance(record, dict):
            records.append(record)
        else:
            print(f"warning: {path}, line {number}: not a JSON record (a torn write?); skipped", file=sys.stderr)
    return records


def trim(path: Path, step: int) -> None:
    """Keep the records of steps up to `step`, the one the weights have reached: a killed run logged steps past its
    last.pt (its resumed run logs them again), and a start killed before its first checkpoint logged a run that
    never was. Torn lines go too. The file is rewritten (atomically) only if that changes it."""
    if not path.is_file():
        return
    from seq2seq.checkpoint import write_atomic

    kept = "".join(line(r) for r in read(path) if isinstance(r.get("step"), int) and r["step"] <= step)
    if kept != path.read_text(encoding="utf-8", errors="replace"):
        write_atomic(path, kept)


class TensorBoard:
    """The records of metrics.jsonl mirrored as TensorBoard scalars (`train.tensorboard: true`), tagged KIND/NAME at
    the record's step, in RUN_DIR/tensorboard. `tensorboard --logdir runs` then shows every run side by side.

    A resumed run starts the writer with `purge_step` one past its checkpoint's step, so the events a killed run
    logged past its last.pt are hidden, as `trim` drops them from metrics.jsonl."""

    def __init__(self, folder: Path, resume_step: int = 0) -> None:
        from seq2seq.config import ConfigError

        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("train.tensorboard needs the tensorboard package: pip install tensorboard (or "
                              "pip install -e '.[tensorboard]'), or leave train.tensorboard false") from None  # fmt: skip
        self.writer = SummaryWriter(str(folder), purge_step=resume_step + 1 if resume_step else None)

    def add(self, record: dict[str, Any]) -> None:
        kind, step = record.get("kind", "metrics"), record.get("step")
        for name, value in record.items():
            if name not in ("kind", "step", "epoch") and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"{kind}/{name}", value, step)
        if kind != "train":  # validations are rare and what people watch: show them at once
            self.writer.flush()

    def close(self) -> None:
        self.writer.close()
