r"""The allocation problem: which nodes to run for one app over the forecast horizon, and what that costs.

Inputs, all fetched before and passed in (nothing here reads a clock, a file or a setting): a
:class:`~prescale.forecast.Forecast`, the :class:`~prescale.catalog.Catalog`, the app's
:class:`~prescale.catalog.AppProfile`, the nodes running now (``current``) and a :class:`SolverSettings`.

Filters first (each rejected type keeps a reason; see ``explain.py``): a type is a *candidate* when the app
can run on it, its quota is above zero and a node requested now is ready before the horizon ends. Running
nodes of a non-candidate type may be kept (lead time) or must go (incompatible, no quota).

Notation
--------
types ``i``, demand metrics ``m``, horizon steps ``t = 0..T-1`` of ``Δ`` seconds; step ``t`` lies
``o + tΔ`` seconds ahead of the decision (``o = start - now``, default ``Δ``).

* ``a[i,m]``   demand one node of type ``i`` serves (``AppProfile.served``)
* ``c[i], s[i]`` on-demand and spot price, USD/h; ``L[i]`` lead time, s; ``U[i]`` upper bound (quota)
* ``x0[i]``    nodes running now; ``k[i] = min{t : o + tΔ >= L[i]}`` first step a new node serves
* ``D[t,m]``   demand to cover: the forecast's ``q``-quantile times ``1 + h`` (headroom), floored at 0
* ``γ`` churn cost (USD per node added or removed), ``A`` amortisation hours for one-off costs,
  ``π[m]`` penalty, USD/h per unit of uncovered demand (default: ``penalty_multiple`` times the cheapest
  candidate's USD/h per unit of ``m``)

Decision variables: on-demand nodes ``y[i]`` and spot nodes ``z[i]`` (integers, ``x = y + z``); additions
``add[i] = (x - x0)+`` and removals ``rem[i] = (x0 - x)+``; the *drain step* ``r``: removed nodes keep serving
(make-before-break) and stay billed until step ``r``, which must not come before any addition is ready;
uncovered demand ``u[t,m] >= 0``.

Capacity at step t (what is running now covers now; a new node covers from its ready step)::

    cap[t,m] = Σ_i a[i,m] (x0[i] + [t >= k[i]] add[i]) - [t >= r] Σ_i a[i,m] rem[i]

Linear objective, USD/h::

    Σ_i c[i] y[i] + s[i] z[i]                                  nodes (the target allocation)
  + (1/A) Σ_i (γ (add[i] + rem[i]) + c[i] L[i]/3600 add[i])   churn, and new nodes billed while booting
  + (1/A) (rΔ/3600) Σ_i c[i] rem[i]                            overlap: removed nodes billed until drained
  + (1/T) Σ_t Σ_m π[m] u[t,m]                                  uncovered demand, u >= D - cap

subject to ``0 <= x[i] <= U[i]``, ``z[i] = 0`` without a spot price, ``min_nodes <= Σ x <= max_nodes``,
``r >= k[i]`` wherever ``add[i] > 0``, ``add[i] rem[i] = 0`` (a type grows or shrinks), and the spot share
``Σ c z <= σ Σ c x``. ``milp.py`` writes this as
a mixed-integer linear program (``r`` through one binary per distinct ready step) and solves it exactly.

The non-linear objective the search optimises (``expected_score``) keeps the node, churn and overlap terms
but replaces the penalty on one quantile by the expected cost of uncovered demand under the forecast's
whole distribution, read on a grid of levels ``p_j`` (``E[(D - cap)+] = ∫ (Q(p) - cap)+ dp``), and prices spot
risk: with probability ``ρ`` every spot node is reclaimed within the horizon::

    nodes + one-off/A + Σ_m π[m] mean_t [(1-ρ) E(D - cap)+ + ρ E(D - cap_without_spot)+]

``risk`` (the second objective of the multi-objective mode) is the mean uncovered fraction of the demand at
the settings' ``risk_quantile``, with spot capacity discounted by ``ρ``. Which quantile to cover, how much
headroom, how much spot, which kinds and how much churn are the search's knobs (``Knobs``); they are not
linear in the node counts, which is why the search turns them and an exact solve completes the counts.

Deliberately simplified: a single target allocation per decision (the decision repeats every step, so a
later decision can move again); removals drain together at ``r``; switching a running node between spot
and on-demand is not counted as churn; every spot node is lost together (a correlated reclaim).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from prescale.catalog import AppProfile, Catalog, ResourceType
from prescale.forecast import Forecast

GRID_LEVELS = 40  # quantile levels used for expectations over the forecast distribution


class AllocationError(ValueError):
    """Inputs of an allocation do not fit together (the message names the value); never a search failure."""


@dataclass(frozen=True)
class SolverSettings:
    """How the allocation solves: solver, trials, covered quantile, costs (not a scaling policy of the replay).

    The fields mirror ``SearchSettings`` (prescale/settings.py) plus a few for tests.
    """

    solver: str = "optuna"
    trials: int = 60
    time_budget_ms: int | None = 800
    seed: int = 0
    covered_quantile: float = 0.9
    risk_quantile: float = 0.99
    churn_cost: float = 0.05
    penalty_per_unit: float | None = None
    penalty_multiple: float = 10.0
    max_spot_share: float = 0.5
    spot_interruption_probability: float = 0.05
    amortize_hours: float = 6.0
    multi_objective: bool = False
    storage: str | None = None
    objective: str = "expected"  # "expected" (non-linear) or "linear" (what milp.py optimises exactly)
    inner_gap: float = 0.005  # relative MIP gap of each trial's inner solve
    exact_gap: float = 1e-4  # relative MIP gap of the exact (milp) solver
    runner_ups: int = 3
    study_name: str | None = None

    @classmethod
    def from_settings(cls, search: Any, **overrides: Any) -> SolverSettings:
        """From ``SearchSettings`` (same field names; the caller reads settings, not this module), plus overrides."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in search.model_dump().items() if k in names}
        return cls(**{**values, **overrides})

    def __post_init__(self) -> None:
        between_0_1 = "must be between 0 and 1 (exclusive)"
        checks = {
            "solver": (self.solver in ("optuna", "milp"), "must be 'optuna' or 'milp'"),
            "objective": (self.objective in ("expected", "linear"), "must be 'expected' or 'linear'"),
            "trials": (self.trials >= 1, "must be >= 1"),
            "covered_quantile": (0 < self.covered_quantile < 1, between_0_1),
            "risk_quantile": (0 < self.risk_quantile < 1, between_0_1),
            "churn_cost": (self.churn_cost >= 0, "must be >= 0"),
            "penalty_multiple": (self.penalty_multiple > 0, "must be > 0"),
            "max_spot_share": (0 <= self.max_spot_share <= 1, "must be between 0 and 1"),
            "spot_interruption_probability": (0 <= self.spot_interruption_probability <= 1, "must be between 0 and 1"),
            "amortize_hours": (self.amortize_hours > 0, "must be > 0"),
            "inner_gap": (self.inner_gap >= 0, "must be >= 0"),
            "exact_gap": (self.exact_gap >= 0, "must be >= 0"),
            "runner_ups": (self.runner_ups >= 0, "must be >= 0"),
            "penalty_per_unit": (self.penalty_per_unit is None or self.penalty_per_unit > 0, "must be > 0 or unset"),
            "time_budget_ms": (self.time_budget_ms is None or self.time_budget_ms > 0, "must be > 0 or unset"),
        }
        for name, (ok, rule) in checks.items():
            if not ok:
                raise AllocationError(f"solver settings: {name} {rule}, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class Knobs:
    """The non-linear decisions of one search trial; ``kinds=None`` allows every compatible kind."""

    covered_quantile: float
    headroom: float = 0.0
    spot_share: float = 0.0
    kinds: tuple[str, ...] | None = None
    churn_weight: float = 1.0

    def to_dict(self) -> dict[str, object]:
        return {
            "covered_quantile": round(self.covered_quantile, 4),
            "headroom": round(self.headroom, 4),
            "spot_share": round(self.spot_share, 4),
            "kinds": list(self.kinds) if self.kinds is not None else None,
            "churn_weight": round(self.churn_weight, 4),
        }


@dataclass(frozen=True, eq=False)
class Solution:
    """Node counts per type (catalog order); ``drain_step`` None: as soon as every addition is ready."""

    on_demand: np.ndarray
    spot: np.ndarray
    drain_step: int | None = None

    @property
    def nodes(self) -> np.ndarray:
        return self.on_demand + self.spot

    def key(self) -> tuple[int, ...]:
        return tuple(int(v) for v in np.concatenate([self.on_demand, self.spot]))


@dataclass(frozen=True, eq=False)
class Evaluation:
    """Every cost of one solution; ``linear_score`` is what milp.py minimises, ``expected_score`` the search."""

    node_cost: float
    one_off: float  # USD, paid once
    one_off_per_hour: float  # the same amortised over settings.amortize_hours
    capacity: np.ndarray
    drain_step: int
    linear_penalty: float
    expected_penalty: float
    risk: float
    linear_score: float
    expected_score: float
    uncovered: np.ndarray  # (T, M) at the settings' covered quantile

    @property
    def cost(self) -> float:
        """USD/h without any penalty: nodes plus amortised one-off costs."""
        return self.node_cost + self.one_off_per_hour


@dataclass(frozen=True, eq=False)
class Problem:
    """One app's allocation problem as arrays, built by :func:`build_problem`; indices follow the catalog."""

    app: str
    types: tuple[ResourceType, ...]
    metrics: tuple[str, ...]
    served: np.ndarray  # (n, M)
    price: np.ndarray  # (n,) on-demand USD/h
    spot_price: np.ndarray  # (n,) NaN where there is none
    lead_seconds: np.ndarray  # (n,)
    ready: np.ndarray  # (n,) first step a node requested now serves; T if never within the horizon
    upper: np.ndarray  # (n,) most nodes of the type after the decision
    current: np.ndarray  # (n,) running now
    rejected: Mapping[str, str]  # pre-search rejections: type -> reason
    min_nodes: int
    max_nodes: int | None
    step_seconds: int
    offset_seconds: float  # how far ahead step 0 lies (negative: it began before the decision, still running)
    forecast: Forecast
    penalty: np.ndarray  # (M,) USD/h per uncovered unit
    settings: SolverSettings
    grid: np.ndarray = field(repr=False)  # (T, M, GRID_LEVELS) demand quantiles for expectations
    risk_demand: np.ndarray = field(repr=False)  # (T, M) at the risk quantile

    @property
    def n(self) -> int:
        return len(self.types)

    @property
    def horizon(self) -> int:
        return self.forecast.horizon

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.types)

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(t.kind for t in self.types)

    @property
    def has_spot(self) -> np.ndarray:
        return ~np.isnan(self.spot_price)

    @property
    def candidate_kinds(self) -> tuple[str, ...]:
        kinds = {self.types[i].kind for i in np.flatnonzero(self.upper > 0)}
        return tuple(k for k in ("cpu-vm", "gpu-vm", "fpga", "bare-metal") if k in kinds)

    def demand(self, quantile: float, headroom: float = 0.0) -> np.ndarray:
        """``D[t, m]``: the forecast's quantile times ``1 + headroom``, floored at 0."""
        return np.maximum(self.forecast.quantile(quantile) * (1.0 + headroom), 0.0)

    def upper_for(self, kinds: tuple[str, ...] | None) -> np.ndarray:
        """Upper bounds when only ``kinds`` may be added (running nodes of other kinds may stay)."""
        if kinds is None:
            return self.upper
        allowed = np.array([k in kinds for k in self.kinds])
        return np.where(allowed, self.upper, np.minimum(self.upper, self.current))

    def default_knobs(self) -> Knobs:
        spot = self.settings.max_spot_share if self.has_spot[self.upper > 0].any() else 0.0
        return Knobs(covered_quantile=self.settings.covered_quantile, spot_share=spot)


