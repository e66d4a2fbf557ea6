"""Faults a training run must survive or report in one line: kill -9 at any moment, a second trainer on the run
directory, a full disk, a torn metrics line, an empty epoch, SIGTERM, a non-finite loss, bad price data and a stale
tokenized cache. Real processes (`python -m seq2seq.train`) where the fault needs one, all with timeouts."""

from __future__ import annotations

import json
import math
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from seq2seq import checkpoint
from seq2seq.config import load_recipe
from seq2seq.data.batching import PairBatches
from seq2seq.data.corpora import DataError
from seq2seq.data.series import load_series
from seq2seq.tasks import build_training
from seq2seq.trainer import TrainingDiverged

from .conftest import ROOT, TOY_OVERRIDES, toy_recipe, use_data, write_toy_corpus
from .test_regression import SMALL, noisy_sine, write_csv

# A few seconds of training on a 300-pair toy corpus; one thread, fp32: runs that should agree agree bit for bit
TINY = [*TOY_OVERRIDES, "runtime.threads=1", "train.precision=fp32", "data.valid_limit=5", "train.valid_every=10",
        "train.schedule=plateau"]  # fmt: skip
TIMEOUT = 120  # seconds for any one process


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    return write_toy_corpus(tmp_path_factory.mktemp("faults") / "data", n_train=300, n_val=20)


@pytest.fixture
def tiny_data(tiny_root, tmp_path, monkeypatch) -> Path:
    return use_data(tiny_root, tmp_path, monkeypatch)


def train_in_process(run_dir: Path, *overrides: str, resume: bool = False):
    recipe = toy_recipe(*TINY[len(TOY_OVERRIDES):], *overrides)
    torch.set_num_threads(recipe.runtime.threads)  # as `python -m seq2seq.train` applies it: the same rounding
    return build_training(recipe, run_dir, resume=resume).fit()


def trainer_cmd(run_dir: Path, *overrides: str, resume: bool = False) -> list[str]:
    return [sys.executable, "-m", "seq2seq.train", "recipes/en-fr.yaml", *TINY, *overrides, "--run-dir", str(run_dir),
            *(["--resume"] if resume else [])]  # fmt: skip


def start(run_dir: Path, *overrides: str, resume: bool = False, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(trainer_cmd(run_dir, *overrides, resume=resume), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **kwargs)  # fmt: skip


def wait_for(condition, what: str, proc: subprocess.Popen | None = None, timeout: float = TIMEOUT) -> None:
    deadline = time.time() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            return  # it ended first; the caller looks at how
        if time.time() > deadline:
            if proc is not None:
                proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def logged_steps(run_dir: Path) -> list[int]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    steps = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line being written
        if record.get("kind") == "train":
            steps.append(record["step"])
    return steps


def temporaries(run_dir: Path) -> list[str]:
    return sorted(p.name for p in run_dir.glob(f".*{checkpoint.TEMP_SUFFIX}"))


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = checkpoint.load(a)["model"], checkpoint.load(b)["model"]
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], rtol=1e-5, atol=1e-6, msg=name)


def error_lines(stderr: bytes) -> list[str]:
    return [line for line in stderr.decode().replace("\r", "\n").splitlines() if line.startswith("error:")]


# ------------------------------------------------------------------------------------------ (a) kill -9


def test_kill_9_at_random_moments_then_resume_equals_an_uninterrupted_run(tiny_data, tmp_path):
    """Three SIGKILLs at seeded random moments of training (mid-step, mid-validation, mid-checkpoint), each followed
    by --resume (or a fresh start when no last.pt was written yet), end with the weights of one uninterrupted run."""
    steps = ["train.max_steps=60", "train.log_every=1"]
    run, rng = tmp_path / "killed", random.Random(3)
    for kill in range(3):
        resume = (run / "last.pt").exists()
        before = len(logged_steps(run)) if resume else 0
        proc = start(run, *steps, resume=resume)
        wait_for(lambda: len(logged_steps(run)) > before, "training to start", proc)  # noqa: B023
        time.sleep(rng.uniform(0.0, 1.0))
        proc.kill()
        proc.communicate(timeout=TIMEOUT)
        assert proc.returncode in (-signal.SIGKILL, 0), f"kill {kill}: exit {proc.returncode}"
    proc = start(run, *steps, resume=(run / "last.pt").exists())
    _, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert checkpoint.load(run / "last.pt")["trainer"]["step"] == 60
    assert temporaries(run) == []  # what the kills left half-written is gone
    assert logged_steps(run) == list(range(1, 61))  # a step logged before a kill and trained again: logged once

    train_in_process(tmp_path / "straight", *steps)
    assert_same_weights(tmp_path / "straight" / "last.pt", run / "last.pt")


