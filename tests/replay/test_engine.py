"""A whole backtest on a periodic trace: the contract of its JSON, and predictive against the others."""

from __future__ import annotations

import numpy as np
import pytest

from prescale.replay import ReplayConfig, backtest
from tests.replay.builders import fleet, replay_input

CONFIG = ReplayConfig(quantiles=(0.5, 0.9), headrooms=(0.0, 0.1, 0.3), targets=(0.4, 0.6, 0.8),
                      static_factors=(0.8, 1.0, 1.2), oracle_time_limit_seconds=30)


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
    assert set(out["policies"]) == {"predictive", "reactive", "static", "oracle"}
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
        assert ours < costs["reactive"][budget] if costs["reactive"][budget] is not None else True
        assert ours < costs["static"][budget]
    assert costs["oracle"]["0"] <= costs["predictive"]["0"] + 1e-9


def test_without_forecasts_the_predictive_policy_is_left_out():
    demand = _periodic(days=0.2)
    out = backtest(replay_input(demand, start=30, forecast=False), fleet(),
                   ReplayConfig(targets=(0.6,), static_factors=(1.0,), policies=("predictive", "reactive", "static")))
    assert set(out.policies) == {"reactive", "static"}
