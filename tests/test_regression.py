"""Regression on the shared core: exact windows, a scaler blind to the test span, rollout == a manual loop, and a
synthetic series learned well enough to beat persistence."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import torch

from seq2seq.config import ConfigError, load_recipe
from seq2seq.data.corpora import DataError
from seq2seq.data.series import Scaler, WindowBatches, chronological_split, load_series, windows
from seq2seq.forecast import main as forecast_main
from seq2seq.forecasting import forecast, next_day_scores
from seq2seq.models.regressor import Regressor
from seq2seq.tasks import build_training, load_regressor, series_split

from .conftest import ROOT

SMALL = ["data.window=20", "model.hidden_sizes=[32]", "model.fc_size=16", "model.dropout=0.0", "train.lr=0.003",
         "train.valid_every=40", "train.max_minutes=0", "train.early_stopping=0", "train.log_every=40"]  # fmt: skip


def write_csv(folder, close: np.ndarray, volume: np.ndarray | None = None):
    """A CSV laid out like the lab's file (DD-MM-YY dates) under folder/sp500/sp500.csv."""
    volume = np.full(len(close), 1e9) if volume is None else volume
    day0 = dt.date(2000, 1, 3)
    rows = [f"{(day0 + dt.timedelta(days=i)).strftime('%d-%m-%y')},{c:.6f},{v:.0f}" for i, (c, v) in
            enumerate(zip(close, volume))]  # fmt: skip
    (folder / "sp500").mkdir(parents=True, exist_ok=True)
    (folder / "sp500" / "sp500.csv").write_text("Date,Close,Volume\n" + "\n".join(rows) + "\n")


