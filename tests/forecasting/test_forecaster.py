"""The deployable forecaster applies its calibration with the hours of the rows it forecasts, and a forecaster
saved before the per-level calibration (central-interval offsets ``(H, M, K)``) still loads and forecasts."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from models.baselines import Persistence
from models.forecaster import Forecaster

OLD_QS = [0.05, 0.1, 0.5, 0.9, 0.95]
QS = (0.05, 0.1, 0.5, 0.9, 0.95, 0.99, 0.995)


def _history(last: str = "2024-03-04 10:55") -> pd.DataFrame:
    index = pd.date_range(end=last, periods=12, freq="300s", tz="UTC")
    return pd.DataFrame({"cpu_cores": np.arange(12.0)}, index=index)


def test_a_forecaster_saved_with_central_interval_offsets_still_loads_and_forecasts(tmp_path):
    # written by hand as an older prescale wrote it: five levels, CQR offsets (H=3, M=1, K=2 intervals)
    component = tmp_path / "component-0-persistence"
    component.mkdir()
    (component / "baseline.json").write_text(json.dumps({
        "name": "persistence", "season": 288, "horizon": 3, "quantiles": OLD_QS, "params": [{}],
        "offsets": [[[-2.0, -1.0, 0.0, 1.0, 2.0]]] * 3,
    }))
    (tmp_path / "forecaster.json").write_text(json.dumps({
        "candidate": "persistence", "metrics": ["cpu_cores"], "step_seconds": 300, "horizon": 3,
        "quantiles": OLD_QS, "components": ["component-0-persistence"], "weights": [[1.0, 1.0, 1.0]],
        "offsets": [[[0.5, 0.25]], [[0.5, 0.25]], [[1.0, 0.0]]], "lstm_part": 0, "info": {},
    }))
    forecaster = Forecaster.load(tmp_path)
    assert forecaster.calibration_bins == 1
    forecast = forecaster.forecast(_history())
    # last value 11; the 90% interval [-2, 2] widened by 0.5 (1.0 at the last step), the 80% one by 0.25 (0)
    np.testing.assert_allclose(forecast.values[0, 0], [8.5, 9.75, 11.0, 12.25, 13.5])
    np.testing.assert_allclose(forecast.values[2, 0], [8.0, 10.0, 11.0, 12.0, 14.0])


def _binned(offset_bin: int) -> Forecaster:
    model = Persistence(season=288, horizon=3, quantiles=QS)
    model.params = [{}]
    model.offsets = np.zeros((3, 1, len(QS)))
    offsets = np.zeros((24, 3, 1, len(QS)))
    offsets[offset_bin, :, :, -1] = 5.0  # only this hour's 0.995 level is raised
    return Forecaster(candidate="persistence", metrics=("cpu_cores",), step_seconds=300, horizon=3, quantiles=QS,
                      components=[model], weights=np.ones((1, 3)), offsets=offsets)


@pytest.mark.parametrize(
    ("last", "raised_steps"),
    [pytest.param("2024-03-04 10:40", [True, True, True], id="all-targets-in-hour-10"),
     pytest.param("2024-03-04 10:50", [True, False, False], id="targets-cross-into-hour-11"),
     pytest.param("2024-03-04 09:55", [True, True, True], id="origin-in-hour-9-targets-in-hour-10"),
     pytest.param("2024-03-04 11:00", [False, False, False], id="targets-in-hour-11")],
)
def test_forecast_uses_the_hour_bin_of_each_target_row(last, raised_steps):
    forecaster = _binned(10)
    values = forecaster.forecast(_history(last)).values[:, 0, -1]
    np.testing.assert_allclose(values, np.where(raised_steps, 16.0, 11.0))


def test_binned_offsets_without_hours_are_refused():
    forecaster = _binned(3)
    with pytest.raises(ValueError, match="24 hour-of-day bins"):
        forecaster.calibrated(np.zeros((1, 3, 1, len(QS))))


def test_a_forecaster_round_trips_its_binned_offsets(tmp_path):
    forecaster = _binned(7)
    loaded = Forecaster.load(forecaster.save(tmp_path / "f"))
    assert loaded.calibration_bins == 24
    np.testing.assert_array_equal(loaded.offsets, forecaster.offsets)
