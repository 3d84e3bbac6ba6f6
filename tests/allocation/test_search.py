"""The Optuna search: warm starts, seeding, budgets, the Pareto mode, storage, and agreement with the MILP."""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import optuna
import pytest

from prescale.allocation import SolverSettings, allocate, milp
from prescale.allocation.problem import build_problem, evaluate
from prescale.allocation.search import greedy, keep_current, search
from tests.allocation.builders import START, catalog, path, profile, rtype

SEARCH = SolverSettings(trials=12, time_budget_ms=None, seed=3)


def random_case(seed: int, n_types: int = 6):
    """A seeded instance: mixed kinds, spot on some types, quotas that bind, a ramp, some nodes running."""
    rng = np.random.default_rng(seed)
    kinds = ["cpu-vm", "gpu-vm", "fpga", "bare-metal"]
    types, serves = [], {}
    for i in range(n_types):
        kind = kinds[i % 4]
        price = float(np.round(rng.uniform(0.2, 3.0), 3))
        spot = float(np.round(price * 0.4, 3)) if rng.random() < 0.6 else None
        types.append(rtype(f"t{i}", kind, price=price, spot=spot, quota=int(rng.integers(2, 12))))
        serves[f"t{i}"] = float(np.round(price * rng.uniform(60, 140), 1))
    current = {f"t{i}": int(rng.integers(0, 3)) for i in range(0, n_types, 2)}
    fc = path(list(np.linspace(600, 1400, 15)), spread=0.15)
    return catalog(*types), profile(serves), fc, current


@pytest.mark.parametrize("seed", [pytest.param(s, id=f"random-{s}") for s in (1, 2, 3)])
def test_linear_search_reaches_the_exact_optimum(seed):
    cat, prof, fc, current = random_case(seed)
    settings = replace(SEARCH, objective="linear")
    problem = build_problem(fc, cat, prof, current, settings)
    exact = milp.solve(problem, problem.default_knobs(), gap=1e-9)
    optimum = evaluate(problem, exact.solution).linear_score
    found = search(problem)
    assert found.best.score >= optimum - 1e-6  # the exact optimum bounds every candidate
    assert found.best.score <= optimum * (1 + settings.inner_gap) + 1e-9


@pytest.mark.parametrize("seed", [pytest.param(s, id=f"random-{s}") for s in range(4, 12)])
def test_milp_objective_is_the_linear_score(seed):
    """The program in milp.py and the cost stated in problem.py agree, removals and spot included."""
    cat, prof, fc, current = random_case(seed)
    problem = build_problem(fc, cat, prof, current, replace(SEARCH, objective="linear"))
    res = milp.solve(problem, problem.default_knobs(), gap=1e-9)
    assert res.status == "optimal"
    assert res.objective == pytest.approx(evaluate(problem, res.solution).linear_score, rel=1e-7)


def test_warm_starts_run_first_current_then_greedy_then_milp():
    cat, prof, fc, current = random_case(7)
    found = search(build_problem(fc, cat, prof, current, SEARCH))
    assert [c.source for c in found.candidates[:3]] == ["current", "greedy", "milp"]
    assert found.candidates[0].solution.nodes.tolist() == [current.get(t.name, 0) for t in cat]


def test_seeded_search_is_reproducible():
    cat, prof, fc, current = random_case(8)
    first = allocate(fc, cat, prof, current, SEARCH)
    second = allocate(fc, cat, prof, current, SEARCH)
    same = ("nodes", "spot", "knobs", "trials", "score")
    assert [getattr(first, k) for k in same] == [getattr(second, k) for k in same]


def test_time_budget_stops_after_the_warm_starts():
    """A clock that jumps 1 s per reading: an 800 ms budget leaves room for the three warm starts only."""
    ticks = itertools.count()
    cat, prof, fc, current = random_case(9)
    decision = allocate(
        fc, cat, prof, current, replace(SEARCH, trials=50, time_budget_ms=800), clock=lambda: float(next(ticks))
    )
    assert decision.trials == 3


def test_pareto_front_is_non_dominated_and_holds_the_pick():
    cat, prof, fc, current = random_case(10)
    decision = allocate(fc, cat, prof, current, replace(SEARCH, multi_objective=True, trials=16))
    front = decision.pareto
    assert front
    for a, b in itertools.permutations(front, 2):
        dominates = b.total_cost_per_hour <= a.total_cost_per_hour and b.risk <= a.risk
        assert not dominates or (b.total_cost_per_hour, b.risk) == (a.total_cost_per_hour, a.risk)
    picked = [m for m in front if m.note == "pick"]
    assert len(picked) == 1 and picked[0].nodes == decision.nodes
    assert picked[0].score == min(m.score for m in front)


def test_study_can_be_stored_for_the_dashboard(tmp_path):
    cat, prof, fc, current = random_case(11)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    decision = allocate(fc, cat, prof, current, replace(SEARCH, storage=storage, study_name="decision-1", trials=4))
    study = optuna.load_study(study_name="decision-1", storage=storage)
    assert len(study.trials) == decision.trials
    assert {"nodes", "cost_per_hour", "source"} <= set(study.trials[0].user_attrs)


@pytest.mark.parametrize("seed", [pytest.param(s, id=f"random-{s}") for s in (12, 13)])
def test_heuristics_stay_within_bounds(seed):
    cat, prof, fc, current = random_case(seed)
    problem = build_problem(fc, cat, prof.model_copy(update={"max_nodes": 6}), current, SEARCH)
    knobs = problem.default_knobs()
    for solution in (greedy(problem, knobs), keep_current(problem, knobs)):
        assert (solution.nodes <= problem.upper).all()
        assert (solution.nodes >= 0).all()
        assert solution.nodes.sum() <= 6


def test_runner_ups_are_other_mixes_with_worse_scores():
    cat = catalog(rtype("c", "cpu-vm", price=1.0), rtype("g", "gpu-vm", price=2.0), rtype("h", "gpu-vm", price=2.5))
    prof = profile({"c": 100, "g": 1000, "h": 1100})
    fc = path([3000.0] * 10)
    now = START.replace(hour=8)
    for settings in (replace(SEARCH, trials=20), replace(SEARCH, solver="milp")):
        decision = allocate(fc, cat, prof, {}, settings, now=now)
        assert decision.runner_ups, settings.solver
        for mix in decision.runner_ups:
            assert set(mix.nodes) != set(decision.nodes)
            assert mix.score >= decision.score - 1e-9
