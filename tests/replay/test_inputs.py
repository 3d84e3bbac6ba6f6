"""From a stored series to a replay input: metric, units (history only), window."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from prescale.catalog import resolve_profile
from prescale.replay import ReplayError
from prescale.replay.inputs import choose_metric, demand_map, make_input, plan_window
from tests.conftest import REPO


@pytest.mark.parametrize(
    ("app", "available", "expected"),
    [
        pytest.param("web", ["cpu_util_pct", "app.requests_per_s"], "app.requests_per_s", id="declared-source-wins"),
        pytest.param("transcoder", ["cpu_util_pct", "streams"], "streams", id="a-profile-metric-name"),
        pytest.param("transcoder", ["app.requests_per_s", "cpu_util_pct"], "app.requests_per_s", id="then-requests"),
        pytest.param("transcoder", ["memory_util_pct", "cpu_util_pct"], "cpu_util_pct", id="then-cpu"),
        pytest.param("transcoder", ["b", "a"], "a", id="else-the-first-by-name"),
    ],
)
def test_choose_metric(app, available, expected):
    assert choose_metric(available, resolve_profile(app, REPO / "infra" / "apps")) == expected


def test_declared_units_are_the_apps_own_unless_a_peak_scale_maps_the_trace():
    prof = resolve_profile("web", REPO / "infra" / "apps")
    source = next(m for m in prof.metrics if m.source)
    history = np.linspace(0.0, 100.0, 101)
    declared = demand_map(history, prof, source.source)
    assert declared.mode == "declared"
    assert declared.apply(np.array(10.0)).tolist() == [10.0 * source.source_scale if m.source else 0.0
                                                        for m in prof.metrics]
    scaled = demand_map(history, prof, source.source, peak_scale=2.0)
    assert scaled.mode == "scaled"
    assert scaled.apply(np.array(scaled.busy)).tolist() == pytest.approx(
        [2.0 * prof.example_demand.peak[m] for m in prof.metric_names])


def test_an_unknown_metric_is_a_clear_error():
    with pytest.raises(ReplayError, match="has no metric 'nope'"):
        choose_metric(["cpu_util_pct"], resolve_profile("web", REPO / "infra" / "apps"), "nope")


def test_the_unit_mapping_reads_the_history_only_and_scales_forecasts_alike():
    prof = resolve_profile("transcoder", REPO / "infra" / "apps")
    values = np.r_[np.linspace(1, 10, 300), np.full(200, 1000.0)]  # the window's spike must not change the scale
    window = plan_window(len(values), 60, days=200 / 1440, max_lead_seconds=900, warmup_minutes=10)
    dmap = demand_map(values[: window.replay_start], prof, "x")
    assert dmap.busy == pytest.approx(np.quantile(values[: window.replay_start], 0.99))
    steps = len(values) - window.replay_start
    forecast = np.ones((steps, window.horizon, 3)) * np.array([1.0, 2.0, 3.0])
    index = pd.date_range("2026-01-01", periods=len(values), freq="60s", tz="UTC")
    inp = make_input("app", index, values, window, dmap, forecast=forecast, quantiles=(0.1, 0.5, 0.9))
    assert inp.forecast[0, 0, 0].tolist() == pytest.approx((np.array([1.0, 2.0, 3.0]) * dmap.scale[0]).tolist())
    assert inp.history_peak[0] == pytest.approx(values[: window.replay_start].max() * dmap.scale[0])
    assert inp.start == window.warmup == 30  # 2 x 900 s lead beats the 10-minute warm-up


def test_a_window_longer_than_the_series_says_how_many_days_fit():
    with pytest.raises(ReplayError, match="ask for at most"):
        plan_window(1000, 60, days=2.0, max_lead_seconds=120, min_history_rows=100)
