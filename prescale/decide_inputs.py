r"""Assembling one decision's input from what a live caller knows, and reading its target back.

The predictive rule (:func:`prescale.decision.decide`) takes arrays on the decision's time step. The replay
builds them for a whole window at once (``prescale.replay.engine``); a live caller (the orchestrate task,
``prescale plan``, ``prescale apply``) knows instead, at one instant ``now``: the app's catalog and profile,
the champion's forecast of the profile's metrics (or none), the newest observed demand per metric, what
the cluster holds for the app (ready nodes per type, and booting nodes with the seconds until each is
expected to be ready), the knobs, and the rule's state from the previous decision. :func:`assemble` turns
that into a :class:`~prescale.decision.DecisionInput` exactly as the replay would at the same step:

* **step**: the forecast's ``step_seconds`` (without a forecast, ``fallback_step_seconds``: the data's step);
  the :class:`~prescale.fleet.Fleet` is built at that step, so lead times become ``r[i] = ceil(L[i] / step)``;
* **covered demand** ``D[j] = (1 + h) * max(Q_q[j], 0)`` over the forecast steps still running or ahead at
  ``now`` (:meth:`Forecast.since`: with data coarser than the cadence the first steps may have ended);
  a forecast that ended before ``now``, or none, is a missing forecast (``covered`` None);
* **floor** ``F = (1 + h) * o``, ``o`` the newest observed demand (NaN for a metric never observed: 0);
* **holding**: ready nodes as serving; a booting node expected ready in ``s`` seconds arrives
  ``k = ceil(s / step)`` steps from now, clamped to ``1 .. R`` (``R`` the slowest ready offset: a node not
  ready now serves from the next step at the earliest, and none later than a fresh order would); a node of
  a type the fleet does not hold (incompatible, or quota 0) is not part of the decision: its target is 0;
* **hold** ``b = round(hold_minutes * 60 / step)`` (as ``ReplayConfig.hold_steps``), and the margin;
* **the rule**: under ``Knobs.rule == "reactive"`` any forecast is set aside (``covered`` None, the step the
  data's) and the input carries the HPA's :class:`~prescale.decision.ReactiveRule` (5-minute scale-down
  stabilisation, 10% tolerance, every compatible type), exactly as the replay's ``Adaptive`` builds it;
  its window counts decisions of ``decision_seconds`` (the loop's cadence, 60 s: the loop decides every
  minute whatever the data's step; default the step, as the replay decides once per step), so it spans
  5 minutes either way; the rule's recent recommendations come back through the state.

**The reactive floor and the fallback, mapped.** The loop used to raise every quantile of the forecast to
``o / u`` when ``o`` broke above the forecast's top band (``apply_floor``, in ``prescale.orchestrate`` before
issue 14), and without a champion to plan for a flat ``o / u`` (``reactive_forecast``), ``u`` being a
hand-set target utilisation (since issue 16 the SLO policy's, ``prescale.orchestrate.knobs_for``).
The rule carries both already, with the same meaning: a utilisation target ``u`` *is* a headroom of
``1 / u - 1``, so ``F = o / u``; the rule never lets the step it decides
serve less than ``F`` (the fast tier's shortfall at step 0 is at least ``F - S``, and every slow tier's keep
level is at least ``F``), which is the floor; and a missing forecast makes the fast tier cover ``F`` alone
(``Decision.fallback``), which is the reactive fallback. The one difference from ``apply_floor``: the floor
raises the step being decided (and the keep levels), not every step of the horizon; capacity for later
steps follows the forecast, and the next decision raises again if demand stays above it.

Also here: the :class:`~prescale.decision.RuleState` as JSON (the reactive rule's recommendations under
``"reactive"``; the ledger keeps it between minutes, and
:func:`newest_state` finds the last one written) with the SLO controller's :class:`SloState` under the key
``"slo"`` (:func:`newest_slo_state`; rows written before issue 16 have none: the controller starts afresh), the
target as node counts per type name, and the rejected types with a reason (``prescale plan --json``).
Pure: no clock, no setting, no I/O; the cover solver is the caller's (a cache is a speed matter only).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from prescale.catalog import AppProfile, Catalog
from prescale.cluster.plan import Holding as ClusterHolding
from prescale.decision import Covers, Decision, DecisionInput, ReactiveRule, RuleState
from prescale.fleet import Fleet, build_fleet
from prescale.forecast import Forecast, ForecastError
from prescale.holding import Holding
from prescale.slo.controller import TrackerState


@dataclass(frozen=True)
class Knobs:
    """The rule's knobs: covered quantile ``q``, headroom ``h``, hold window (minutes), consolidation margin,
    and which rule decides (``reactive``: the decision's reactive rule on ``F = (1 + h) o``, no forecast).

    ``h`` may be negative (down to -1, not included): the SLO controller's scale below 1 covers less than the
    quantile itself (``prescale.orchestrate.knobs_for``)."""

    quantile: float
    headroom: float
    hold_minutes: float = 5.0
    margin: float = 0.1
    rule: str = "predictive"

    def __post_init__(self) -> None:
        if not 0 < self.quantile < 1 or not self.headroom > -1 or self.hold_minutes < 0 or self.margin < 0:
            raise ValueError(
                f"knobs out of range: quantile {self.quantile} must be in (0, 1), headroom {self.headroom} "
                f"above -1; hold_minutes {self.hold_minutes} and margin {self.margin} must be >= 0"
            )
        if self.rule not in ("predictive", "reactive"):
            raise ValueError(f"the rule must be 'predictive' or 'reactive', got {self.rule!r}")

    def hold_steps(self, step_seconds: int) -> int:
        return max(0, round(self.hold_minutes * 60 / step_seconds))


@dataclass(frozen=True)
class Held:
    """What the cluster holds for the app: ready nodes per type; booting ones by seconds until expected ready."""

    ready: Mapping[str, int] = field(default_factory=dict)
    booting: Mapping[str, tuple[float, ...]] = field(default_factory=dict)

    @classmethod
    def of(cls, holdings: Mapping[str, ClusterHolding]) -> Held:
        """From a cluster's ``ClusterState.holdings(app)``: a backend that cannot tell which nodes still boot
        (``booting`` None) has every claimed node counted as serving."""
        ready, booting = {}, {}
        for name, h in holdings.items():
            times = tuple(h.booting or ())[: h.nodes]
            ready[name] = h.nodes - len(times)
            if times:
                booting[name] = times
        return cls(ready=ready, booting=booting)

    @property
    def nodes(self) -> dict[str, int]:
        names = set(self.ready) | set(self.booting)
        return {t: int(self.ready.get(t, 0)) + len(self.booting.get(t, ())) for t in sorted(names)}


@dataclass(frozen=True, eq=False)
class Assembled:
    """The decision's input, and what the assembly noticed on the way (for the decision's reasons)."""

    inp: DecisionInput
    notes: tuple[str, ...] = ()
    forecast: Forecast | None = None  # the forecast's steps from ``now`` on (None: missing)

    @property
    def fleet(self) -> Fleet:
        return self.inp.fleet


def assemble(
    catalog: Catalog,
    profile: AppProfile,
    *,
    forecast: Forecast | None,
    observed: Mapping[str, float],
    held: Held,
    knobs: Knobs,
    state: RuleState | None,
    now: pd.Timestamp,
    covers: Callable[[Fleet], Covers],
    fallback_step_seconds: int = 60,
    decision_seconds: int | None = None,
) -> Assembled:
    """The :class:`DecisionInput` at ``now`` (see the module docstring)."""
    reactive = knobs.rule == "reactive"
    if reactive:
        forecast = None  # the reactive rule decides on observed demand alone
    step = forecast.step_seconds if forecast is not None else int(fallback_step_seconds)
    fleet = fleet_of(catalog, profile, step)
    notes: list[str] = []
    ahead = None
    if forecast is not None:
        forecast = forecast.select(list(fleet.metrics))
        try:
            ahead = forecast.since(now)
        except ForecastError as exc:
            notes.append(f"forecast unusable at {pd.Timestamp(now).isoformat()}: {exc}")
    covered = None
    if ahead is not None:
        covered = np.maximum(ahead.quantile(knobs.quantile), 0.0) * (1.0 + knobs.headroom)
    o = np.array([float(observed.get(m, np.nan)) for m in fleet.metrics], dtype=float)
    floor = o * (1.0 + knobs.headroom)
    if covered is not None and (np.nan_to_num(floor) > covered[0] + 1e-9).any():
        above = [m for m, f, d in zip(fleet.metrics, np.nan_to_num(floor), covered[0], strict=True) if f > d + 1e-9]
        notes.append(f"observed {above} above the covered forecast now: reactive floor raised capacity")
    holding, foreign = holding_of(fleet, held)
    if foreign:
        notes.append(f"held type(s) {foreign} not usable by {profile.name!r}: released")
    inp = DecisionInput(fleet, covers(fleet), holding, covered=covered, floor=floor, hold=knobs.hold_steps(step),
                        margin=knobs.margin, state=fitted_state(state, fleet),
                        reactive=ReactiveRule.hpa(decision_seconds or step) if reactive else None)  # fmt: skip
    return Assembled(inp, tuple(notes), ahead)


_FLEETS: dict[tuple[int, int, int], tuple[Catalog, AppProfile, Fleet]] = {}
_FLEETS_MAX = 4096


def fleet_of(catalog: Catalog, profile: AppProfile, step_seconds: int) -> Fleet:
    """``build_fleet(catalog, profile, step_seconds=...)``, remembered for the same catalog and profile objects.

    The live callers load both through ``prescale.catalog``'s per-file caches, so an unchanged file is the same
    object every minute, and building the fleet again (the compatibility filter over the whole catalog) was
    half a millisecond of every decision. Keyed by identity, with the objects kept alive in the entry so an id
    is never reused while its entry stands; a changed file is a new object, so a new fleet. Both are frozen
    pydantic values, and a fleet is treated as a value by every reader."""
    key = (id(catalog), id(profile), int(step_seconds))
    found = _FLEETS.get(key)
    if found is not None and found[0] is catalog and found[1] is profile:
        return found[2]
    fleet = build_fleet(catalog, profile, step_seconds=step_seconds)
    if len(_FLEETS) >= _FLEETS_MAX:
        _FLEETS.clear()
    _FLEETS[key] = (catalog, profile, fleet)
    return fleet


def holding_of(fleet: Fleet, held: Held) -> tuple[Holding, list[str]]:
    """``held`` as a :class:`Holding` on the fleet's step, and the held types the fleet does not know."""
    ready = np.zeros(fleet.n, dtype=int)
    booting = np.zeros((fleet.max_ready, fleet.n), dtype=int)
    foreign = sorted(t for t, n in held.nodes.items() if n and t not in fleet.names)
    for i, name in enumerate(fleet.names):
        ready[i] = int(held.ready.get(name, 0))
        for seconds in held.booting.get(name, ()):
            k = arrival_step(seconds, fleet.step_seconds, fleet.max_ready)
            if k == 0:
                ready[i] += 1  # every type is ready within its step: nothing can be booting on this grid
            else:
                booting[k - 1, i] += 1
    return Holding(ready, booting), foreign