# ------------------------------------------------------------------------------------------ (b) the lock


def test_a_second_trainer_on_the_run_directory_is_refused_naming_the_holder(tiny_data, tmp_path, capsys):
    from seq2seq.train import main as train_main

    run = tmp_path / "run"
    first = start(run, "train.max_steps=30", "train.valid_every=30")
    lock = run / ".lock"
    wait_for(lambda: lock.is_file() and lock.read_text().strip() == str(first.pid), "the first trainer's lock", first)
    code = train_main(["recipes/en-fr.yaml", *TINY, "train.max_steps=30", "--run-dir", str(run)])
    err = capsys.readouterr().err
    assert code == 2 and f"is in use by another training process (pid {first.pid}" in err, err
    _, first_err = first.communicate(timeout=TIMEOUT)
    assert first.returncode == 0, first_err.decode()[-2000:]
    assert checkpoint.load(run / "last.pt")["trainer"]["step"] == 30
    assert logged_steps(run) == [20, 30]  # the refused trainer logged nothing


def test_the_lock_is_per_open_and_released_with_it_and_clears_a_killed_trainers_temporaries(tmp_path):
    (tmp_path / "r").mkdir()
    for name in (".last.pt.x1y2.tmp", "best.pt.tmp", ".avg.pt.x3y4.tmp"):  # the last: another tool's, still writing
        (tmp_path / "r" / name).write_bytes(b"half")
    with checkpoint.lock_run_dir(tmp_path / "r") as lock:
        assert temporaries(tmp_path / "r") == [".avg.pt.x3y4.tmp"] and not (tmp_path / "r" / "best.pt.tmp").exists()
        assert lock.read_text().strip() == str(os.getpid())
        with pytest.raises(checkpoint.RunDirBusy, match=f"pid {os.getpid()}"):
            with checkpoint.lock_run_dir(tmp_path / "r"):
                pass
    with checkpoint.lock_run_dir(tmp_path / "r"):  # released
        pass


# ------------------------------------------------------------------------------------------ (c) a full disk


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    checkpoint.save(path, {"model": {"w": torch.ones(3)}})
    before = path.read_bytes()

    def disk_full(obj, f):
        f.write(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(checkpoint.CheckpointError, match=f"could not write {path}: No space left on device"):
        checkpoint.save(path, {"model": {"w": torch.zeros(3)}})
    assert path.read_bytes() == before and temporaries(tmp_path) == []


def _file_size_limit(limit: int):
    def apply() -> None:  # in the child, before exec: writes past `limit` bytes fail with EFBIG, no signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_a_full_disk_is_a_one_line_error_and_the_previous_checkpoint_survives(tiny_data, tmp_path):
    run = tmp_path / "run"
    train_in_process(run, "train.max_steps=10")
    before = (run / "last.pt").read_bytes()
    # files may grow to 1 MB: metrics.jsonl can, the 4 MB checkpoint of step 20 cannot
    proc = start(run, "train.max_steps=20", resume=True, preexec_fn=_file_size_limit(2**20))
    _, err = proc.communicate(timeout=TIMEOUT)
    errors = error_lines(err)
    assert proc.returncode == 1 and len(errors) == 1 and b"Traceback" not in err, err.decode()[-2000:]
    assert "could not write" in errors[0] and "last.pt" in errors[0] and "File too large" in errors[0], errors
    assert (run / "last.pt").read_bytes() == before and checkpoint.load(run / "last.pt")["trainer"]["step"] == 10
    assert temporaries(run) == []


# ------------------------------------------------------------------------------------------ (d) a torn metrics line


def test_a_torn_metrics_line_is_skipped_with_a_warning_and_resume_goes_on(tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    train_in_process(run, "train.max_steps=10", "train.log_every=5")
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"kind": "train", "step": 11, "lo')  # the disk filled up in the middle of a record
    capsys.readouterr()
    train_in_process(run, "train.max_steps=15", "train.log_every=5", resume=True)
    err = capsys.readouterr().err
    assert f"warning: {run / 'metrics.jsonl'}, line 4: not a JSON record" in err, err
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]  # all valid again
    assert [(r["kind"], r["step"]) for r in records] == [("train", 5), ("train", 10), ("valid", 10), ("train", 15),
                                                         ("valid", 15)]  # fmt: skip
    assert (run / "curves.png").stat().st_size > 0


# ------------------------------------------------------------------------------------------ (e) empty epochs, limits


def test_a_length_filter_that_leaves_no_pair_is_an_error_naming_it(tiny_data, tmp_path):
    with pytest.raises(DataError, match=r"no training pair is at most data.max_len=2 pieces long on both sides"):
        build_training(toy_recipe(*TINY[len(TOY_OVERRIDES):], "data.max_len=2"), tmp_path / "run", resume=False)


def test_a_rank_without_a_batch_is_an_error_naming_it():
    table = {"src_ids": [[5, 6]] * 3, "tgt_ids": [[7, 8]] * 3}  # 3 pairs, one batch of 9 target tokens
    assert len(list(PairBatches(table, 100, seed=0).epoch(1))) == 1
    with pytest.raises(DataError, match="rank 1 of 2 got no batch: the 3 training pairs make 1 batches"):
        next(PairBatches(table, 100, seed=0, rank=1, world=2).epoch(1))


def test_a_rank_without_a_batch_under_torchrun_is_an_error_not_a_hang(tiny_data, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *trainer_cmd(
        tmp_path / "ddp", "train.batch_tokens=100000", "train.max_steps=10")[1:]]  # one batch for two ranks
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, timeout=300)
    assert r.returncode != 0 and b"rank 1 of 2 got no batch" in r.stderr, r.stderr.decode()[-3000:]


