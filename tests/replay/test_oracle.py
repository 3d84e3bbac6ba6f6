"""The oracle: zero violations, the cheapest schedule, nodes kept through gaps shorter than their lead time."""

from __future__ import annotations

import numpy as np
import pytest

from prescale.catalog import Catalog
from prescale.replay import ReplayConfig, build_fleet, run_rule, score_series, solve_oracle
from prescale.replay.engine import context, rules_for
from prescale.replay.oracle import prune
from tests.replay.builders import _type, fleet, profile, replay_input

METAL = 1


def _seeded_demand(seed: int, steps: int = 180) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(steps)
    return np.maximum(60 + 40 * np.sin(t / 20.0) + rng.normal(0, 8, steps), 0.0)


@pytest.mark.parametrize("seed", [pytest.param(s, id=f"oracle-zero-violations-seed{s}") for s in (0, 1, 2)])
def test_the_oracle_serves_every_step_and_no_policy_is_cheaper_at_zero_violations(seed):
    demand = _seeded_demand(seed)
    f = fleet()
    solved = solve_oracle(f, demand[:, None], time_limit=30)
    assert solved.series is not None
    oracle = score_series(f, solved.series, demand[:, None])
    assert oracle.violation_steps == 0
    inp = replay_input(demand, spread=0.1)
    config = ReplayConfig(settings={"predictive": {"headrooms": (0.0, 0.2, 0.5), "quantiles": (0.5, 0.9)},
                                    "reactive": {"targets": (0.5, 0.7)}})
    ctx = context(inp, f, config)
    for policy in ("predictive", "reactive"):
        for rule in rules_for(policy, inp, ctx, config):
            score = score_series(f, run_rule(f, rule, len(demand)), inp.demand, start=0)
            if score.violation_steps == 0:
                assert score.cost >= oracle.cost - 1e-9, f"{policy} {rule.setting} beat the oracle"
    assert solved.bound is not None and solved.bound <= oracle.cost + 1e-6


@pytest.mark.parametrize(
    ("gap", "kept"),
    [
        pytest.param(3, True, id="oracle-keeps-node-through-short-gap"),
        pytest.param(9, False, id="oracle-lets-go-long-gap"),
    ],
)
def test_the_oracle_keeps_a_node_through_an_idle_gap_shorter_than_its_lead_time(gap, kept):
    metal_only = build_fleet(Catalog.model_validate({"types": [_type("metal", "bare-metal", price=3.0, lead=300)]}),
                             profile(), step_seconds=60)
    demand = np.r_[np.full(10, 50.0), np.zeros(gap), np.full(10, 50.0)]
    solved = solve_oracle(metal_only, demand[:, None], time_limit=30)
    serving_in_gap = solved.series.ready[10 : 10 + gap, 0]
    assert bool(serving_in_gap.min() == 1) is kept
    booted = 0 if kept else 5  # a second boot is billed for its lead time
    assert solved.series.held.sum() == 20 + (gap if kept else 0) + booted


def test_pruning_drops_only_types_another_replaces_at_no_extra_cost():
    types = [
        _type("small", "cpu-vm", price=1.0, lead=60),
        _type("double", "cpu-vm", price=2.0, lead=60),  # exactly two smalls: dominated
        _type("fast-dear", "cpu-vm", price=1.5, lead=0),  # serves at once: kept
    ]
    prof = profile().model_copy(update={"serves": {"small": {"load": 10.0}, "double": {"load": 20.0},
                                                   "fast-dear": {"load": 10.0}}, "kinds": ("cpu-vm",)})
    f = build_fleet(Catalog.model_validate({"types": types}), prof, step_seconds=60)
    kept = dict(zip(f.names, prune(f, np.array([100.0])), strict=True))
    assert kept == {"small": True, "double": False, "fast-dear": True}


def test_the_oracle_schedule_bills_boots_before_serving():
    f = fleet()
    demand = np.r_[np.zeros(10), np.full(10, 100.0)]
    solved = solve_oracle(f, demand[:, None], time_limit=30)
    s = solved.series
    first = int(np.flatnonzero(s.ready[:, METAL])[0])
    assert s.held[first - f.ready[METAL], METAL] >= 1


def test_a_kept_solve_is_returned_as_solved_and_a_changed_input_is_solved_again(tmp_path, monkeypatch):
    f = fleet()
    demand = _seeded_demand(3, steps=120)[:, None]
    first = solve_oracle(f, demand, time_limit=30, cache=tmp_path)
    assert len(list(tmp_path.glob("oracle-*.npz"))) == 1

    import prescale.replay.oracle as oracle_module

    def no_solver(*args, **kwargs):
        raise AssertionError("a kept solve must not be solved again")

    monkeypatch.setattr(oracle_module, "_solve", no_solver)
    again = solve_oracle(f, demand, time_limit=30, cache=tmp_path)
    for name in ("held", "ready", "orders", "removals"):
        np.testing.assert_array_equal(getattr(again.series, name), getattr(first.series, name))
    assert (again.status, again.gap, again.bound, again.kept) == (first.status, first.gap, first.bound, first.kept)
    assert again.message.endswith("(kept solve)")
    with pytest.raises(AssertionError, match="must not be solved again"):
        solve_oracle(f, demand * 1.5, time_limit=30, cache=tmp_path)  # another demand: another key
    with pytest.raises(AssertionError, match="must not be solved again"):
        solve_oracle(f, demand, time_limit=30, gap=1e-2, cache=tmp_path)  # other solver options: another key