def arrival_step(seconds: float, step_seconds: int, max_ready: int) -> int:
    """Steps until a node expected ready in ``seconds`` serves: ``ceil``, clamped to ``1 .. max_ready``."""
    if max_ready == 0:
        return 0
    k = math.ceil(float(seconds) / step_seconds - 1e-9) if math.isfinite(seconds) else max_ready
    return min(max(k, 1), max_ready)


def fitted_state(state: RuleState | None, fleet: Fleet) -> RuleState:
    """The previous state, keeping only what fits this fleet (a tier's width in metrics, at most ``r_k`` rows)."""
    if state is None:
        return RuleState.initial()
    ready = {t.kind: t.ready for t in fleet.tiers[1:]}
    m = len(fleet.metrics)
    kept = {}
    for kind, rows in state.recent_keep.items():
        rows = np.asarray(rows, dtype=float)
        if kind in ready and ready[kind] > 0 and rows.ndim == 2 and rows.shape[1] == m:
            kept[kind] = rows[-ready[kind] :]
    recs = None if state.recent_recs is None else np.asarray(state.recent_recs, dtype=float)
    if recs is not None and (recs.ndim != 2 or recs.shape[1] != m):
        recs = None  # the reactive rule's recommendations of another set of metrics: start afresh
    return RuleState(kept, recs)  # the reactive rule keeps only as many as its window needs


