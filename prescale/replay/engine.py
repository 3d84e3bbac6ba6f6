"""Running a backtest: every policy at every setting over the same window, then the oracle, then the scores.

Inputs are fetched before (``ReplayInput``: demand in the profile's units, the batched historical forecasts,
the history's peak; ``Fleet``; ``ReplayConfig``) and nothing here reads a clock, a file or a setting.

Timeline of one run, ``T`` steps: steps ``0 .. start-1`` are a warm-up (decided and simulated, not
scored), steps ``start .. T-1`` the scored window. At step 0 every policy's first decision is taken as
already serving (a warm start, nothing billed before), so no policy pays for an empty cluster; the warm-up
(at least twice the slowest lead time) washes the start out. Each step: nodes due arrive, the rule decides,
the executor applies, the step is recorded (``simulate.py``). The oracle is solved on the scored window
alone (``oracle.py``).

Progress is reported through ``progress(done, total, message)`` after every run, for a progress bar.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from prescale.fleet import Fleet
from prescale.forecast import Forecast
from prescale.replay.covers import CoverCache
from prescale.replay.errors import ReplayError
from prescale.replay.frontier import BUDGETS, PolicyResult, excess, savings, score_series
from prescale.replay.oracle import OracleResult, solve_oracle
from prescale.replay.policies import Context, Predictive, Reactive, Rule, StaticPeak, stabilisation_steps
from prescale.replay.simulate import Executor, Series

POLICIES: tuple[str, ...] = ("predictive", "reactive", "static", "oracle")
# Budgets tried, tightest first, when predictive or reactive misses the headline one (share of scored minutes).
COMMON_LADDER: tuple[float, ...] = (0.005, 0.01, 0.02, 0.05, 0.1)
Progress = Callable[[int, int, str], None]


@dataclass(frozen=True, eq=False)
class ReplayInput:
    """One app's window: demand, forecasts and the history's peak, on the replay's step grid."""

    app: str
    index: pd.DatetimeIndex  # (T,) start of every step, UTC
    demand: np.ndarray  # (T, M) in the profile's units; NaN: not observed
    metrics: tuple[str, ...]
    step_seconds: int
    start: int  # first scored step; the steps before are the warm-up
    forecast: np.ndarray | None  # (T, H, M, Q): made at step t's decision for steps t .. t+H-1; NaN: none
    quantiles: tuple[float, ...]
    history_peak: np.ndarray  # (M,) highest demand before the replay, per metric
    source: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        T, M = len(self.index), len(self.metrics)
        if self.demand.shape != (T, M):
            raise ReplayError(f"demand must be shaped ({T}, {M}) like the index and metrics, got {self.demand.shape}")
        if not 0 <= self.start < T:
            raise ReplayError(f"the scored window must start inside the {T} steps, got start={self.start}")
        if self.forecast is not None and (
            self.forecast.ndim != 4 or self.forecast.shape[0] != T or self.forecast.shape[2] != M
            or self.forecast.shape[3] != len(self.quantiles)
        ):
            raise ReplayError(
                f"forecast must be shaped ({T}, H, {M}, {len(self.quantiles)}), got {self.forecast.shape}"
            )

    @property
    def observed(self) -> np.ndarray:
        """``o[t]``: the last demand observed before step ``t``; the first observation before it (warm start)."""
        frame = pd.DataFrame(self.demand).shift(1).ffill().bfill()
        return frame.to_numpy(dtype=float)

    def covered(self, quantile: float) -> np.ndarray:
        """The ``quantile`` of every forecast, ``(T, H, M)``, floored at 0; NaN where the forecast is missing."""
        if self.forecast is None:
            raise ReplayError("the predictive policy needs forecasts; this input has none")
        T, H, M, Q = self.forecast.shape
        flat = self.forecast.reshape(T * H, M, Q)
        ok = np.isfinite(flat).all(axis=(1, 2))
        grid = Forecast(self.index[0], self.step_seconds, list(self.metrics), list(self.quantiles),
                        np.where(ok[:, None, None], flat, 0.0))
        values = np.maximum(grid.quantile(quantile), 0.0)
        values[~ok] = np.nan
        return values.reshape(T, H, M)


