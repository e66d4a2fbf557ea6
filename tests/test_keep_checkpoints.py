"""train.keep_checkpoints: the weights of the last N validations, and their mean as averaged.pt."""

from __future__ import annotations

import torch

from seq2seq import checkpoint
from seq2seq.tasks import build_training, load_for_inference
from seq2seq.trainer import kept_checkpoints

from .conftest import toy_recipe

STEPS = ["train.max_steps=40", "train.valid_every=10", "data.valid_limit=20", "train.precision=fp32",
         "model.input_feeding=false"]  # fmt: skip


def test_the_last_validations_are_kept_and_averaged_and_decode(toy_data, tmp_path):
    run = tmp_path / "run"
    build_training(toy_recipe(*STEPS, "train.keep_checkpoints=3"), run, resume=False).fit()
    kept = kept_checkpoints(run)
    assert [p.name for p in kept] == ["step-20.pt", "step-30.pt", "step-40.pt"]  # step-10.pt was removed
    weights = [checkpoint.load(p)["model"] for p in kept]
    assert "optimizer" not in checkpoint.load(kept[0])  # weights only: a third of last.pt's size
    averaged = checkpoint.load(run / "averaged.pt")["model"]
    for name, value in averaged.items():
        if value.is_floating_point():
            torch.testing.assert_close(value, torch.stack([w[name] for w in weights]).mean(0))
    assert torch.equal(weights[-1]["encoder.layers.0.weight_ih_l0"], checkpoint.load(run / "last.pt")["model"][
        "encoder.layers.0.weight_ih_l0"])  # fmt: skip
    translator = load_for_inference(run, "averaged", device="cpu")
    assert len(translator.translate(["sa sb sc ."])) == 1


def test_without_keep_checkpoints_only_best_and_last_are_written(toy_data, tmp_path):
    build_training(toy_recipe(*STEPS, "train.max_steps=20", "train.keep_checkpoints=0"), tmp_path / "run", resume=False).fit()
    assert sorted(p.name for p in (tmp_path / "run").glob("*.pt")) == ["best.pt", "last.pt"]
