"""Min-cost covers of a demand level, from the allocation's exact solver, cached per quantised level.

Every policy of the replay ends a decision with the same question: *which nodes, of an allowed subset of the
app's types, serve a demand vector ``l`` at the least cost per hour?* That is the allocation problem of
``prescale.allocation`` for a one-step flat forecast with no running nodes::

    minimise  Σ_i c[i] x[i]   subject to   Σ_i a[i,m] x[i] >= l[m]  (all m),   0 <= x[i] <= quota[i],  x integer

and :class:`CoverCache` asks ``allocate(..., SolverSettings(solver="milp"))`` exactly that (churn and boot costs
switched off, an uncovered unit priced 10,000 times the cheapest way to serve it, so the answer covers
whenever the quotas allow). The replay therefore runs the same decision code as ``prescale plan``, not a
copy of it: the same problem (``build_problem``) and the same exact solve (``allocate.exact_solution``), without
the explanation and runner-ups ``allocate`` would add and nobody here reads.

Costs (issue 19): a cover found is a dictionary lookup; one solved is a small MILP through HiGHS, 4-6 ms.
``shared_covers`` shares a cache between every app whose covers are the same problem, and
``CoverCache(solve_every_time=True)`` asks the MILP again on every call, only to measure what the cache saves
(``python benchmarks/decision.py --fast-path DAYS``; the decisions are the same, ``tests/decision``).

Why a cache, and why it is honest. A 7-day replay at one-minute steps makes 10,080 decisions per setting;
the default Optuna search takes ~800 ms a decision and even the exact MILP through ``allocate`` 5-30 ms, so
calling it every step would take minutes per setting and hours per benchmark. But a cover depends only on
the level and the subset, and demand revisits the same levels all week. So levels are rounded *up* to a
grid, per metric: linear steps of ``δ[m]`` (5% of the smallest node's ``a[i,m]``) up to ``δ[m] / ρ``, then
geometric steps of ``1 + ρ`` (``ρ`` = ``resolution``, 1% by default). Rounding up keeps every cover a
cover; the price is at most ``ρ`` (or ``δ``) of extra demand covered, often nothing because whole nodes
round up anyway. Ties between equally priced mixes go to the finer one (``_finer``). ``benchmarks/replay.py``
measures the loss against un-rounded solves and against calling
``allocate`` with the live forecast at sampled steps. A week of one app needs a few hundred distinct solves.

Rejected alternative: a greedy cover (cheapest type per unit, then fill). It is what Karpenter-like
reactive scalers do, but with two or more metrics and whole nodes it is up to a node per type off the
optimum, and the comparison of policies would then measure the greedy, not the policies.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd

from prescale.allocation import SolverSettings, allocate, explain
from prescale.allocation.allocate import exact_solution
from prescale.allocation.problem import build_problem, evaluate
from prescale.catalog import Catalog
from prescale.fleet import Fleet
from prescale.forecast import Forecast
from prescale.replay.errors import ReplayError

COVER_SOLVER = SolverSettings(
    solver="milp",
    runner_ups=0,
    churn_cost=0.0,
    penalty_multiple=1e4,
    max_spot_share=0.0,
    amortize_hours=1e6,
    time_budget_ms=None,
    exact_gap=1e-6,
)
_EPOCH = pd.Timestamp("2000-01-01T00:00:00Z")


class CoverCache:
    """``cover(level, subset)`` -> node counts per fleet type; see the module docstring."""

    def __init__(self, fleet: Fleet, *, resolution: float = 0.01, linear_fraction: float = 0.05,
                 solve_every_time: bool = False) -> None:
        if not 0 < resolution < 1:
            raise ReplayError(f"cover resolution must be in (0, 1), got {resolution}")
        self.fleet = fleet
        self.resolution = resolution
        smallest = np.where(fleet.served > 0, fleet.served, np.inf).min(axis=0)
        self.delta = np.where(np.isfinite(smallest), smallest * linear_fraction, 1.0)
        self._profile = fleet.profile.model_copy(update={"min_nodes": 0, "max_nodes": None})
        self._catalogs: dict[tuple[int, ...], Catalog] = {}
        self._covers: dict[tuple, np.ndarray] = {}
        self.solves = 0
        self.hits = 0
        self.solve_seconds = 0.0
        self.short: set[tuple] = set()  # keys whose cover fell short (quotas)
        # for measurement only: every call solves its grid level again (same answers, no memory)
        self.solve_every_time = solve_every_time

    # -- public ---------------------------------------------------------------------------------------
    def cover(self, level: np.ndarray, subset: Iterable[int]) -> np.ndarray:
        """Node counts (fleet order) of the cheapest cover of ``level`` rounded up to the grid. Read-only."""
        subset = tuple(subset)
        key_level = self.key(level)
        key = (subset, key_level)
        found = None if self.solve_every_time else self._covers.get(key)
        if found is not None:
            self.hits += 1
            return found
        counts = self._solve(self.value(key_level), subset)
        counts.setflags(write=False)
        self._covers[key] = counts
        return counts

    def exact(self, level: np.ndarray, subset: Iterable[int]) -> np.ndarray:
        """The cover of ``level`` itself (no rounding, no cache): for measuring the rounding loss."""
        return self._solve(np.maximum(np.asarray(level, dtype=float), 0.0), tuple(subset))

    def key(self, level: np.ndarray) -> tuple[int, ...]:
        """Grid index per metric of the smallest grid value >= the level (0 for no demand)."""
        out = []
        for v, d in zip(np.asarray(level, dtype=float).tolist(), self.delta.tolist(), strict=True):
            out.append(_grid_index(v, d, self.resolution))
        return tuple(out)

    def value(self, key: tuple[int, ...]) -> np.ndarray:
        return np.array([_grid_value(k, d, self.resolution) for k, d in zip(key, self.delta.tolist(), strict=True)])

    def quantised(self, level: np.ndarray) -> np.ndarray:
        return self.value(self.key(level))

    @property
    def stats(self) -> dict[str, float]:
        return {
            "solves": self.solves,
            "hits": self.hits,
            "solve_seconds": round(self.solve_seconds, 3),
            "short": len(self.short),
        }

    # -- solving --------------------------------------------------------------------------------------
    def _catalog(self, subset: tuple[int, ...]) -> Catalog:
        found = self._catalogs.get(subset)
        if found is None:
            if not subset:
                raise ReplayError("a cover needs at least one resource type; got an empty subset")
            types = tuple(self.fleet.catalog.types[i] for i in subset)
            found = self._catalogs[subset] = Catalog(types=types, source=self.fleet.catalog.source)
        return found

    def _solve(self, level: np.ndarray, subset: tuple[int, ...]) -> np.ndarray:
        counts = np.zeros(self.fleet.n, dtype=int)
        if not (level > 0).any():
            return counts
        started = time.perf_counter()
        forecast = Forecast(_EPOCH, self.fleet.step_seconds, list(self.fleet.metrics), [0.5], level[None, :, None])
        nodes, covered = _exact_cover(forecast, self._catalog(subset), self._profile)
        self.solve_seconds += time.perf_counter() - started
        self.solves += 1
        for name, k in nodes.items():
            counts[self.fleet.names.index(name)] = k
        if not covered:
            self.short.add((subset, self.key(level)))
        return self._finer(counts, subset)

    def _finer(self, counts: np.ndarray, subset: tuple[int, ...]) -> np.ndarray:
        """Ties go to smaller nodes: a node replaced by ``k`` nodes of a type no slower, for no more money.

        The MILP is indifferent between one ``vt1.6xlarge`` and two ``vt1.3xlarge`` (same capacity, same
        price), but a mix of smaller nodes grows and shrinks in finer steps afterwards, so it wastes less.
        """
        fleet = self.fleet
        for i in np.argsort(-fleet.price):
            if not counts[i]:
                continue
            for j in sorted(subset, key=lambda k: fleet.price[k]):
                k = self._replacement(i, j)
                if k is None or fleet.ready[j] > fleet.ready[i] or k * fleet.price[j] > fleet.price[i] + 1e-12:
                    continue
                moved = min(int(counts[i]), (int(fleet.quota[j]) - int(counts[j])) // k)
                if moved > 0:
                    counts[i] -= moved
                    counts[j] += k * moved
        return counts

    def _replacement(self, big: int, small: int) -> int | None:
        """``k``: how many ``small`` nodes serve at least what one ``big`` node does (None: never; 1: not finer)."""
        if big == small:
            return None
        a, b = self.fleet.served[big], self.fleet.served[small]
        need = a > 0
        if not need.any() or (b[need] <= 0).any():
            return None
        k = int(np.ceil((a[need] / b[need]).max() - 1e-9))
        return k if k >= 2 else None


def _exact_cover(forecast: Forecast, catalog: Catalog, profile) -> tuple[dict[str, int], bool]:
    """``allocate(forecast, catalog, profile, {}, COVER_SOLVER)``'s node counts and whether they cover, without
    the explanation, the reasons per rejected type and the runner-ups it would add (a third of a cover's
    cost, measured): the same problem, the same exact solve (``allocate.exact_solution``), so the same nodes."""
    now = _EPOCH - pd.Timedelta(days=1)
    problem = build_problem(forecast, catalog, profile, {}, COVER_SOLVER, now=now)
    if explain.infeasibility(problem) is not None:  # allocate's own answer for that (keep what runs: nothing)
        result = allocate(forecast, catalog, profile, {}, COVER_SOLVER, now=now)
        return result.nodes, result.covered
    solution, _ = exact_solution(problem, problem.default_knobs())
    uncovered = evaluate(problem, solution).uncovered
    nodes = {problem.names[i]: int(solution.nodes[i]) for i in np.flatnonzero(solution.nodes)}
    return nodes, not (uncovered.sum(axis=1) > 1e-9).any()


def _grid_index(value: float, delta: float, rho: float) -> int:
    """Linear steps of ``delta`` up to ``top * delta`` (``top = int(1 / rho)``), then geometric steps of 1 + rho."""
    if not value > 0:
        return 0
    steps, top = value / delta, int(1.0 / rho)
    if steps <= top:
        return math.ceil(steps - 1e-12)
    return top + max(1, math.ceil(math.log(steps / top) / math.log1p(rho) - 1e-12))


def _grid_value(index: int, delta: float, rho: float) -> float:
    top = int(1.0 / rho)
    if index <= top:
        return index * delta
    return top * delta * (1.0 + rho) ** (index - top)


_SHARED: dict[tuple, CoverCache] = {}


def shared_covers(resolution: float = 0.01) -> Callable[[Fleet], CoverCache]:
    """A cover solver per cover problem, memoised per process: the live callers of the rule (the orchestrate
    task, ``prescale plan`` / ``apply``) decide one step at a time, and a long-lived worker then solves each
    level once across its cycles *and its apps*.

    The key is everything a cover depends on and nothing more (:func:`cover_key`): the fleet's types as the
    catalog has them (name, kind, capacity, prices, quota, lead time), what one node serves per metric, the
    metric names, the step and the resolution. It used to hold the whole profile too (its name, description,
    stored metric sources, SLO), so every app had a cache of its own that started cold: at 1,000 apps copied
    from four profiles that was 1,000 caches solving the same levels (measured: 701 MILPs for 2,400
    decisions of 40 such apps, 6 ms each, against ~150 with the caches shared). A cover reads the profile
    only through the fleet's served demand and compatible types (``CoverCache`` lifts ``min_nodes`` and
    ``max_nodes``), so apps with equal keys get equal answers, and a changed catalog or served demand gets a
    fresh cache."""

    def covers(fleet: Fleet) -> CoverCache:
        key = (*cover_key(fleet), resolution)
        if key not in _SHARED:
            _SHARED[key] = CoverCache(fleet, resolution=resolution)
        return _SHARED[key]

    return covers


def cover_key(fleet: Fleet) -> tuple:
    """What a cover of ``fleet`` depends on (see :func:`shared_covers`); fleet order is part of it."""
    return (fleet.names, tuple(t.model_dump_json() for t in fleet.catalog.types), fleet.metrics,
            fleet.served.tobytes(), fleet.step_seconds)

