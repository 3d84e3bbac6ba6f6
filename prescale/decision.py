r"""The scaling rule as one pure decision (predictive, or reactive): from what is known to a plan of actions.

**Contract.** :func:`decide` takes a frozen :class:`DecisionInput` (the app's types as a
:class:`~prescale.fleet.Fleet`, a cover solver, what is held and what is booting as a
:class:`~prescale.holding.Holding` value, the covered demand path ``D[t, :]`` or none, the reactive floor
``F[t]``, the knobs, and the rule's own state from the previous decision) and returns a frozen
:class:`Decision`: the ordered :class:`Action`\ s to carry out (each ``(target, keep, mask)`` exactly as
``prescale.holding.apply_target`` and the replay's executor take it), the target counts per type, the
holding those actions lead to, whether the floor alone decided (fallback), reasons, and the rule's new
state. It reads no clock, no setting, no file and no global; it mutates nothing it is given. Acting is the
caller's: the replay's executor applies the actions in order (``prescale.replay.policies.Predictive``); a
dry run simply does not. The caller threads ``Decision.state`` into the next decision's input.

**Callers** (the one predictive rule and the one reactive rule in the code base): the replay's
``Predictive``, ``Reactive`` and ``Adaptive`` (``prescale.replay.policies``), the orchestrate task
(``tasks/orchestrate.py``: its state kept between minutes in the ledger's ``rule_state``), and
``prescale plan`` / ``apply`` (``cli/commands/rule.py``); the live ones build their input with
``prescale.decide_inputs.assemble``.

Only the cover solver remembers anything: ``covers.cover(level, subset)`` is a pure function of its
arguments (the replay's ``CoverCache`` memoises the allocation's exact MILP on a grid of levels), so caching
it changes speed, never answers.

**The rule** (tiered by lead time). Decision at the start of step ``t``; ``r[i]`` steps from order to
serving for type ``i``; tiers by kind, fastest first (``prescale.fleet``); ``cover(l, S)`` the cheapest
nodes of the types ``S`` serving ``l``; ``b`` the hold window (steps). The caller folds the covered quantile
``q`` and the headroom ``h`` in::

    D[t, j] = (1 + h) * Q_q[t, j]               covered demand j steps ahead (j = 0 .. H-1)
    F[t]    = (1 + h) * o[t]                    the reactive floor, o[t] the last observed demand

* each *slow* tier ``k`` (every tier but the fastest, slowest first; lead ``r_k``) holds whole nodes in a
  band. ``want = cover(W, all)`` restricted to the tier, where ``W`` is the ``1 - θ_k`` quantile *over time*
  of ``D[t, r_k .. 2 r_k - 1]`` (the lead time after a node ordered now could first serve: demand further out
  can be ordered later, on a fresher forecast; measured on the replay benchmark's periodic traces, looking to
  the horizon's end instead cost up to 7% more at equal violations, 0-2% on most mixed profiles, paying for
  slow nodes booted before their demand came) and ``θ_k`` is the tier's cost per unit of demand over the fast
  tier's (:func:`break_even`): a unit of capacity at level ``W`` is busy a share ``P(D >= W)`` of the time,
  and it is cheaper on the slow tier exactly when that share exceeds ``θ_k``. So bare metal (``θ`` ~0.85)
  carries the base that persists, FPGAs and GPUs (``θ`` ~0.1) nearly everything predictable; the cheapest
  mix for ``W`` says how many whole slow nodes that is. ``keep = cover(K, all)`` restricted to the tier::

      k[s] = max( max_{j <= r_k + b} D[s, j], F[s] )          this decision's keep level
      K[t] = max_{s = t - r_k .. t} k[s]                       stabilised: RuleState carries k[t-r_k .. t-1]

  do not let go of a slow node still needed before a new one could be back (cover ``[t, t + r_k + b]``, not
  just ``[t + r_k, ...]``, or the policy cancels nodes it still needs), and do not let go on one low forecast
  (releasing on a dip of a jumpy forecast and buying back costs ``r_k`` steps of booting: the HPA's scale-down
  stabilisation, at the tier's own lead). A level not known (a missing forecast) takes no part in the max,
  per metric. The tier keeps its held nodes, of any of its types, while they are needed to serve the larger
  of ``want``'s and ``keep``'s capacity (dropping the dearest per unit first), adds the cheapest cover of what
  ``want`` asks beyond that, and swaps to the cheapest mix when the result costs more than ``1 + margin``
  times it. Each tier's action is projected on the holding before the next tier decides;
* the *fast* tier covers what the slow nodes will not, over its own lead plus the hold window. The
  shortfall at step ``j`` is::

      g[j] = max( D[t, j] - S[t + j], 0 ),  g[0] also >= F[t] - S[t]

  where ``S[s]`` is the serving capacity of the slow nodes at step ``s`` as the projected holding stands
  after their actions (booting ones count from their arrival; nodes a target lets go do not count, even
  while the make-before-break floor still keeps them). Nothing ordered now serves before ``r_f``, and a step
  ``j`` can be served by any type ready by then, whatever its kind: the window's steps are grouped into runs
  whose types ready by ``max(j, r_f)`` are the same (:func:`buy_groups`), and each run's shortfall not yet
  covered is bought with the cheapest cover of those types (at five-minute steps a small GPU VM boots within
  one step, as fast as a CPU VM, and serves inference five times more cheaply per request). Slow nodes
  bought so are one more action and join their tier; the fast tier keeps what the window still needs from
  it (trim or add, then consolidate). When only the fast tier is ready inside the window this is
  :func:`retarget` to ``max_j g[j]``; the app's ``min_nodes`` is topped up with the cheapest fast node, and
  its ``max_nodes`` caps the fast tier (its dearest-per-unit nodes go first: :func:`with_max_nodes`);
* every action releases only while ``max(max_{j <= r_f} D[t, j], F[t])`` serves (make-before-break: what is
  let go now cannot be replaced before ``r_f``; keeping only ``D[t, 0]`` let a swap open a gap at the next
  steps, measured 22 violation minutes in a week of NASA at one-minute steps even with a perfect forecast).
  A step whose forecast is missing (``covered`` None, or any value not finite) leaves the slow tiers alone
  and covers the floor alone with the fast tier: ``fallback``. That is a *transient* answer (a gap in the
  forecast, a stale champion): it keeps the slow bands for the forecast to come back to, so it never lets a
  slow node go, and it is not a rule to run standing.

**The reactive rule** (``DecisionInput.reactive`` set, :class:`ReactiveRule`; issue 16): the standing rule
without a forecast, the HPA's on the replay's Karpenter-like node choice. The caller folds the target
utilisation ``u`` (and the SLO controller's scale ``s``) into the floor, ``F[t] = o[t] · max(s / u, 1)``;
``covered`` must be None. With ``C[t]`` the capacity of what the rule's types hold (serving and booting)::

    rec[t]  = F[t] / ρ   when ρ = max_m F[t, m] / C[t, m] is within ``tolerance`` of 1 (the binding metric
              stays where it is), else F[t]
    need[t] = max_{s = t - w + 1 .. t} rec[s]      scale-down stabilisation over the last ``w`` decisions;
                                                    scale-up immediate (RuleState carries rec[t-w+1 .. t-1])
    target  = with_min_nodes(retarget(held, need, types))   every tier at once, released while ``need`` serves,
              then at most ``max_nodes`` (``ReactiveRule.capped``)

so every tier, slow ones included, is sized from observed demand, and a node the window's demand no longer
needs is released once the stabilisation window has passed (the GPU, FPGA or bare-metal nodes a peak bought
go when the peak is ``w`` decisions old). ``types`` is every compatible type (the tuned policy's, as
Karpenter would) or only the fastest tier (a setting of the replay's sweep). This is the one reactive rule:
the replay's ``Reactive`` baseline, the ex-ante ``Adaptive`` under a reactive policy, the orchestrate loop
and ``prescale plan`` / ``apply`` all call :func:`decide` with it (``tests/orchestrate/test_reactive_identity.py``
holds the loop and ``Adaptive`` to the same targets at every step). Rejected: making the predictive rule's
missing-forecast fallback release slow nodes instead. A gap of a step or two in a forecast should not drop a
band the forecast still asks for, and a standing rule needs its own stabilisation state anyway; the two are
different answers to different questions, so they are two branches of the one function.

Rejected alternatives. (1) The rule deciding and acting at once, reading the executor between its tiers
(the replay's ``Predictive`` before issue 14): nothing else could call it, and a dry run needed a simulated
cluster. Here the later tiers read :func:`~prescale.holding.apply_target` projected on a value, the same
function the executor acts with, so the plan and the act cannot drift apart. (2) The bands precomputed for
all steps at once (a rolling max over the window): fast, but it is policy state computed from the future's
*inputs* and cannot run in a loop that decides one minute at a time; :class:`RuleState` carries exactly the
``r_k`` past keep levels instead, and the replay reproduces the precomputed series to the bit
(``tests/replay/test_decision_identity.py``).

Also here, shared by every replay policy: :func:`stabilisation_steps`, :func:`recommend`, :func:`trim`,
:func:`retarget`, :func:`consolidate`, :func:`with_min_nodes`, :func:`with_max_nodes`, :func:`break_even`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Protocol

import numpy as np

from prescale.fleet import Fleet, Tier
from prescale.holding import TOL, Holding, apply_target


class DecisionError(ValueError):
    """A decision's inputs do not fit together (shapes, knobs); the message names the value."""


