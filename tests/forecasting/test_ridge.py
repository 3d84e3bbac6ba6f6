"""The online ridge (``models/ridge.py``): it learns a known linear process, never peeks, and survives gaps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.baselines import Persistence
from models.component import Trained, TrainPart
from models.ridge import Ridge
from models.series import Panel, panel_from_wide, valid_origins, windows
from tests.forecasting.conftest import DAY, STEP, tiny_config

CONFIG = tiny_config()
HORIZON = CONFIG.steps(STEP)[1]
PHI, SIGMA = 0.3, 0.5


def seasonal_ar(days: float, *, seed: int = 3) -> tuple[Panel, np.ndarray, np.ndarray]:
    """``y = 10 + 3 sin(day) + e``, ``e(t) = PHI e(t-1) + N(0, SIGMA)``; the panel, the season and ``e``."""
    rng = np.random.default_rng(seed)
    n = int(days * DAY)
    season = 10 + 3 * np.sin(2 * np.pi * np.arange(n) / DAY)
    e = np.zeros(n)
    for t in range(1, n):
        e[t] = PHI * e[t - 1] + rng.normal(0, SIGMA)
    index = pd.date_range("2024-03-04", periods=n, freq=f"{STEP}s", tz="UTC")
    return panel_from_wide(pd.DataFrame({"cpu_cores": season + e}, index=index)), season, e


def fit(panel: Panel, train_days: float = 6.0) -> Ridge:
    (fitted,) = Ridge.train([TrainPart(panel, int(train_days * DAY), int((train_days + 1) * DAY))], CONFIG)
    assert isinstance(fitted, Trained), fitted
    return fitted.members[0]


def median(q: np.ndarray) -> np.ndarray:
    return q[:, :, 0, CONFIG.quantiles.index(0.5)]


def test_learns_a_seasonal_ar_process_close_to_its_conditional_mean():
    panel, season, e = seasonal_ar(9.0)
    origins = valid_origins(panel.observed, input_steps=12, horizon=HORIZON, first=7 * DAY, last=len(panel) - 1)
    actual = windows(panel.values, origins, HORIZON)[:, :, 0]
    steps = origins[:, None] + np.arange(1, HORIZON + 1)
    oracle = season[steps] + PHI ** np.arange(1, HORIZON + 1) * e[origins, None]  # E[y(t+h) | y(..t)]
    model = fit(panel)
    ridge = np.abs(median(model.predict_at(panel, origins)) - actual).mean()
    (persistence,) = Persistence.train([TrainPart(panel, 6 * DAY, 7 * DAY)], CONFIG)
    naive = np.abs(median(persistence.members[0].predict_at(panel, origins)) - actual).mean()
    best = np.abs(oracle - actual).mean()
    assert ridge < 0.9 * naive
    assert ridge < 1.08 * best, f"ridge MAE {ridge:.3f} against the conditional mean's {best:.3f}"


def test_raw_quantiles_cover_roughly_their_levels_and_are_monotone():
    panel, _, _ = seasonal_ar(9.0)
    origins = np.arange(7 * DAY, 9 * DAY - HORIZON)
    q = fit(panel).predict_at(panel, origins)
    actual = windows(panel.values, origins, HORIZON)
    assert (np.diff(q, axis=-1) >= 0).all()
    for i, tau in enumerate(CONFIG.quantiles):
        tolerance = 0.01 if tau >= 0.99 else 0.06  # the upper tails the policy buys are pinned tighter
        assert abs((actual <= q[..., i]).mean() - tau) < tolerance, (tau, (actual <= q[..., i]).mean())


def test_an_origins_forecast_ignores_every_row_after_it():
    panel, _, _ = seasonal_ar(8.0)
    model = fit(panel)
    origins = np.arange(7 * DAY, 8 * DAY - HORIZON, 5)
    before = model.predict_at(panel, origins)
    cut = int(origins[len(origins) // 2])
    values = panel.values.copy()
    values[cut + 1:] = values[cut + 1:] * 3 + 50  # the future changes, and with it what the model would learn
    changed = Panel(panel.index, values, panel.metrics, panel.step_seconds)
    after = model.predict_at(changed, origins)
    early = origins <= cut
    np.testing.assert_array_equal(after[early], before[early])
    assert not np.allclose(after[~early], before[~early])


def test_it_keeps_learning_after_training():
    """A level shift after training: the online model follows it, the saved moments alone would not."""
    panel, _, _ = seasonal_ar(10.0)
    values = panel.values.copy()
    values[7 * DAY:] += 8.0
    shifted = Panel(panel.index, values, panel.metrics, panel.step_seconds)
    model = fit(shifted)  # trained on six days, before the shift
    origins = np.arange(9 * DAY, 10 * DAY - HORIZON)
    error = np.abs(median(model.predict_at(shifted, origins)) - windows(values, origins, HORIZON)[:, :, 0]).mean()
    assert error < 1.0


@pytest.mark.parametrize("gap", [pytest.param((3 * DAY, 3 * DAY + 40), id="in-training"),
                                 pytest.param((7 * DAY + 100, 7 * DAY + 130), id="in-the-tail")])
def test_gaps_are_skipped_and_forecasts_carry_on_across_them(gap):
    panel, _, _ = seasonal_ar(8.0)
    values = panel.values.copy()
    values[gap[0]:gap[1]] = np.nan
    gappy = Panel(panel.index, values, panel.metrics, panel.step_seconds)
    model = fit(gappy)
    origins = valid_origins(gappy.observed, input_steps=12, horizon=HORIZON, first=7 * DAY, last=len(panel) - 1)
    q = model.predict_at(gappy, origins)
    assert np.isfinite(q).all()
    actual = windows(values, origins, HORIZON)[:, :, 0]
    (persistence,) = Persistence.train([TrainPart(gappy, 6 * DAY, 7 * DAY)], CONFIG)
    naive = np.abs(median(persistence.members[0].predict_at(gappy, origins)) - actual).mean()
    assert np.abs(median(q) - actual).mean() < 0.95 * naive
    inside = np.array([gap[0] + 5])  # an origin inside the gap: the last values carried on, still a forecast
    assert np.isfinite(model.predict_at(gappy, inside)).all()


def test_a_saved_model_keeps_its_moments_and_residuals(tmp_path):
    panel, _, _ = seasonal_ar(8.0)
    model = fit(panel)
    model.save(tmp_path)
    again = Ridge.load(tmp_path)
    origins = np.arange(7 * DAY, 8 * DAY - HORIZON, 7)
    np.testing.assert_array_equal(again.predict_at(panel, origins), model.predict_at(panel, origins))
