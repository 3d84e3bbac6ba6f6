r"""The scaling policies a replay compares, as rules from what is known at a decision to target node counts.

Notation: decision at the start of step ``t``; ``d[t]`` the demand vector of step ``t`` (not yet observed at
the decision); ``o[t] = d[t-1]`` the last observed demand (the latest observed before it, across gaps);
``r[i]`` steps from order to serving for type ``i``; tiers by kind, fastest first (``prescale.fleet``);
``cover(l, S)`` the cheapest nodes of the types ``S`` serving ``l`` (``covers.py``, the allocation's MILP).
Every rule ends in :func:`retarget` or a tier's band, and the :class:`~prescale.replay.simulate.Executor`
carries the counts out make-before-break (``prescale.holding.apply_target``).

**Predictive (ours).** Knobs: the covered quantile ``q`` and a headroom ``h`` (its utilisation target is
``1 / (1 + h)``), folded into ``D[t, j] = (1 + h) * Q_q[t, j]`` (from the forecast made at ``t``, origin
``t-1``, steps ``t .. t+H-1``) and ``F[t] = (1 + h) * o[t]``. The rule itself (slow tiers hold bands sized by
their break-even, the fast tier fills what the slow nodes will not by readiness, releases keep
``max(max_{j <= r_f} D[t, j], F[t])`` serving, a missing forecast falls back to the floor) is the pure
:func:`prescale.decision.decide`, stated there. :class:`Predictive` only adapts it to the replay: at each step
it hands ``decide`` a snapshot of the executor's holding, ``D[t]``, ``F[t]`` and the state the previous
decision returned, then has the executor carry the decision's actions out in order (decide, then act; the
decision never touches the executor).

**Reactive (HPA + Karpenter, made fair).** Knobs: the target utilisation ``u`` and the types it may buy
(all compatible ones, as Karpenter would, or only the fastest tier). Like the HPA it reacts to observed
demand only: the recommendation is ``o[t] / u``, unless the utilisation of what it holds is within 10% of
the target (then it keeps the binding metric where it is); scale-down is stabilised over 5 minutes (the
highest recommendation of the window wins; scale-up is immediate); then ``retarget`` with the cheapest
cover of what is missing, which is Karpenter's cheapest compatible type per unit of demand, bin-packed.

**Static peak.** One cover, bought once: ``cover(f * p, all)`` with ``p`` the peak demand of the history
before the window and the knob ``f`` a multiple of it.

:func:`retarget` (shared, defined in ``prescale.decision``): if what the subset holds covers ``need``, drop the
dearest-per-unit nodes that are not needed; else add ``cover(need - held)``; if the result costs more than
``1 + margin`` times ``cover(need)``, take ``cover(need)`` instead (Karpenter's consolidation: a cheaper mix,
swapped in make-before-break). The oracle is in ``oracle.py``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from prescale.allocation import Policy, allocate
from prescale.decision import (
    Decision,
    DecisionInput,
    RuleState,
    break_even,
    consolidate,
    decide,
    retarget,
    trim,
    with_min_nodes,
)
from prescale.fleet import Fleet
from prescale.forecast import Forecast
from prescale.replay.covers import CoverCache
from prescale.replay.errors import ReplayError
from prescale.replay.simulate import Executor

# Re-exported: the replay's rules and tests build on the decision's helpers.
__all__ = [
    "Allocating", "Context", "Predictive", "Reactive", "Rule", "StaticPeak", "break_even", "consolidate",
    "retarget", "stabilisation_steps", "trim", "with_min_nodes",
]


@dataclass(frozen=True, eq=False)
class Context:
    """Arrays every rule of one replay shares (``T`` steps, ``M`` metrics)."""

    fleet: Fleet
    covers: CoverCache
    observed: np.ndarray  # (T, M) o[t]: the last demand observed before step t (NaN before any)
    margin: float = 0.1  # consolidation margin of retarget

    @property
    def all_types(self) -> tuple[int, ...]:
        return tuple(range(self.fleet.n))


class Rule:
    """A policy at one setting: ``decide`` once per step, in order."""

    policy: str = "rule"

    @property
    def setting(self) -> str:
        raise NotImplementedError

    def decide(self, t: int, ex: Executor) -> None:
        raise NotImplementedError

    @property
    def fallback_steps(self) -> int:
        return 0


# ------------------------------------------------------------------------------------------- policies


@dataclass(eq=False)
class Predictive(Rule):
    """Forecast-driven, tiered by lead time: :func:`prescale.decision.decide` at every step, then its actions.

    Each step it hands the pure decision a snapshot of the executor's holding, ``D[t]`` and ``F[t]`` and the
    state the previous decision returned, then carries the decision's actions out in order. It keeps nothing
    else between steps but that state and the count of fallback steps (read from the decisions).
    """

    ctx: Context
    covered: np.ndarray  # (T, H, M) D[t, j]; NaN where the forecast is missing
    floor: np.ndarray  # (T, M) F[t]
    quantile: float
    headroom: float
    hold: int  # b, steps
    policy: str = "predictive"
    _fallbacks: int = 0
    _state: RuleState = field(default_factory=RuleState.initial)

    def __post_init__(self) -> None:
        metrics = len(self.ctx.fleet.metrics)
        if self.covered.ndim != 3 or self.covered.shape[2] != metrics:
            raise ReplayError(f"covered demand must be shaped (T, H, {metrics}), got {self.covered.shape}")

    @property
    def setting(self) -> str:
        return f"q={self.quantile:g},headroom={self.headroom:g}"

    @property
    def fallback_steps(self) -> int:
        return self._fallbacks

    def decision_input(self, t: int, ex: Executor) -> DecisionInput:
        """What the decision of step ``t`` knows: the executor's holding, ``D[t]``, ``F[t]``, the rule's state."""
        ctx = self.ctx
        return DecisionInput(ctx.fleet, ctx.covers, ex.holding, covered=self.covered[t], floor=self.floor[t],
                             hold=self.hold, margin=ctx.margin, state=self._state)

    def decide(self, t: int, ex: Executor) -> None:
        self.act(decide(self.decision_input(t, ex)), ex)

    def act(self, decision: Decision, ex: Executor) -> None:
        """Carry the decision's actions out in order; keep its state for the next step."""
        for action in decision.actions:
            ex.apply(action.target, keep=action.keep, mask=action.mask)
        self._state = decision.state
        self._fallbacks += int(decision.fallback)