class Covers(Protocol):
    """The cheapest whole nodes of ``subset`` serving ``level`` (fleet order); a pure function of its arguments."""

    def cover(self, level: np.ndarray, subset: Iterable[int]) -> np.ndarray: ...


class Buying(Protocol):
    """What :func:`retarget` and :func:`consolidate` need: the types, a cover solver, the consolidation margin."""

    @property
    def fleet(self) -> Fleet: ...

    @property
    def covers(self) -> Covers: ...

    @property
    def margin(self) -> float: ...


# ------------------------------------------------------------------------------------------- values


@dataclass(frozen=True, eq=False)
class RuleState:
    """What the rule carries from one decision to the next.

    ``recent_keep[kind]`` (predictive rule): per slow tier kind its last ``r_k`` keep levels, ``(<= r_k, M)``,
    oldest first; NaN where the level was not known. ``recent_recs`` (reactive rule): its last ``w - 1``
    recommendations, ``(<= w - 1, M)``, oldest first (None: none yet). Each rule starts afresh on the other's.
    """

    recent_keep: Mapping[str, np.ndarray] = field(default_factory=dict)
    recent_recs: np.ndarray | None = None

    @classmethod
    def initial(cls) -> RuleState:
        return cls()


@dataclass(frozen=True)
class ReactiveRule:
    """The reactive rule's settings (see the module docstring): the stabilisation window ``w`` in decisions
    (the current one included), the tolerance around the target, and the types it may buy."""

    window: int
    tolerance: float = 0.1
    types: str = "all"  # "all" compatible types, or "fast": the fastest tier only
    # the profile's max_nodes caps the target (the HPA's maxReplicas; the cluster's guardrail blocks a plan
    # above it). False only for the replay's reactive baseline sweep, recorded uncapped before issue 16:
    # a baseline let past max_nodes can only flatter the baseline.
    capped: bool = True

    def __post_init__(self) -> None:
        if self.window < 1 or self.tolerance < 0 or self.types not in ("all", "fast"):
            raise DecisionError(f"reactive rule: window {self.window} must be >= 1, tolerance {self.tolerance} "
                                f">= 0 and types {self.types!r} 'all' or 'fast'")

    @classmethod
    def hpa(cls, step_seconds: int, *, stabilisation_seconds: float = 300.0, tolerance: float = 0.1,
            types: str = "all") -> ReactiveRule:
        """The HPA's defaults (5-minute scale-down stabilisation, 10% tolerance, capped) on a decision step."""
        return cls(stabilisation_steps(step_seconds, stabilisation_seconds), tolerance, types)


