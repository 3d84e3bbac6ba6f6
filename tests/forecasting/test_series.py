"""The regular grid: step inference, gaps kept as gaps, short gaps filled, windows, fingerprints."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.series import (
    SeriesError,
    fill_short_gaps,
    fingerprint,
    long_to_wide,
    panel_from_long,
    panel_from_wide,
    valid_origins,
)


def _frame(values, step="60s"):
    return pd.DataFrame({"m": values}, index=pd.date_range("2024-01-01", periods=len(values), freq=step, tz="UTC"))


def test_missing_rows_become_nan_rows_not_zeros():
    frame = _frame(np.arange(10.0)).drop(index=_frame(np.arange(10.0)).index[3:8])
    panel = panel_from_wide(frame, max_fill_steps=2)
    assert len(panel) == 10
    assert np.isnan(panel.values[3:8, 0]).all()
    assert panel.step_seconds == 60


@pytest.mark.parametrize(
    ("gap", "max_fill", "filled"),
    [pytest.param(2, 3, 2, id="short-gap-interpolated"), pytest.param(4, 3, 0, id="long-gap-kept"),
     pytest.param(3, 3, 3, id="gap-at-the-limit-interpolated")],
)
def test_fill_short_gaps(gap, max_fill, filled):
    column = np.arange(12.0)
    column[4 : 4 + gap] = np.nan
    out, count = fill_short_gaps(column[:, None], max_fill)
    assert count == filled
    if filled:
        np.testing.assert_allclose(out[:, 0], np.arange(12.0))
    else:
        assert np.isnan(out[4 : 4 + gap, 0]).all()


def test_edges_are_never_extrapolated():
    column = np.array([np.nan, 1.0, 2.0, np.nan])
    out, count = fill_short_gaps(column[:, None], 5)
    assert count == 0 and np.isnan(out[[0, 3], 0]).all()


def test_long_rows_pivot_to_a_panel_and_unknown_metrics_are_named():
    ts = pd.date_range("2024-01-01", periods=4, freq="300s", tz="UTC")
    rows = pd.DataFrame({"ts": list(ts) * 2, "metric": ["a"] * 4 + ["b"] * 4, "value": np.arange(8.0)})
    panel = panel_from_long(rows)
    assert panel.metrics == ("a", "b") and panel.values.shape == (4, 2)
    with pytest.raises(SeriesError, match=r"\['c'\]"):
        panel_from_long(rows, metrics=["a", "c"])


def test_valid_origins_skip_windows_touching_a_gap():
    observed = np.ones(20, dtype=bool)
    observed[10] = False
    origins = valid_origins(observed, input_steps=3, horizon=2, first=0, last=19)
    # an origin t uses rows t-2..t+2: every t with 10 in that range is out
    assert set(origins) == set(range(2, 18)) - set(range(8, 13))


def test_fingerprint_changes_with_any_value():
    a = panel_from_wide(_frame(np.arange(10.0)))
    b = panel_from_wide(_frame(np.r_[np.arange(9.0), 9.5]))
    assert fingerprint(a) == fingerprint(panel_from_wide(_frame(np.arange(10.0))))
    assert fingerprint(a) != fingerprint(b)


def test_duplicate_only_timestamps_are_refused():
    frame = pd.DataFrame({"m": [1.0, 2.0]}, index=pd.DatetimeIndex(["2024-01-01"] * 2, tz="UTC"))
    with pytest.raises(SeriesError, match="at least 2 timestamps"):
        panel_from_wide(frame)


@pytest.mark.parametrize("seed", range(40))
def test_long_to_wide_is_the_pivot_table_mean(seed):
    """Duplicates averaged, NaN values skipped, timestamps and metrics without a value dropped, metrics sorted."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 200))
    ts = pd.date_range("2026-01-01", periods=n, freq="60s", tz="UTC")
    parts = []
    for metric in ["mem", "app.rps", "cpu"][: int(rng.integers(1, 4))]:
        keep = rng.random(n) < 0.8
        values = rng.random(int(keep.sum()))
        values[rng.random(len(values)) < 0.1] = np.nan
        parts.append(pd.DataFrame({"ts": ts[keep], "metric": metric, "value": values}))
    rows = pd.concat(parts, ignore_index=True)
    rows = pd.concat([rows, rows.sample(frac=0.2, random_state=seed).assign(value=lambda d: d.value + 1)])
    rows = rows.sample(frac=1.0, random_state=seed)
    expected = rows.pivot_table(index="ts", columns="metric", values="value", aggfunc="mean")
    got = long_to_wide(rows)
    assert list(got.columns) == list(expected.columns)
    assert got.index.equals(expected.index)
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=1e-12, equal_nan=True)