class _NoBatches:
    def __init__(self) -> None:
        self.epochs = 0

    def epoch(self, epoch: int, start: int = 0):
        self.epochs += 1
        assert self.epochs < 5, "the trainer went on through empty epochs"
        return iter(())


def test_an_empty_epoch_is_an_error_not_a_hang(tiny_data, tmp_path):
    trainer = build_training(toy_recipe(*TINY[len(TOY_OVERRIDES):], "train.max_minutes=0.01"), tmp_path / "r", False)
    trainer.data = _NoBatches()
    with pytest.raises(DataError, match="epoch 1 has no training batch"):
        trainer.fit()


def test_a_finished_run_resumed_trains_no_further_step(tiny_data, tmp_path):
    run = tmp_path / "run"
    train_in_process(run, "train.max_steps=10")
    before = checkpoint.load(run / "last.pt")["model"]
    assert train_in_process(run, "train.max_steps=10", resume=True).step == 10
    after = checkpoint.load(run / "last.pt")["model"]
    assert all(torch.equal(before[k], after[k]) for k in before)


# ------------------------------------------------------------------------------------------ (f) SIGTERM


def test_sigterm_stops_within_a_step_saves_last_and_resume_continues(tiny_data, tmp_path):
    run = tmp_path / "run"
    proc = start(run, "train.max_steps=100000", "train.valid_every=100000", "train.log_every=1")
    wait_for(lambda: len(logged_steps(run)) >= 3, "three steps", proc)
    proc.send_signal(signal.SIGTERM)
    sent = time.time()
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, err.decode()[-2000:]
    saved = checkpoint.load(run / "last.pt")["trainer"]["step"]
    assert saved == logged_steps(run)[-1] and "stopped by a signal" in out.decode() + err.decode()
    assert time.time() - sent < 30  # a step, a save and the curves, not 100,000 steps
    train_in_process(run, f"train.max_steps={saved + 2}", "train.valid_every=100000", "train.log_every=1",
                     resume=True)  # fmt: skip
    assert checkpoint.load(run / "last.pt")["trainer"]["step"] == saved + 2
    assert logged_steps(run) == list(range(1, saved + 3))