def build_problem(
    forecast: Forecast,
    catalog: Catalog,
    profile: AppProfile,
    current: Mapping[str, int],
    settings: SolverSettings,
    *,
    now: pd.Timestamp | None = None,
) -> Problem:
    """Filter the catalog for the app and lay the problem out as arrays (see the module docstring)."""
    forecast = _forecast_for(forecast, profile)
    types = tuple(catalog)
    x0 = _current_vector(current, catalog)
    offset = forecast.step_seconds if now is None else (forecast.start - pd.Timestamp(now)).total_seconds()
    if offset <= -forecast.step_seconds:  # step 0 ended before the decision: a stale forecast (Forecast.since)
        raise AllocationError(f"the forecast starts at {forecast.start}, before the decision time {now}")
    lead = np.array([t.lead_time_seconds for t in types], dtype=float)
    ready = np.maximum(np.ceil((lead - offset) / forecast.step_seconds), 0).astype(int)
    ready = np.minimum(ready, forecast.horizon)
    served = np.array([profile.served(t) for t in types], dtype=float).reshape(len(types), len(profile.metrics))
    rejected, upper = _filter(types, profile, ready, x0, forecast)
    served[[i for i, t in enumerate(types) if profile.incompatibility(t) is not None]] = 0.0
    price = np.array([t.price.on_demand for t in types], dtype=float)
    spot = np.array([t.price.spot if t.price.spot is not None else np.nan for t in types], dtype=float)
    levels = (np.arange(GRID_LEVELS) + 0.5) / GRID_LEVELS
    return Problem(
        app=profile.name,
        types=types,
        metrics=profile.metric_names,
        served=served,
        price=price,
        spot_price=spot,
        lead_seconds=lead,
        ready=ready,
        upper=upper,
        current=x0,
        rejected=rejected,
        min_nodes=profile.min_nodes,
        max_nodes=profile.max_nodes,
        step_seconds=forecast.step_seconds,
        offset_seconds=float(offset),
        forecast=forecast,
        penalty=_penalty(served, price, upper, settings),
        settings=settings,
        grid=np.maximum(forecast.quantiles_at(levels), 0.0),
        risk_demand=np.maximum(forecast.quantile(settings.risk_quantile), 0.0),
    )