@dataclass(frozen=True)
class ReplayConfig:
    """The sweeps and the rules' constants (``ReplaySettings`` holds the configured values)."""

    quantiles: tuple[float, ...] = (0.5, 0.8, 0.9, 0.95)
    headrooms: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 0.35)
    targets: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9)
    reactive_types: tuple[str, ...] = ("all", "fast")
    static_factors: tuple[float, ...] = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.25)
    hold_minutes: float = 5.0
    tolerance: float = 0.1
    stabilisation_seconds: float = 300.0
    consolidation_margin: float = 0.1
    cover_resolution: float = 0.01
    oracle_gap: float = 1e-3
    oracle_time_limit_seconds: float = 120.0
    oracle_chunk_steps: int = 360
    policies: tuple[str, ...] = POLICIES
    budgets: tuple[tuple[str, float], ...] = tuple(BUDGETS.items())

    def __post_init__(self) -> None:
        unknown = sorted(set(self.policies) - set(POLICIES))
        if unknown:
            raise ReplayError(f"unknown policies {unknown}; choose from {', '.join(POLICIES)}")

    def hold_steps(self, step_seconds: int) -> int:
        return max(0, round(self.hold_minutes * 60 / step_seconds))


@dataclass
class BacktestResult:
    """Every policy's points, the oracle, and what a report or a plot needs."""

    inp: ReplayInput
    fleet: Fleet
    config: ReplayConfig
    policies: dict[str, PolicyResult]
    oracle: OracleResult | None
    cover_stats: dict[str, float]
    seconds: dict[str, float]

    @property
    def budgets(self) -> dict[str, float]:
        return dict(self.config.budgets)

    def budget_costs(self) -> dict[str, dict[str, float | None]]:
        return {name: result.budget_costs(self.budgets) for name, result in self.policies.items()}

    def comparison(self) -> dict[str, dict[str, float | None]]:
        """Per budget: how much cheaper predictive is than reactive and static, and its gap to the oracle."""
        costs = self.budget_costs()
        pred = costs.get("predictive", {})
        out: dict[str, dict[str, float | None]] = {}
        for budget in self.budgets:
            ours = pred.get(budget)
            oracle = costs.get("oracle", {}).get("0")
            out[budget] = {
                "vs_reactive": savings(costs.get("reactive", {}).get(budget), ours),
                "vs_static": savings(costs.get("static", {}).get(budget), ours),
                "over_oracle": excess(oracle, ours),
            }
        return out

    def common_budget(self, ladder: tuple[float, ...] = COMMON_LADDER) -> dict[str, Any] | None:
        """The tightest budget of ``ladder`` that predictive and reactive both meet, with every policy's cost there.

        A short or bursty window can leave one of them without any setting under the headline budget; the
        comparison is then made where both have a point, and says so (None when they never both do).
        """
        pred, reac = self.policies.get("predictive"), self.policies.get("reactive")
        if pred is None or reac is None:
            return None
        for share in ladder:
            if pred.at_budget(share) is None or reac.at_budget(share) is None:
                continue
            label = f"{share:.1%}".replace(".0%", "%")
            costs = {name: result.budget_costs({label: share})[label] for name, result in self.policies.items()}
            oracle = self.budget_costs().get("oracle", {}).get("0")
            return {"budget": label, "share": share, "costs": costs,
                    "vs_reactive": savings(costs["reactive"], costs["predictive"]),
                    "over_oracle": excess(oracle, costs["predictive"])}
        return None

    def to_dict(self) -> dict[str, Any]:
        """The ``prescale backtest --json`` object (DESIGN.md's contract, and more)."""
        inp = self.inp
        return {
            "app": inp.app,
            "profile": self.fleet.profile.name,
            "window": {
                "start": inp.index[inp.start].isoformat(),
                "end": (inp.index[-1] + pd.Timedelta(seconds=inp.step_seconds)).isoformat(),
                "step_seconds": inp.step_seconds,
                "scored_steps": len(inp.index) - inp.start,
                "warmup_steps": inp.start,
            },
            "policies": {name: result.summary(self.budgets) for name, result in self.policies.items()},
            "budget_costs": self.budget_costs(),
            "comparison": self.comparison(),
            "common_budget": self.common_budget(),
            "oracle": _oracle_dict(self.oracle),
            "types": list(self.fleet.names),
            "covers": self.cover_stats,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "source": inp.source,
        }