# ------------------------------------------------------------------------------------------- reading back


def target_nodes(fleet: Fleet, decision: Decision) -> dict[str, int]:
    """The decision's target as nodes per type name (types at 0 left out)."""
    return fleet.as_dict(decision.target)


def rejected(
    catalog: Catalog, profile: AppProfile, fleet: Fleet, decision: Decision, *, horizon: int | None = None
) -> dict[str, str]:
    """Every catalog type the target does not use, with the reason.

    The catalog's filters say *incompatible* (the profile's words) and *over quota* (quota 0); a type whose
    lead time reaches past the forecast's ``horizon`` steps is *lead time too long* (the rule cannot see the
    demand it would serve); any other type the rule left out was *not chosen: dearer per unit*.
    """
    out: dict[str, str] = {}
    used = set(target_nodes(fleet, decision))
    index = {name: i for i, name in enumerate(fleet.names)}
    for rtype in catalog:
        why = profile.incompatibility(rtype)
        if why is None and rtype.quota == 0:
            why = "over quota: the quota of this type is 0"
        if why is None and rtype.name in used:
            continue
        if why is None and horizon is not None and fleet.ready[index[rtype.name]] >= horizon:
            why = (f"lead time too long: a node takes {rtype.lead_time_seconds:g} s, past the "
                   f"{horizon * fleet.step_seconds} s horizon")  # fmt: skip
        out[rtype.name] = why or "not chosen: dearer per unit"
    return out


