"""``allocate``: one decision, from inputs fetched beforehand to an :class:`Allocation` with its reasons.

Steps, in order (cluster-autoscaler's expander shape: filters, strategy, tie-break):

1. ``problem.build_problem`` filters the catalog for the app (each rejected type keeps a reason) and lays
   the forecast, the running nodes and the settings out as arrays;
2. ``explain.infeasibility`` stops here with a clear explanation when the hard constraints cannot hold
   (then the allocation keeps what runs, within bounds, and ``status`` is ``"infeasible"``);
3. the solver: ``optuna`` (``search.search``: knobs sampled, node counts completed by the MIP, scored on the
   settings' objective) or ``milp`` (the linear problem at the settings' own knobs, solved to ``exact_gap``);
4. ``explain`` gives every unused type a reason and says which constraint binds if demand stays uncovered;
   runner-up mixes come from the search's other candidates (optuna) or from re-solving without each chosen
   type (milp).

Pure: no I/O (unless the settings name an Optuna storage), no clock except the injectable ``clock`` that
enforces the time budget, no settings read. Same inputs and a trial budget give the same allocation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from prescale.allocation import explain, milp, search
from prescale.allocation.problem import (
    Evaluation,
    Knobs,
    Problem,
    Solution,
    SolverSettings,
    build_problem,
    evaluate,
    score,
)
from prescale.catalog import AppProfile, Catalog
from prescale.forecast import Forecast


@dataclass(frozen=True)
class Mix:
    """A scored allocation other than the chosen one (a runner-up or a point of the Pareto front)."""

    nodes: dict[str, int]
    spot: dict[str, int]
    cost_per_hour: float  # USD/h of the nodes
    total_cost_per_hour: float  # plus one-off costs amortised (the cost axis of the Pareto front)
    score: float
    risk: float
    note: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "allocation": self.nodes,
            "spot": self.spot,
            "cost_per_hour": round(self.cost_per_hour, 4),
            "total_cost_per_hour": round(self.total_cost_per_hour, 4),
            "score": round(self.score, 4),
            "risk": round(self.risk, 6),
            "note": self.note,
        }


@dataclass(frozen=True)
class Allocation:
    """Node counts per resource type for one app, what they cost, and why (DESIGN.md's ``Allocation``)."""

    app: str
    nodes: dict[str, int]  # type -> nodes (only types with nodes)
    spot: dict[str, int]  # type -> of which bought as spot
    cost_per_hour: float  # USD/h of the nodes (spot at spot prices)
    one_off_cost: float  # USD once: churn, boot billing, overlap
    score: float  # the settings' objective, USD/h-equivalent
    risk: float  # mean uncovered fraction of the demand at the risk quantile
    covered: bool  # the covered quantile is served at every step
    coverage: float  # fraction of the covered-quantile demand served over the horizon
    status: str  # "covered" | "uncovered" | "infeasible"
    explanation: str
    rejected: dict[str, str]  # type -> reason, for every type with no nodes
    drain_after_seconds: float  # removed nodes stay (make-before-break) until this far ahead
    solver: str
    trials: int
    knobs: Knobs | None
    runner_ups: tuple[Mix, ...] = ()
    pareto: tuple[Mix, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; the keys DESIGN.md promises for ``prescale plan --json`` and more."""
        return {
            "app": self.app,
            "allocation": self.nodes,
            "spot": self.spot,
            "cost_per_hour": round(self.cost_per_hour, 4),
            "one_off_cost": round(self.one_off_cost, 4),
            "score": round(self.score, 4),
            "risk": round(self.risk, 6),
            "covered": self.covered,
            "coverage": round(self.coverage, 6),
            "status": self.status,
            "explanation": self.explanation,
            "rejected": self.rejected,
            "drain_after_seconds": self.drain_after_seconds,
            "solver": self.solver,
            "trials": self.trials,
            "knobs": self.knobs.to_dict() if self.knobs else None,
            "runner_ups": [m.to_dict() for m in self.runner_ups],
            "pareto": [m.to_dict() for m in self.pareto],
            **self.details,
        }


def allocate(
    forecast: Forecast,
    catalog: Catalog,
    profile: AppProfile,
    current: Mapping[str, int],
    settings: SolverSettings,
    *,
    now: pd.Timestamp | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> Allocation:
    """Choose node counts per type for ``profile``'s app over ``forecast`` (see the module docstring).

    ``current``: type -> nodes running now. ``now``: the decision time (default: one step before the forecast
    starts). ``clock``: a monotonic clock in seconds, used only to stop the search at ``settings.time_budget_ms``.
    Raises ``AllocationError`` for inputs that do not fit together (unknown types, missing metrics).
    """
    problem = build_problem(forecast, catalog, profile, current, settings, now=now)
    blocked = explain.infeasibility(problem)
    if blocked is not None:
        return _infeasible(problem, blocked)
    if settings.solver == "milp":
        return _exact(problem)
    return _searched(problem, clock)


def _searched(problem: Problem, clock: Callable[[], float]) -> Allocation:
    result = search.search(problem, clock=clock)
    best = result.best
    others = search.runner_ups(result, problem, problem.settings.runner_ups)
    ups = tuple(_mix(problem, c.solution, c.evaluation, c.score, f"{c.source} trial {c.number}") for c in others)
    front = tuple(
        _mix(problem, c.solution, c.evaluation, c.score, "pick" if c is best else f"trial {c.number}")
        for c in result.pareto
    )
    return _result(
        problem,
        best.solution,
        best.evaluation,
        knobs=best.knobs,
        solver="optuna",
        trials=len(result.candidates),
        runner_ups=ups,
        pareto=front,
        details={"source": best.source},
    )


def _exact(problem: Problem) -> Allocation:
    """The linear problem at the settings' knobs, solved to ``exact_gap``; runner-ups drop one chosen type."""
    knobs = problem.default_knobs()
    solution, note = exact_solution(problem, knobs)
    ev = evaluate(problem, solution)
    ups = _exclusion_runner_ups(problem, knobs, solution)
    return _result(
        problem, solution, ev, knobs=knobs, solver="milp", trials=1, runner_ups=ups, details={"source": note}
    )


def exact_solution(problem: Problem, knobs: Knobs) -> tuple[Solution, str]:
    """The exact solver's answer at ``knobs`` (the greedy one if the MILP finds none) and a note saying which.

    ``allocate(..., solver="milp")`` chooses exactly this; callers that need only the node counts (the replay's
    cover cache, ``prescale.replay.covers``) call it on the built problem and skip the explanation."""
    res = milp.solve(problem, knobs, gap=problem.settings.exact_gap, time_limit=_seconds(problem.settings))
    if res.solution is None:
        return search.greedy(problem, knobs), f"milp {res.status} ({res.message}); greedy answer"
    return res.solution, f"milp {res.status}"


def _exclusion_runner_ups(problem: Problem, knobs: Knobs, solution: Solution) -> tuple[Mix, ...]:
    chosen = np.flatnonzero(solution.nodes)
    chosen = chosen[np.argsort(-(problem.price[chosen] * solution.nodes[chosen]))]
    mixes: list[Mix] = []
    for i in chosen[: problem.settings.runner_ups]:
        upper = problem.upper_for(knobs.kinds).copy()
        upper[i] = 0
        res = milp.solve(problem, knobs, gap=problem.settings.inner_gap, time_limit=_seconds(problem.settings),
                         upper=upper)
        if res.solution is not None:
            ev = evaluate(problem, res.solution)
            mixes.append(_mix(problem, res.solution, ev, score(problem, ev), f"without {problem.names[i]}"))
    return tuple(sorted(mixes, key=lambda m: m.score))


def _seconds(settings: SolverSettings) -> float | None:
    return None if settings.time_budget_ms is None else settings.time_budget_ms / 1000.0


def _infeasible(problem: Problem, why: str) -> Allocation:
    """Keep what runs (within quota); the explanation names the constraint that cannot hold."""
    kept = np.minimum(problem.current, problem.upper)
    solution = Solution(on_demand=kept, spot=np.zeros_like(kept))
    res = _result(problem, solution, evaluate(problem, solution), knobs=None, solver=problem.settings.solver, trials=0)
    return replace(res, status="infeasible", covered=False, explanation=why + "; keeping what runs (within quota)")


def _result(
    problem: Problem,
    solution: Solution,
    ev: Evaluation,
    *,
    knobs: Knobs | None,
    solver: str,
    trials: int,
    runner_ups: tuple[Mix, ...] = (),
    pareto: tuple[Mix, ...] = (),
    details: dict[str, Any] | None = None,
) -> Allocation:
    status, text = explain.status_and_explanation(problem, solution, ev)
    demand = problem.demand(problem.settings.covered_quantile)
    coverage = 1.0 - float(ev.uncovered.sum()) / float(demand.sum()) if demand.sum() > 0 else 1.0
    reasons = explain.rejected_reasons(problem, solution, knobs or problem.default_knobs())
    return Allocation(
        app=problem.app,
        nodes=_counts(problem, solution.nodes),
        spot=_counts(problem, solution.spot),
        cost_per_hour=ev.node_cost,
        one_off_cost=ev.one_off,
        score=score(problem, ev),
        risk=ev.risk,
        covered=status == "covered",
        coverage=coverage,
        status=status,
        explanation=text,
        rejected=reasons,
        drain_after_seconds=float(problem.offset_seconds + (ev.drain_step - 1) * problem.step_seconds)
        if ev.drain_step > 0
        else 0.0,
        solver=solver,
        trials=trials,
        knobs=knobs,
        runner_ups=runner_ups,
        pareto=pareto,
        details=details or {},
    )


def _mix(problem: Problem, solution: Solution, ev: Evaluation, value: float, note: str) -> Mix:
    return Mix(
        nodes=_counts(problem, solution.nodes),
        spot=_counts(problem, solution.spot),
        cost_per_hour=ev.node_cost,
        total_cost_per_hour=ev.cost,
        score=value,
        risk=ev.risk,
        note=note,
    )


def _counts(problem: Problem, counts: np.ndarray) -> dict[str, int]:
    return {problem.names[i]: int(counts[i]) for i in np.flatnonzero(counts)}