def noisy_sine(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 100 + 10 * np.sin(2 * np.pi * np.arange(n) / 20) + rng.normal(0, 0.3, n)


@pytest.fixture
def series_data(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQ2SEQ_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("SEQ2SEQ_CACHE", str(tmp_path / "cache"))
    return tmp_path / "data"


def test_windows_are_exact_at_the_edges():
    values = np.arange(10.0).reshape(-1, 1)
    w = windows(values, 3)
    assert w.shape == (7, 4, 1)
    assert w[0, :, 0].tolist() == [0, 1, 2, 3] and w[-1, :, 0].tolist() == [6, 7, 8, 9]
    assert windows(values[:4], 3).shape == (1, 4, 1) and windows(values[:3], 3).shape == (0, 4, 1)


def test_the_split_is_chronological_and_complete_like_the_lab():
    s = chronological_split(4697, 0.15, 0.1, 50)
    assert s.test == slice(3992, 4697)  # the lab's int(4697 * 0.85)
    assert s.train.start == 0 and s.train.stop == s.valid.start and s.valid.stop == s.test.start
    assert s.valid.stop - s.valid.start == int(3992 * 0.1)
    rows = np.arange(4697.0).reshape(-1, 1)
    test = windows(rows[s.test], 50)
    assert test[0, 0, 0] == 3992 and test[-1, -1, 0] == 4696 and len(test) == 705 - 50
    with pytest.raises(DataError, match="too few for windows"):
        chronological_split(100, 0.15, 0.1, 50)


def test_dates_use_the_explicit_format_and_must_increase(series_data):
    write_csv(series_data, np.arange(1.0, 40.0))
    s = load_series(series_data / "sp500" / "sp500.csv", ["Close"])
    assert s.dates[0] == np.datetime64("2000-01-03") and s.dates[12] == np.datetime64("2000-01-15")
    with pytest.raises(DataError, match="no column 'Open'"):
        load_series(series_data / "sp500" / "sp500.csv", ["Open"])
    path = series_data / "sp500" / "sp500.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], lines[2], lines[1], *lines[3:]]) + "\n")
    with pytest.raises(DataError, match="dates must increase"):
        load_series(path, ["Close"])


@pytest.mark.parametrize("normalisation", ["window", "global"])
def test_the_scaler_and_training_data_never_see_the_test_span(series_data, normalisation, tmp_path):
    close = noisy_sine(600)
    recipe = load_recipe(ROOT / "recipes/sp500.yaml", [*SMALL, f"data.normalisation={normalisation}"])
    built = []
    for test_values in (close[510:], close[510:] * 50 + 1e4):  # the test span is rows 510..599
        write_csv(series_data, np.concatenate([close[:510], test_values]))
        trainer = build_training(recipe, tmp_path / f"run{len(built)}", resume=False)
        built.append((trainer.extra["scaler"], trainer.data.x, trainer.evaluate(trainer.model)))
    assert series_split(recipe)[1].test == slice(510, 600)
    assert built[0][0] == built[1][0]
    assert torch.equal(built[0][1], built[1][1]) and built[0][2] == built[1][2]
    if normalisation == "global":  # fitted on the training rows alone, not the validation rows either
        assert built[0][0]["mean"][0] == pytest.approx(close[: series_split(recipe)[1].train.stop].mean())


def test_recipe_sections_are_checked():
    r = load_recipe(ROOT / "recipes/sp500.yaml", ["model.hidden_sizes=[8, 16, 4]", "data.features=[Close, Volume]"])
    assert r.model.hidden_sizes == (8, 16, 4) and r.data.features == ("Close", "Volume")
    with pytest.raises(ConfigError, match="non-empty list"):
        load_recipe(ROOT / "recipes/sp500.yaml", ["model.hidden_sizes=50"])
    with pytest.raises(ConfigError, match="did you mean 'window'"):
        load_recipe(ROOT / "recipes/sp500.yaml", ["data.normalisation=windw"])


def test_batches_depend_only_on_seed_and_epoch_so_resume_continues_exactly():
    x, y = torch.randn(100, 5, 1), torch.randn(100)
    whole = list(WindowBatches(x, y, 32, seed=3).epoch(2))
    resumed = list(WindowBatches(x, y, 32, seed=3).epoch(2, start=2))
    assert [i for i, _ in whole] == [1, 2, 3, 4] and [i for i, _ in resumed] == [3, 4]
    assert all(torch.equal(a.x, b.x) for (_, a), (_, b) in zip(whole[2:], resumed))
    assert sorted(torch.cat([b.y for _, b in whole]).tolist()) == sorted(y.tolist())


def test_rollout_on_window_normalised_inputs_equals_a_manual_loop_in_prices():
    torch.manual_seed(0)
    model = Regressor(1, [8, 6], "lstm", fc_size=5).double().eval()
    prices = torch.tensor(noisy_sine(12, seed=1)).reshape(2, 6, 1)  # two windows of 6 prices
    scaler = Scaler("window")
    with torch.no_grad():
        rolled = model.rollout(torch.as_tensor(scaler.normalise(prices.numpy())), 7, relative=True)
        got = scaler.to_values(rolled.numpy(), prices.numpy())
        history = prices.clone()
        for _ in range(7):  # by hand: the last 6 prices, normalised to their first, predicted, back to a price
            last = history[:, -6:]
            nxt = (1 + model(last / last[:, :1] - 1)) * last[:, 0, 0]
            history = torch.cat([history, nxt[:, None, None]], dim=1)
    np.testing.assert_allclose(got, history[:, 6:, 0].numpy(), rtol=1e-12)


def test_rollout_carries_extra_features_forward():
    torch.manual_seed(0)
    model = Regressor(2, [4], "gru", fc_size=3).double().eval()
    x = torch.randn(3, 5, 2, dtype=torch.double)
    with torch.no_grad():
        rolled = model.rollout(x, 4)
        window = x.clone()
        for step in range(4):
            y = model(window)
            torch.testing.assert_close(rolled[:, step], y)
            window = torch.cat([window[:, 1:], torch.stack([y, window[:, -1, 1]], -1)[:, None]], dim=1)


def test_a_noisy_sine_is_learned_well_enough_to_beat_persistence(series_data, tmp_path, capsys):
    write_csv(series_data, noisy_sine(1500))
    recipe = load_recipe(ROOT / "recipes/sp500.yaml", [*SMALL, "train.max_epochs=12", "data.batch_size=32"])
    build_training(recipe, tmp_path / "run", resume=False).fit()
    recipe, model, scaler = load_regressor(tmp_path / "run")
    series, split = series_split(recipe)
    scores = next_day_scores(forecast(model, series, split, scaler, recipe.data.window, 20))
    lstm, persistence = scores["LSTM"], scores["persistence"]
    assert lstm["skill"] > 0.8 and lstm["rmse"] < 0.5 * persistence["rmse"], scores
    assert lstm["direction"] > 85, scores
    assert forecast_main([str(tmp_path / "run"), "--horizon", "20"]) == 0
    out = tmp_path / "run" / "forecast"
    assert {p.name for p in out.iterdir()} >= {"predictions.csv", "scores.json", "point_by_point.png"}
    assert len((out / "predictions.csv").read_text().splitlines()) == 1 + 225 - 20
    assert "| LSTM |" in capsys.readouterr().out


@pytest.mark.parametrize("normalisation", ["window", "global"])
def test_volume_as_a_second_feature_trains_and_forecasts(series_data, tmp_path, normalisation):
    close = noisy_sine(400)
    write_csv(series_data, close, volume=np.random.default_rng(0).uniform(1e9, 2e9, 400))
    overrides = [*SMALL, "data.features=[Close, Volume]", f"data.normalisation={normalisation}", "train.max_steps=3"]
    build_training(load_recipe(ROOT / "recipes/sp500.yaml", overrides), tmp_path / "run", resume=False).fit()
    recipe, model, scaler = load_regressor(tmp_path / "run", "last")
    assert model.rnn.layers[0].input_size == 2 and len(scaler.state()["mean"]) == (2 if normalisation == "global" else 0)
    fc = forecast(model, *series_split(recipe), scaler, recipe.data.window, 20)
    assert np.isfinite(fc.full).all() and np.isfinite(fc.point).all()
    np.testing.assert_allclose(fc.actual, close[-len(fc.actual) :], rtol=1e-6)
