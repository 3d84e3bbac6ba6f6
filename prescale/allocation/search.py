"""Optuna over the decisions that are not linear; an exact solve fills in the node counts of every trial.

Why this shape: searching raw node counts (one integer per type) with Optuna never beat a greedy answer on
30-type problems and took seconds (DESIGN.md, "Allocation search: what was measured before any code"). The
counts are a covering problem a MIP solver handles well; what it cannot see is the non-linear part of the
decision. So a trial samples :class:`~prescale.allocation.problem.Knobs`:

* ``covered_quantile``: which forecast quantile the inner solve covers (0.5 .. the risk quantile),
* ``headroom``: extra demand on top of it (0 .. 20%),
* ``spot_share``: most of the spend on spot (0 .. ``settings.max_spot_share``),
* ``allow_<kind>``: which of the app's kinds may be added (running nodes of a disallowed kind may stay),
* ``churn_weight``: how much the inner solve dislikes change (x0.25 .. x4 the one-off costs),

completes the node counts with ``milp.solve`` (HiGHS, a loose MIP gap and a slice of the time budget),
and scores the result on the settings' objective (``problem.evaluate``: the expected cost of uncovered demand
under the forecast's whole distribution, spot risk, real churn), or in the multi-objective mode on
(cost, risk) so the study's Pareto front is returned and the settings' objective picks the point of lowest score.

Warm start (``enqueue_trial``): first the current allocation kept as it is, then a greedy answer (cheapest
benefit per dollar, node by node), then the plain inner solve at the settings' own knobs. Those three run
before the time budget is checked, so there is always an answer. The sampler is seeded; with a trial budget
and no time budget the search is reproducible; with a time budget it is reproducible up to how many trials fit.

Optuna storage is optional (``settings.storage``, e.g. ``sqlite:///optuna.db``) so a decision's study can be
opened in optuna-dashboard; by default the study lives in memory and the search does no I/O.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import optuna

from prescale.allocation import milp
from prescale.allocation.problem import Evaluation, Knobs, Problem, Solution, evaluate, score

MAX_HEADROOM = 0.2
CHURN_WEIGHTS = (0.25, 4.0)
PATIENCE = 20  # stop after this many trials without a better score
MIN_INNER_S = 0.02  # an inner solve always gets at least this long


@dataclass(frozen=True, eq=False)
class Candidate:
    """One scored answer: how it was made (``source``), its knobs, counts and costs."""

    number: int
    source: str  # "current", "greedy", "milp", "milp-time-limit"
    knobs: Knobs
    solution: Solution
    evaluation: Evaluation
    score: float


@dataclass(frozen=True, eq=False)
class SearchResult:
    best: Candidate
    candidates: tuple[Candidate, ...]
    pareto: tuple[Candidate, ...]  # empty unless multi-objective


def search(problem: Problem, *, clock: Callable[[], float] = time.perf_counter) -> SearchResult:
    """Run the study (see the module docstring) and return the best candidate and all of them."""
    opts = problem.settings
    t0 = clock()
    budget = None if opts.time_budget_ms is None else opts.time_budget_ms / 1000.0
    records: list[Candidate] = []
    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = _study(problem)
    finally:
        optuna.logging.set_verbosity(previous)
    for params, source in _warm_starts(problem):
        study.enqueue_trial(params, user_attrs={"completion": source})

    def objective(trial: optuna.Trial) -> float | tuple[float, float]:
        knobs = _sample(trial, problem)
        remaining = None if budget is None else budget - (clock() - t0)
        cand = _complete(problem, knobs, trial.user_attrs.get("completion", "milp"), trial.number, remaining)
        records.append(cand)
        trial.set_user_attr("nodes", _nodes(problem, cand.solution))
        trial.set_user_attr("cost_per_hour", round(cand.evaluation.node_cost, 4))
        trial.set_user_attr("source", cand.source)
        if opts.multi_objective:
            return cand.evaluation.cost, cand.evaluation.risk
        return cand.score

    def stop_on_budget(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if len(records) < 3:  # the warm starts always run
            return
        out_of_time = budget is not None and clock() - t0 >= budget
        best_at = min(range(len(records)), key=lambda k: (records[k].score, k))
        if out_of_time or len(records) - 1 - best_at >= PATIENCE:
            study.stop()

    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study.optimize(objective, n_trials=max(opts.trials, 3), callbacks=[stop_on_budget], catch=())
    finally:
        optuna.logging.set_verbosity(previous)
    pareto = _pareto(records) if opts.multi_objective else ()
    best = _pick(pareto or records)
    return SearchResult(best=best, candidates=tuple(records), pareto=tuple(pareto))


# ----------------------------------------------------------------------------------------------- study


def _study(problem: Problem) -> optuna.Study:
    opts = problem.settings
    sampler = optuna.samplers.TPESampler(seed=opts.seed, n_startup_trials=8, multivariate=True)
    directions = ["minimize", "minimize"] if opts.multi_objective else ["minimize"]
    name = opts.study_name or f"prescale-{problem.app}-{problem.forecast.start:%Y%m%dT%H%M%S}"
    return optuna.create_study(
        storage=opts.storage, sampler=sampler, directions=directions, study_name=name, load_if_exists=True
    )


def _space(problem: Problem) -> dict[str, tuple]:
    """Name -> (kind, args) of every knob worth searching for this problem."""
    opts = problem.settings
    space: dict[str, tuple] = {}
    if opts.objective == "expected":
        lo = min(0.5, opts.covered_quantile)
        hi = max(opts.risk_quantile, opts.covered_quantile)
        if hi > lo:
            space["covered_quantile"] = ("float", lo, hi)
    space["headroom"] = ("float", 0.0, MAX_HEADROOM)
    if problem.default_knobs().spot_share > 0:
        space["spot_share"] = ("float", 0.0, opts.max_spot_share)
    kinds = problem.candidate_kinds
    if len(kinds) > 1:
        for kind in kinds:
            space[f"allow_{kind}"] = ("bool",)
    space["churn_weight"] = ("logfloat", *CHURN_WEIGHTS)
    return space


def _warm_starts(problem: Problem) -> list[tuple[dict[str, object], str]]:
    defaults = problem.default_knobs()
    params: dict[str, object] = {}
    for name, spec in _space(problem).items():
        if spec[0] == "bool":
            params[name] = True
        elif name == "churn_weight":
            params[name] = 1.0
        else:
            params[name] = getattr(defaults, name)
    return [(params, "current"), (params, "greedy"), (params, "milp")]


def _sample(trial: optuna.Trial, problem: Problem) -> Knobs:
    values: dict[str, object] = {}
    for name, spec in _space(problem).items():
        if spec[0] == "bool":
            values[name] = trial.suggest_categorical(name, [True, False])
        else:
            values[name] = trial.suggest_float(name, spec[1], spec[2], log=spec[0] == "logfloat")
    defaults = problem.default_knobs()
    kinds = tuple(k for k in problem.candidate_kinds if values.get(f"allow_{k}", True))
    if not kinds:
        raise optuna.TrialPruned("no kind allowed")
    return Knobs(
        covered_quantile=float(values.get("covered_quantile", defaults.covered_quantile)),
        headroom=float(values.get("headroom", 0.0)),
        spot_share=float(values.get("spot_share", 0.0)),
        kinds=None if len(kinds) == len(problem.candidate_kinds) else kinds,
        churn_weight=float(values.get("churn_weight", 1.0)),
    )


def _complete(problem: Problem, knobs: Knobs, source: str, number: int, remaining: float | None) -> Candidate:
    """Node counts for the knobs, scored."""
    if source == "current":
        solution = keep_current(problem, knobs)
    elif source == "greedy":
        solution = greedy(problem, knobs)
    else:
        limit = None if remaining is None else max(remaining, MIN_INNER_S)
        res = milp.solve(problem, knobs, gap=problem.settings.inner_gap, time_limit=limit)
        solution = res.solution if res.solution is not None else greedy(problem, knobs)
        source = "milp" if res.status == "optimal" else f"milp-{res.status.replace(' ', '-')}"
    ev = evaluate(problem, solution)
    return Candidate(number, source, knobs, solution, ev, score(problem, ev))


def _nodes(problem: Problem, solution: Solution) -> dict[str, int]:
    return {problem.names[i]: int(solution.nodes[i]) for i in np.flatnonzero(solution.nodes)}


# ------------------------------------------------------------------------------------------ heuristics


def keep_current(problem: Problem, knobs: Knobs) -> Solution:
    """What runs now, within today's bounds (quota, kinds, max_nodes), topped up to min_nodes greedily."""
    upper = problem.upper_for(knobs.kinds)
    x = np.minimum(problem.current, upper)
    x = _trim_to_max(problem, x)
    x = _fill_min(problem, x, upper)
    return Solution(on_demand=x, spot=np.zeros_like(x))


