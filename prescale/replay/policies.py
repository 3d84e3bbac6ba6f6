r"""The scaling policies a replay compares, as rules from what is known at a decision to target node counts.

Notation: decision at the start of step ``t``; ``d[t]`` the demand vector of step ``t`` (not yet observed at
the decision); ``o[t] = d[t-1]`` the last observed demand (the latest observed before it, across gaps);
``r[i]`` steps from order to serving for type ``i``; tiers by kind, fastest first (``fleet.py``);
``cover(l, S)`` the cheapest nodes of the types ``S`` serving ``l`` (``covers.py``, the allocation's MILP).
Every rule ends in :func:`retarget` or a tier's band, and the :class:`~prescale.replay.simulate.Executor`
carries the counts out make-before-break.

**Predictive (ours).** Knobs: the covered quantile ``q`` and a headroom ``h`` (its utilisation target is
``1 / (1 + h)``). From the forecast made at ``t`` (origin ``t-1``, steps ``t .. t+H-1``)::

    D[t, j] = (1 + h) * Q_q[t, j]               covered demand j steps ahead
    F[t]    = (1 + h) * o[t]                    the reactive floor, at the policy's own target

* each *slow* tier ``k`` (every tier but the fastest, slowest first; lead ``r_k``) holds whole nodes in a
  band. ``want = cover(W, all)`` restricted to the tier, where ``W`` is the ``1 - θ_k`` quantile *over time*
  of ``D[t, r_k .. 2 r_k - 1]`` (the lead time after a node ordered now could first serve: demand further out
  can be ordered later, on a fresher forecast; measured on the replay benchmark's periodic traces, looking to
  the horizon's end instead cost up to 7% more at equal violations, 0-2% on most mixed profiles, paying for
  slow nodes booted before their demand came) and ``θ_k`` is the tier's cost per unit of demand over the fast
  tier's (``break_even``): a unit of capacity at level ``W`` is busy a share ``P(D >= W)`` of the time, and it
  is cheaper on the slow tier exactly when that share exceeds ``θ_k``. So bare metal (``θ`` ~0.85) carries the
  base that persists, FPGAs and GPUs (``θ`` ~0.1) nearly everything predictable; the cheapest mix for ``W``
  says how many whole slow nodes that is. ``keep = cover(K, all)`` restricted to the tier, ``K[t]`` the
  highest of ``max(max_{j <= r_k + b} D[s, j], F[s])`` over the last ``r_k`` decisions ``s = t - r_k .. t``:
  do not let go of a slow node still needed before a new one could be back (cover ``[t, t + r_k + b]``, not
  just ``[t + r_k, ...]``, or the policy cancels nodes it still needs), and do not let go on one low forecast
  (releasing on a dip of a jumpy forecast and buying back costs ``r_k`` steps of booting: the HPA's scale-down
  stabilisation, at the tier's own lead). The tier keeps its held nodes, of any of its types, while they are
  needed to serve the larger of ``want``'s and ``keep``'s capacity (dropping the dearest per unit first), adds
  the cheapest cover of what ``want`` asks beyond that, and swaps to the cheapest mix when the result costs
  more than ``1 + margin`` times it; ``b`` is the hold window (steps);
* the *fast* tier covers what the slow nodes will not, over its own lead plus the hold window. The
  shortfall at step ``j`` is::

      g[j] = max( D[t, j] - S[t + j], 0 ),  g[0] also >= F[t] - S[t]

  where ``S[s]`` is the serving capacity of the slow nodes at step ``s`` as things stand after their
  decision (booting ones count from their arrival). Nothing ordered now serves before ``r_f``, and a step
  ``j`` can be served by any type ready by then, whatever its kind: the window's steps are grouped into
  runs whose types ready by ``max(j, r_f)`` are the same, and each run's shortfall not yet covered is
  bought with the cheapest cover of those types (at five-minute steps a small GPU VM boots within one
  step, as fast as a CPU VM, and serves inference five times more cheaply per request). Slow nodes
  bought so join their tier; the fast tier keeps what the window still needs from it (``retarget``: trim
  or add, then consolidate). When only the fast tier is ready inside the window this is ``retarget`` to
  ``max_j g[j]``;
* releases keep ``max(max_{j <= r_f} D[t, j], F[t])`` serving (make-before-break: what is let go now cannot be
  replaced before ``r_f``; keeping only ``D[t, 0]`` let a swap open a gap at the next steps, measured 22
  violation minutes in a week of NASA at one-minute steps even with a perfect forecast). A step whose forecast
  is missing (a gap in the history it needs) falls back to the floor alone, and is counted.

**Reactive (HPA + Karpenter, made fair).** Knobs: the target utilisation ``u`` and the types it may buy
(all compatible ones, as Karpenter would, or only the fastest tier). Like the HPA it reacts to observed
demand only: the recommendation is ``o[t] / u``, unless the utilisation of what it holds is within 10% of
the target (then it keeps the binding metric where it is); scale-down is stabilised over 5 minutes (the
highest recommendation of the window wins; scale-up is immediate); then ``retarget`` with the cheapest
cover of what is missing, which is Karpenter's cheapest compatible type per unit of demand, bin-packed.

**Static peak.** One cover, bought once: ``cover(f * p, all)`` with ``p`` the peak demand of the history
before the window and the knob ``f`` a multiple of it.

:func:`retarget` (shared): if what the subset holds covers ``need``, drop the dearest-per-unit nodes that
are not needed; else add ``cover(need - held)``; if the result costs more than ``1 + margin`` times
``cover(need)``, take ``cover(need)`` instead (Karpenter's consolidation: a cheaper mix, swapped in
make-before-break). The oracle is in ``oracle.py``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from prescale.allocation import Policy, allocate
from prescale.fleet import Fleet
from prescale.forecast import Forecast
from prescale.replay.covers import CoverCache
from prescale.replay.errors import ReplayError
from prescale.replay.simulate import TOL, Executor


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


# ------------------------------------------------------------------------------------------- shared


def trim(fleet: Fleet, counts: np.ndarray, need: np.ndarray) -> np.ndarray:
    """Drop the dearest-per-unit nodes of ``counts`` while the rest still serves ``need``."""
    out = np.asarray(counts, dtype=int).copy()
    spare = fleet.capacity(out) - np.maximum(need, 0.0)
    if (spare < -TOL).any():
        return out
    for i in np.argsort(-fleet.unit_cost, kind="stable"):
        if not out[i]:
            continue
        size = fleet.served[i]
        used = size > TOL
        k = min(int(out[i]), int(np.floor((spare[used] + TOL) / size[used]).min()) if used.any() else int(out[i]))
        if k > 0:
            out[i] -= k
            spare = spare - k * size
    return out


def retarget(ctx: Context, held: np.ndarray, need: np.ndarray, subset: tuple[int, ...]) -> np.ndarray:
    """Target counts for ``subset`` (others 0) covering ``need`` (see the module docstring)."""
    fleet = ctx.fleet
    mask = np.zeros(fleet.n, dtype=bool)
    mask[list(subset)] = True
    mine = np.where(mask, held, 0)
    need = np.maximum(need, 0.0)
    deficit = need - fleet.capacity(mine)
    if (deficit > TOL * (1 + need)).any():
        candidate = mine + ctx.covers.cover(np.maximum(deficit, 0.0), subset)
    else:
        candidate = trim(fleet, mine, need)
    return consolidate(ctx, candidate, need, subset)


def consolidate(ctx: Context, candidate: np.ndarray, need: np.ndarray, subset: tuple[int, ...]) -> np.ndarray:
    """``cover(need, subset)`` instead of ``candidate`` when that costs over ``1 + margin`` times less.

    Karpenter's consolidation: a cheaper mix, swapped in make-before-break by the executor.
    """
    best = ctx.covers.cover(need, subset)
    if ctx.fleet.cost_per_hour(candidate) > (1.0 + ctx.margin) * ctx.fleet.cost_per_hour(best) + 1e-9:
        return best.copy()
    return candidate


def break_even(fleet: Fleet, tier) -> float:
    """``θ``: the tier's cheapest cost per unit of demand over the fastest tier's, clipped to [0, 1]."""
    fast = fleet.unit_cost[list(fleet.fast.idx)].min()
    own = fleet.unit_cost[list(tier.idx)].min()
    return float(np.clip(own / fast, 0.0, 1.0)) if fast > 0 else 1.0


def with_min_nodes(fleet: Fleet, counts: np.ndarray, others: int = 0) -> np.ndarray:
    """Add the fastest tier's cheapest node until the app holds ``profile.min_nodes`` (``others``: held elsewhere)."""
    missing = fleet.profile.min_nodes - int(counts.sum()) - others
    if missing <= 0:
        return counts
    fast = list(fleet.fast.idx)
    cheapest = fast[int(np.argmin(fleet.price[fast]))]
    out = counts.copy()
    out[cheapest] += missing
    return out


