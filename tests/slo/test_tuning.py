"""Before-use tuning, the skill gate, the adaptive rule and the ex-ante comparison, on the two-type world."""

from __future__ import annotations

import numpy as np
import pytest

from prescale.replay import ReplayConfig
from prescale.replay.engine import context, replay_policy
from prescale.slo.exante import ex_ante, frontier_cost
from prescale.slo.policy import SloPolicy
from prescale.slo.tuning import forecast_skill, run_policy, tune
from tests.replay import builders

CONFIG = ReplayConfig(settings={"reactive": {"targets": (0.5, 0.6, 0.7, 0.8, 0.9)}})


def _demand(steps: int = 1500, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(steps)
    return 120 + 80 * np.sin(2 * np.pi * t / 240) + rng.normal(0, 6, steps)


def _no_skill_input(demand: np.ndarray, seed: int = 1):
    """Forecasts that are noise around the mean: no skill over persistence on a smooth series."""
    inp = builders.replay_input(demand, start=20, spread=0.1)
    rng = np.random.default_rng(seed)
    noise = rng.uniform(40, 200, size=inp.forecast.shape[:3])[..., None]
    return type(inp)(**{**inp.__dict__, "forecast": noise * np.array([0.9, 1.0, 1.1])})


def test_forecast_skill_is_high_for_a_sharp_forecast_and_negative_for_noise():
    demand = _demand()
    sharp = forecast_skill(builders.replay_input(demand, start=20, spread=0.02), builders.fleet(), 0.9)
    assert set(sharp) == {"1 min", "5 min"} and min(sharp.values()) > 0.5
    noise = forecast_skill(_no_skill_input(demand), builders.fleet(), 0.9)
    assert max(noise.values()) < 0


def test_tuning_keeps_the_cheapest_knobs_within_the_budget_and_is_reproducible():
    inp = builders.replay_input(_demand(), start=20, spread=0.05)
    fleet = builders.fleet()
    first = tune(inp, fleet, 0.01, config=CONFIG, trials=12, reactive_trials=5)
    policy = first.policy
    assert policy.tuned and policy.rule == "predictive" and policy.violation_budget == 0.01
    assert policy.tuning["violation_share"] <= 0.01 and policy.tuning["trials"] == 17
    feasible = [p for p in policy.frontier if p.feasible]
    assert min(p.cost for p in feasible) == pytest.approx(policy.tuning["cost"], abs=1e-3)
    assert {p.rule for p in policy.frontier} == {"predictive", "reactive"}
    assert policy.tuning["predictive_cost"] < policy.tuning["reactive_cost"]  # the forecast pays here
    assert any(r.startswith("predictive: skill") for r in policy.reasons)
    again = tune(inp, fleet, 0.01, config=CONFIG, trials=12, reactive_trials=5).policy
    assert again.setting == policy.setting  # seeded


def test_without_skill_the_gate_picks_the_reactive_rule_and_says_why():
    tuned = tune(_no_skill_input(_demand()), builders.fleet(), 0.01, config=CONFIG, trials=6, reactive_trials=4)
    assert tuned.policy.rule == "reactive"
    assert "no skill over persistence" in tuned.policy.reasons[0]


def test_the_controller_lifts_capacity_after_misses():
    demand = _demand()
    demand[700:705] += 150  # a burst the forecast does not see
    inp = builders.replay_input(demand, start=20, spread=0.05)
    inp = type(inp)(**{**inp.__dict__, "forecast": builders.perfect_forecast(_demand(), 12, spread=0.05)})
    policy = SloPolicy(violation_budget=0.005, quantile=0.9, headroom=0.0, gain=0.1, tuned=True)
    ctx = context(inp, builders.fleet(), CONFIG)
    run = run_policy(policy, inp, ctx, CONFIG)
    assert run.state.misses >= 1 and run.state.steps == len(demand) - 1
    assert max(run.scales[700:720]) > 1.05  # raised after the burst's misses
    still = run_policy(policy.model_copy(update={"gain": 0.0}), inp, ctx, CONFIG)
    assert set(still.scales) == {1.0} and still.score.cost < run.score.cost


def test_frontier_cost_interpolates_on_the_pareto_frontier_and_never_extrapolates():
    points = [(0.0, 100.0), (0.01, 80.0), (0.02, 70.0), (0.015, 90.0)]  # (0.015, 90) is dominated
    assert frontier_cost(points, 0.005) == (pytest.approx(90.0), "interpolated")
    assert frontier_cost(points, 0.05) == (70.0, "at reactive's cheapest point")
    assert frontier_cost([(0.01, 80.0)], 0.0) == (80.0, "at reactive's fewest violations")


def test_ex_ante_tunes_on_the_stretch_and_runs_once_over_the_window():
    demand = _demand(2400)
    stretch = builders.replay_input(demand[:1200], start=20, spread=0.05)
    window = builders.replay_input(demand[1200:], start=20, spread=0.05)
    fleet = builders.fleet()
    reactive = replay_policy("reactive", window, context(window, fleet, CONFIG), CONFIG)
    out = ex_ante(stretch, window, fleet, 0.01, reactive=reactive, config=CONFIG, trials=8,
                  reactive_trials=4).to_dict()
    assert {"predictive", "reactive_at_same_violations", "reactive_default"} <= set(out)
    assert out["reactive_default"]["cost"] == pytest.approx(
        next(p.score.cost for p in reactive.points if p.setting == "target=0.8,types=all"), abs=1e-3)
    assert out["predictive"]["cost"] < out["reactive_at_same_violations"]


def test_an_slo_policy_round_trips_and_refuses_a_budget_out_of_range():
    policy = SloPolicy.untuned(0.005)
    assert SloPolicy.from_json(policy.to_json()) == policy
    assert policy.for_budget(0.01).violation_budget == 0.01
    with pytest.raises(ValueError):
        SloPolicy(violation_budget=0.5)
