"""train.tensorboard: the records of metrics.jsonl mirrored as TensorBoard scalars, resumes included."""

from __future__ import annotations

import sys

import pytest

from seq2seq import runlog
from seq2seq.config import ConfigError
from seq2seq.tasks import build_training

from .conftest import toy_recipe

TINY = ["model.embedding_size=16", "model.encoder_hidden=16", "model.decoder_hidden=32", "train.precision=fp32",
        "data.valid_limit=10", "train.log_every=2", "train.valid_every=4", "train.tensorboard=true"]  # fmt: skip


def scalars(folder) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing import event_accumulator  # a dev dependency

    events = event_accumulator.EventAccumulator(str(folder), size_guidance={event_accumulator.SCALARS: 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def expected(run) -> dict[str, list[tuple[int, float]]]:
    tags: dict[str, list[tuple[int, float]]] = {}
    for record in runlog.read(run / "metrics.jsonl"):
        for name, value in record.items():
            if name not in ("kind", "step", "epoch") and isinstance(value, (int, float)) and not isinstance(value, bool):
                tags.setdefault(f"{record['kind']}/{name}", []).append((record["step"], value))
    return tags


def assert_same(board, log):
    assert board.keys() == log.keys() and {"train/loss", "train/lr", "valid/bleu", "valid/loss"} <= log.keys()
    for tag, points in log.items():
        assert [s for s, _ in board[tag]] == [s for s, _ in points], tag
        assert [v for _, v in board[tag]] == pytest.approx([v for _, v in points], rel=1e-6), tag


def test_every_metric_is_a_scalar_and_a_resume_continues_the_curves(toy_data, tmp_path):
    run = tmp_path / "run"
    build_training(toy_recipe(*TINY, "train.max_steps=8"), run, resume=False).fit()
    assert_same(scalars(run / "tensorboard"), expected(run))
    build_training(toy_recipe(*TINY, "train.max_steps=12"), run, resume=True).fit()
    board, log = scalars(run / "tensorboard"), expected(run)
    assert_same(board, log)
    assert [s for s, _ in board["valid/loss"]] == [4, 8, 12]


def test_without_the_tensorboard_package_the_error_says_how_to_get_it(toy_data, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if it were not installed
    trainer = build_training(toy_recipe(*TINY, "train.max_steps=2"), tmp_path / "run", resume=False)
    with pytest.raises(ConfigError, match=r"pip install tensorboard"):
        trainer.fit()