def _forecast_for(forecast: Forecast, profile: AppProfile) -> Forecast:
    missing = [m for m in profile.metric_names if m not in forecast.metrics]
    if missing:
        raise AllocationError(
            f"the forecast lacks metric(s) {missing} of app {profile.name!r}; it has {forecast.metrics}"
        )
    return forecast.select(profile.metric_names)


def _current_vector(current: Mapping[str, int], catalog: Catalog) -> np.ndarray:
    unknown = sorted(set(current) - set(catalog.names))
    if unknown:
        raise AllocationError(f"current allocation names unknown type(s) {unknown}; known: {', '.join(catalog.names)}")
    bad = {k: v for k, v in current.items() if int(v) != v or v < 0}
    if bad:
        raise AllocationError(f"current node counts must be whole numbers >= 0, got {bad}")
    return np.array([int(current.get(name, 0)) for name in catalog.names], dtype=int)


def _filter(
    types: tuple[ResourceType, ...], profile: AppProfile, ready: np.ndarray, x0: np.ndarray, forecast: Forecast
) -> tuple[dict[str, str], np.ndarray]:
    """Reasons for types the search may not add, and every type's upper bound."""
    rejected: dict[str, str] = {}
    upper = np.array([t.quota for t in types], dtype=int)
    horizon_s = forecast.horizon * forecast.step_seconds
    for i, rtype in enumerate(types):
        why = profile.incompatibility(rtype)
        if why is None and rtype.quota == 0:
            why = "over quota: the quota of this type is 0"
        if why is not None:
            rejected[rtype.name] = why
            upper[i] = 0
        elif ready[i] >= forecast.horizon:
            rejected[rtype.name] = (
                f"lead time: a node takes {rtype.lead_time_seconds:g} s, longer than the {horizon_s} s horizon"
            )
            upper[i] = min(upper[i], x0[i])
    return rejected, upper


