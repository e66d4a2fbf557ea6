"""The task-agnostic training loop: autocast, clip, step, schedule, validate, checkpoint, resume.

It knows a model only by its loss function, `loss(model, batch, step) -> (summed loss, count)` (by default
`model.loss(batch)`; the task gives one where a step depends on the progress of training), data only by
`data.epoch(epoch, start) -> iterator of (index in epoch, batch)` and validation only by `evaluate(model) -> dict`.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.autograd.graph import increment_version
from tqdm import tqdm

from seq2seq import checkpoint, runlog
from seq2seq.config import TrainConfig
from seq2seq.data.corpora import DataError
from seq2seq.plots import plot_curves


@dataclass
class Progress:
    """Everything besides the weights that a resumed run needs to continue exactly where it stopped."""

    step: int = 0
    epoch: int = 1
    batch_in_epoch: int = 0  # batches of `epoch` already trained on
    best: float | None = None
    bad_validations: int = 0  # validations in a row without improvement
    lr_scale: float = 1.0  # plateau decay so far
    elapsed: float = 0.0  # wall-clock seconds of training and validation so far


def learning_rate(step: int, cfg: TrainConfig, lr_scale: float = 1.0, elapsed: float = 0.0) -> float:
    """A pure function of the step (and of the plateau decay so far, or of the time spent for `budget`).

    `budget` spends the training budget the way Li et al. (2020, "Budgeted training") found best for a fixed
    budget: the lr falls linearly to `min_lr` as the budget runs out, from `decay_start` (a fraction of it) on. The
    budget is `max_minutes` of wall-clock time when set (so the schedule follows the machine's speed), else
    `max_steps`.
    """
    warm = min(1.0, step / cfg.warmup_steps) if cfg.warmup_steps > 0 else 1.0
    if cfg.schedule == "inverse_sqrt" and step > cfg.warmup_steps:
        warm = math.sqrt(max(cfg.warmup_steps, 1) / step)
    if cfg.schedule == "budget":
        spent = elapsed / (cfg.max_minutes * 60) if cfg.max_minutes else step / cfg.max_steps
        warm *= min(1.0, max(0.0, 1.0 - spent) / (1.0 - cfg.decay_start))
    return max(cfg.lr * warm * lr_scale, min(cfg.min_lr, cfg.lr))


class TrainingDiverged(RuntimeError):
    """The loss or the weights stopped being finite numbers; nothing was saved after they did."""


def autocast(device: torch.device, precision: str):
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


@contextmanager
def stop_requests() -> Iterator[list[bool]]:
    """The first Ctrl-C or SIGTERM asks the loop to save and stop after the current step; a second one aborts."""
    flag = [False]

    def handler(signum, frame):
        if flag[0]:
            raise KeyboardInterrupt
        flag[0] = True
        tqdm.write(f"signal {signum}: finishing this step, saving last.pt, then stopping (again to abort)")

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in old.items():
            signal.signal(s, h)


LossFunction = Callable[[torch.nn.Module, Any, int], tuple[torch.Tensor, int | torch.Tensor]]


def model_loss(model: torch.nn.Module, batch, step: int) -> tuple[torch.Tensor, int | torch.Tensor]:
    """The default loss function: the model's own `loss(batch)`, the same at every step."""
    return model.loss(batch)


class _LossOf(torch.nn.Module):
    """DDP synchronises gradients of what runs through forward(); this makes forward() the loss function applied to
    the model."""

    def __init__(self, model: torch.nn.Module, loss: LossFunction) -> None:
        super().__init__()
        self.model, self.loss = model, loss

    def forward(self, batch, step: int):
        return self.loss(self.model, batch, step)


def kept_checkpoints(run_dir: Path) -> list[Path]:
    """The step-<step>.pt files of a run directory (train.keep_checkpoints), by step."""
    steps = [(int(p.stem[5:]), p) for p in run_dir.glob("step-*.pt") if p.stem[5:].isdigit()]
    return [p for _, p in sorted(steps)]


class Trainer:
    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        data,
        evaluate: Callable[[torch.nn.Module], dict[str, float]],
        cfg: TrainConfig,
        run_dir: str | Path,
        device: torch.device,
        extra: dict[str, Any],
        is_main: bool = True,
        loss: LossFunction = model_loss,
    ) -> None:
        """loss: the summed training loss of a batch and its count, given the model, the batch (on `device`) and the
        number of steps done before this one (0 at the first)."""
        self.model, self.optimizer, self.data, self.evaluate, self.cfg = model, optimizer, data, evaluate, cfg
        self.loss = loss
        if not isinstance(cfg.valid_every, int):  # "1 epoch" -> steps, from this rank's batches in an epoch
            per_epoch = len(data) if hasattr(data, "__len__") else sum(1 for _ in data.epoch(1))
            self.cfg = cfg = cfg.resolve_epochs(per_epoch)
        self.run_dir, self.device, self.extra, self.is_main = Path(run_dir), device, extra, is_main
        self.progress = Progress()
        self.validated_at = -1  # the step validate_and_save last ran at
        self.params = [p for p in model.parameters() if p.requires_grad]  # what the optimizer steps
        self.board: runlog.TensorBoard | None = None  # opened by fit() when cfg.tensorboard, on the main rank
        self.scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")
        self.higher_is_better = cfg.valid_metric != "loss"
        self.world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        self.ddp, self.host_group = None, None
        if self.world > 1:  # gradients are all-reduced by DDP; see train_step for how the loss is scaled
            ids = [device.index] if device.type == "cuda" else None
            self.ddp = torch.nn.parallel.DistributedDataParallel(_LossOf(model, loss), device_ids=ids)
            # Ranks agree to stop at every step over gloo, on host tensors: read back from a GPU, NCCL's result
            # would make the host wait for the step's kernels every step
            self.host_group = dist.new_group(backend="gloo")

    # ---------------------------------------------------------------------------------------------- the loop

    def fit(self) -> Progress:
        """Train until max_steps, max_epochs, max_minutes, early stopping or a signal, all checked before the first
        step, after every step and at every epoch's end. An epoch without a batch is a DataError, not an endless
        loop; a non-finite loss or weight is TrainingDiverged, raised before anything is saved."""
        cfg, p = self.cfg, self.progress
        self.model.train()
        if self.is_main:  # forget what a killed run logged after its checkpoint
            runlog.trim(self.run_dir / "metrics.jsonl", p.step)
        start, tokens, loss_sum, loss_count, window_start = time.time() - p.elapsed, 0, 0.0, 0, time.time()
        logged = p.step  # the last step whose loss was read (and checked to be finite)
        bar = tqdm(total=cfg.max_steps or None, initial=p.step, unit="step", dynamic_ncols=True, disable=not self.is_main)
        if cfg.tensorboard and self.is_main:
            self.board = runlog.TensorBoard(self.run_dir / "tensorboard", resume_step=p.step)
        # bar and board are closed on an error too: the bar's line then ends before the error's
        with stop_requests() as stop, closing(bar), closing(self.board) if self.board else nullcontext():
            stop_reason = self.agree_to_stop(self.limit_reached(stop[0]))  # e.g. a finished run resumed
            while not stop_reason:
                for index, batch in self.data.epoch(p.epoch, start=p.batch_in_epoch):
                    lr = learning_rate(p.step + 1, cfg, p.lr_scale, p.elapsed)
                    loss, count = self.train_step(batch, lr)
                    p.step, p.batch_in_epoch = p.step + 1, index
                    tokens, loss_sum, loss_count = tokens + count, loss_sum + loss, loss_count + count
                    bar.update(1)
                    if p.step % cfg.log_every == 0 or p.step % cfg.valid_every == 0:
                        tokens, mean = int(tokens), float(loss_sum) / max(int(loss_count), 1)  # the one host read
                        if not math.isfinite(mean):
                            raise TrainingDiverged(self.diverged(f"the training loss was {mean} (the mean of steps "
                                                                 f"{logged + 1}-{p.step})"))
                        logged, rate = p.step, tokens / max(time.time() - window_start, 1e-9)
                        bar.set_postfix(loss=f"{mean:.3f}", lr=f"{lr:.2e}", tok_s=f"{rate:,.0f}")
                        self.log(kind="train", step=p.step, epoch=p.epoch, loss=mean, lr=lr, tokens_per_s=rate)
                        tokens, loss_sum, loss_count = 0, 0.0, 0
                    p.elapsed = time.time() - start
                    stop_reason = self.end_step(stop[0], due=p.step % cfg.valid_every == 0)
                    if p.step % cfg.log_every == 0 or p.step % cfg.valid_every == 0:
                        window_start = time.time()  # tokens/s excludes validation time
                    if stop_reason:
                        break
                else:  # the epoch ran out
                    if p.batch_in_epoch == 0:  # ... before its first batch: every epoch would (a silent hang)
                        raise DataError(f"epoch {p.epoch} has no training batch: the training data are empty")
                    p.epoch, p.batch_in_epoch = p.epoch + 1, 0
                    p.elapsed = time.time() - start
                    stop_reason = self.end_step(stop[0], due=False)  # max_epochs, or a signal between two epochs
            signalled = stop[0]
        if self.is_main:
            tqdm.write(f"stopped at step {p.step}: {stop_reason}; best {cfg.valid_metric} {p.best}")
            if cfg.keep_checkpoints and not signalled:  # a signalled run is resumed, and averages when it ends
                self.average_kept()
            try:
                plot_curves(self.run_dir / "metrics.jsonl", self.run_dir / "curves.png")
            except Exception as e:  # noqa: BLE001 - the run is saved; a figure that cannot be drawn is no failure
                tqdm.write(f"warning: could not draw {self.run_dir / 'curves.png'}: {' '.join(str(e).split())}")
        return p

    def end_step(self, stop_requested: bool, due: bool) -> str:
        """After a step (or an epoch): the reason to stop, agreed by all ranks, or ''. A signal saves last.pt at once
        (validating could take minutes); otherwise validate and save when due or stopping, unless done at this step."""
        reason = self.agree_to_stop(self.limit_reached(stop_requested))
        if stop_requested:
            self.check_weights()
            self.save("last.pt") if self.is_main else None
        elif (due or reason) and self.validated_at != self.progress.step:
            reason = self.validate_and_save() or reason
        return reason

    def train_step(self, batch, lr: float) -> tuple[torch.Tensor, int | torch.Tensor]:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with autocast(self.device, self.cfg.precision):
            batch, step = batch.to(self.device), self.progress.step
            loss_sum, count = self.ddp(batch, step) if self.ddp else self.loss(self.model, batch, step)
        # Nothing here reads a GPU value back on the host: the count comes from the CPU side of the batch and the
        # loss stays a device tensor until the loop logs it (every log_every steps).
        scale, reported = 1.0 / max(count, 1), loss_sum.detach().double()
        if self.world > 1:
            # The step must equal one process on the union of all ranks' batches: d(sum of losses)/(total count).
            # DDP averages gradients over ranks, hence the factor `world`.
            # (torch.full: torch.tensor(count, device=...) would copy from the host, a wait for a GPU)
            totals = torch.stack([torch.full((), float(count), dtype=torch.float64, device=self.device), reported])
            dist.all_reduce(totals)
            count, reported = totals[0], totals[1]
            scale = self.world / totals[0].clamp(min=1)
        self.scaler.scale(loss_sum * scale).backward()
        if self.cfg.clip_norm > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_norm)
        self.scaler.step(self.optimizer)
        # The fused optimizer writes the weights without bumping their version counters; caches of derived weights
        # (joined LSTM matrices, the output shortlist) are keyed by those counters, so bump them, or validation would
        # decode with the weights of the previous validation
        increment_version(self.params)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return reported, count

    def agree_to_stop(self, reason: str) -> str:
        """Ranks stop together, or the ones that go on would wait forever for the others."""
        if self.world == 1:
            return reason
        flag = torch.tensor([1.0 if reason else 0.0])
        dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self.host_group)
        return reason or ("another rank stopped" if flag.item() > 0 else "")

    def limit_reached(self, stop_requested: bool) -> str:
        cfg, p = self.cfg, self.progress
        if stop_requested:
            return "stopped by a signal (resume with --resume)"
        if cfg.max_steps and p.step >= cfg.max_steps:
            return f"max_steps={cfg.max_steps} reached"
        if cfg.max_minutes and p.elapsed >= cfg.max_minutes * 60:
            return f"max_minutes={cfg.max_minutes} reached"
        if cfg.max_epochs and p.epoch > cfg.max_epochs:
            return f"max_epochs={cfg.max_epochs} reached"
        return ""

    def check_weights(self) -> None:
        """Raise TrainingDiverged, before anything is saved, if a weight is NaN or infinite (one host read)."""
        finite = torch.stack([torch.isfinite(w).all() for w in self.model.parameters() if w.is_floating_point()])
        if not bool(finite.all()):
            raise TrainingDiverged(self.diverged("the weights hold NaN or infinite values"))

    def diverged(self, what: str) -> str:
        return (f"{what} at step {self.progress.step}; stopped without saving, so last.pt and best.pt keep the last "
                f"finite weights. Look for NaN or infinite values in the training data, or lower train.lr (or set "
                f"train.clip_norm)")

    # ----------------------------------------------------------------------------------- validate and save

    def validate_and_save(self) -> str:
        """Validate, keep best.pt and last.pt, adjust the plateau schedule; return a reason to stop, or ''."""
        cfg, p = self.cfg, self.progress
        self.check_weights()
        self.validated_at = p.step
        self.model.eval()
        with autocast(self.device, cfg.precision):
            metrics = self.evaluate(self.model)
        self.model.train()
        value = metrics[cfg.valid_metric]
        # A non-finite score is never the best (NaN compares false both ways: the first one would stay best forever)
        improved = math.isfinite(value) and (p.best is None or not math.isfinite(p.best) or
                                             (value > p.best if self.higher_is_better else value < p.best))
        if not math.isfinite(value) and self.is_main:
            tqdm.write(f"warning: validation {cfg.valid_metric} is {value} at step {p.step}; it cannot be the best")
        if improved:
            p.best, p.bad_validations = value, 0
        else:
            p.bad_validations += 1
            if cfg.schedule == "plateau" and p.bad_validations % cfg.plateau_patience == 0:
                p.lr_scale *= cfg.plateau_factor
        self.log(kind="valid", step=p.step, epoch=p.epoch, elapsed=round(p.elapsed, 1), best=improved, **metrics)
        shown = "  ".join(f"{k} {v:.3f}" for k, v in metrics.items())
        if self.is_main:
            tqdm.write(f"step {p.step} epoch {p.epoch}: {shown}{'  (best)' if improved else ''}")
            self.save("last.pt")
            if improved:
                self.save("best.pt")
            if cfg.keep_checkpoints:
                self.keep_weights()
        if cfg.early_stopping and p.bad_validations >= cfg.early_stopping:
            return f"no improvement in {p.bad_validations} validations (early stopping)"
        return ""

    def keep_weights(self) -> None:
        """step-<step>.pt for train.keep_checkpoints: the weights and what decoding needs (no optimizer state);
        those of all but the last keep_checkpoints validations are removed."""
        name = f"step-{self.progress.step}.pt"
        checkpoint.save(self.run_dir / name, {**self.extra, "model": self.model.state_dict(),
                                              "trainer": asdict(self.progress)})  # fmt: skip
        for old in kept_checkpoints(self.run_dir)[: -self.cfg.keep_checkpoints]:
            old.unlink(missing_ok=True)

    def average_kept(self) -> None:
        """averaged.pt: the mean of the kept step-<step>.pt weights (seq2seq-average), when there are two or more."""
        kept = kept_checkpoints(self.run_dir)[-self.cfg.keep_checkpoints :]
        if self.is_main and len(kept) >= 2:
            checkpoint.save(self.run_dir / "averaged.pt", checkpoint.average([str(p) for p in kept]))
            tqdm.write(f"averaged.pt: the mean of {', '.join(p.name for p in kept)}")

    def save(self, name: str) -> None:
        checkpoint.save(
            self.run_dir / name,
            {
                **self.extra,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "trainer": asdict(self.progress),
                "rng": {"torch": torch.get_rng_state()},
            },
        )

    def resume(self, path: str | Path) -> None:
        state = checkpoint.load(path)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.progress = Progress(**state["trainer"])
        torch.set_rng_state(state["rng"]["torch"])

    def log(self, **record: Any) -> None:
        if self.is_main:
            runlog.append(self.run_dir / "metrics.jsonl", record)
            if self.board:
                self.board.add(record)