def greedy(problem: Problem, knobs: Knobs) -> Solution:
    """Add the node with the most penalty avoided per dollar until none pays for itself, then prune.

    Cheap (numpy, no solver) and on-demand only; a warm start and a fallback, not the answer.
    """
    opts, T = problem.settings, problem.horizon
    upper = problem.upper_for(knobs.kinds)
    demand = problem.demand(knobs.covered_quantile, knobs.headroom)
    unit_cost = problem.price + (opts.churn_cost + problem.price * problem.lead_seconds / 3600.0) / opts.amortize_hours
    ready = np.arange(T)[:, None] >= problem.ready[None, :]  # (T, n)
    x = _trim_to_max(problem, np.minimum(problem.current, upper))
    limit = problem.max_nodes if problem.max_nodes is not None else int(upper.sum())
    while x.sum() < limit:
        live = np.where(ready, x[None, :], np.minimum(x, problem.current)[None, :])
        short = np.maximum(demand - live @ problem.served, 0.0)  # (T, M)
        if not short.any():
            break
        gain = np.einsum("ti,tim,m->i", ready, np.minimum(problem.served[None], short[:, None, :]), problem.penalty) / T
        ratio = np.where(x < upper, gain / unit_cost, 0.0)
        best = int(np.argmax(ratio))
        if ratio[best] <= 1.0:
            break
        x[best] += 1
    x = _fill_min(problem, x, upper)
    return _prune(problem, Solution(on_demand=x, spot=np.zeros_like(x)))


