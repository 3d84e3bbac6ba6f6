"""The live assembly of a decision's input (``prescale.decide_inputs``): the same arrays the replay builds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from prescale.decide_inputs import (
    Held,
    Knobs,
    arrival_step,
    assemble,
    rejected,
    state_from_json,
    state_to_json,
    target_nodes,
)
from prescale.decision import RuleState, decide
from prescale.forecast import Forecast
from prescale.replay.covers import CoverCache
from tests.replay import builders as b

NOW = b.START + pd.Timedelta(minutes=10)


def _forecast(start: pd.Timestamp, median: list[float]) -> Forecast:
    values = np.array(median, dtype=float)[:, None, None] * np.array([0.9, 1.0, 1.1])[None, None, :]
    return Forecast(start, b.STEP, ["load"], list(b.QUANTILES), values)


def _assemble(forecast, *, held=Held(), observed=None, state=None, knobs=None):
    return assemble(b.catalog(), b.profile(), forecast=forecast, observed=observed or {"load": 40.0}, held=held,
                    knobs=knobs or Knobs(quantile=0.5, headroom=0.25, hold_minutes=2), state=state, now=NOW,
                    covers=lambda fleet: CoverCache(fleet))  # fmt: skip


def test_covered_demand_is_the_quantile_times_one_plus_headroom_from_now_on():
    median = [float(v) for v in range(10, 30)]
    got = _assemble(_forecast(NOW - pd.Timedelta(minutes=2), median)).inp  # two steps ended before now
    np.testing.assert_allclose(got.covered[:, 0], np.array(median[2:]) * 1.25)
    np.testing.assert_allclose(got.floor, [50.0])  # (1 + h) * observed
    assert got.hold == 2 and got.margin == 0.1
    assert got.fleet.step_seconds == b.STEP and list(got.fleet.ready) == [1, 5]


@pytest.mark.parametrize(
    "forecast, why",
    [
        pytest.param(None, "", id="no-forecast"),
        pytest.param(_forecast(NOW - pd.Timedelta(hours=1), [10.0] * 5), "forecast unusable", id="ended-before-now"),
    ],
)
def test_a_missing_forecast_leaves_the_floor_to_decide(forecast, why):
    assembled = _assemble(forecast)
    assert assembled.inp.covered is None
    assert why in " ".join(assembled.notes)
    decision = decide(assembled.inp)
    assert decision.fallback
    assert assembled.fleet.capacity(decision.target)[0] >= 50.0  # the fast tier covers F = o / u


@pytest.mark.parametrize(
    "seconds, steps",
    [
        pytest.param(0.0, 1, id="overdue-next-step"),
        pytest.param(60.0, 1, id="exactly-one-step"),
        pytest.param(61.0, 2, id="rounded-up"),
        pytest.param(1e6, 5, id="clamped-to-the-slowest"),
        pytest.param(float("inf"), 5, id="unknown-as-slowest"),
    ],
)
def test_booting_nodes_arrive_after_their_expected_seconds_rounded_up(seconds, steps):
    assert arrival_step(seconds, 60, 5) == steps


def test_the_holding_places_ready_and_booting_nodes_and_notes_foreign_types():
    held = Held(ready={"vm": 3, "gpu": 1}, booting={"metal": (30.0, 250.0), "vm": (45.0,)})
    got = _assemble(None, held=held)
    hold = got.inp.holding
    assert list(hold.ready) == [3, 0]
    assert hold.booting[0].tolist() == [1, 1] and hold.booting[4].tolist() == [0, 1]
    assert "['gpu']" in got.notes[0]


def test_the_rule_state_round_trips_through_json_with_unknown_levels():
    state = RuleState({"bare-metal": np.array([[1.5], [np.nan], [2.0]])})
    back = state_from_json(state_to_json(state))
    np.testing.assert_array_equal(back.recent_keep["bare-metal"], state.recent_keep["bare-metal"])
    assert state_from_json(None) is None and state_from_json({}) is None and state_from_json("x") is None


def test_a_state_that_does_not_fit_the_fleet_is_dropped_or_trimmed():
    state = RuleState({"bare-metal": np.ones((9, 1)), "gpu-vm": np.ones((2, 1)), "cpu-vm": np.ones((2, 1))})
    got = _assemble(None, state=state).inp.state
    assert set(got.recent_keep) == {"bare-metal"} and got.recent_keep["bare-metal"].shape == (5, 1)


def test_the_target_reads_back_as_nodes_per_type_and_every_other_type_has_a_reason():
    assembled = _assemble(_forecast(NOW, [40.0] * 20))
    decision = decide(assembled.inp)
    nodes = target_nodes(assembled.fleet, decision)
    assert nodes and set(nodes) <= {"vm", "metal"}
    reasons = rejected(b.catalog(), b.profile(), assembled.fleet, decision, horizon=3)
    assert set(reasons) == {"vm", "metal"} - set(nodes)
    if "metal" in reasons:
        assert reasons["metal"].startswith("lead time too long")


@pytest.mark.parametrize(("data_step", "decision_seconds", "window"),
                         [(300, 60, 6), (300, None, 2), (60, 60, 6)])  # fmt: skip
def test_the_reactive_window_spans_five_minutes_of_the_loops_decisions(data_step, decision_seconds, window):
    """The loop decides every minute whatever the data's step: its stabilisation window counts minutes (6
    decisions: the current one and 5 before), where the replay, deciding once per 5-minute step, counts 2."""
    knobs = Knobs(quantile=0.5, headroom=0.0, rule="reactive")
    got = assemble(b.catalog(), b.profile(), forecast=None, observed={"load": 40.0}, held=Held(), knobs=knobs,
                   state=None, now=NOW, covers=lambda fleet: CoverCache(fleet), fallback_step_seconds=data_step,
                   decision_seconds=decision_seconds).inp  # fmt: skip
    assert got.reactive is not None and got.reactive.window == window
