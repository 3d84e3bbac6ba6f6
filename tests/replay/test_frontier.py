"""Frontiers and costs at equal violation budgets."""

from __future__ import annotations

import pytest

from prescale.replay.frontier import PolicyResult, Score, savings


def _score(cost: float, minutes: float, scored: float = 1000.0) -> Score:
    return Score(cost=cost, slo_violation_minutes=minutes, violation_steps=int(minutes), scored_minutes=scored,
                 slack=0.2, migrations=0, node_hours=1.0)


def _policy() -> PolicyResult:
    p = PolicyResult("reactive")
    for setting, cost, minutes in (("a", 10.0, 50.0), ("b", 14.0, 5.0), ("c", 20.0, 0.0), ("d", 25.0, 3.0)):
        p.add(setting, _score(cost, minutes))
    return p


@pytest.mark.parametrize(
    ("share", "expected"),
    [
        pytest.param(0.005, 14.0, id="cheapest-within-half-a-percent"),
        pytest.param(0.0, 20.0, id="zero-violations"),
        pytest.param(0.1, 10.0, id="loose-budget-takes-the-cheapest"),
    ],
)
def test_cost_at_a_budget_is_the_cheapest_point_within_it(share, expected):
    assert _policy().at_budget(share).score.cost == expected


def test_an_unreachable_budget_has_no_cost():
    p = PolicyResult("static")
    p.add("x", _score(5.0, 10.0))
    assert p.budget_costs() == {"0.5%": None, "0": None}


def test_the_frontier_marks_the_pareto_points_and_the_headline_is_the_first_budgets_choice():
    p = _policy()
    flags = {f["setting"]: f["pareto"] for f in p.frontier()}
    assert flags == {"a": True, "b": True, "c": True, "d": False}
    assert p.headline().setting == "b"
    assert savings(20.0, 15.0) == 0.25 and savings(None, 1.0) is None