def test_a_second_signal_exits_at_once_and_leaves_no_temporary(tiny_data, tmp_path):
    run = tmp_path / "run"
    proc = start(run, "train.max_steps=100000", "train.valid_every=100000", "train.log_every=1")
    wait_for(lambda: len(logged_steps(run)) >= 3, "three steps", proc)
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGINT)  # another signal: two pending SIGTERMs would be delivered as one
    _, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 130 and err.decode().rstrip().endswith("interrupted"), err.decode()[-2000:]
    assert temporaries(run) == []
    if (run / "last.pt").exists():  # a save the second signal cut short was never renamed into place
        checkpoint.load(run / "last.pt")


# ------------------------------------------------------------------------------------------ (g) non-finite values


@pytest.fixture
def series_run(tmp_path, monkeypatch):
    """A regression run of 10 steps on a noisy sine, validated (and saved) every 5 steps."""
    monkeypatch.setenv("SEQ2SEQ_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("SEQ2SEQ_CACHE", str(tmp_path / "cache"))
    write_csv(tmp_path / "data", noisy_sine(300))
    overrides = [*SMALL, "train.valid_every=5", "train.log_every=5", "train.max_steps=10", "runtime.threads=1"]
    build_training(load_recipe(ROOT / "recipes/sp500.yaml", overrides), tmp_path / "run", resume=False).fit()
    return tmp_path / "run", overrides


def nan_from(call: int, loss):
    """`loss`, NaN from its `call`-th call on."""
    calls = [0]

    def poisoned(batch):
        calls[0] += 1
        total, count = loss(batch)
        return (total * math.nan if calls[0] >= call else total), count

    return poisoned


def test_a_non_finite_loss_stops_without_touching_the_checkpoints(series_run):
    run, overrides = series_run
    saved = {name: (run / name).read_bytes() for name in ("last.pt", "best.pt")}
    trainer = build_training(load_recipe(ROOT / "recipes/sp500.yaml", [*overrides, "train.max_steps=30"]), run, True)
    trainer.model.loss = nan_from(2, trainer.model.loss)  # steps 12 on: NaN
    with pytest.raises(TrainingDiverged, match=r"the training loss was nan \(the mean of steps 11-15\) at step 15"):
        trainer.fit()
    assert {name: (run / name).read_bytes() for name in saved} == saved


def test_a_non_finite_loss_is_exit_1_in_one_line(series_run, monkeypatch, capsys):
    from seq2seq.models.regressor import Regressor
    from seq2seq.train import main as train_main

    run, overrides = series_run
    monkeypatch.setattr(Regressor, "loss", lambda self, batch: (torch.tensor(math.inf, requires_grad=True), 1))
    before = (run / "last.pt").read_bytes()
    code = train_main(["recipes/sp500.yaml", *overrides, "train.max_steps=20", "--run-dir", str(run), "--resume"])
    errors = error_lines(capsys.readouterr().err.encode())
    assert code == 1 and len(errors) == 1 and "the training loss was inf" in errors[0], errors
    assert "TrainingDiverged" not in errors[0] and "--debug" not in errors[0]  # a finding, not a crash
    assert (run / "last.pt").read_bytes() == before


def test_a_non_finite_validation_is_never_best_and_metrics_stay_json(series_run):
    run, overrides = series_run
    trainer = build_training(load_recipe(ROOT / "recipes/sp500.yaml", [*overrides, "train.max_steps=15"]), run, True)
    best_before, best_file = trainer.progress.best, (run / "best.pt").read_bytes()
    trainer.evaluate = lambda model: {"loss": math.nan, "rmse": math.nan, "skill": -math.inf}
    trainer.fit()
    assert trainer.progress.best == best_before and (run / "best.pt").read_bytes() == best_file
    assert checkpoint.load(run / "last.pt")["trainer"]["step"] == 15

    def strict(text: str):
        raise ValueError(f"{text} in metrics.jsonl")

    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1], parse_constant=strict)
    assert last["kind"] == "valid" and last["loss"] is None and last["best"] is False


