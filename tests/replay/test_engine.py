"""A whole backtest on a periodic trace: the contract of its JSON, and predictive against the others."""

from __future__ import annotations

import numpy as np
import pytest

from prescale.replay import POLICIES, ReplayConfig, backtest
from tests.replay.builders import fleet, replay_input

CONFIG = ReplayConfig(settings={"predictive": {"quantiles": (0.5, 0.9), "headrooms": (0.0, 0.1, 0.3)},
                                "reactive": {"targets": (0.4, 0.6, 0.8)}, "static": {"factors": (0.8, 1.0, 1.2)},
                                "oracle": {"time_limit_seconds": 30}})


def _periodic(days: float = 0.5, seed: int = 0) -> np.ndarray:
    """A smooth daily-shaped load (periods of 2 h so half a day holds several), with a little seeded noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(days * 1440))
    return np.maximum(150 + 120 * np.sin(2 * np.pi * t / 120) + rng.normal(0, 4, len(t)), 5.0)


@pytest.fixture(scope="module")
def result():
    demand = _periodic()
    return backtest(replay_input(demand, start=60, spread=0.05), fleet(), CONFIG)


def test_the_json_has_the_contract_keys(result):
    out = result.to_dict()
    assert set(out["policies"]) == set(POLICIES)  # every registered policy, in one report
    for p in out["policies"].values():
        assert {"cost", "slo_violation_minutes", "slack", "migrations", "frontier"} <= set(p)
        assert all({"setting", "cost", "slo_violation_minutes"} <= set(f) for f in p["frontier"])
    assert set(out["budget_costs"]["predictive"]) == {"0.5%", "0"}
    assert out["window"]["scored_steps"] == 720 - 60


def test_predictive_is_cheaper_than_reactive_and_static_at_equal_violations_and_not_below_the_oracle(result):
    costs = result.budget_costs()
    for budget in ("0.5%", "0"):
        ours = costs["predictive"][budget]
        assert ours is not None
        assert costs["reactive"][budget] is not None, f"reactive has no setting within the {budget} budget"
        assert ours < costs["reactive"][budget]
        assert ours < costs["static"][budget]
    assert costs["oracle"]["0"] <= costs["predictive"]["0"] + 1e-9


def test_without_forecasts_the_predictive_policy_is_left_out():
    demand = _periodic(days=0.2)
    out = backtest(replay_input(demand, start=30, forecast=False), fleet(),
                   ReplayConfig(settings={"reactive": {"targets": (0.6,)}, "static": {"factors": (1.0,)}},
                                policies=("predictive", "reactive", "static")))
    assert set(out.policies) == {"reactive", "static"}


def test_the_common_budget_is_the_headline_one_when_both_meet_it(result):
    common = result.to_dict()["common_budget"]
    assert common["budget"] == "0.5%"
    assert common["costs"] == {name: c["0.5%"] for name, c in result.budget_costs().items()}
    assert common["vs_reactive"] == result.comparison()["0.5%"]["vs_reactive"]


def test_when_reactive_misses_the_headline_budget_the_comparison_moves_to_the_tightest_budget_both_meet():
    """A reactive rule run hot (target 0.8) on a noisy load misses 0.5%; the row then says where both meet."""
    rng = np.random.default_rng(3)
    demand = np.maximum(_periodic(days=0.3) * rng.lognormal(0.0, 0.05, int(0.3 * 1440)), 5.0)
    result = backtest(replay_input(demand, start=60, spread=0.05), fleet(),
                      ReplayConfig(settings={"predictive": {"quantiles": (0.5, 0.9), "headrooms": (0.1, 0.3)},
                                             "reactive": {"targets": (0.8,)}, "static": {"factors": (1.0,)}},
                                   policies=("predictive", "reactive")))
    assert result.budget_costs()["reactive"]["0.5%"] is None
    common = result.common_budget()
    assert common is not None and common["share"] > 0.005
    for name in ("predictive", "reactive"):
        point = result.policies[name].at_budget(common["share"])
        assert point is not None and common["costs"][name] == round(point.score.cost, 4)
    tighter = [s for s in (0.005, 0.01, 0.02, 0.05, 0.1) if s < common["share"]]
    assert all(result.policies["reactive"].at_budget(s) is None or result.policies["predictive"].at_budget(s) is None
               for s in tighter)