@dataclass(eq=False)
class Reactive(Rule):
    """HPA-like on observed demand, Karpenter-like node choice (see the module docstring)."""

    ctx: Context
    target: float
    types: str = "all"  # "all" compatible types, or "fast": the fastest tier only
    tolerance: float = 0.1
    window: int = 6  # recommendations kept for the scale-down stabilisation (incl. the current one)
    policy: str = "reactive"
    _recs: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not 0 < self.target <= 1:
            raise ReplayError(f"reactive target utilisation must be in (0, 1], got {self.target}")
        fleet = self.ctx.fleet
        if self.types not in ("all", "fast"):
            raise ReplayError(f"reactive types must be 'all' or 'fast', got {self.types!r}")
        self._subset = self.ctx.all_types if self.types == "all" else fleet.fast.idx
        self._mask = np.zeros(fleet.n, dtype=bool)
        self._mask[list(self._subset)] = True

    @property
    def setting(self) -> str:
        return f"target={self.target:g},types={self.types}"

    def decide(self, t: int, ex: Executor) -> None:
        observed = self.ctx.observed[t]
        if not np.isfinite(observed).all():
            return  # nothing observed yet: keep what runs
        rec = self._recommend(observed / self.target, ex.held_capacity(self._mask))
        self._recs.append(rec)
        if len(self._recs) > self.window:
            del self._recs[0]
        need = rec if len(self._recs) == 1 else np.maximum.reduce(self._recs)
        held = ex.held
        target = with_min_nodes(self.ctx.fleet, retarget(self.ctx, held, need, self._subset))
        ex.apply(target, keep=need, mask=self._mask)

    def _recommend(self, desired: np.ndarray, held: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = np.where(desired > 0, desired / held, 0.0)
        ratio = float(np.max(ratios)) if ratios.size else 0.0
        if math.isfinite(ratio) and ratio > 0 and abs(ratio - 1.0) <= self.tolerance:
            return desired / ratio  # within tolerance: the binding metric stays where it is
        return desired


@dataclass(eq=False)
class StaticPeak(Rule):
    """One cover of ``factor`` times the history's peak, held all along."""

    ctx: Context
    peak: np.ndarray  # (M,)
    factor: float
    policy: str = "static"

    def __post_init__(self) -> None:
        fleet = self.ctx.fleet
        counts = self.ctx.covers.cover(np.maximum(self.peak, 0.0) * self.factor, self.ctx.all_types)
        self._target = with_min_nodes(fleet, counts.copy())

    @property
    def setting(self) -> str:
        return f"peak_x={self.factor:g}"

    def decide(self, t: int, ex: Executor) -> None:
        ex.apply(self._target, keep=np.zeros(len(self.ctx.fleet.metrics)))


def stabilisation_steps(step_seconds: int, seconds: float = 300.0) -> int:
    """Recommendations within the HPA's scale-down window, the current one included."""
    return max(1, math.ceil(seconds / step_seconds)) + 1


@dataclass(eq=False)
class Allocating(Rule):
    """The slow path, for measuring the fast one: ``allocate`` itself decides every step.

    At step ``t`` it hands ``allocate`` the step's forecast (quantiles times ``1 + h``), what the app holds
    (booting nodes included, as a cluster reports them) and a policy covering quantile ``q``; the
    allocation's target counts go to the executor, which keeps ``max(D[t, 0], F[t])`` serving while it
    releases. ``allocate`` plans one target over its horizon, so a type whose lead time exceeds the horizon
    is not added (its explanation says so). ``allocation_policy`` defaults to the exact MILP.
    """

    ctx: Context
    forecast: np.ndarray  # (T, H, M, Q) quantiles, NaN where missing
    quantiles: tuple[float, ...]
    floor: np.ndarray  # (T, M) F[t]
    start: pd.Timestamp  # step 0
    quantile: float
    headroom: float
    allocation_policy: Policy | None = None
    policy: str = "allocate"
    seconds: float = 0.0
    _fallbacks: int = 0

    @property
    def setting(self) -> str:
        return f"q={self.quantile:g},headroom={self.headroom:g}"

    @property
    def fallback_steps(self) -> int:
        return self._fallbacks

    def decide(self, t: int, ex: Executor) -> None:
        fleet = self.ctx.fleet
        values = self.forecast[t] * (1.0 + self.headroom)
        floor = np.nan_to_num(self.floor[t])
        if not np.isfinite(values).all():
            self._fallbacks += 1
            need = floor
            ex.apply(with_min_nodes(fleet, retarget(self.ctx, ex.held, need, fleet.fast.idx)), keep=need)
            return
        step = pd.Timedelta(seconds=fleet.step_seconds)
        now = pd.Timestamp(self.start) + t * step
        policy = self.allocation_policy or Policy(solver="milp", runner_ups=0, time_budget_ms=None)
        policy = replace(policy, covered_quantile=self.quantile)
        forecast = Forecast(now, fleet.step_seconds, list(fleet.metrics), list(self.quantiles), values)
        started = time.perf_counter()
        result = allocate(forecast, fleet.catalog, fleet.profile, fleet.as_dict(ex.held), policy, now=now)
        self.seconds += time.perf_counter() - started
        target = with_min_nodes(fleet, fleet.counts(result.nodes))
        keep = np.maximum(np.maximum(np.nan_to_num(forecast.quantile(self.quantile)[0]), 0.0), floor)
        ex.apply(target, keep=keep)
