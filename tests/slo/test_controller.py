"""The online controller: adaptive conformal inference on realised under-provisioned steps."""

from __future__ import annotations

import math

import numpy as np
import pytest

from prescale.slo.controller import Tracker, TrackerState, under_provisioned


def test_a_miss_raises_the_scale_and_covered_steps_lower_it_by_budget_times_gain():
    tracker = Tracker(budget=0.01, gain=0.1)
    up = tracker.update(TrackerState(), missed=True)
    assert up.theta == pytest.approx(0.1 * 0.99) and up.scale > 1 and (up.steps, up.misses) == (1, 1)
    down = tracker.update(up, missed=False)
    assert down.theta == pytest.approx(0.099 - 0.001) and down.rate == 0.5


def test_theta_stays_inside_its_bounds():
    tracker = Tracker(budget=0.005, gain=0.5, low=-0.2, high=0.3)
    state = TrackerState()
    for _ in range(10):
        state = tracker.update(state, True)
    assert state.theta == 0.3
    for _ in range(10_000):
        state = tracker.update(state, False)
    assert state.theta == -0.2


@pytest.mark.parametrize("budget", [0.005, 0.02])
def test_the_realised_rate_follows_the_budget_whatever_the_starting_level(budget):
    """ACI's guarantee: a feedback loop where the chance of a miss falls with the scale settles at the budget."""
    rng = np.random.default_rng(0)
    tracker = Tracker(budget=budget, gain=0.05, low=-2, high=2)
    state = TrackerState(theta=-1.0)  # starts far too low: misses come often
    steps = 100_000
    for _ in range(steps):
        level = state.scale
        missed = rng.lognormal(0.0, 0.3) > level  # demand over capacity
        state = tracker.update(state, bool(missed))
    bound = (2 - (-2) + 0.05) / (0.05 * steps)
    assert abs(state.rate - budget) <= bound + 1e-12
    # and the level it settled at is the budget's quantile of the demand distribution
    expected = math.exp(0.3 * 2.5758) if budget == 0.005 else math.exp(0.3 * 2.0537)
    assert state.scale == pytest.approx(expected, rel=0.15)


def test_state_round_trips_through_json_and_bad_json_is_the_initial_state():
    state = TrackerState(theta=0.123456789, steps=7, misses=2)
    back = TrackerState.from_json(state.to_json())
    assert (round(back.theta, 6), back.steps, back.misses) == (0.123457, 7, 2)
    assert TrackerState.from_json(None) == TrackerState()
    assert TrackerState.from_json({"theta": "x"}) == TrackerState()
    assert TrackerState.from_json({"theta": float("nan")}).theta == 0.0


def test_under_provisioned_is_any_metric_over_capacity_and_unknown_when_unobserved():
    assert under_provisioned([10.0, 5.0], [10.0, 6.0]) is False
    assert under_provisioned([10.0, 6.5], [10.0, 6.0]) is True
    assert under_provisioned([float("nan"), 1.0], [10.0, 6.0]) is None


@pytest.mark.parametrize("kwargs", [{"budget": 0.0}, {"budget": 1.0}, {"budget": 0.01, "gain": -1},
                                    {"budget": 0.01, "low": 0.1}])
def test_bad_tracker_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        Tracker(**kwargs)
