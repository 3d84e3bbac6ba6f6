"""Scores on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from models.scoring import Scores, coverage, lead_steps, persistence_scale, pinball, score

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


TAIL_QS = (0.05, 0.1, 0.5, 0.9, 0.95, 0.99, 0.995)


@pytest.mark.parametrize(
    ("step_seconds", "horizon", "expected"),
    [pytest.param(300, 3, {"1m": 1, "5m": 1, "15m": 3}, id="5-min-rows-1-and-5-share-step-1"),
     pytest.param(60, 15, {"1m": 1, "5m": 5, "15m": 15}, id="1-min-rows"),
     pytest.param(300, 2, {"1m": 1, "5m": 1, "15m": 2}, id="a-lead-past-the-horizon-clips-to-it"),
     pytest.param(120, 8, {"1m": 1, "5m": 3, "15m": 8}, id="a-lead-between-rows-rounds-up")],
)
def test_leads_map_to_horizon_steps(step_seconds, horizon, expected):
    assert lead_steps((1.0, 5.0, 15.0), step_seconds, horizon) == expected


def _tail_case():
    """Two windows, three steps, one metric; every level at the outcome + a known gap."""
    actual = np.array([[[0.0], [10.0], [20.0]], [[2.0], [12.0], [22.0]]])  # (W=2, H=3, M=1)
    gaps = np.array([-2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0])  # F_tau - y at every window and step
    forecast = actual[..., None] + gaps
    forecast[1, 2, 0, 5] = actual[1, 2, 0] - 1.0  # window 1, last step: the 0.99 bound below the outcome
    return forecast, actual


def test_tail_scores_at_each_lead_by_hand():
    forecast, actual = _tail_case()
    s = score(forecast, actual, quantiles=TAIL_QS, scale=np.array([2.0]), metrics=("m",), step_seconds=300)
    assert set(s.tail) == {"1m", "5m", "15m"} and s.tail["1m"] == s.tail["5m"]
    first, last = s.tail["5m"], s.tail["15m"]
    assert first["step"] == 1 and last["step"] == 3
    # y - F_0.99 = -3 at step 1: pinball (0.99 - 1) * -3 = 0.03; coverage 1; excess 3
    assert first["pinball_0.99"] == pytest.approx(0.03) and first["coverage_0.99"] == 1.0
    assert first["excess_0.99"] == pytest.approx(3.0) and first["excess_0.995"] == pytest.approx(4.0)
    # at step 3, window 1 misses the 0.99 bound by 1: pinball (0.03 + 0.99) / 2, coverage 1/2, excess (3 - 1) / 2
    assert last["pinball_0.99"] == pytest.approx((0.03 + 0.99) / 2)
    assert last["coverage_0.99"] == 0.5 and last["excess_0.99"] == pytest.approx(1.0)
    assert last["pinball_0.9"] == pytest.approx(0.1) and last["coverage_0.9"] == 1.0
    # matched: shifted by the 0.99-quantile of y - F ("higher": +1 at step 3, -4 at step 1 for 0.995), so the
    # shifted bound covers both windows: excess (4 + 0) / 2 at step 3, 0 at step 1
    assert last["excess_matched_0.99"] == pytest.approx(2.0)
    assert first["excess_matched_0.995"] == pytest.approx(0.0)


def test_the_decision_score_averages_the_tail_pinball_over_levels_and_lead_steps_over_the_scale():
    forecast, actual = _tail_case()
    s = score(forecast, actual, quantiles=TAIL_QS, scale=np.array([2.0]), metrics=("m",), step_seconds=300)
    at = {step: [s.tail[label][f"pinball_{tau:g}"] for tau in (0.9, 0.99, 0.995)]
          for label, step in (("5m", 1), ("15m", 3))}  # 1m and 5m share step 1: counted once
    assert s.decision == pytest.approx(np.mean(at[1] + at[3]) / 2.0)
    everywhere = score(forecast, actual, quantiles=TAIL_QS, scale=np.array([2.0]), metrics=("m",))
    assert everywhere.tail == {} and everywhere.decision != s.decision  # without the step: all steps


def test_no_decision_score_without_the_tail_levels():
    f = _forecast(np.zeros((2, 1, 1)), 1.0)
    s = score(f, np.zeros((2, 1, 1)), quantiles=QS, scale=np.ones(1), metrics=("m",), step_seconds=300)
    assert s.decision is None and s.rank_score == s.mase and s.rank_label == "MASE"
    assert set(s.tail["15m"]) == {"step", "pinball_0.9", "coverage_0.9"}


def test_hourly_coverage_counts_outcomes_by_the_hour_of_their_target_row():
    forecast, actual = _tail_case()
    hours = np.array([[23, 23, 0], [0, 0, 1]])
    s = score(forecast, actual, quantiles=TAIL_QS, scale=np.ones(1), metrics=("m",), step_seconds=300, hours=hours)
    assert s.hourly["0.9"][23] == 1.0 and s.hourly["0.99"][0] == 1.0
    assert s.hourly["0.99"][1] == 0.0  # window 1's last step, the one miss, is the only outcome at 01:00
    assert s.hourly["0.99"][5] is None and len(s.hourly["0.99"]) == 24
    assert score(forecast, actual, quantiles=TAIL_QS, scale=np.ones(1), metrics=("m",)).hourly == {}
    with pytest.raises(ValueError, match="hours have shape"):
        score(forecast, actual, quantiles=TAIL_QS, scale=np.ones(1), metrics=("m",), hours=hours[:, :2])


def test_old_stored_scores_without_the_new_fields_still_load():
    old = {"mae": 1.0, "mae_last": 1.0, "mase": 0.5, "smape": 1.0, "pinball": 0.1, "coverage_80": 0.8,
           "coverage_90": 0.9, "coverage_80_raw": 0.8, "coverage_90_raw": 0.9, "windows": 3, "per_metric": {}}
    s = Scores.from_dict(old)
    assert s.decision is None and s.rank_score == 0.5
