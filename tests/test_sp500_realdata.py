"""The S&P 500 lab on the real file under $SEQ2SEQ_DATA: dates, the lab's split, and the naive baselines on it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seq2seq.config import load_recipe
from seq2seq.data.series import Scaler
from seq2seq.forecasting import forecast, next_day_scores
from seq2seq.models.regressor import Regressor
from seq2seq.tasks import series_split

from .conftest import ROOT

pytestmark = pytest.mark.realdata


def test_sp500_has_4697_trading_days_read_day_first(real_data):
    series, split = series_split(load_recipe(ROOT / "recipes/sp500.yaml"))
    assert len(series.dates) == 4697 and series.values.shape == (4697, 1)
    assert str(series.dates[0]) == "2000-01-03" and str(series.dates[-1]) == "2018-08-31"
    gaps = np.diff(series.dates).astype(int)
    assert gaps.max() == 7 and str(series.dates[int(gaps.argmax())]) == "2001-09-10"  # closed after 9/11
    assert split.test == slice(3992, 4697)


def test_baselines_on_the_lab_split_match_the_reference_figures(real_data):
    recipe = load_recipe(ROOT / "recipes/sp500.yaml")
    series, split = series_split(recipe)
    torch.manual_seed(0)
    untrained = Regressor(1, [4], fc_size=2)  # only the baseline rows are checked
    fc = forecast(untrained, series, split, Scaler("window"), window=50, horizon=50)
    assert len(fc.actual) == 655 and str(fc.dates[0]) == "2016-01-28"
    scores = next_day_scores(fc)
    persistence = scores["persistence"]
    assert persistence["norm_mse"] == pytest.approx(5.0e-5, rel=0.01)
    assert persistence["rmse"] == pytest.approx(17.0, abs=0.1)
    assert scores["always up"]["direction"] == pytest.approx(55.5, abs=0.2)
    assert scores["drift"]["skill"] < 0  # extrapolating the last 50 days does not beat tomorrow = today