def _oracle_dict(oracle: OracleResult | None) -> dict[str, Any] | None:
    if oracle is None:
        return None
    return {
        "status": oracle.status,
        "gap": oracle.gap,
        "lower_bound": None if oracle.bound is None else round(oracle.bound, 4),
        "seconds": round(oracle.seconds, 3),
        "types": list(oracle.kept),
        "message": oracle.message,
    }


# ------------------------------------------------------------------------------------------------ runs


def run_rule(fleet: Fleet, rule: Rule, steps: int) -> Series:
    """Simulate ``rule`` over ``steps`` steps from a warm start (see the module docstring)."""
    ex = Executor(fleet, steps)
    for t in range(steps):
        ex.begin(t)
        rule.decide(t, ex)
        if t == 0:
            ex.warm_start(ex.held)
        ex.end()
    series = ex.series()
    series.orders[0] = 0
    series.removals[0] = 0
    return series


def rules_for(policy: str, inp: ReplayInput, ctx: Context, config: ReplayConfig) -> Iterable[Rule]:
    """Every setting of ``policy`` (lazily: a predictive sweep computes each quantile's path once)."""
    if policy == "predictive":
        hold = config.hold_steps(inp.step_seconds)
        observed = ctx.observed
        for q in config.quantiles:
            base = inp.covered(q)
            for h in config.headrooms:
                yield Predictive(ctx, covered=base * (1 + h), floor=observed * (1 + h), quantile=q, headroom=h,
                                 hold=hold)
    elif policy == "reactive":
        window = stabilisation_steps(inp.step_seconds, config.stabilisation_seconds)
        kinds = [k for k in config.reactive_types if k == "all" or len(ctx.fleet.tiers) > 1]
        for types in kinds:
            for u in config.targets:
                yield Reactive(ctx, target=u, types=types, tolerance=config.tolerance, window=window)
    elif policy == "static":
        for f in config.static_factors:
            yield StaticPeak(ctx, peak=inp.history_peak, factor=f)
    else:
        raise ReplayError(f"policy {policy!r} has no rules (the oracle is solved, not simulated)")


def count_runs(policy: str, inp: ReplayInput, fleet: Fleet, config: ReplayConfig) -> int:
    if policy == "predictive":
        return len(config.quantiles) * len(config.headrooms)
    if policy == "reactive":
        kinds = [k for k in config.reactive_types if k == "all" or len(fleet.tiers) > 1]
        return len(kinds) * len(config.targets)
    if policy == "static":
        return len(config.static_factors)
    return 1


def context(inp: ReplayInput, fleet: Fleet, config: ReplayConfig, covers: CoverCache | None = None) -> Context:
    if tuple(fleet.metrics) != tuple(inp.metrics):
        raise ReplayError(f"the fleet's metrics {list(fleet.metrics)} differ from the input's {list(inp.metrics)}")
    if fleet.step_seconds != inp.step_seconds:
        raise ReplayError(f"the fleet is on a {fleet.step_seconds} s step, the input on {inp.step_seconds} s")
    covers = covers or CoverCache(fleet, resolution=config.cover_resolution)
    return Context(fleet=fleet, covers=covers, observed=inp.observed, margin=config.consolidation_margin)