# ------------------------------------------------------------------------------------------- policies


@dataclass(eq=False)
class Predictive(Rule):
    """Forecast-driven, tiered by lead time (see the module docstring)."""

    ctx: Context
    covered: np.ndarray  # (T, H, M) D[t, j]; NaN where the forecast is missing
    floor: np.ndarray  # (T, M) F[t]
    quantile: float
    headroom: float
    hold: int  # b, steps
    policy: str = "predictive"
    _fallbacks: int = 0
    valid: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        fleet = self.ctx.fleet
        if self.covered.ndim != 3 or self.covered.shape[2] != len(fleet.metrics):
            raise ReplayError(f"covered demand must be shaped (T, H, {len(fleet.metrics)}), got {self.covered.shape}")
        self.valid = np.isfinite(self.covered).all(axis=(1, 2))
        self._slow = [tier for tier in fleet.tiers[1:]][::-1]
        self._fast_mask = fleet.tier_mask(fleet.fast)
        self._slow_mask = ~self._fast_mask
        self._bands = {tier.kind: self._band(tier) for tier in self._slow}
        self._slow_target = np.zeros(fleet.n, dtype=int)  # this step's slow-tier targets
        self._groups: dict[int, list[tuple[int, int, tuple[int, ...]]]] = {}  # _buy_groups by window length
        self._floor = np.nan_to_num(self.floor)
        until = fleet.fast.ready + 1  # steps before a node ordered now could replace one let go
        first = np.maximum(np.nan_to_num(self.covered[:, :until]).max(axis=1), self._floor)
        self._now = np.where(self.valid[:, None], first, self._floor)

    def _band(self, tier) -> tuple[np.ndarray, np.ndarray]:
        """``(want, keep)`` levels of a slow tier at every step, ``(T, M)`` each (see the module docstring)."""
        path, horizon = self.covered, self.covered.shape[1]
        floor = np.nan_to_num(self.floor)
        if tier.ready < horizon:
            level = 1.0 - break_even(self.ctx.fleet, tier)
            end = min(horizon, tier.ready + max(tier.ready, 1))
            want = np.quantile(path[:, tier.ready : end], level, axis=1)
        else:
            want = np.zeros((path.shape[0], path.shape[2]))
        keep = np.maximum(path[:, : tier.ready + self.hold + 1].max(axis=1), floor)
        if tier.ready > 0:  # stabilised: the highest keep level of the last r_k decisions
            keep = pd.DataFrame(keep).rolling(tier.ready + 1, min_periods=1).max().to_numpy()
        return np.nan_to_num(want), keep

    @property
    def setting(self) -> str:
        return f"q={self.quantile:g},headroom={self.headroom:g}"

    @property
    def fallback_steps(self) -> int:
        return self._fallbacks

    def decide(self, t: int, ex: Executor) -> None:
        floor = self._floor[t]
        path = self.covered[t] if self.valid[t] else None
        if path is None:
            self._fallbacks += 1
        now = self._now[t]
        if path is not None:
            for tier in self._slow:
                self._slow_tier(t, tier, ex, now)
        self._fast_tier(path, floor, ex, now)

    def _slow_tier(self, t: int, tier, ex: Executor, now: np.ndarray) -> None:
        fleet, covers, everything = self.ctx.fleet, self.ctx.covers, self.ctx.all_types
        mask = fleet.tier_mask(tier)
        want_level, keep_level = self._bands[tier.kind]
        want = np.where(mask, covers.cover(want_level[t], everything), 0)
        keep = np.where(mask, covers.cover(keep_level[t], everything), 0)
        level = np.maximum(fleet.capacity(want), fleet.capacity(keep))
        kept = trim(fleet, np.where(mask, ex.held, 0), level)
        short = fleet.capacity(want) - fleet.capacity(kept)
        target = kept
        if (short > TOL * (1 + fleet.capacity(want))).any():
            target = kept + covers.cover(np.maximum(short, 0.0), tier.idx)
        target = consolidate(self.ctx, target, level, tier.idx)
        self._slow_target[mask] = target[mask]
        ex.apply(target, keep=now, mask=mask)

    def _fast_tier(self, path: np.ndarray | None, floor: np.ndarray, ex: Executor, now: np.ndarray) -> None:
        fleet = self.ctx.fleet
        window = fleet.fast.ready + self.hold + 1
        limit = None if path is None else self._slow_target
        slow = ex.serving_profile(window, self._slow_mask, limit=limit)
        gap = np.maximum(floor - slow[0], 0.0)[None, :]
        if path is not None:
            upto = min(window, path.shape[0])
            gap = np.maximum(path[:upto] - slow[:upto], 0.0)
            gap[0] = np.maximum(gap[0], floor - slow[0])
        held = ex.held
        groups = self._buy_groups(len(gap))
        if all(types == fleet.fast.idx for *_, types in groups):  # only the fast tier is ready inside the window
            target = retarget(self.ctx, held, gap.max(axis=0), fleet.fast.idx)
        else:
            target = self._fill(held, gap, groups, ex, now)
        target = with_min_nodes(fleet, target, others=int(ex.held[self._slow_mask].sum()))
        ex.apply(target, keep=now, mask=self._fast_mask)

    def _buy_groups(self, steps: int) -> list[tuple[int, int, tuple[int, ...]]]:
        """``(first, last, types)``: runs of window steps ``j`` whose types ready by ``j`` are the same.

        Nothing ordered now serves before ``r_f``, so what is short at steps before it is bought with the
        types ready by ``r_f``: the first run starts at step 0 with them; later runs add every slow type
        ready by their steps.
        """
        found = self._groups.get(steps)
        if found is not None:
            return found
        fleet = self.ctx.fleet
        fast, rf = tuple(fleet.fast.idx), fleet.fast.ready
        groups: list[tuple[int, int, tuple[int, ...]]] = self._groups.setdefault(steps, [])
        for j in range(steps):
            by = max(j, rf)
            types = tuple(i for i in range(fleet.n) if i in fast or (self._slow_mask[i] and fleet.ready[i] <= by))
            if groups and groups[-1][2] == types:
                groups[-1] = (groups[-1][0], j, types)
            else:
                groups.append((j, j, types))
        return groups

    def _fill(self, held: np.ndarray, gap: np.ndarray, groups, ex: Executor, now: np.ndarray) -> np.ndarray:
        """Cover each run's shortfall with the cheapest types ready by then; returns the fast tier's target.

        Slow nodes bought here (types of a slow kind that boot within the window, such as a GPU VM that is
        ready within one five-minute step) are ordered at once and join their tier's target; the fast tier
        keeps what the window still needs from it once they serve, consolidated like :func:`retarget`.
        """
        fleet, covers = self.ctx.fleet, self.ctx.covers
        mine = np.where(self._fast_mask, held, 0)
        add = np.zeros(fleet.n, dtype=int)
        for first, last, types in groups:
            need = gap[first : last + 1].max(axis=0)
            deficit = need - fleet.capacity(mine + add)
            if (deficit > TOL * (1 + need)).any():
                add = add + covers.cover(np.maximum(deficit, 0.0), types)
        slow_add = np.where(self._fast_mask, 0, add)
        if slow_add.any():
            ex.apply(held + slow_add, keep=now, mask=slow_add > 0)
            self._slow_target = self._slow_target + slow_add
        arrived = np.array([fleet.capacity(np.where(fleet.ready <= j, slow_add, 0)) for j in range(len(gap))])
        need_fast = np.maximum(gap - arrived, 0.0).max(axis=0)
        if not add[self._fast_mask].any():
            return trim(fleet, mine, need_fast)
        return consolidate(self.ctx, mine + np.where(self._fast_mask, add, 0), need_fast, fleet.fast.idx)


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