def stabilisation_steps(step_seconds: int, seconds: float = 300.0) -> int:
    """Recommendations within the HPA's scale-down window of ``seconds``, the current one included."""
    if step_seconds <= 0:
        raise DecisionError(f"the decision step must be a positive number of seconds, got {step_seconds}")
    return max(1, math.ceil(seconds / step_seconds)) + 1


@dataclass(frozen=True, eq=False)
class DecisionInput:
    """Everything one decision knows (see the module docstring); nothing else is read."""

    fleet: Fleet
    covers: Covers
    holding: Holding  # what is held now: serving, and booting by arrival
    covered: np.ndarray | None  # (H, M) D[t, j]; None or any NaN: the forecast is missing
    floor: np.ndarray  # (M,) F[t]; NaN: nothing observed yet (0)
    hold: int  # b, steps
    margin: float = 0.1  # consolidation margin
    state: RuleState = field(default_factory=RuleState.initial)
    reactive: ReactiveRule | None = None  # set: the reactive rule decides on the floor alone

    def __post_init__(self) -> None:
        fleet, m = self.fleet, len(self.fleet.metrics)
        if self.reactive is not None and self.covered is not None:
            raise DecisionError("the reactive rule decides on observed demand alone: covered must be None, got "
                                f"a forecast path shaped {self.covered.shape}")
        if self.covered is not None and (self.covered.ndim != 2 or self.covered.shape[1] != m):
            raise DecisionError(f"covered demand must be shaped (H, {m}), got {self.covered.shape}")
        if np.shape(self.floor) != (m,):
            raise DecisionError(f"the floor must hold {m} values (one per metric), got shape {np.shape(self.floor)}")
        if self.holding.ready.shape != (fleet.n,) or self.holding.booting.shape != (fleet.max_ready, fleet.n):
            raise DecisionError(
                f"the holding must be ({fleet.n},) serving and ({fleet.max_ready}, {fleet.n}) booting, got "
                f"{self.holding.ready.shape} and {self.holding.booting.shape}"
            )
        if self.hold < 0 or self.margin < 0:
            raise DecisionError(f"hold and margin must be >= 0, got hold={self.hold}, margin={self.margin}")


