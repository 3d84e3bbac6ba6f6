"""The baselines are real competitors: exact where they are trivial, fitted where they are not."""

from __future__ import annotations

import numpy as np
import pytest

from models.baselines import BASELINES, Baseline, BaselineError
from models.component import Trained, TrainPart
from tests.forecasting.conftest import DAY, daily_panel, tiny_config

QUANTILES = (0.05, 0.1, 0.5, 0.9, 0.95)


def test_persistence_repeats_the_last_observed_value():
    values = np.array([[1.0], [2.0], [np.nan], [4.0]])
    model = BASELINES["persistence"](horizon=2, quantiles=QUANTILES).fit(values)
    paths = model.paths(values)
    np.testing.assert_array_equal(paths[:, :, 0], [[1, 1], [2, 2], [2, 2], [4, 4]])


def test_seasonal_naive_reads_the_same_time_yesterday():
    season = 4
    values = np.arange(12.0)[:, None]
    model = BASELINES["seasonal_naive"](season=season, horizon=2, quantiles=QUANTILES).fit(values)
    paths = model.paths(values)
    # origin 5, step 1 -> row 6 - 4 = 2; step 2 -> row 3
    np.testing.assert_array_equal(paths[5, :, 0], [2.0, 3.0])


def test_seasonal_naive_falls_back_to_persistence_where_yesterday_is_missing():
    values = np.arange(12.0)[:, None]
    values[2] = np.nan
    model = BASELINES["seasonal_naive"](season=4, horizon=1, quantiles=QUANTILES).fit(values)
    assert model.paths(values)[5, 0, 0] == 5.0


def test_ses_fits_a_small_alpha_on_noise_around_a_level():
    rng = np.random.default_rng(3)
    values = (5 + rng.normal(0, 1, 2000))[:, None]
    model = BASELINES["ses"](horizon=1, quantiles=QUANTILES).fit(values)
    assert model.params[0]["alpha"] < 0.15


def test_holt_winters_learns_the_daily_shape_that_ses_cannot():
    panel = daily_panel(6.0, noise=0.2)
    train, test = panel.values[: 4 * DAY], panel.values
    origins = np.arange(4 * DAY, 6 * DAY - 6)
    actual = test[origins + 6, 0]
    errors = {}
    for name in ("ses", "holt_winters"):
        model = BASELINES[name](season=DAY, horizon=6, quantiles=QUANTILES).fit(train)
        errors[name] = np.abs(model.predict(test, origins)[:, -1, 0, 2] - actual).mean()
    assert errors["holt_winters"] < 0.7 * errors["ses"]


@pytest.mark.parametrize("name", list(BASELINES))
def test_quantiles_bracket_the_median_and_survive_a_round_trip(name):
    panel = daily_panel(3.0)
    model = BASELINES[name](season=DAY, horizon=3, quantiles=QUANTILES).fit(panel.values[: 2 * DAY + 50])
    origins = np.arange(2 * DAY + 50, 3 * DAY - 3)
    q = model.predict(panel.values, origins)
    assert q.shape == (len(origins), 3, 1, 5)
    assert (np.diff(q, axis=-1) >= 0).all()
    again = Baseline.from_state(model.state())
    np.testing.assert_allclose(again.predict(panel.values, origins), q)


def test_too_short_for_the_season_is_said_plainly():
    part = TrainPart(daily_panel(2.0), 300, 400)
    (too_short,) = BASELINES["holt_winters"].train([part], tiny_config())
    assert too_short == "needs 579 training rows (its season is 288 steps), got 300"
    assert isinstance(BASELINES["seasonal_naive"].train([part], tiny_config())[0], Trained)
    with pytest.raises(BaselineError, match="needs at least"):
        BASELINES["holt_winters"](season=DAY, horizon=3).fit(np.ones((300, 1)))
