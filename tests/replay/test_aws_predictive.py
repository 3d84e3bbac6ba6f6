"""AWS predictive scaling with target tracking (``prescale/replay/policies/aws.py``) on hand-made demand.

One-type world of ``builders.py`` (``vm``: 10 units, ready one 60-s step after the order): two weeks of a
repeating daily peak as history, then a day replayed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from prescale.replay import ReplayConfig, run_rule, score_series
from prescale.replay.engine import context
from prescale.replay.policies import Reactive
from prescale.replay.policies.aws import AwsPredictive, AwsSettings, hourly_forecast, scheduled_load
from tests.replay.builders import START, STEP, fleet, replay_input

PER_DAY = 86_400 // STEP
BASE, PEAK = 10.0, 100.0


def daily_peak(days: float, *, peak_hour: int = 12) -> np.ndarray:
    """``BASE`` all day, ``PEAK`` from ``peak_hour``:00 for one hour, every day."""
    minutes = np.arange(round(days * PER_DAY)) % PER_DAY
    return np.where((minutes >= peak_hour * 60) & (minutes < (peak_hour + 1) * 60), PEAK, BASE)


def with_history(window: np.ndarray, history: np.ndarray, **kwargs):
    """An input over ``window`` starting at builders.START, ``history`` the steps just before it."""
    return replay_input(window, forecast=False, **kwargs).with_history(history)


def _run(inp, rule_of, *, with_metal=False):
    f = fleet(with_metal=with_metal)
    ctx = context(inp, f, ReplayConfig())
    series = run_rule(f, rule_of(ctx), len(inp.index))
    return f, ctx, series


def _aws(inp, *, target=1.0, settings=AwsSettings(), **kwargs):
    return _run(inp, lambda ctx: AwsPredictive(ctx, scheduled_load(inp, settings), target=target, **kwargs))


def _reactive(inp, *, target=1.0):
    return _run(inp, lambda ctx: Reactive(ctx, target=target, tolerance=0.0))


def test_the_hourly_forecast_repeats_a_daily_pattern_for_the_next_two_days():
    stamps = pd.date_range(START - pd.Timedelta(days=14), periods=14 * PER_DAY, freq=f"{STEP}s")
    hourly = pd.DataFrame(daily_peak(14), index=stamps).resample("1h").mean()
    hours = pd.date_range(START, periods=48, freq="1h")
    forecast = hourly_forecast(hourly, START, hours)
    expected = np.where(hours.hour == 12, PEAK, BASE)[:, None]
    np.testing.assert_allclose(forecast, expected)


def test_no_forecast_before_24_observed_hours():
    stamps = pd.date_range(START - pd.Timedelta(hours=23), periods=23 * 60, freq=f"{STEP}s")
    hourly = pd.DataFrame(np.full(len(stamps), BASE), index=stamps).resample("1h").mean()
    assert hourly_forecast(hourly, START, pd.date_range(START, periods=2, freq="1h")) is None


def test_a_weekday_pattern_scales_the_daily_profile():
    """Weekends at half the weekday level: with a week of history the forecast follows the weekday."""
    stamps = pd.date_range(START - pd.Timedelta(days=14), periods=14 * 24, freq="1h")  # START is a Monday
    values = np.where(stamps.day_of_week >= 5, 50.0, 100.0)
    hourly = pd.DataFrame(values, index=stamps)
    hours = pd.date_range(START + pd.Timedelta(days=5), periods=24, freq="1h")  # Saturday
    forecast = hourly_forecast(hourly, START + pd.Timedelta(days=5), hours)
    np.testing.assert_allclose(forecast[:, 0], 50.0)  # flat days: the weekday factor alone


def test_capacity_is_scheduled_a_buffer_ahead_of_a_repeating_daily_peak():
    """The 12:00 peak's capacity is ordered at 11:55 (300 s buffer), serving from 11:56; reactive waits for it."""
    inp = with_history(daily_peak(1), daily_peak(14))
    noon = 12 * 60
    f, _, aws = _aws(inp)
    ordered_at = np.flatnonzero(aws.orders[:, 0] > 0)
    assert noon - 5 in ordered_at and not (ordered_at[(ordered_at > 60) & (ordered_at < noon - 5)]).any()
    cap = aws.capacity(f)[:, 0]
    assert cap[noon - 5] == pytest.approx(BASE)  # ordered at 11:55, still booting during that step
    assert cap[noon - 4 : noon + 60].min() >= PEAK
    _, _, reactive = _reactive(inp)
    assert reactive.capacity(f)[noon, 0] < PEAK  # observed the peak only at 12:01
    score = score_series(f, aws, inp.demand, start=60)
    assert score.violation_steps == 0
    assert score_series(f, reactive, inp.demand, start=60).violation_steps >= 1


def test_a_buffer_of_ten_minutes_orders_ten_minutes_ahead():
    inp = with_history(daily_peak(1), daily_peak(14))
    _, _, aws = _aws(inp, settings=AwsSettings(buffer_seconds=600))
    ordered_at = np.flatnonzero(aws.orders[:, 0] > 0)
    assert 12 * 60 - 10 in ordered_at


def test_never_holds_less_than_target_tracking_alone():
    """History with a noon peak, a window of noise at another level: whatever the forecast says, AWS holds at
    least what target tracking on observed demand holds (it only adds a floor), at every step."""
    rng = np.random.default_rng(7)
    window = rng.uniform(20.0, 140.0, PER_DAY)
    inp = with_history(window, daily_peak(14))
    _, _, aws = _aws(inp, target=0.8)
    _, _, reactive = _reactive(inp, target=0.8)
    assert (aws.held[:, 0] >= reactive.held[:, 0]).all()
    assert (aws.held[:, 0] > reactive.held[:, 0]).any()  # the forecast's floor did bind somewhere


def test_a_forecast_that_drops_releases_nothing_while_demand_stays_high():
    """The history says the peak ends at 13:00; today it lasts until 14:00: capacity stays up for it."""
    history = daily_peak(14)
    minutes = np.arange(PER_DAY)
    today = np.where((minutes >= 12 * 60) & (minutes < 14 * 60), PEAK, BASE)
    inp = with_history(today, history)
    f, _, aws = _aws(inp)
    cap = aws.capacity(f)[:, 0]
    assert cap[13 * 60 : 14 * 60].min() >= PEAK


def test_without_history_it_is_target_tracking_until_a_day_is_observed():
    inp = replay_input(daily_peak(1), forecast=False)
    assert np.isnan(scheduled_load(inp, AwsSettings())).all()
    _, _, aws = _aws(inp)
    _, _, reactive = _reactive(inp)
    np.testing.assert_array_equal(aws.held, reactive.held)


def test_changing_future_demand_does_not_change_the_decisions_before_it():
    rng = np.random.default_rng(3)
    window = daily_peak(1) * rng.uniform(0.8, 1.2, PER_DAY)
    t = 11 * 60 + 50
    changed = window.copy()
    changed[t:] = rng.uniform(0.0, 300.0, PER_DAY - t)
    a, b = with_history(window, daily_peak(14)), with_history(changed, daily_peak(14))
    settings = AwsSettings()
    np.testing.assert_array_equal(scheduled_load(a, settings)[: t + 1], scheduled_load(b, settings)[: t + 1])
    _, _, sa = _aws(a)
    _, _, sb = _aws(b)
    np.testing.assert_array_equal(sa.orders[: t + 1], sb.orders[: t + 1])
    np.testing.assert_array_equal(sa.held[: t + 1], sb.held[: t + 1])
    assert not np.array_equal(sa.held, sb.held)  # the change did matter afterwards