@dataclass(frozen=True, eq=False)
class Action:
    """One move, carried out as ``apply_target(fleet, holding, target, keep=keep, mask=mask)``."""

    target: np.ndarray  # (n,) counts for the mask types
    keep: np.ndarray  # (M,) serving floor while releasing
    mask: np.ndarray  # (n,) bool: the types this action moves
    why: str


@dataclass(frozen=True, eq=False)
class Decision:
    """The plan of one decision (see the module docstring)."""

    actions: tuple[Action, ...]
    target: np.ndarray  # (n,) per type, what the last action moving it asks; types no action moves: as held
    after: Holding  # the holding once the actions are carried out
    fallback: bool  # the forecast was missing: the floor alone decided
    reasons: tuple[str, ...]
    state: RuleState  # pass into the next decision's input


# ------------------------------------------------------------------------------------------- decide


def decide(inp: DecisionInput) -> Decision:
    """The rule at one step: the reactive rule when ``inp.reactive`` is set, else the tiered predictive rule
    (see the module docstring)."""
    if inp.reactive is not None:
        return _reactive(inp, inp.reactive)
    fleet, lay = inp.fleet, _layout(inp.fleet)
    floor = np.nan_to_num(inp.floor)
    raw = inp.covered
    path = raw if raw is not None and np.isfinite(raw).all() else None
    keeps, state = _stabilised_keeps(inp, raw, floor, lay.slow)
    now = floor if path is None else np.maximum(np.nan_to_num(path[: fleet.fast.ready + 1]).max(axis=0), floor)
    plan = _Plan(fleet, inp.holding)
    slow_target = np.zeros(fleet.n, dtype=int)
    if path is None:
        plan.reasons.append("forecast missing: the fast tier covers the reactive floor alone")
    else:
        for tier, mask in zip(lay.slow, lay.slow_masks, strict=True):
            target = _slow_tier(inp, tier, mask, path, keeps[tier.kind], plan.holding.held)
            slow_target[mask] = target[mask]
            plan.act(target, now, mask, f"{tier.kind}: {int(target[mask].sum())} nodes (band)")
    _fast_tier(inp, path, floor, now, plan, slow_target if path is not None else None)
    _cap_total(inp.fleet, plan, now)
    return plan.decision(fallback=path is None, state=state)


