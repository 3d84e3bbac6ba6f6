"""Running a backtest: every policy at every setting over the same window, then the oracle, then the scores.

Inputs are fetched before (``ReplayInput``: demand in the profile's units, the batched historical forecasts,
the history's peak; ``Fleet``; ``ReplayConfig``) and nothing here reads a clock, a file or a setting.

Timeline of one run, ``T`` steps: steps ``0 .. start-1`` are a warm-up (decided and simulated, not
scored), steps ``start .. T-1`` the scored window. At step 0 every policy's first decision is taken as
already serving (a warm start, nothing billed before), so no policy pays for an empty cluster; the warm-up
(at least twice the slowest lead time) washes the start out. Each step: nodes due arrive, the rule steps
(decides and has the executor apply), the step is recorded (``simulate.py``). The oracle is solved on the
scored window alone (``oracle.py``).

Which policies there are, and each one's settings, come from one registry (``prescale.replay.policies``):
``ReplayConfig`` holds one settings object per registered policy, and :func:`replay_policy` runs any of
them the same way; nothing here names a policy but the comparisons of the report (predictive against
reactive, static and the oracle).

Progress is reported through ``progress(done, total, message)`` after every run, for a progress bar.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError

from prescale.fleet import Fleet
from prescale.forecast import Forecast
from prescale.replay.covers import CoverCache
from prescale.replay.errors import ReplayError
from prescale.replay.frontier import BUDGETS, PolicyResult, excess, savings
from prescale.replay.oracle import OracleResult
from prescale.replay.policies import POLICIES, Context, PolicySettings, Rule, Swept

# Budgets tried, tightest first, when predictive or reactive misses the headline one (share of scored minutes).
COMMON_LADDER: tuple[float, ...] = (0.005, 0.01, 0.02, 0.05, 0.1)
Progress = Callable[[int, int, str], None]
HISTORY_DAYS = 14.0  # history kept on an input (AWS predictive scaling reads up to 14 days)


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
    # (Th, M) demand of the Th steps just before index[0], on the same grid and units (NaN: not observed);
    # None: none kept. Only the reference policies that learn from history read it (AWS predictive scaling
    # and Crane's DSP, ``policies/aws.py``, ``policies/crane.py``); :meth:`with_history` keeps at most
    # :data:`HISTORY_DAYS`.
    history: np.ndarray | None = None

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
        if self.history is not None and (self.history.ndim != 2 or self.history.shape[1] != M):
            raise ReplayError(f"history must be shaped (steps, {M}) like the metrics, got {self.history.shape}")

    def with_history(self, demand: np.ndarray, *, days: float | None = None) -> ReplayInput:
        """This input with ``demand`` ``(Th, M)`` (or ``(Th,)`` for one metric) as the steps just before it,
        its last :data:`HISTORY_DAYS` (or ``days``) kept."""
        values = np.asarray(demand, dtype=float)
        values = values[:, None] if values.ndim == 1 else values
        keep = round((HISTORY_DAYS if days is None else days) * 86_400 / self.step_seconds)
        return replace(self, history=values[-keep:] if keep > 0 else values[:0])

    def timeline(self) -> tuple[pd.DatetimeIndex, np.ndarray]:
        """The history and the window as one series: ``(Th + T,)`` step starts and ``(Th + T, M)`` demand.

        Step ``t`` of the window is row ``Th + t``; a rule deciding step ``t`` may read rows ``< Th + t``."""
        past = np.empty((0, len(self.metrics))) if self.history is None else self.history
        stamps = pd.date_range(end=self.index[0], periods=len(past) + 1, freq=f"{self.step_seconds}s")[:-1]
        return stamps.append(self.index), np.vstack([past, self.demand])

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


def _every_policy() -> tuple[str, ...]:
    return tuple(POLICIES)


@dataclass(frozen=True)
class ReplayConfig:
    """Which policies run, each one's settings, and the constants the rules share.

    ``settings`` maps a registered policy's name to its ``PolicySettings`` or to a mapping of the fields
    that differ from its defaults (``{"reactive": {"targets": (0.6, 0.8)}}``); after construction it holds
    one validated settings object for every registered policy. ``hold_minutes``, ``consolidation_margin``
    and ``cover_resolution`` are shared with the every-minute loop (``ReplaySettings`` holds the configured
    values; :meth:`from_settings` reads them).
    """

    hold_minutes: float = 5.0
    consolidation_margin: float = 0.1
    cover_resolution: float = 0.01
    policies: tuple[str, ...] = field(default_factory=_every_policy)
    settings: Mapping[str, Any] = field(default_factory=dict)
    budgets: tuple[tuple[str, float], ...] = tuple(BUDGETS.items())

    def __post_init__(self) -> None:
        for what, names in (("policies", self.policies), ("settings for policies", self.settings)):
            unknown = sorted(set(names) - set(POLICIES))
            if unknown:
                raise ReplayError(f"unknown {what} {unknown}; choose from {', '.join(POLICIES)}")
        settings = {name: _policy_settings(name, self.settings.get(name)) for name in POLICIES}
        object.__setattr__(self, "settings", settings)

    @classmethod
    def from_settings(cls, rs: Any, *, policies: Iterable[str] | None = None) -> ReplayConfig:
        """From a ``ReplaySettings`` group (the caller reads settings, not this module)."""
        return cls(hold_minutes=rs.hold_minutes, consolidation_margin=rs.consolidation_margin,
                   cover_resolution=rs.cover_resolution,
                   policies=tuple(policies) if policies else tuple(POLICIES),
                   settings={name: getattr(rs.policies, name) for name in POLICIES})

    def settings_for(self, policy: str) -> PolicySettings:
        return self.settings[policy]

    def hold_steps(self, step_seconds: int) -> int:
        return max(0, round(self.hold_minutes * 60 / step_seconds))


def _policy_settings(name: str, given: PolicySettings | Mapping[str, Any] | None) -> PolicySettings:
    kind = POLICIES[name].settings_type
    if isinstance(given, kind):
        return given
    if isinstance(given, PolicySettings):
        raise ReplayError(f"settings of policy {name!r} must be {kind.__name__}, got {type(given).__name__}")
    try:
        return kind.model_validate(dict(given or {}))
    except ValidationError as exc:
        raise ReplayError(f"settings of policy {name!r}: {exc}") from exc


@dataclass
class BacktestResult:
    """Every policy's points, the oracle, and what a report or a plot needs."""

    inp: ReplayInput
    fleet: Fleet
    config: ReplayConfig
    policies: dict[str, PolicyResult]
    cover_stats: dict[str, float]
    seconds: dict[str, float]
    slo: dict[str, Any] = field(default_factory=dict)  # the app's SLO (``violation_budget``) and notes
    ex_ante: dict[str, Any] | None = None  # ``prescale.slo.exante.ExAnte.to_dict``, when it ran

    @property
    def oracle(self) -> OracleResult | None:
        """The oracle's solve (status, gap to its bound), when it ran."""
        oracle = self.policies.get("oracle")
        return None if oracle is None else oracle.detail

    @property
    def budgets(self) -> dict[str, float]:
        return dict(self.config.budgets)

    def budget_costs(self) -> dict[str, dict[str, float | None]]:
        return {name: result.budget_costs(self.budgets) for name, result in self.policies.items()}

    def comparison(self) -> dict[str, dict[str, float | None]]:
        """Per budget: how much cheaper predictive is than each other policy that ran (``vs_reactive``,
        ``vs_static`` always, then ``vs_<name>`` for the published references: ``vs_aws``, ``vs_crane``), each
        at its own cheapest setting within the budget, and its gap to the oracle."""
        costs = self.budget_costs()
        pred = costs.get("predictive", {})
        others = ["reactive", "static", *(n for n in costs if n not in ("predictive", "oracle", "reactive", "static"))]
        out: dict[str, dict[str, float | None]] = {}
        for budget in self.budgets:
            ours = pred.get(budget)
            oracle = costs.get("oracle", {}).get("0")
            out[budget] = {f"vs_{name}": savings(costs.get(name, {}).get(budget), ours) for name in others}
            out[budget]["over_oracle"] = excess(oracle, ours)
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
            "slo": self.slo,
            "ex_ante": self.ex_ante,
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


