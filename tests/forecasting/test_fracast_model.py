"""The zero-shot fracast component (``models/fracast_model.py``): its quantiles, no peeking, its refusals.

fracast runs about 0.1 s per origin and metric on one thread: these tests use a few origins.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from models.component import Trained, TrainPart
from models.fracast_model import MIN_CONTEXT, Fracast, to_levels
from models.series import Panel, panel_from_wide
from tests.forecasting.conftest import DAY, STEP, tiny_config

CONFIG = tiny_config()
HORIZON = CONFIG.steps(STEP)[1]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Nothing may be downloaded: the weights ship inside the wheel."""
    monkeypatch.setitem(os.environ, "HF_HUB_OFFLINE", "1")


def sine(days: float = 8.0) -> Panel:
    rng = np.random.default_rng(7)
    t = np.arange(int(days * DAY))
    values = 20 + 8 * np.sin(2 * np.pi * t / DAY) + rng.normal(0, 0.4, len(t))
    index = pd.date_range("2024-03-04", periods=len(t), freq=f"{STEP}s", tz="UTC")
    return panel_from_wide(pd.DataFrame({"cpu_cores": values}, index=index))


@pytest.fixture(scope="module")
def model() -> Fracast:
    (fitted,) = Fracast.train([TrainPart(sine(), 6 * DAY, 7 * DAY)], CONFIG)
    assert isinstance(fitted, Trained), fitted
    return fitted.members[0]


def test_quantiles_follow_the_sine_in_order(model):
    panel = sine()
    origins = np.array([7 * DAY + 10, 7 * DAY + 80, 7 * DAY + 150, 7 * DAY + 220])
    q = model.predict_at(panel, origins)
    assert q.shape == (len(origins), HORIZON, 1, len(CONFIG.quantiles))
    assert np.isfinite(q).all() and (np.diff(q, axis=-1) >= 0).all()
    truth = 20 + 8 * np.sin(2 * np.pi * (origins[:, None] + np.arange(1, HORIZON + 1)) / DAY)
    median = q[:, :, 0, CONFIG.quantiles.index(0.5)]
    assert np.abs(median - truth).max() < 2.0  # noise 0.4 around a swing of +-8
    width = q[..., CONFIG.quantiles.index(0.995)] - q[..., CONFIG.quantiles.index(0.9)]
    assert (width > 0).all()


def test_an_origins_forecast_ignores_every_row_after_it(model):
    panel = sine()
    origin = 7 * DAY + 40
    values = panel.values.copy()
    values[origin + 1:] = 500.0
    changed = Panel(panel.index, values, panel.metrics, panel.step_seconds)
    np.testing.assert_allclose(model.predict_at(changed, np.array([origin])),
                               model.predict_at(panel, np.array([origin])))
    assert not np.allclose(model.predict_at(changed, np.array([origin + 5])),
                           model.predict_at(panel, np.array([origin + 5])))


def test_a_history_too_short_gives_a_reason():
    (fitted,) = Fracast.train([TrainPart(sine(), MIN_CONTEXT - 1, MIN_CONTEXT + 5)], CONFIG)
    assert isinstance(fitted, str) and str(MIN_CONTEXT) in fitted


def test_levels_outside_the_native_ones_extrapolate_a_normal_tail():
    native_levels = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    # a normal N(0, 1) given by its deciles, one pair out of order as fracast sometimes emits
    from scipy.stats import norm

    native = norm.ppf(native_levels)
    native[[4, 5]] = native[[5, 4]]
    out = to_levels(native[None], native_levels, (0.05, 0.5, 0.95, 0.995))[0]
    np.testing.assert_allclose(out, norm.ppf([0.05, 0.5, 0.95, 0.995]), atol=1e-9)
