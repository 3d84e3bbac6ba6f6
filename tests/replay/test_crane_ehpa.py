"""Crane's EHPA with its DSP predictor (``prescale/replay/policies/crane.py``) on hand-made demand.

One-type world of ``builders.py`` (``vm``: 10 units, ready one 60-s step after the order).
"""

from __future__ import annotations

import numpy as np
import pytest

from prescale.replay import ReplayConfig, run_rule
from prescale.replay.engine import context
from prescale.replay.policies import Reactive
from prescale.replay.policies.crane import CraneEhpa, CraneSettings, dsp_cycle, predicted_peaks, prediction_error
from tests.replay.builders import STEP, fleet, replay_input

PER_DAY = 86_400 // STEP


def sinusoid(days: float, *, level=100.0, amplitude=50.0, phase=0) -> np.ndarray:
    t = np.arange(round(days * PER_DAY)) + phase
    return level + amplitude * np.sin(2 * np.pi * t / PER_DAY)


def spike(days: float, *, at_minute: int = 12 * 60, minutes: int = 10, base=10.0, peak=100.0) -> np.ndarray:
    m = np.arange(round(days * PER_DAY)) % PER_DAY
    return np.where((m >= at_minute) & (m < at_minute + minutes), peak, base)


def _run(inp, rule_of):
    f = fleet(with_metal=False)
    ctx = context(inp, f, ReplayConfig())
    return f, run_rule(f, rule_of(ctx), len(inp.index))


def test_the_dsp_predicts_a_pure_sinusoid_within_its_margin():
    x = sinusoid(8)
    cycle = dsp_cycle(x[: 7 * PER_DAY], STEP)
    actual = x[7 * PER_DAY :]
    assert cycle is not None and cycle.shape == actual.shape
    ratio = cycle / actual
    assert ratio.min() >= 1.0 - 1e-6  # never under: the estimator's margin is on top
    assert ratio.max() <= 1.01 + 1e-3  # the smallest margin (1%) fits a clean signal best


def test_the_dsp_predicts_a_phase_it_has_not_seen_today():
    """History ending mid-cycle (at 13:00): the next 24 hours continue the wave from 13:00."""
    x = sinusoid(8, phase=13 * 60)
    cycle = dsp_cycle(x[: 7 * PER_DAY], STEP)
    np.testing.assert_allclose(cycle, x[7 * PER_DAY :] * 1.01, rtol=2e-3)


@pytest.mark.parametrize("history", [
    pytest.param(np.linspace(10.0, 200.0, 7 * PER_DAY), id="a-trend-is-not-periodic"),
    pytest.param(sinusoid(1.5), id="under-two-days"),
    pytest.param(np.full(7 * PER_DAY, np.nan), id="nothing-observed"),
])
def test_no_prediction_without_a_daily_or_weekly_period(history):
    assert dsp_cycle(history, STEP) is None


def test_a_gap_over_an_hour_drops_what_came_before_it():
    x = sinusoid(7)
    x[PER_DAY : PER_DAY + 61] = np.nan  # 61 minutes missing on day 2: five whole days left after it
    assert dsp_cycle(x, STEP) is not None
    x[5 * PER_DAY + 100 : 5 * PER_DAY + 200] = np.nan  # a later gap leaves under two days
    assert dsp_cycle(x, STEP) is None


def test_prediction_error_amplifies_under_prediction():
    actual = np.full(4, 100.0)
    assert prediction_error(actual, actual * 0.9) > prediction_error(actual, actual * 1.1) > 0
    assert prediction_error(actual, actual * 1.1) == pytest.approx(0.1)
    assert prediction_error(np.zeros(4), np.ones(4)) == pytest.approx(1.0)  # the MAE near zero


def test_the_prediction_metric_is_the_largest_value_over_the_next_hour():
    """An hour-long noon peak every day: the prediction metric carries it from 11:00 (half an hour ahead it is
    already the peak's), and lets it go after 13:00. The FFT smooths the peak's edges (Crane's filter keeps
    the components of periods over an hour and the largest few shorter ones)."""
    inp = replay_input(spike(1, minutes=60), forecast=False).with_history(spike(7, minutes=60))
    peaks = predicted_peaks(inp, CraneSettings())[:, 0]
    noon = 12 * 60
    assert peaks[noon - 30] >= 100.0 and peaks[noon - 30] == pytest.approx(peaks[noon])
    assert peaks[noon - 60] > peaks[noon - 61] > 2 * peaks[noon - 90]
    assert peaks[noon - 90] < 25.0 and peaks[noon + 65] < 25.0


def test_the_hpa_takes_the_larger_of_observed_and_predicted():
    rng = np.random.default_rng(5)
    demand = rng.uniform(20.0, 120.0, 600)
    inp = replay_input(demand, forecast=False)
    observed = context(inp, fleet(with_metal=False), ReplayConfig()).observed
    f, reactive = _run(inp, lambda ctx: Reactive(ctx, target=0.8))
    _, below = _run(inp, lambda ctx: CraneEhpa(ctx, observed * 0.5, target=0.8))
    np.testing.assert_array_equal(below.held, reactive.held)  # the prediction lower: the origin metric decides
    _, above = _run(inp, lambda ctx: CraneEhpa(ctx, np.full_like(observed, 400.0), target=0.8))
    assert (above.capacity(f)[5:, 0] >= 400.0 / 0.8).all()  # the prediction higher: it decides
    assert (above.held[5:, 0] == above.held[5, 0]).all()  # held steady: the prediction does not move


def test_changing_future_demand_does_not_change_the_decisions_before_it():
    rng = np.random.default_rng(11)
    history = sinusoid(7) * rng.uniform(0.9, 1.1, 7 * PER_DAY)
    window = sinusoid(1) * rng.uniform(0.9, 1.1, PER_DAY)
    t = 15 * 60 + 7
    changed = window.copy()
    changed[t:] = rng.uniform(0.0, 500.0, PER_DAY - t)
    a = replay_input(window, forecast=False).with_history(history)
    b = replay_input(changed, forecast=False).with_history(history)
    settings = CraneSettings()
    pa, pb = predicted_peaks(a, settings), predicted_peaks(b, settings)
    np.testing.assert_array_equal(pa[: t + 1], pb[: t + 1])
    assert np.isfinite(pa).all()
    _, sa = _run(a, lambda ctx: CraneEhpa(ctx, pa, target=0.7))
    _, sb = _run(b, lambda ctx: CraneEhpa(ctx, pb, target=0.7))
    np.testing.assert_array_equal(sa.orders[: t + 1], sb.orders[: t + 1])
    np.testing.assert_array_equal(sa.held[: t + 1], sb.held[: t + 1])
    assert not np.array_equal(sa.held, sb.held)