def _reactive(inp: DecisionInput, rule: ReactiveRule) -> Decision:
    """The reactive rule (see the module docstring): every type of ``rule.types`` sized at once from ``F``."""
    fleet = inp.fleet
    if not np.isfinite(inp.floor).any():  # no metric observed (an outage): nothing to decide on, keep what runs
        plan = _Plan(fleet, inp.holding)
        plan.reasons.append("reactive: no demand observed, nothing to decide on: what runs is kept")
        return plan.decision(fallback=False, state=inp.state)
    subset = tuple(range(fleet.n)) if rule.types == "all" else fleet.fast.idx
    mask = np.zeros(fleet.n, dtype=bool)
    mask[list(subset)] = True
    held = inp.holding.held
    rec = recommend(np.nan_to_num(inp.floor), fleet.capacity(np.where(mask, held, 0)), rule.tolerance)
    past = inp.state.recent_recs
    recent = rec[None, :] if past is None or rule.window == 1 else np.vstack([past[-(rule.window - 1) :], rec])
    need = recent.max(axis=0)
    target = with_min_nodes(fleet, retarget(inp, held, need, subset))
    plan = _Plan(fleet, inp.holding)
    plan.act(target, need, mask, f"reactive: {int(target[mask].sum())} nodes for {np.round(need, 3).tolist()} "
                                 f"(the highest recommendation of the last {len(recent)} decisions)")
    if rule.capped:
        _cap_total(fleet, plan, need)
    kept = recent[-(rule.window - 1) :] if rule.window > 1 else recent[:0]  # what the next decision's window needs
    return plan.decision(fallback=False, state=RuleState(recent_recs=kept))


def recommend(desired: np.ndarray, held: np.ndarray, tolerance: float) -> np.ndarray:
    """The HPA's recommendation: ``desired``, or ``desired / ρ`` (the binding metric where it is) when the
    ratio ``ρ = max_m desired / held`` is within ``tolerance`` of 1."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(desired > 0, desired / held, 0.0)
    ratio = float(np.max(ratios)) if ratios.size else 0.0
    if math.isfinite(ratio) and ratio > 0 and abs(ratio - 1.0) <= tolerance:
        return desired / ratio
    return desired


def _cap_total(fleet: Fleet, plan: _Plan, now: np.ndarray) -> None:
    """The whole target (every tier) at most ``profile.max_nodes``: a slow band alone can exceed it, and the
    cluster's guardrail blocks a plan above it; the dearest per unit of demand go first."""
    capped = with_max_nodes(fleet, plan.target)
    if capped.sum() < plan.target.sum():
        plan.act(capped, now, np.ones(fleet.n, dtype=bool),
                 f"all tiers: capped at the profile's max_nodes {fleet.profile.max_nodes} "
                 f"({int(plan.target.sum() - capped.sum())} fewer nodes than the bands ask)")


class _Plan:
    """Actions so far and the holding they lead to (projected with ``apply_target``)."""

    def __init__(self, fleet: Fleet, holding: Holding) -> None:
        self.fleet = fleet
        self.holding = holding
        self.target = holding.held.copy()
        self.actions: list[Action] = []
        self.reasons: list[str] = []

    def act(self, target: np.ndarray, keep: np.ndarray, mask: np.ndarray, why: str) -> None:
        self.actions.append(Action(target, keep, mask, why))
        self.reasons.append(why)
        self.holding = apply_target(self.fleet, self.holding, target, keep=keep, mask=mask).holding
        self.target = np.where(mask, target, self.target)

    def decision(self, *, fallback: bool, state: RuleState) -> Decision:
        return Decision(tuple(self.actions), self.target, self.holding, fallback, tuple(self.reasons), state)


@dataclass(frozen=True, eq=False)
class _Layout:
    slow: tuple[Tier, ...]  # slowest first
    slow_masks: tuple[np.ndarray, ...]
    fast_mask: np.ndarray
    slow_mask: np.ndarray


@lru_cache(maxsize=64)
def _layout(fleet: Fleet) -> _Layout:
    slow = tuple(fleet.tiers[1:][::-1])
    fast = fleet.tier_mask(fleet.fast)
    return _Layout(slow, tuple(fleet.tier_mask(t) for t in slow), fast, ~fast)


def _stabilised_keeps(
    inp: DecisionInput, raw: np.ndarray | None, floor: np.ndarray, slow: tuple[Tier, ...]
) -> tuple[dict[str, np.ndarray], RuleState]:
    """``K[t]`` per slow tier, and the state with this decision's ``k[t]`` (see the module docstring)."""
    m = len(inp.fleet.metrics)
    keeps, recent = {}, {}
    for tier in slow:
        # NaN stays NaN (not known): a missing forecast takes no part in the stabilised max
        level = np.full(m, np.nan) if raw is None else np.maximum(raw[: tier.ready + inp.hold + 1].max(axis=0), floor)
        if tier.ready == 0:
            keeps[tier.kind] = level
            continue
        past = inp.state.recent_keep.get(tier.kind, np.empty((0, m)))
        window = np.vstack([past, level[None, :]])
        keeps[tier.kind] = np.fmax.reduce(window, axis=0)  # NaN only where every level is unknown
        recent[tier.kind] = window[-tier.ready :]
    return keeps, RuleState(recent)


