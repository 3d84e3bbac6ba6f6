"""The trainer-free inference path gives what darts' ``predict`` gives, and ``forecast_many`` what each forecast does.

``predict_at`` / ``forecast`` call the torch network directly (``models.torch_inference``); ``predict_at_darts`` /
``forecast_darts`` are darts' own path (Lightning trainer, ``TimeSeries``, encoders). They must agree within 1e-5 on
small trained models: the LSTM with its lagged covariates over two metrics, and TiDE, N-HiTS, TSMixer. A panel
with gaps checks that the same origins get a forecast (and the others NaN) and that the lag covariates are
gap-filled over the same frames.
"""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from models.baselines import SimpleExponentialSmoothing
from models.component import TrainPart
from models.darts_global import NHitsCandidate, TideCandidate, TsMixerCandidate
from models.forecaster import Forecaster, ForecasterInputError, forecast_many
from models.lstm import LstmCandidate, day_cos, day_sin, week_cos, week_sin
from models.torch_inference import calendar
from tests.forecasting.conftest import DAY, daily_panel, tiny_config

TOLERANCE = 1e-5
METRICS = ("cpu", "mem")


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def panel():
    return daily_panel(4.0, metrics=METRICS, seed=3)


@pytest.fixture(scope="module")
def gappy(panel):
    values = panel.values.copy()
    values[int(1.2 * DAY): int(1.3 * DAY)] = np.nan  # a long gap: lags a day later read NaN and are filled
    values[3 * DAY + 5: 3 * DAY + 9] = np.nan  # a short one inside the replayed span
    return replace(panel, values=values)


def _parts(panel):
    return [TrainPart(panel, 2 * DAY, 3 * DAY)]


@pytest.fixture(scope="module")
def lstms(panel):
    """Two networks of one architecture (seeds 0 and 1), with a day's lag averaged over +-30 minutes."""
    config = tiny_config(max_samples=400, lstm_members=2)
    members = LstmCandidate.train(_parts(panel), config)[0].members
    assert members[0].lags() and members[0].config.lag_window > 0  # the covariates this test is about
    return members


@pytest.fixture(scope="module", params=[TideCandidate, NHitsCandidate, TsMixerCandidate], ids=lambda c: c.name)
def global_model(request, panel):
    return request.param.train(_parts(panel), tiny_config(max_samples=400))[0].members[0]


def _models(lstms, global_model):
    return [lstms[0], global_model]


def test_the_calendar_is_the_encoders_own_values():
    index = pd.date_range("2024-02-28 22:00", periods=2000, freq="7min")  # across days, weeks, a leap day
    expected = np.stack([f(index) for f in (day_sin, day_cos, week_sin, week_cos)], axis=1)
    np.testing.assert_array_equal(calendar(index.as_unit("ns").asi8), expected)


@pytest.mark.parametrize("end", [4 * DAY, 3 * DAY + 40, int(2.5 * DAY)], ids=["last", "mid", "early"])
def test_a_forecast_matches_darts_predict(lstms, global_model, panel, end):
    for model in _models(lstms, global_model):
        head = panel.head(end)
        direct, darts = model.forecast(head), model.forecast_darts(head)
        assert direct.shape == (3, len(METRICS), len(model.config.quantiles))
        np.testing.assert_allclose(direct, darts, rtol=0, atol=TOLERANCE, err_msg=model.name)


@pytest.mark.parametrize("which", ["whole", "gappy"])
def test_historical_forecasts_match_darts_at_every_origin(lstms, global_model, panel, gappy, which):
    data = panel if which == "whole" else gappy
    origins = np.arange(DAY + 10, 4 * DAY - 1, 5)
    for model in _models(lstms, global_model):
        direct, darts = model.predict_at(data, origins), model.predict_at_darts(data, origins)
        np.testing.assert_array_equal(np.isnan(direct), np.isnan(darts), err_msg=model.name)
        assert np.isfinite(direct).any()
        if which == "gappy":  # origins whose input or target rows touch a gap get none, on both paths
            assert np.isnan(direct).all(axis=(1, 2, 3)).sum() > 0
        np.testing.assert_allclose(direct, darts, rtol=0, atol=TOLERANCE, err_msg=model.name)


