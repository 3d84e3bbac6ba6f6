"""The darts LSTM candidate: shapes, quantile order, seeded determinism, save/load, global fits."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl

from models.component import TrainPart
from models.lstm import (
    LstmCandidate,
    LstmConfig,
    Scaling,
    lagged,
    likelihood_levels,
    samples_per_series,
    unpack_quantiles,
)
from tests.forecasting.conftest import DAY, STEP, daily_panel, tiny_config

QS = (0.1, 0.5, 0.9)


def _config(**overrides) -> LstmConfig:
    """A 2-hour input, 3 steps ahead at 5 minutes, no lags: small enough to fit in seconds."""
    train = tiny_config(input_minutes=120, quantiles=QS, max_samples=400, seasonal_lag=False, lag_window_minutes=0)
    return replace(LstmConfig.from_train(train, STEP), **overrides)


@pytest.fixture(scope="module")
def fitted():
    panel = daily_panel(3.0)
    return panel, LstmCandidate(_config()).fit([TrainPart(panel, 2 * DAY, int(2.5 * DAY))])


def test_backtest_gives_ordered_quantiles_for_every_origin(fitted):
    panel, model = fitted
    origins = np.arange(int(2.5 * DAY), 3 * DAY - 3)
    q = model.predict_at(panel, origins)
    assert q.shape == (len(origins), 3, 1, 3)
    assert np.isfinite(q).all() and (np.diff(q, axis=-1) >= 0).all()
    # it learnt the level: the median is in the data's range, not around the scaled 0..1
    assert 3 < np.median(q[..., 1]) < 20


def test_forecast_after_the_last_row_matches_the_backtest_from_the_same_origin(fitted):
    panel, model = fitted
    origin = 3 * DAY - 10
    backtest = model.predict_at(panel, np.array([origin]))[0]
    ahead = model.forecast(panel.head(origin + 1))
    np.testing.assert_allclose(ahead, backtest, rtol=1e-4, atol=1e-4)


def test_same_seed_same_model_other_seed_other_model():
    panel = daily_panel(2.5)
    part = [TrainPart(panel, 2 * DAY - 40, 2 * DAY + 20)]
    origins = np.arange(2 * DAY + 40, 2 * DAY + 60)
    a = LstmCandidate(_config(seed=3)).fit(part).predict_at(panel, origins)
    b = LstmCandidate(_config(seed=3)).fit(part).predict_at(panel, origins)
    c = LstmCandidate(_config(seed=4)).fit(part).predict_at(panel, origins)
    np.testing.assert_allclose(a, b, rtol=1e-5)
    assert not np.allclose(a, c, rtol=1e-3)


def test_save_and_load_round_trip(fitted, tmp_path):
    panel, model = fitted
    model.save(tmp_path / "m")
    again = LstmCandidate.load(tmp_path / "m")
    np.testing.assert_allclose(again.forecast(panel), model.forecast(panel), rtol=1e-5)
    assert again.config == model.config


def test_one_global_model_for_several_series_keeps_each_scale():
    small, large = daily_panel(2.5, seed=1), daily_panel(2.5, seed=2)
    large = type(large)(large.index, large.values * 100, large.metrics, large.step_seconds)
    parts = [TrainPart(p, 2 * DAY - 40, 2 * DAY + 20) for p in (small, large)]
    model = LstmCandidate(_config(seasonal_lag=True)).fit(parts)
    origins = np.arange(2 * DAY + 40, 2 * DAY + 60)
    med_small = np.median(model.predict_at(small, origins, part=0)[..., 1])
    med_large = np.median(model.predict_at(large, origins, part=1)[..., 1])
    assert 50 < med_large / med_small < 200


def test_multivariate_output_has_one_slot_per_metric():
    panel = daily_panel(2.5, metrics=("cpu_cores", "memory_gib"))
    model = LstmCandidate(_config()).fit([TrainPart(panel, 2 * DAY - 40, 2 * DAY + 20)])
    q = model.predict_at(panel, np.arange(2 * DAY + 40, 2 * DAY + 50))
    assert q.shape == (10, 3, 2, 3)
    assert np.median(q[:, :, 1, 1]) > 1.5 * np.median(q[:, :, 0, 1])  # metric 2 is twice metric 1


def test_too_short_to_train_names_the_window():
    panel = daily_panel(0.1)
    with pytest.raises(ValueError, match="input window 24"):
        LstmCandidate(_config()).fit([TrainPart(panel, 20, 25)])


def test_scaling_inverts_exactly():
    values = np.array([[0.0, -5.0], [10.0, 5.0], [3.0, 0.0]])
    for log in (False, True):
        s = Scaling.fit(values, log_target=log)
        np.testing.assert_allclose(s.inverse(s.forward(values), axis=1), values, atol=1e-9)


def test_a_trained_lstm_survives_pickling_between_processes(trained):
    """Dask ships training results between processes: darts alone would drop the network's weights."""
    import pickle

    (lstm,) = trained.candidates["lstm"].forecaster.components
    before = lstm.forecast(trained.panel)
    again = lstm.forecast(trained.panel)  # the reused prediction trainer changes nothing
    shipped = pickle.loads(pickle.dumps(lstm))
    # shipped on untouched (training worker -> flow -> publishing worker): no trainer, weights still there
    twice = pickle.loads(pickle.dumps(shipped))
    assert shipped.model is not None and shipped.model.model is not None
    np.testing.assert_array_equal(before, again)
    np.testing.assert_allclose(shipped.forecast(trained.panel), before, rtol=1e-6)
    np.testing.assert_allclose(twice.forecast(trained.panel), before, rtol=1e-6)