def want_level(fleet: Fleet, tier: Tier, path: np.ndarray) -> np.ndarray:
    """``W``: the ``1 - θ_k`` quantile over ``D[t, r_k .. 2 r_k - 1]`` (0 when the horizon ends before ``r_k``)."""
    horizon = path.shape[0]
    if tier.ready >= horizon:
        return np.zeros(path.shape[1])
    level = 1.0 - break_even(fleet, tier)
    end = min(horizon, tier.ready + max(tier.ready, 1))
    return np.nan_to_num(np.quantile(path[tier.ready : end], level, axis=0))


def _slow_tier(
    inp: DecisionInput, tier: Tier, mask: np.ndarray, path: np.ndarray, keep_level: np.ndarray, held: np.ndarray
) -> np.ndarray:
    fleet, covers, everything = inp.fleet, inp.covers, tuple(range(inp.fleet.n))
    want = np.where(mask, covers.cover(want_level(fleet, tier, path), everything), 0)
    keep = np.where(mask, covers.cover(keep_level, everything), 0)
    level = np.maximum(fleet.capacity(want), fleet.capacity(keep))
    kept = trim(fleet, np.where(mask, held, 0), level)
    short = fleet.capacity(want) - fleet.capacity(kept)
    target = kept
    if (short > TOL * (1 + fleet.capacity(want))).any():
        target = kept + covers.cover(np.maximum(short, 0.0), tier.idx)
    return consolidate(inp, target, level, tier.idx)


def _fast_tier(
    inp: DecisionInput, path: np.ndarray | None, floor: np.ndarray, now: np.ndarray, plan: _Plan,
    slow_target: np.ndarray | None,
) -> None:
    fleet, lay = inp.fleet, _layout(inp.fleet)
    window = fleet.fast.ready + inp.hold + 1
    slow = plan.holding.serving_profile(fleet, window, lay.slow_mask, limit=slow_target)
    gap = np.maximum(floor - slow[0], 0.0)[None, :]
    if path is not None:
        upto = min(window, path.shape[0])
        gap = np.maximum(path[:upto] - slow[:upto], 0.0)
        gap[0] = np.maximum(gap[0], floor - slow[0])
    held = plan.holding.held
    groups = buy_groups(fleet, len(gap))
    if all(types == fleet.fast.idx for *_, types in groups):  # only the fast tier is ready inside the window
        target = retarget(inp, held, gap.max(axis=0), fleet.fast.idx)
    else:
        target = _fill(inp, held, gap, groups, plan, now)
    # the slow tiers' targets, not what they still hold while make-before-break keeps a released node serving:
    # the guardrail counts targets, so counting held nodes let a plan fall below min_nodes (and was blocked)
    others = int(plan.target[lay.slow_mask].sum())
    target = with_min_nodes(fleet, target, others=others)
    capped = with_max_nodes(fleet, target, others=others)
    if capped.sum() < target.sum():
        plan.reasons.append(f"{fleet.fast.kind}: capped at the profile's max_nodes {fleet.profile.max_nodes} "
                            f"({int(target.sum() - capped.sum())} fewer nodes than the shortfall asks)")
        target = capped
    plan.act(target, now, lay.fast_mask,
             f"{fleet.fast.kind}: {int(target[lay.fast_mask].sum())} nodes for a shortfall up to "
             f"{np.round(gap.max(axis=0), 3).tolist()}")


@lru_cache(maxsize=256)
def buy_groups(fleet: Fleet, steps: int) -> tuple[tuple[int, int, tuple[int, ...]], ...]:
    """``(first, last, types)``: runs of window steps ``j`` whose types ready by ``max(j, r_f)`` are the same.

    Nothing ordered now serves before ``r_f``, so what is short at steps before it is bought with the types
    ready by ``r_f``: the first run starts at step 0 with them; later runs add every slow type ready by their
    steps.
    """
    fast, rf = tuple(fleet.fast.idx), fleet.fast.ready
    slow_mask = _layout(fleet).slow_mask
    groups: list[tuple[int, int, tuple[int, ...]]] = []
    for j in range(steps):
        by = max(j, rf)
        types = tuple(i for i in range(fleet.n) if i in fast or (slow_mask[i] and fleet.ready[i] <= by))
        if groups and groups[-1][2] == types:
            groups[-1] = (groups[-1][0], j, types)
        else:
            groups.append((j, j, types))
    return tuple(groups)