def _penalty(served: np.ndarray, price: np.ndarray, upper: np.ndarray, settings: SolverSettings) -> np.ndarray:
    """USD/h per uncovered unit of each metric (see the module docstring)."""
    n_metrics = served.shape[1]
    if settings.penalty_per_unit is not None:
        return np.full(n_metrics, settings.penalty_per_unit)
    out = np.ones(n_metrics)
    for m in range(n_metrics):
        for mask in (upper > 0, served[:, m] > 0):
            ok = mask & (served[:, m] > 0)
            if ok.any():
                out[m] = settings.penalty_multiple * float(np.min(price[ok] / served[ok, m]))
                break
    return out


# ------------------------------------------------------------------------------------------- evaluation


def drain_step(problem: Problem, solution: Solution) -> int:
    """The step from which removed nodes are gone: no earlier than every addition's ready step."""
    added = solution.nodes > problem.current
    latest = int(problem.ready[added].max()) if added.any() else 0
    return max(latest, solution.drain_step or 0)


def capacity(problem: Problem, solution: Solution, *, without_spot: bool = False) -> np.ndarray:
    """``cap[t, m]`` of the module docstring, shaped (T, M)."""
    x, x0 = solution.nodes, problem.current
    add, rem = np.maximum(x - x0, 0), np.maximum(x0 - x, 0)
    steps = np.arange(problem.horizon)
    live = x0[None, :] + (steps[:, None] >= problem.ready[None, :]) * add[None, :]  # (T, n)
    live = live - (steps[:, None] >= drain_step(problem, solution)) * rem[None, :]
    if without_spot:
        live = np.maximum(live - solution.spot[None, :], 0)
    return live @ problem.served