# ------------------------------------------------------------------------------------------- state as JSON


SLO_KEY = "slo"  # the SLO controller's state, beside the rule's tiers in the ledger's ``rule_state``
REACTIVE_KEY = "reactive"  # the reactive rule's recent recommendations (no tier kind is named so)


@dataclass(frozen=True)
class SloState:
    """The SLO controller's state kept between decisions: the tracker, and the newest observed instant it
    has counted (a decision that sees no newer observation, data coarser than the loop's cadence or a second
    run at the same instant, does not count the same step twice)."""

    tracker: TrackerState = field(default_factory=TrackerState)
    observed_at: pd.Timestamp | None = None

    def to_json(self) -> dict[str, Any]:
        at = None if self.observed_at is None else pd.Timestamp(self.observed_at).isoformat()
        return {**self.tracker.to_json(), "observed_at": at}

    @classmethod
    def from_json(cls, data: Any) -> SloState | None:
        """A state written by :meth:`to_json`; None for nothing or anything not shaped like one."""
        if not isinstance(data, Mapping) or "theta" not in data:
            return None
        try:
            at = pd.Timestamp(data["observed_at"]) if data.get("observed_at") else None
        except (TypeError, ValueError):
            at = None
        return cls(TrackerState.from_json(dict(data)), at)


def state_to_json(state: RuleState, slo: SloState | None = None) -> dict[str, Any]:
    """The rule's state as JSON-ready lists (NaN, a level not known, as null), with the SLO controller's
    state under :data:`SLO_KEY` when given."""
    out: dict[str, Any] = {kind: _rows_json(rows) for kind, rows in sorted(state.recent_keep.items())}
    if state.recent_recs is not None:
        out[REACTIVE_KEY] = _rows_json(state.recent_recs)
    if slo is not None:
        out[SLO_KEY] = slo.to_json()
    return out


def _rows_json(rows: np.ndarray) -> list[list[float | None]]:
    return [[None if not math.isfinite(v) else float(v) for v in row] for row in np.asarray(rows, dtype=float)]


def state_from_json(data: Any) -> RuleState | None:
    """A state written by :func:`state_to_json` (its :data:`SLO_KEY` left out); None for nothing or anything
    not shaped like one. A row that carries only the SLO state is a decision whose rule kept nothing: an
    empty state."""
    if not isinstance(data, Mapping) or not data:
        return None
    recent, recs = {}, None
    try:
        for kind, rows in data.items():
            if kind == SLO_KEY:
                continue
            arr = np.array([[np.nan if v is None else float(v) for v in row] for row in rows], dtype=float)
            if kind == REACTIVE_KEY:
                recs = arr if arr.ndim == 2 else None
            elif arr.ndim == 2:
                recent[str(kind)] = arr
    except (TypeError, ValueError):
        return None
    return RuleState(recent, recs)


def newest_state(written: Sequence[Any]) -> RuleState | None:
    """The state of the newest of ``written`` (states as JSON, oldest first, as the ledger's ``rule_state``
    column reads) that is one: a decision that was never taken, after a gather error or a crash, wrote none."""
    for data in reversed(written):
        state = state_from_json(data)
        if state is not None:
            return state
    return None


def newest_slo_state(written: Sequence[Any]) -> SloState | None:
    """The SLO controller's state of the newest of ``written`` that carries one (None: rows written before
    issue 16, or none at all: the controller starts from ``θ = 0``)."""
    for data in reversed(written):
        slo = SloState.from_json(data.get(SLO_KEY)) if isinstance(data, Mapping) else None
        if slo is not None:
            return slo
    return None
