"""train.valid_every in epochs: a tiny run on the generated toy pair validates at each epoch's end."""

from __future__ import annotations

import json

from seq2seq.tasks import build_training

from .conftest import toy_recipe

TINY = ["model.embedding_size=16", "model.encoder_hidden=16", "model.decoder_hidden=32", "train.precision=fp32",
        "data.valid_limit=10", "train.log_every=1000", "train.max_steps=0"]  # fmt: skip


def validations(run) -> list[dict]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if r["kind"] == "valid"]


def test_valid_every_one_epoch_validates_at_each_epochs_end(toy_data, tmp_path):
    trainer = build_training(toy_recipe(*TINY, "train.valid_every='1 epoch'", "train.max_epochs=2"), tmp_path / "run",
                             resume=False)  # fmt: skip
    per_epoch = sum(1 for _ in trainer.data.epoch(1))
    assert per_epoch > 1 and sum(1 for _ in trainer.data.epoch(2)) == per_epoch  # every epoch as long
    assert trainer.cfg.valid_every == per_epoch
    trainer.fit()
    assert [(r["step"], r["epoch"]) for r in validations(tmp_path / "run")] == [(per_epoch, 1), (2 * per_epoch, 2)]
    saved = (tmp_path / "run" / "recipe.yaml").read_text()
    assert "valid_every: 1 epoch" in saved  # the run's recipe keeps what was asked for


def test_valid_every_half_an_epoch_is_rounded_to_steps(toy_data, tmp_path):
    trainer = build_training(toy_recipe(*TINY, "train.valid_every='0.5 epochs'"), tmp_path / "run", resume=False)
    per_epoch = sum(1 for _ in trainer.data.epoch(1))
    assert trainer.cfg.valid_every == round(per_epoch / 2)
