"""The trainer's loss function: `loss(model, batch, step)`, by default the model's own `loss(batch)`; the translation
task's applies label smoothing and scheduled sampling by the step, and the model keeps nothing of it."""

from __future__ import annotations

import torch

from seq2seq.config import TrainConfig
from seq2seq.models.seq2seq import TrainingLoss
from seq2seq.tasks import build_training
from seq2seq.trainer import Trainer, model_loss

from .conftest import toy_recipe


class Rows:
    """A batch of rows; `to` is the trainer's move to its device."""

    def __init__(self, x: torch.Tensor) -> None:
        self.x = x

    def to(self, device) -> Rows:
        return Rows(self.x.to(device))


class Squares(torch.nn.Module):
    """A model whose loss is the summed square of a linear map; it counts the calls of its own `loss`."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(3, 2)
        self.calls = 0

    def loss(self, batch: Rows) -> tuple[torch.Tensor, int]:
        self.calls += 1
        return (self.layer(batch.x) ** 2).sum(), batch.x.shape[0]


class Data:
    def __init__(self, batches: int) -> None:
        self.batches = [Rows(torch.randn(4, 3, generator=torch.Generator().manual_seed(i))) for i in range(batches)]

    def __len__(self) -> int:
        return len(self.batches)

    def epoch(self, epoch: int, start: int = 0):
        for index in range(start, len(self.batches)):
            yield index + 1, self.batches[index]


def trainer(run_dir, steps: int, **kw) -> Trainer:
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = Squares()
    cfg = TrainConfig(precision="fp32", max_steps=steps, valid_every=1000, valid_metric="loss", log_every=1, lr=0.1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    return Trainer(model, optimizer, Data(3), lambda m: {"loss": 1.0}, cfg, run_dir, torch.device("cpu"), {}, **kw)


def test_the_default_loss_function_is_the_models_own_loss(tmp_path):
    t = trainer(tmp_path, 5)
    assert t.loss is model_loss
    t.fit()
    assert t.model.calls == 5


def test_a_loss_function_gets_the_model_the_batch_on_the_device_and_the_steps_done_before(tmp_path):
    """Over two epochs of 3 batches, then on resuming: the step goes on where the run stopped."""
    seen = []

    def loss(model, batch, step):
        seen.append((model, step))
        assert isinstance(batch, Rows)
        return model.loss(batch)

    t = trainer(tmp_path / "a", 5, loss=loss)
    t.fit()
    assert [step for _, step in seen] == [0, 1, 2, 3, 4] and all(m is t.model for m, _ in seen)
    # the same losses as the default's: the loss function is the whole difference
    default = trainer(tmp_path / "b", 5)
    default.fit()
    for a, b in zip(t.model.parameters(), default.model.parameters()):
        assert torch.equal(a, b)
    seen.clear()
    resumed = trainer(tmp_path / "c", 7, loss=loss)
    resumed.resume(tmp_path / "a" / "last.pt")
    resumed.fit()
    assert [step for _, step in seen] == [5, 6]


def test_the_translation_task_trains_with_its_recipes_smoothing_and_sampling(toy_data, tmp_path):
    recipe = toy_recipe("train.label_smoothing=0.2", "model.scheduled_sampling=inverse_sigmoid",
                        "model.sampling_max=0.3", "model.sampling_steps=70", "train.max_steps=0")  # fmt: skip
    t = build_training(recipe, tmp_path / "run", resume=False)
    assert t.loss == TrainingLoss(0.2, "inverse_sigmoid", 0.3, 70)
    assert not hasattr(t.model, "step") and not hasattr(t.model, "label_smoothing")