def sweep(
    policy: str, inp: ReplayInput, ctx: Context, config: ReplayConfig, *, progress: Progress | None = None,
    done: int = 0, total: int = 0,
) -> PolicyResult:
    """Run every setting of one simulated policy; keeps the series of the headline point for plots."""
    result = PolicyResult(policy)
    budgets = dict(config.budgets)
    for rule in rules_for(policy, inp, ctx, config):
        series = run_rule(ctx.fleet, rule, len(inp.index))
        result.add(rule.setting, score_series(ctx.fleet, series, inp.demand, start=inp.start,
                                              fallback_steps=rule.fallback_steps))
        best = result.headline(budgets)
        if best is not None and best.setting == rule.setting:
            result.series = {rule.setting: series}
        done += 1
        if progress:
            progress(done, total, f"{policy} {rule.setting}")
    return result


def cover_types(fleet: Fleet, covers: CoverCache, demand: np.ndarray, levels: int = 25) -> np.ndarray:
    """Types used by the cheapest covers of the window's demand at ``levels`` quantiles (the oracle's candidates)."""
    used = np.zeros(fleet.n, dtype=bool)
    observed = demand[np.isfinite(demand).all(axis=1)]
    if not len(observed):
        return used
    for q in np.linspace(0.0, 1.0, levels):
        used |= covers.cover(np.quantile(observed, q, axis=0), tuple(range(fleet.n))) > 0
    return used


def oracle_result(
    inp: ReplayInput, fleet: Fleet, config: ReplayConfig, covers: CoverCache
) -> tuple[PolicyResult, OracleResult]:
    """Solve the oracle on the scored window and score it like the others (series aligned to the input)."""
    window = inp.demand[inp.start :]
    solved = solve_oracle(fleet, window, gap=config.oracle_gap, time_limit=config.oracle_time_limit_seconds,
                          chunk_steps=config.oracle_chunk_steps, candidates=cover_types(fleet, covers, window))
    gap = "?" if solved.gap is None else f"{solved.gap:.2%}"
    result = PolicyResult("oracle", note=f"MILP, {solved.status}, within {gap} of the LP bound")
    if solved.series is None:
        result.note = f"no schedule: {solved.status} ({solved.message})"
        return result, solved
    full = _pad(solved.series, inp.start)
    result.add("exact", score_series(fleet, full, inp.demand, start=inp.start))
    result.series = {"exact": full}
    return result, solved


def _pad(series: Series, start: int) -> Series:
    def pad(a: np.ndarray) -> np.ndarray:
        return np.concatenate([np.zeros((start, a.shape[1]), dtype=a.dtype), a])

    return Series(pad(series.held), pad(series.ready), pad(series.orders), pad(series.removals))


def backtest(
    inp: ReplayInput, fleet: Fleet, config: ReplayConfig | None = None, *, progress: Progress | None = None,
    covers: CoverCache | None = None,
) -> BacktestResult:
    """Every policy of ``config.policies`` over ``inp`` (see the module docstring)."""
    config = config or ReplayConfig()
    ctx = context(inp, fleet, config, covers)
    wanted = [p for p in config.policies if p != "predictive" or inp.forecast is not None]
    total = sum(count_runs(p, inp, fleet, config) for p in wanted)
    done, results, seconds, oracle = 0, {}, {}, None
    for policy in wanted:
        started = time.perf_counter()
        if policy == "oracle":
            results[policy], oracle = oracle_result(inp, fleet, config, ctx.covers)
            done += 1
            if progress:
                progress(done, total, f"oracle ({oracle.status})")
        else:
            results[policy] = sweep(policy, inp, ctx, config, progress=progress, done=done, total=total)
            done += count_runs(policy, inp, fleet, config)
        seconds[policy] = time.perf_counter() - started
    return BacktestResult(inp, fleet, config, results, oracle, ctx.covers.stats, seconds)