def _trim_to_max(problem: Problem, x: np.ndarray) -> np.ndarray:
    x = x.copy()
    if problem.max_nodes is None:
        return x
    order = np.argsort(-problem.price)  # drop the dearest nodes first
    for i in order:
        excess = int(x.sum()) - problem.max_nodes
        if excess <= 0:
            break
        x[i] -= min(excess, x[i])
    return x


def _fill_min(problem: Problem, x: np.ndarray, upper: np.ndarray) -> np.ndarray:
    x = x.copy()
    order = np.argsort(problem.price)
    for i in order:
        missing = problem.min_nodes - int(x.sum())
        if missing <= 0:
            break
        x[i] += max(min(missing, upper[i] - x[i]), 0)
    return x


def _prune(problem: Problem, solution: Solution, passes: int = 3) -> Solution:
    """Remove single nodes while that lowers the score (the greedy may overshoot)."""
    best, best_score = solution, score(problem, evaluate(problem, solution))
    for _ in range(passes):
        improved = False
        for i in np.argsort(-problem.price):
            if best.on_demand[i] == 0 or best.nodes.sum() <= problem.min_nodes:
                continue
            trial = best.on_demand.copy()
            trial[i] -= 1
            cand = Solution(on_demand=trial, spot=best.spot)
            s = score(problem, evaluate(problem, cand))
            if s < best_score - 1e-9:
                best, best_score, improved = cand, s, True
        if not improved:
            break
    return best


# ------------------------------------------------------------------------------------------- selection


def _pick(candidates: list[Candidate] | tuple[Candidate, ...]) -> Candidate:
    """Lowest score; ties go to the lower node cost, then to fewer changes, then to the earlier trial."""
    return min(
        candidates,
        key=lambda c: (round(c.score, 9), round(c.evaluation.node_cost, 9), c.evaluation.one_off, c.number),
    )


def _pareto(records: list[Candidate]) -> list[Candidate]:
    """Candidates no other beats on both cost and risk (one per distinct allocation), by cost."""
    unique: dict[tuple[int, ...], Candidate] = {}
    for c in records:
        key = c.solution.key()
        if key not in unique or c.score < unique[key].score:
            unique[key] = c
    points = list(unique.values())
    front = [
        c
        for c in points
        if not any(
            (o.evaluation.cost <= c.evaluation.cost and o.evaluation.risk <= c.evaluation.risk)
            and (o.evaluation.cost < c.evaluation.cost or o.evaluation.risk < c.evaluation.risk)
            for o in points
        )
    ]
    return sorted(front, key=lambda c: (c.evaluation.cost, c.evaluation.risk))


def runner_ups(result: SearchResult, problem: Problem, count: int) -> list[Candidate]:
    """The best candidate of each other set of types used (distinct mixes), best first."""
    best_support = frozenset(np.flatnonzero(result.best.solution.nodes))
    by_support: dict[frozenset[int], Candidate] = {}
    for c in result.candidates:
        support = frozenset(np.flatnonzero(c.solution.nodes))
        if support == best_support:
            continue
        if support not in by_support or c.score < by_support[support].score:
            by_support[support] = c
    return sorted(by_support.values(), key=lambda c: c.score)[:count]