def test_lagged_values_are_centred_means_of_the_observed_rows_a_lag_back():
    values = np.arange(20.0)[:, None]
    values[6] = np.nan
    rows = np.array([10, 12, 30])
    raw = lagged(values, rows, [5], window=0)
    np.testing.assert_array_equal(raw[:2, 0], [5.0, 7.0])
    smooth = lagged(values, rows, [5], window=1)
    np.testing.assert_allclose(smooth[:2, 0], [(4 + 5) / 2, (7 + 8) / 2])  # row 6 is missing
    assert np.isnan(raw[2, 0]) and np.isnan(smooth[2, 0])  # 30 - 5 lies past the panel
    two = lagged(values, rows[:1], [5, 10], window=2)
    np.testing.assert_allclose(two, [[np.mean([3, 4, 5, 7]), np.mean([0, 1, 2])]])


def test_smoothed_lags_never_read_past_the_origin():
    panel = daily_panel(3.0)
    model = LstmCandidate(_config(seasonal_lag=True, lag_window=6)).fit([TrainPart(panel, 2 * DAY, int(2.5 * DAY))])
    origin = int(2.5 * DAY)
    values = panel.values.copy()
    values[origin + 1 :] *= 10  # the future changes...
    changed = type(panel)(panel.index, values, panel.metrics, panel.step_seconds)
    before = model.predict_at(panel, np.array([origin]))
    np.testing.assert_allclose(model.predict_at(changed, np.array([origin])), before, rtol=1e-6)  # ...the forecast not
    np.testing.assert_allclose(model.forecast(panel.head(origin + 1))[None], before, rtol=1e-4, atol=1e-4)


def test_a_lag_window_reaching_past_the_origin_is_refused():
    panel = daily_panel(3.0)
    with pytest.raises(ValueError, match="at most 285"):
        LstmCandidate(_config(seasonal_lag=True, lag_window=286)).fit([TrainPart(panel, 2 * DAY, int(2.5 * DAY))])


class _FailAtTrainEnd(pl.Callback):
    """Fails a fit after its last epoch, once darts' checkpoints are on disk; notes which ones were."""

    def __init__(self, scratch: Path, written: list[str]) -> None:
        self.scratch, self.written = scratch, written

    def on_train_end(self, trainer, pl_module) -> None:
        self.written.extend(p.name for p in self.scratch.rglob("*.ckpt"))
        raise RuntimeError("disk full after the last epoch")