def _forecaster(components, weights, *, quantiles, offset=0.0):
    h = components[0].config.horizon if hasattr(components[0], "config") else 3
    return Forecaster(candidate="+".join(c.name for c in components), metrics=METRICS, step_seconds=300,
                      horizon=h, quantiles=quantiles, components=list(components),
                      weights=np.asarray(weights, dtype=np.float64),
                      offsets=np.full((1, h, len(METRICS), len(quantiles)), offset))


@pytest.fixture(scope="module")
def forecasters(lstms, panel):
    qs = lstms[0].config.quantiles
    ses = SimpleExponentialSmoothing.train(_parts(panel), tiny_config(max_samples=400))[0].members[0]
    return [
        _forecaster([lstms[0], lstms[1]], np.full((2, 3), 0.5), quantiles=qs),  # the LSTM's networks averaged
        _forecaster([lstms[0], ses], [[0.7, 0.6, 0.5], [0.3, 0.4, 0.5]], quantiles=qs, offset=0.1),  # a blend
        _forecaster([ses], np.ones((1, 3)), quantiles=qs),  # a baseline champion
        _forecaster([lstms[1]], np.ones((1, 3)), quantiles=qs, offset=-0.2),  # the same network, another app
    ]


def test_forecast_many_gives_each_jobs_own_forecast_and_returns_failures(forecasters, panel):
    frame = panel.to_frame()
    jobs = [(f, frame.iloc[: len(frame) - k]) for k, f in enumerate(forecasters)]
    jobs += [(forecasters[0], frame.iloc[-100:]),  # the input window, but too short for the day-old lags
             (forecasters[1], frame.drop(columns="mem")),  # a metric missing
             (forecasters[3], frame.iloc[: 2 * DAY + 7])]
    got = forecast_many(jobs)
    assert len(got) == len(jobs)
    for (forecaster, history), result in zip(jobs[:4], got[:4], strict=True):
        alone = forecaster.forecast(history)
        assert result.start == alone.start
        np.testing.assert_allclose(result.values, alone.values, rtol=0, atol=TOLERANCE)
    assert isinstance(got[4], ValueError) and "at least" in str(got[4])
    assert isinstance(got[5], ForecasterInputError) and "mem" in str(got[5])
    np.testing.assert_allclose(got[6].values, forecasters[3].forecast(jobs[6][1]).values, rtol=0, atol=TOLERANCE)


def test_a_forecaster_forecasts_through_the_direct_path_as_darts_would(forecasters, panel):
    forecaster = forecasters[1]
    history = panel.to_frame()
    direct = forecaster.forecast(history).values
    darts_parts = [c.forecast_darts(forecaster._panel(history)) if hasattr(c, "forecast_darts")
                   else c.forecast(forecaster._panel(history)) for c in forecaster.components]
    via_darts = forecaster._finish(forecaster._panel(history), darts_parts).values
    np.testing.assert_allclose(direct, via_darts, rtol=0, atol=TOLERANCE)


def test_one_network_forecasts_from_many_threads_at_once(lstms, panel):
    """darts' reversible norm keeps its statistics on the module between its two halves: runs must not interleave."""
    model = lstms[0]
    ends = [3 * DAY + k * 7 for k in range(8)]
    expected = [model.forecast(panel.head(end)) for end in ends]
    got: dict[int, list[np.ndarray]] = {k: [] for k in range(len(ends))}

    def work(k: int) -> None:
        for _ in range(20):
            got[k].append(model.forecast(panel.head(ends[k])))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(ends))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k, value in enumerate(expected):
        assert len(got[k]) == 20
        for result in got[k]:
            np.testing.assert_allclose(result, value, rtol=0, atol=TOLERANCE)