def test_scores_json_is_valid_json_when_a_forecast_is_not_finite(series_run, tmp_path, capsys):
    from seq2seq.forecasting import forecast, report
    from seq2seq.tasks import load_regressor, series_split

    run, _ = series_run
    recipe, model, scaler = load_regressor(run, "last")
    fc = forecast(model, *series_split(recipe), scaler, recipe.data.window, 20)
    fc.point[:] = math.nan  # a diverged model
    report(fc, tmp_path / "out")
    scores = json.loads((tmp_path / "out" / "scores.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert scores["next_day"]["LSTM"]["rmse"] is None and scores["next_day"]["persistence"]["rmse"] > 0
    assert "scores are not finite and are written as null: next_day/LSTM/mse (nan)" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ (h) price data


GOOD = ["Date,Close,Volume", "03-01-00,100.5,1000", "04-01-00,101.0,1100", "05-01-00,99.0,900"]


@pytest.mark.parametrize(
    "row3, message",
    [
        ("04-01-00,nan,1100", "line 3, column 'Close': 'nan' is not a price or volume (a finite number > 0)"),
        ("04-01-00,101.0,inf", "line 3, column 'Volume': 'inf' is not a price or volume"),
        ("04-01-00,0,1100", "line 3, column 'Close': '0' is not a price or volume"),
        ("04-01-00,-3.5,1100", "line 3, column 'Close': '-3.5' is not a price or volume"),
        ("04-01-00,,1100", "line 3, column 'Close': '' is not a number"),
        ("04-01-00,abc,1100", "line 3, column 'Close': 'abc' is not a number"),
        ("04-01-00,101.0", "line 3, column 'Volume': no value (the row is short)"),
        ("03-01-00,101.0,1100", "line 3, column 'Date': the date 2000-01-03 repeats line 2"),
        ("02-01-00,101.0,1100", "line 3, column 'Date': the date 2000-01-02 comes before the previous line's"),
        ("2000-01-04,101.0,1100", "line 3, column 'Date': time data '2000-01-04' does not match format"),
    ],
    ids=["nan", "inf", "zero", "negative", "empty", "text", "short-row", "duplicate-date", "unsorted", "bad-date"],
)
def test_each_price_data_fault_names_file_line_and_column(tmp_path, row3, message):
    path = tmp_path / "prices.csv"
    path.write_text("\n".join([*GOOD[:2], row3, *GOOD[3:]]) + "\n")
    with pytest.raises(DataError) as e:
        load_series(path, ["Close", "Volume"])
    assert str(e.value).startswith(f"{path}, {message}"), str(e.value)


def test_a_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "prices.csv"
    path.write_bytes(b"\xef\xbb\xbf" + ("\n".join(GOOD) + "\n").encode())
    series = load_series(path, ["Close", "Volume"])
    assert series.values[:, 0].tolist() == [100.5, 101.0, 99.0] and str(series.dates[0]) == "2000-01-03"


def test_nan_prices_stop_regression_training_before_it_starts(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQ2SEQ_DATA", str(tmp_path / "data"))
    close = noisy_sine(300)
    close[123] = np.nan
    write_csv(tmp_path / "data", close)
    with pytest.raises(DataError, match=r"sp500.csv, line 125, column 'Close': 'nan' is not a price"):
        build_training(load_recipe(ROOT / "recipes/sp500.yaml", SMALL), tmp_path / "run", resume=False)


# ------------------------------------------------------------------------------------------ (i) the tokenized cache


def test_the_tokenized_cache_is_rebuilt_for_other_tokenizers(tiny_data, tmp_path):
    """A start interrupted after tokenizing (no last.pt) leaves cache/; a new start with another tokenizer must not
    train on those ids, nor on a cache named the old way (cache/train.arrow)."""
    run = tmp_path / "run"
    first = build_training(toy_recipe(*TINY[len(TOY_OVERRIDES):]), run, resume=False)
    (old,) = (run / "cache").glob("train-*.arrow")
    shutil.copy(old, run / "cache" / "train.arrow")
    again = build_training(toy_recipe(*TINY[len(TOY_OVERRIDES):]), run, resume=False)  # same tokenizer: reused
    assert [p.name for p in (run / "cache").glob("train*.arrow")] == [old.name]
    assert again.data.table[:5]["src_ids"] == first.data.table[:5]["src_ids"]

    other = build_training(toy_recipe(*TINY[len(TOY_OVERRIDES):], "tokenizer.model_type=char"), run, resume=False)
    (new,) = (run / "cache").glob("train*.arrow")
    assert new != old
    src = other.extra["tokenizers"]["src"]
    assert src != first.extra["tokenizers"]["src"]
    from seq2seq.tokenizer import Tokenizer

    rows = other.data.table[:5]
    assert rows["src_ids"] == Tokenizer(src).encode(rows["src"])