def _fill(inp: DecisionInput, held: np.ndarray, gap: np.ndarray, groups, plan: _Plan, now: np.ndarray) -> np.ndarray:
    """Cover each run's shortfall with the cheapest types ready by then; returns the fast tier's target.

    Slow nodes bought here (types of a slow kind that boot within the window, such as a GPU VM that is ready
    within one five-minute step) are one more action, ordered at once; the fast tier keeps what the window
    still needs from it once they serve, consolidated like :func:`retarget`.
    """
    fleet, covers, fast_mask = inp.fleet, inp.covers, _layout(inp.fleet).fast_mask
    mine = np.where(fast_mask, held, 0)
    add = np.zeros(fleet.n, dtype=int)
    for first, last, types in groups:
        need = gap[first : last + 1].max(axis=0)
        deficit = need - fleet.capacity(mine + add)
        if (deficit > TOL * (1 + need)).any():
            add = add + covers.cover(np.maximum(deficit, 0.0), types)
    slow_add = np.where(fast_mask, 0, add)
    if slow_add.any():
        plan.act(held + slow_add, now, slow_add > 0,
                 f"fill: {int(slow_add.sum())} slow nodes ready inside the fast tier's window")
    arrived = np.array([fleet.capacity(np.where(fleet.ready <= j, slow_add, 0)) for j in range(len(gap))])
    need_fast = np.maximum(gap - arrived, 0.0).max(axis=0)
    if not add[fast_mask].any():
        return trim(fleet, mine, need_fast)
    return consolidate(inp, mine + np.where(fast_mask, add, 0), need_fast, fleet.fast.idx)


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


def retarget(buy: Buying, held: np.ndarray, need: np.ndarray, subset: tuple[int, ...]) -> np.ndarray:
    """Target counts for ``subset`` (others 0) covering ``need``.

    If what the subset holds covers ``need``, drop the dearest-per-unit nodes that are not needed; else add
    ``cover(need - held)``; then :func:`consolidate`.
    """
    fleet = buy.fleet
    mask = np.zeros(fleet.n, dtype=bool)
    mask[list(subset)] = True
    mine = np.where(mask, held, 0)
    need = np.maximum(need, 0.0)
    deficit = need - fleet.capacity(mine)
    if (deficit > TOL * (1 + need)).any():
        candidate = mine + buy.covers.cover(np.maximum(deficit, 0.0), subset)
    else:
        candidate = trim(fleet, mine, need)
    return consolidate(buy, candidate, need, subset)


def consolidate(buy: Buying, candidate: np.ndarray, need: np.ndarray, subset: tuple[int, ...]) -> np.ndarray:
    """``cover(need, subset)`` instead of ``candidate`` when that costs over ``1 + margin`` times less.

    Karpenter's consolidation: a cheaper mix, swapped in make-before-break when the actions are carried out.
    """
    best = buy.covers.cover(need, subset)
    if buy.fleet.cost_per_hour(candidate) > (1.0 + buy.margin) * buy.fleet.cost_per_hour(best) + 1e-9:
        return best.copy()
    return candidate


def break_even(fleet: Fleet, tier: Tier) -> float:
    """``θ``: the tier's cheapest cost per unit of demand over the fastest tier's, clipped to [0, 1]."""
    fast = fleet.unit_cost[list(fleet.fast.idx)].min()
    own = fleet.unit_cost[list(tier.idx)].min()
    return float(np.clip(own / fast, 0.0, 1.0)) if fast > 0 else 1.0


def with_max_nodes(fleet: Fleet, counts: np.ndarray, others: int = 0) -> np.ndarray:
    """Drop ``counts``' dearest-per-unit nodes until the app holds at most ``profile.max_nodes`` (``others``:
    held elsewhere). The cap wins over the shortfall: a plan above it would be blocked by the guardrail."""
    cap = fleet.profile.max_nodes
    excess = 0 if cap is None else int(counts.sum()) + others - cap
    if excess <= 0:
        return counts
    out = counts.copy()
    for i in fleet.removal_order:
        take = min(int(out[i]), excess)
        out[i] -= take
        excess -= take
        if not excess:
            break
    return out


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
