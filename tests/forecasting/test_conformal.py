"""Online CQR: calibrates miscalibrated intervals, per step, without looking at outcomes not yet known."""

from __future__ import annotations

import numpy as np
import pytest

from models.conformal import apply_offsets, calibrate, interval_pairs

QS = (0.05, 0.1, 0.5, 0.9, 0.95)


def _raw(n, horizon, *, width, rng, drift=0.0):
    """Normal outcomes around 0 with scale growing by ``drift`` per window; raw bands of fixed ``width``."""
    scale = 1.0 + drift * np.arange(n)[:, None, None]
    actual = rng.normal(0, 1, (n, horizon, 1)) * scale
    z = np.array([-1.645, -1.2816, 0.0, 1.2816, 1.645])
    raw = np.broadcast_to(z * width, (n, horizon, 1, 5)).copy()
    return raw, actual


@pytest.mark.parametrize(
    ("width", "drift"),
    [pytest.param(0.5, 0.0, id="too-narrow"), pytest.param(2.0, 0.0, id="too-wide"),
     pytest.param(1.0, 0.0005, id="spread-drifts-up")],
)
def test_calibrated_coverage_is_near_nominal(width, drift):
    rng = np.random.default_rng(7)
    raw_val, actual_val = _raw(400, 3, width=width, rng=rng)
    raw_test, actual_test = _raw(3000, 3, width=width, rng=rng, drift=drift)
    cal = calibrate(raw_val=raw_val, actual_val=actual_val, raw_test=raw_test, actual_test=actual_test,
                    origins_test=np.arange(3000), quantiles=QS, lr=0.1)
    lo90, hi90 = cal.quantiles[..., 0], cal.quantiles[..., 4]
    lo80, hi80 = cal.quantiles[..., 1], cal.quantiles[..., 3]
    raw_cov = ((actual_test >= raw_test[..., 0]) & (actual_test <= raw_test[..., 4])).mean()
    assert abs(raw_cov - 0.9) > 0.04  # the raw bands really are off
    assert ((actual_test >= lo90) & (actual_test <= hi90)).mean() == pytest.approx(0.9, abs=0.02)
    assert ((actual_test >= lo80) & (actual_test <= hi80)).mean() == pytest.approx(0.8, abs=0.02)
    assert (np.diff(cal.quantiles, axis=-1) >= -1e-12).all()


def test_a_window_is_calibrated_only_with_outcomes_known_at_its_origin():
    rng = np.random.default_rng(1)
    raw_val, actual_val = _raw(100, 3, width=1.0, rng=rng)
    raw_test, actual_test = _raw(300, 3, width=1.0, rng=rng)
    kwargs = dict(raw_val=raw_val, actual_val=actual_val, raw_test=raw_test, origins_test=np.arange(300),
                  quantiles=QS, lr=0.1)
    before = calibrate(actual_test=actual_test, **kwargs).quantiles
    changed = actual_test.copy()
    changed[200:] = 50.0  # the future goes wild from origin 200 on
    after = calibrate(actual_test=changed, **kwargs).quantiles
    # the outcome of window 200 at step h is known at 200 + h: windows up to 200 are untouched
    np.testing.assert_array_equal(before[:201], after[:201])
    assert not np.array_equal(before[202:, 0], after[202:, 0])


def test_offsets_keep_quantiles_monotone_even_when_narrowing():
    raw = np.array([[-2.0, -1.0, 0.0, 1.0, 2.0]])
    out = apply_offsets(raw, np.array([[-3.0, -0.5]]), interval_pairs(QS), median=2)
    assert (np.diff(out, axis=-1) >= 0).all() and out[0, 2] == 0.0


def test_pairs_are_found_by_symmetry():
    assert interval_pairs(QS) == ((0, 4), (1, 3))
    assert interval_pairs((0.1, 0.5, 0.8)) == ()