def context(inp: ReplayInput, fleet: Fleet, config: ReplayConfig, covers: CoverCache | None = None) -> Context:
    if tuple(fleet.metrics) != tuple(inp.metrics):
        raise ReplayError(f"the fleet's metrics {list(fleet.metrics)} differ from the input's {list(inp.metrics)}")
    if fleet.step_seconds != inp.step_seconds:
        raise ReplayError(f"the fleet is on a {fleet.step_seconds} s step, the input on {inp.step_seconds} s")
    covers = covers or CoverCache(fleet, resolution=config.cover_resolution)
    return Context(fleet=fleet, covers=covers, observed=inp.observed, margin=config.consolidation_margin)


def runnable(inp: ReplayInput, config: ReplayConfig) -> tuple[str, ...]:
    """The policies of ``config`` that can run on ``inp`` (one that needs forecasts is left out without)."""
    return tuple(p for p in config.policies if inp.forecast is not None or not POLICIES[p].needs_forecast)


def count_runs(policy: str, inp: ReplayInput, fleet: Fleet, config: ReplayConfig) -> int:
    return POLICIES[policy].runs(config.settings_for(policy), inp, fleet)


def rules_for(policy: str, inp: ReplayInput, ctx: Context, config: ReplayConfig) -> Iterable[Rule]:
    """Every setting's rule of a simulated policy, lazily (the oracle is solved, not simulated)."""
    swept = POLICIES[policy]
    if not isinstance(swept, Swept):
        raise ReplayError(f"policy {policy!r} has no rules (it is solved, not simulated)")
    return swept.rules(config.settings_for(policy), inp, ctx, config)


def replay_policy(
    policy: str, inp: ReplayInput, ctx: Context, config: ReplayConfig, *, progress: Progress | None = None,
    done: int = 0, total: int = 0,
) -> PolicyResult:
    """Every setting of one registered policy over ``inp``; ``progress(done, total, message)`` after each run."""
    count = done

    def tick(message: str) -> None:
        nonlocal count
        count += 1
        if progress:
            progress(count, total, message)

    return POLICIES[policy].replay(config.settings_for(policy), inp, ctx, config, tick=tick)


def backtest(
    inp: ReplayInput, fleet: Fleet, config: ReplayConfig | None = None, *, progress: Progress | None = None,
    covers: CoverCache | None = None,
) -> BacktestResult:
    """Every policy of ``config.policies`` over ``inp`` (see the module docstring)."""
    config = config or ReplayConfig()
    ctx = context(inp, fleet, config, covers)
    wanted = runnable(inp, config)
    total = sum(count_runs(p, inp, fleet, config) for p in wanted)
    done, results, seconds = 0, {}, {}
    for policy in wanted:
        started = time.perf_counter()
        results[policy] = replay_policy(policy, inp, ctx, config, progress=progress, done=done, total=total)
        done += count_runs(policy, inp, fleet, config)
        seconds[policy] = time.perf_counter() - started
    return BacktestResult(inp, fleet, config, results, ctx.covers.stats, seconds)
