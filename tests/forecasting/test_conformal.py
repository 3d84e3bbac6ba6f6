"""Online one-sided calibration per level: calibrates miscalibrated quantiles, per step and per hour bin, without
looking at outcomes not yet known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.conformal import (
    apply_central_offsets,
    apply_offsets,
    calibrate,
    interval_pairs,
    split_quantile,
    start_offsets,
    target_hours,
)

QS = (0.05, 0.1, 0.5, 0.9, 0.95, 0.99, 0.995)
Z = np.array([-1.645, -1.2816, 0.0, 1.2816, 1.645, 2.3263, 2.5758])  # standard normal quantiles of QS


def _raw(n, horizon, *, width, rng, drift=0.0):
    """Normal outcomes around 0 with scale growing by ``drift`` per window; raw quantiles of a fixed ``width``."""
    scale = 1.0 + drift * np.arange(n)[:, None, None]
    actual = rng.normal(0, 1, (n, horizon, 1)) * scale
    raw = np.broadcast_to(Z * width, (n, horizon, 1, len(QS))).copy()
    return raw, actual


@pytest.mark.parametrize(
    ("width", "drift"),
    [pytest.param(0.5, 0.0, id="too-narrow"), pytest.param(2.0, 0.0, id="too-wide"),
     pytest.param(1.0, 0.0002, id="spread-drifts-up")],
)
def test_calibrated_coverage_of_every_level_is_near_nominal(width, drift):
    rng = np.random.default_rng(7)
    raw_val, actual_val = _raw(1000, 3, width=width, rng=rng)
    raw_test, actual_test = _raw(6000, 3, width=width, rng=rng, drift=drift)
    cal = calibrate(raw_val=raw_val, actual_val=actual_val, raw_test=raw_test, actual_test=actual_test,
                    origins_test=np.arange(6000), quantiles=QS, lr=0.1)
    raw_cov = (actual_test <= raw_test[..., QS.index(0.9)]).mean()
    assert abs(raw_cov - 0.9) > 0.04  # the raw quantiles really are off
    for k, tau in enumerate(QS):
        covered = (actual_test <= cal.quantiles[..., k]).mean()
        assert covered == pytest.approx(tau, abs=0.01 if tau < 0.99 else 0.004), tau
    assert (np.diff(cal.quantiles, axis=-1) >= -1e-12).all()
    np.testing.assert_array_equal(cal.quantiles[..., 2], raw_test[..., 2])  # the median is the point forecast
    assert cal.offsets.shape == (1, 3, 1, len(QS)) and (cal.offsets[..., 2] == 0).all()


def _hourly(n, *, rng, loud_hours=range(12, 18), loud=3.0):
    """Hourly windows (one step): noise ``loud`` times larger in ``loud_hours``; raw quantiles for scale 1."""
    hours = (np.arange(n) % 24)[:, None]
    scale = np.where(np.isin(hours, list(loud_hours)), loud, 1.0)[..., None]
    actual = rng.normal(0, 1, (n, 1, 1)) * scale
    raw = np.broadcast_to(Z * 1.5, (n, 1, 1, len(QS))).copy()
    return raw, actual, hours


@pytest.mark.parametrize(("bins", "holds_per_bin"), [pytest.param(1, False, id="one-width"),
                                                     pytest.param(4, True, id="hour-bins")])
def test_hour_bins_make_coverage_hold_per_bin_not_only_on_average(bins, holds_per_bin):
    rng = np.random.default_rng(3)
    raw_val, actual_val, hours_val = _hourly(24 * 100, rng=rng)
    raw_test, actual_test, hours_test = _hourly(24 * 400, rng=rng)
    cal = calibrate(raw_val=raw_val, actual_val=actual_val, raw_test=raw_test, actual_test=actual_test,
                    origins_test=np.arange(len(raw_test)), quantiles=QS, lr=0.1, bins=bins,
                    hours_val=hours_val, hours_test=hours_test)
    hit = actual_test[:, 0, 0] <= cal.quantiles[:, 0, 0, QS.index(0.9)]
    loud = np.isin(hours_test[:, 0], range(12, 18))
    assert hit.mean() == pytest.approx(0.9, abs=0.015)  # on average, either way
    per_bin_ok = bool(abs(hit[loud].mean() - 0.9) < 0.02 and abs(hit[~loud].mean() - 0.9) < 0.02)
    assert per_bin_ok is holds_per_bin
    assert cal.offsets.shape == (bins, 1, 1, len(QS))
    if bins > 1:  # the afternoon bin (hours 12-17) is wider than the others
        assert cal.offsets[2, 0, 0, QS.index(0.99)] > cal.offsets[0, 0, 0, QS.index(0.99)]


def test_a_window_is_calibrated_only_with_outcomes_known_at_its_origin():
    rng = np.random.default_rng(1)
    raw_val, actual_val = _raw(100, 3, width=1.0, rng=rng)
    raw_test, actual_test = _raw(300, 3, width=1.0, rng=rng)
    hours = lambda n: (np.arange(n)[:, None] + np.arange(1, 4)[None, :]) % 24  # noqa: E731
    kwargs = dict(raw_val=raw_val, actual_val=actual_val, raw_test=raw_test, origins_test=np.arange(300),
                  quantiles=QS, lr=0.1, bins=6, hours_val=hours(100), hours_test=hours(300))
    before = calibrate(actual_test=actual_test, **kwargs).quantiles
    changed = actual_test.copy()
    changed[200:] = 50.0  # the future goes wild from origin 200 on
    after = calibrate(actual_test=changed, **kwargs).quantiles
    # the outcome of window 200 at step h is known at 200 + h + 1: windows up to 200 are untouched
    np.testing.assert_array_equal(before[:201], after[:201])
    assert not np.array_equal(before[201:, ..., -1], after[201:, ..., -1])


def test_a_thin_bin_starts_from_the_pooled_quantile():
    rng = np.random.default_rng(5)
    scores = rng.normal(0, 1, (400, 1, 1, len(QS)))
    bins_of = np.zeros((400, 1), dtype=int)
    bins_of[:20] = 1  # bin 1 has 20 scores: fewer than the 60 any level needs
    start = start_offsets(scores, bins_of, bins=2, quantiles=QS)
    k = QS.index(0.9)
    assert start[1, 0, 0, k] == split_quantile(scores[:, 0, 0, k], 0.9)  # pooled over both bins
    assert start[0, 0, 0, k] == split_quantile(scores[20:, 0, 0, k], 0.9)  # its own 380 scores
    k995 = QS.index(0.995)  # 0.995 needs ceil(1 / 0.005) = 200 scores: bin 0 has 380
    assert start[0, 0, 0, k995] == split_quantile(scores[20:, 0, 0, k995], 0.995)
    thin = start_offsets(scores[:150], bins_of[:150], bins=2, quantiles=QS)  # bin 0 now has 130 < 200
    assert thin[0, 0, 0, k995] == split_quantile(scores[:150, 0, 0, k995], 0.995)
    assert thin[0, 0, 0, k] == split_quantile(scores[20:150, 0, 0, k], 0.9)  # enough for 0.9


def test_split_quantile_is_conservative_on_the_side_of_its_level():
    scores = np.arange(1.0, 11.0)  # 10 scores
    assert split_quantile(scores, 0.9) == 10.0  # ceil(11 * 0.9) = 10th
    assert split_quantile(scores, 0.1) == 1.0
    assert split_quantile(np.array([]), 0.9) == 0.0


def test_target_hours_are_the_utc_hours_of_the_rows_after_each_origin():
    index = pd.date_range("2024-03-04 22:30", periods=12, freq="30min", tz="UTC")
    hours = target_hours(index, np.array([0, 3]), horizon=3, step_seconds=1800)
    np.testing.assert_array_equal(hours, [[23, 23, 0], [0, 1, 1]])


def test_offsets_of_several_bins_need_the_hours():
    raw = np.zeros((2, 1, 1, len(QS))) + Z
    offsets = np.zeros((4, 1, 1, len(QS)))
    offsets[3, ..., -1] = 10.0  # hours 18-23
    out = apply_offsets(raw, offsets, hours=np.array([[5], [20]]), median=2)
    assert out[0, 0, 0, -1] == pytest.approx(Z[-1]) and out[1, 0, 0, -1] == pytest.approx(Z[-1] + 10)
    with pytest.raises(ValueError, match="4 hour-of-day bins"):
        apply_offsets(raw, offsets, median=2)


def test_offsets_keep_quantiles_monotone_even_when_narrowing():
    raw = np.zeros((1, 1, 1, len(QS))) + Z
    offsets = np.zeros((1, 1, 1, len(QS)))
    offsets[..., 3] = -3.0  # the 0.9 level pulled below the median
    out = apply_offsets(raw, offsets, median=2)
    assert (np.diff(out, axis=-1) >= 0).all() and out[0, 0, 0, 2] == 0.0


def test_an_old_forecasters_central_offsets_still_widen_its_intervals():
    old = (0.05, 0.1, 0.5, 0.9, 0.95)
    raw = np.array([[-2.0, -1.0, 0.0, 1.0, 2.0]])
    out = apply_central_offsets(raw, np.array([[0.5, -0.5]]), old)  # 90% wider by 0.5, 80% narrower by 0.5
    np.testing.assert_allclose(out, [[-2.5, -0.5, 0.0, 0.5, 2.5]])
    assert interval_pairs(old) == ((0, 4), (1, 3))
    assert interval_pairs((0.1, 0.5, 0.8)) == ()
