"""`Forecast`: shape checks, reading any quantile from a few, and refusing bad demand a user wrote."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from prescale.forecast import MAX_DEMAND, MAX_STEPS, Forecast, ForecastError, check_demand

START = pd.Timestamp("2026-03-02T10:00:00Z")


def normal_forecast(mu=100.0, sigma=10.0, levels=(0.1, 0.5, 0.9)) -> Forecast:
    values = np.array([[[norm.ppf(q, mu, sigma) for q in levels]]] * 3)
    return Forecast(START, 60, ["rps"], list(levels), values)


@pytest.mark.parametrize("q", [pytest.param(q, id=f"q{q}") for q in (0.1, 0.3, 0.5, 0.75, 0.95, 0.99, 0.01)])
def test_quantiles_of_a_normal_are_exact_inside_and_outside_the_grid(q):
    fc = normal_forecast()
    assert fc.quantile(q) == pytest.approx(np.full((3, 1), norm.ppf(q, 100, 10)))


def test_crossed_quantiles_are_sorted():
    values = np.array([[[120.0, 100.0, 90.0]]])
    fc = Forecast(START, 60, ["rps"], [0.1, 0.5, 0.9], values)
    assert fc.quantile(0.1)[0, 0] == 90.0 and fc.quantile(0.9)[0, 0] == 120.0


BAD = [
    pytest.param(dict(step_seconds=0), "step_seconds must be > 0", id="step"),
    pytest.param(dict(quantiles=[0.5, 0.1, 0.9]), "strictly increasing", id="unsorted-levels"),
    pytest.param(dict(quantiles=[0.0, 0.5, 1.0]), "in (0, 1)", id="levels-out-of-range"),
    pytest.param(dict(values=np.zeros((3, 2, 3))), "shaped (horizon >= 1, 1 metrics, 3 quantiles)", id="shape"),
    pytest.param(dict(values=np.full((2, 1, 3), np.nan)), "NaN", id="nan"),
]


@pytest.mark.parametrize(("change", "message"), BAD)
def test_bad_forecasts_name_the_value(change, message):
    args = dict(start=START, step_seconds=60, metrics=["rps"], quantiles=[0.1, 0.5, 0.9], values=np.ones((2, 1, 3)))
    args.update(change)
    with pytest.raises(ForecastError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Forecast(**args)


def test_from_median_and_json_round_trip():
    fc = Forecast.from_median(
        np.array([100.0, 200.0]), start="2026-03-02 10:00", step_seconds=60, metrics=["rps"], spread=0.1
    )
    assert fc.start == START  # naive timestamps are read as UTC
    assert fc.quantile(0.9)[:, 0] == pytest.approx([110.0, 220.0])
    back = Forecast.from_dict(fc.to_dict())
    assert np.array_equal(back.values, fc.values) and back.start == fc.start and back.metrics == fc.metrics
    assert list(fc.index) == [START, START + pd.Timedelta(minutes=1)]


def test_select_reorders_metrics_and_names_missing_ones():
    fc = Forecast(START, 60, ["a", "b"], [0.5], np.array([[[1.0], [2.0]]]))
    assert fc.select(["b", "a"]).values[0, :, 0].tolist() == [2.0, 1.0]
    with pytest.raises(ForecastError, match="no metric 'c'"):
        fc.select(["c"])


def test_since_drops_the_steps_that_ended_and_keeps_the_running_one():
    start = pd.Timestamp("2026-01-01T00:00:00Z")
    fc = Forecast.from_median(np.arange(6.0).reshape(6, 1), start=start, step_seconds=300, metrics=["rps"])
    assert fc.since(start - pd.Timedelta(minutes=1)) is fc  # nothing began yet
    running = fc.since(start + pd.Timedelta(minutes=7))  # step 0 ended, step 1 is running
    assert running.start == start + pd.Timedelta(minutes=5) and running.horizon == 5
    np.testing.assert_array_equal(running.quantile(0.5)[:, 0], [1.0, 2.0, 3.0, 4.0, 5.0])
    with pytest.raises(ForecastError, match="ended before"):
        fc.since(start + pd.Timedelta(minutes=30))


# --- demand a user wrote: refused, never repaired (a model's crossed quantiles are sorted: see above) ---

def _cell(t, m, k):
    return f"cell {t}/{m}/{k}"


DEMAND = [
    pytest.param((0, 0, 1), np.nan, "cell 0/0/1: nan is not a finite number", id="nan"),
    pytest.param((1, 0, 2), np.inf, "cell 1/0/2: inf is not a finite number", id="infinite"),
    pytest.param((1, 0, 0), -5.0, "cell 1/0/0: -5.0 is negative", id="negative"),
    pytest.param((0, 0, 2), 1e308, "cell 0/0/2: 1e+308 is above the largest demand accepted (1e+09", id="huge"),
    pytest.param((0, 0, 1), 0.5, "cell 0/0/1: 0.5 is below 1 at cell 0/0/0: quantiles must not decrease",
                 id="crossed-levels"),
]


@pytest.mark.parametrize(("where", "value", "message"), DEMAND)
def test_check_demand_names_the_first_bad_cell(where, value, message):
    values = np.tile([1.0, 2.0, 3.0], (2, 1, 1))
    values[where] = value
    with pytest.raises(ForecastError, match="^in file, " + re.escape(message)):
        check_demand(values, source="in file", cell=_cell)


def test_check_demand_accepts_zero_the_maximum_and_equal_levels():
    check_demand(np.array([[[0.0, 0.0, MAX_DEMAND]]]), source="f", cell=_cell)


def _json(**change):
    data = {"start": "2026-03-02T10:00:00Z", "step_seconds": 60, "metrics": ["rps"], "quantiles": [0.1, 0.5, 0.9],
            "values": [[[1.0, 2.0, 3.0]], [[2.0, 3.0, 4.0]]]}
    return {**data, **change}


FROM_DICT = [
    pytest.param([1, 2], "expected an object with keys", id="not-an-object"),
    pytest.param({"start": "2026-03-02T10:00:00Z"}, "lacks key(s) ['step_seconds'", id="missing-keys"),
    pytest.param(_json(start="yesterday"), "start must be an ISO 8601 time with a UTC offset", id="bad-start"),
    pytest.param(_json(start="2026-03-02T10:00:00"), "got '2026-03-02T10:00:00'", id="start-without-offset"),
    pytest.param(_json(step_seconds=True), "step_seconds must be a whole number", id="step-bool"),
    pytest.param(_json(step_seconds=10**20), "from 1 to 86400, got 100000000000000000000", id="step-huge"),
    pytest.param(_json(metrics="rps"), "metrics must be a non-empty list of names, got 'rps'", id="metrics-str"),
    pytest.param(_json(quantiles=["0.5"]), "quantiles must be a list of levels", id="level-str"),
    pytest.param(_json(quantiles=[0.9, 0.5, 0.1]), "quantiles must be strictly increasing", id="levels-out-of-order"),
    pytest.param(_json(values=[[[1.0, 2.0]]]), "values must be [step][metric][quantile]", id="values-shape"),
    pytest.param(_json(values=[[[1.0, "2", 3.0]]]), "values must be [step][metric][quantile]", id="values-string"),
    pytest.param(_json(values=[[[1.0, True, 3.0]]]), "values must be [step][metric][quantile]", id="values-bool"),
    pytest.param(_json(values=[[[1.0], [2.0, 3.0]]]), "values must be [step][metric][quantile]", id="values-ragged"),
    pytest.param(_json(values=[[[1.0, 2.0, 3.0]]] * (MAX_STEPS + 1)), "must hold 1 to 10080 steps", id="too-long"),
    pytest.param(_json(values=[[[1.0, -2.0, 3.0]]]), "values[0][0][1] (metric 'rps', level 0.5): -2.0 is negative",
                 id="negative"),
    pytest.param(_json(values=[[[3.0, 2.0, 1.0]]]), "values[0][0][1] (metric 'rps', level 0.5): 2 is below 3",
                 id="crossed"),
]


@pytest.mark.parametrize(("data", "message"), FROM_DICT)
def test_a_users_json_forecast_is_refused_with_the_field_named(data, message):
    with pytest.raises(ForecastError, match="^demand.json" + ".*" + re.escape(message)):
        Forecast.from_dict(data, source="demand.json")