def one_off_cost(problem: Problem, solution: Solution) -> float:
    """USD paid once: churn, new nodes billed while booting, removed nodes billed until drained."""
    x, x0, opts = solution.nodes, problem.current, problem.settings
    add, rem = np.maximum(x - x0, 0), np.maximum(x0 - x, 0)
    churn = opts.churn_cost * float(add.sum() + rem.sum())
    boot = float(np.sum(problem.price * problem.lead_seconds / 3600.0 * add))
    overlap = drain_step(problem, solution) * problem.step_seconds / 3600.0 * float(np.sum(problem.price * rem))
    return churn + boot + overlap


def node_cost(problem: Problem, solution: Solution) -> float:
    spot_price = np.nan_to_num(problem.spot_price, nan=0.0)
    return float(problem.price @ solution.on_demand + spot_price @ solution.spot)


def evaluate(problem: Problem, solution: Solution) -> Evaluation:
    """Every cost of ``solution`` under the problem's settings (see the module docstring)."""
    opts, T = problem.settings, problem.horizon
    cap = capacity(problem, solution)
    uncovered = np.maximum(problem.demand(opts.covered_quantile) - cap, 0.0)
    linear_penalty = float(uncovered.sum(axis=0) @ problem.penalty) / T
    rho = opts.spot_interruption_probability if solution.spot.any() else 0.0
    expected = _expected_uncovered(problem, cap)
    if rho > 0:
        reclaimed = _expected_uncovered(problem, capacity(problem, solution, without_spot=True))
        expected = (1 - rho) * expected + rho * reclaimed
    expected_penalty = float(expected @ problem.penalty)
    spot_cap = solution.spot @ problem.served
    risk = _risk(problem, cap - rho * spot_cap[None, :])
    nodes = node_cost(problem, solution)
    one_off_h = one_off_cost(problem, solution) / opts.amortize_hours
    return Evaluation(
        node_cost=nodes,
        one_off=one_off_h * opts.amortize_hours,
        one_off_per_hour=one_off_h,
        capacity=cap,
        drain_step=drain_step(problem, solution),
        linear_penalty=linear_penalty,
        expected_penalty=expected_penalty,
        risk=risk,
        linear_score=nodes + one_off_h + linear_penalty,
        expected_score=nodes + one_off_h + expected_penalty,
        uncovered=uncovered,
    )


def score(problem: Problem, evaluation: Evaluation) -> float:
    """The scalar the settings' objective minimises."""
    return evaluation.linear_score if problem.settings.objective == "linear" else evaluation.expected_score


def _expected_uncovered(problem: Problem, cap: np.ndarray) -> np.ndarray:
    """``mean_t E[(D[t,m] - cap[t,m])+]`` per metric, over the forecast's distribution."""
    return np.maximum(problem.grid - cap[:, :, None], 0.0).mean(axis=2).mean(axis=0)


def _risk(problem: Problem, cap: np.ndarray) -> float:
    """Mean uncovered fraction of the demand at the risk quantile."""
    demand = problem.risk_demand
    frac = np.divide(np.maximum(demand - cap, 0.0), demand, out=np.zeros_like(demand), where=demand > 0)
    return float(frac.mean())


def solution_from_counts(problem: Problem, nodes: Mapping[str, int], spot: Mapping[str, int] | None = None) -> Solution:
    """A :class:`Solution` from type -> nodes (and type -> of which spot)."""
    spot = spot or {}
    total = np.array([int(nodes.get(n, 0)) for n in problem.names], dtype=int)
    on_spot = np.array([int(spot.get(n, 0)) for n in problem.names], dtype=int)
    return Solution(on_demand=total - on_spot, spot=on_spot)
