"""Scores on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from models.scoring import coverage, persistence_scale, pinball, score

QS = (0.05, 0.1, 0.5, 0.9, 0.95)


def _forecast(median, width):
    offsets = np.array([-2, -1, 0, 1, 2]) * width
    return median[..., None] + offsets


def test_mae_mase_smape_by_hand():
    actual = np.array([[[10.0], [12.0]], [[8.0], [8.0]]])  # (W=2, H=2, M=1)
    median = np.array([[[11.0], [10.0]], [[8.0], [10.0]]])
    s = score(_forecast(median, 1.0), actual, quantiles=QS, scale=np.array([2.0]), metrics=("m",))
    assert s.mae == pytest.approx((1 + 2 + 0 + 2) / 4)
    assert s.mae_last == pytest.approx((2 + 2) / 2)
    assert s.mase == pytest.approx(s.mae / 2.0)
    expected_smape = 100 * np.mean([2 * 1 / 21, 2 * 2 / 22, 0.0, 2 * 2 / 18])
    assert s.smape == pytest.approx(expected_smape)
    assert s.windows == 2


def test_pinball_of_a_perfect_median_is_only_the_tails():
    actual = np.zeros((1, 1, 1))
    f = np.zeros((1, 1, 1, 3))
    assert pinball(f, actual, (0.1, 0.5, 0.9))[0] == 0.0
    f = np.array([[[[-1.0, 0.0, 1.0]]]])
    # tau 0.1 at -1: 0.1 * 1; tau 0.9 at +1: (0.9 - 1) * (0 - 1) = 0.1
    assert pinball(f, actual, (0.1, 0.5, 0.9))[0] == pytest.approx(0.2 / 3)


@pytest.mark.parametrize(("level", "expected"), [pytest.param("80", 0.5, id="80"), pytest.param("90", 0.75, id="90")])
def test_coverage_counts_outcomes_inside_the_interval(level, expected):
    median = np.zeros((4, 1, 1))
    f = _forecast(median, 1.0)  # 80%: [-1, 1]; 90%: [-2, 2]
    actual = np.array([0.5, 1.5, -3.0, -0.2]).reshape(4, 1, 1)
    assert coverage(f, actual, QS, level) == expected


def test_coverage_is_none_without_its_quantiles():
    assert coverage(np.zeros((1, 1, 1, 3)), np.zeros((1, 1, 1)), (0.25, 0.5, 0.75), "90") is None


def test_persistence_scale_skips_gaps_and_floors_constants():
    train = np.array([[1.0, 5.0], [3.0, 5.0], [np.nan, 5.0], [4.0, 5.0]])
    scale = persistence_scale(train)
    assert scale[0] == pytest.approx(2.0) and 0 < scale[1] < 1e-9


def test_no_windows_is_an_error_that_says_so():
    with pytest.raises(ValueError, match="no held-out windows"):
        score(np.zeros((0, 1, 1, 5)), np.zeros((0, 1, 1)), quantiles=QS, scale=np.ones(1), metrics=("m",))