def test_checkpoints_go_under_the_scratch_folder_and_are_removed_even_when_the_fit_fails(tmp_path):
    scratch = tmp_path / "home" / "tmp" / "checkpoints"
    written: list[str] = []
    panel = daily_panel(2.5)
    with pytest.raises(RuntimeError, match="disk full"):
        LstmCandidate(_config(epochs=1), scratch=scratch).fit([TrainPart(panel, 2 * DAY, int(2.3 * DAY))],
                                                              callbacks=[_FailAtTrainEnd(scratch, written)])
    assert any(name.startswith("best-") for name in written), "darts did checkpoint under the scratch folder"
    assert list(scratch.iterdir()) == []


def test_asymmetric_quantiles_fit_through_their_mirrors_and_come_back_in_order():
    levels = (0.05, 0.1, 0.5, 0.9, 0.95, 0.99, 0.995)
    assert likelihood_levels(levels) == (0.005, 0.01, 0.05, 0.1, 0.5, 0.9, 0.95, 0.99, 0.995)
    assert likelihood_levels((0.1, 0.5, 0.9)) == (0.1, 0.5, 0.9)  # symmetric: what older models saved
    columns = np.arange(2 * 9, dtype=float)[::-1].reshape(1, 18)  # two metrics, nine levels each, unsorted
    out = unpack_quantiles(columns, 2, levels)
    assert out.shape == (1, 2, 7)
    np.testing.assert_array_equal(out[0, 0], [11, 12, 13, 14, 15, 16, 17])  # levels 2.. of the sorted nine
    panel = daily_panel(2.5)
    model = LstmCandidate(_config(quantiles=levels)).fit([TrainPart(panel, 2 * DAY - 40, 2 * DAY + 20)])
    q = model.predict_at(panel, np.arange(2 * DAY + 40, 2 * DAY + 50))
    assert q.shape == (10, 3, 1, 7) and (np.diff(q, axis=-1) >= 0).all()


@pytest.mark.parametrize(("series", "expected"), [
    pytest.param(1, 20_000, id="one-series-keeps-the-budget"),
    pytest.param(2, 20_000, id="two-get-a-budget-each"),
    pytest.param(20, 3_000, id="twenty-share-three-budgets"),
    pytest.param(200, 576, id="many-stop-at-two-days"),
])
def test_a_global_fit_splits_a_bounded_budget_across_its_series(series, expected):
    assert samples_per_series(20_000, series=series, season=DAY) == expected
    config = LstmConfig.from_train(tiny_config(max_samples=20_000, batch_size=64), STEP, series=series)
    assert config.max_samples == expected


def test_a_global_fit_keeps_day_long_pieces_spread_over_the_training_span():
    from darts import TimeSeries

    from models.lstm import training_windows

    config = _config()  # input 24 + horizon 3 rows, a day = 288 rows
    index = np.arange(10 * DAY)
    series = [TimeSeries.from_values(index[:4 * DAY].astype(np.float32)),
              TimeSeries.from_values(index[4 * DAY:].astype(np.float32))]
    window = config.input_steps + config.horizon
    newest = training_windows(series, 600, config, spread=False)
    spread = training_windows(series, 600, config, spread=True)
    windows_of = [len(s) - window + 1 for s in spread]
    assert sum(len(s) - window + 1 for s in newest) == 600 and newest[0].values()[0, 0] == 10 * DAY - 600 - window + 1
    assert len(spread) == 3 and sum(windows_of) == 600  # three pieces of 200 windows (< a day each)
    starts = [float(s.values()[0, 0]) for s in spread]
    assert starts[0] == 0 and starts[-1] == 10 * DAY - window + 1 - 200  # the oldest and the newest windows
    assert spread[-1].values()[-1, 0] == 10 * DAY - 1
