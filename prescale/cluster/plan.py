"""``Plan``: the steps that turn what an app runs now into a new allocation, make-before-break.

A plan is pure data, built by pure functions from inputs fetched beforehand (what runs now, the target node
counts, the catalog, the app's profile and the guardrails); a backend carries it out (``executor.py``).

Per resource type ``t`` an app holds ``nodes[t]`` (its claim on the type's node pool) and runs
``replicas[t]`` replicas there; one replica of the app serves ``served(t) / rpn(t)`` of each demand metric,
where ``rpn(t)`` is how many replicas fit on a node (``AppProfile.replicas_per_node``, capped at
``MAX_PODS_PER_NODE``). The app's *serving capacity* is the vector ``sum_t ready_replicas[t] * served(t) /
rpn(t)``. The target of a type is ``nodes`` from the allocation and ``replicas = nodes * rpn``.

Step order (the invariant it keeps: serving capacity never drops below what the app had, except by an
explicit scale-in step after the new pools are ready):

1. **make**, for every type that grows, longest lead time first, in chunks of at most
   ``max_step_nodes`` nodes: ``provision`` (claim the nodes, wait until the pool is ready), then
   ``start`` (raise the replicas there, wait until they are available);
2. **break**, for every type that shrinks, in chunks: ``drain`` (lower the replicas, wait until they are
   gone), then ``release`` (return the nodes). A drain step is marked ``scale_in`` when the target serves
   less than the app had; the executor lets serving capacity fall to ``floor = min(before, after)`` (per
   metric) and never lower.

The last step of each chunk is a *checkpoint*: a state known to be consistent, which a rollback returns to.

Guardrails (``Guardrails``) block a plan instead of trimming it, with a reason that names the value: more
nodes than the quota left by other apps, fewer than the app's minimum, more than its maximum, or a peak
cost (old and new capacity overlap during the make phase) above the budget cap. A blocked plan has no
steps. ``max_step_nodes`` splits steps; ``rollout_deadline_seconds`` bounds every wait (plus the type's
lead time for provisioning).

Deliberately not here: reading the cluster (``ClusterState.holdings`` does that), the clock, retries.
Rejected alternative: interleaving make and break per chunk (a rolling migration) keeps the overlap cost
lower, but a failure half-way then leaves the app split between pools with no checkpoint that has all of
the old capacity; the budget cap blocks a too-costly overlap instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from prescale.catalog import AppProfile, Catalog, ResourceType
from prescale.names import AppName, InvalidNameError

MAX_PODS_PER_NODE = 110  # the kubelet's default --max-pods
TOLERANCE = 1e-9
Action = Literal["provision", "start", "drain", "release"]


class PlanError(ValueError):
    """The inputs of a plan do not fit together (unknown or incompatible type, invalid app name); the message
    says which."""


def checked_app(app: object, *, error: type[Exception] = PlanError, what: str = "app") -> AppName:
    """``app`` as an ``AppName``; an invalid one raises ``error`` (the backends pass ``ClusterError``) quoting it."""
    try:
        return AppName(app, what=what)
    except InvalidNameError as exc:
        raise error(str(exc)) from None


@dataclass(frozen=True)
class Guardrails:
    """Limits every plan respects (``ClusterSettings`` holds the configured values)."""

    max_step_nodes: int = 10
    budget_per_hour: float | None = None
    min_nodes: int = 1
    rollout_deadline_seconds: float = 600.0

    def __post_init__(self) -> None:
        if self.max_step_nodes < 1:
            raise PlanError(f"guardrail max_step_nodes must be >= 1, got {self.max_step_nodes}")
        if self.budget_per_hour is not None and self.budget_per_hour <= 0:
            raise PlanError(f"guardrail budget_per_hour must be > 0 or unset, got {self.budget_per_hour}")
        if self.min_nodes < 0 or self.rollout_deadline_seconds <= 0:
            raise PlanError(
                f"guardrails min_nodes ({self.min_nodes}) must be >= 0 and rollout_deadline_seconds "
                f"({self.rollout_deadline_seconds}) > 0"
            )


@dataclass(frozen=True)
class Placement:
    """How one app lands on one node pool: everything a backend needs about the type, without the catalog."""

    rtype: str
    kind: str
    pool: str
    labels: dict[str, str]
    taints: tuple[dict[str, str], ...]
    replicas_per_node: int
    requests: dict[str, float]  # per replica: vcpu, memory_gib, gpus, fpgas
    serves_per_replica: tuple[float, ...]  # per demand metric
    price_per_hour: float
    spot_price_per_hour: float | None
    lead_time_seconds: float
    quota: int


@dataclass(frozen=True)
class Holding:
    """What an app holds on one type now: its node claim, its replicas, whether the pool is ready, and whether
    its workload object exists (a drained one left behind is removed by a ``drain`` step ``0 -> 0``).

    ``booting``: of the claimed nodes, those not ready yet, each as the seconds until it is expected ready
    (negative: overdue), soonest first; ``None`` when the backend cannot tell (the decision then counts every
    claimed node as serving)."""

    nodes: int = 0
    replicas: int = 0
    ready_replicas: int = 0
    pool_ready: bool = True
    exists: bool = False
    booting: tuple[float, ...] | None = None


@dataclass(frozen=True)
class Target:
    """Nodes and replicas of an app on one type (``spot``: of the nodes, how many are bought as spot)."""

    nodes: int = 0
    replicas: int = 0
    spot: int = 0


@dataclass(frozen=True)
class PlanStep:
    """One change and the wait that follows it: ``before -> after`` nodes (provision, release) or replicas."""

    index: int
    action: Action
    rtype: str
    pool: str
    before: int
    after: int
    deadline_seconds: float
    scale_in: bool = False
    checkpoint: bool = False

    @property
    def phase(self) -> str:
        return "make" if self.action in ("provision", "start") else "break"

    @property
    def unit(self) -> str:
        return "nodes" if self.action in ("provision", "release") else "replicas"

    def describe(self) -> str:
        flag = " (scale-in)" if self.scale_in else ""
        return f"{self.action} {self.rtype}: {self.unit} {self.before} -> {self.after} on pool {self.pool}{flag}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "phase": self.phase, "unit": self.unit, "description": self.describe()}


@dataclass(frozen=True)
class Plan:
    """The steps from ``current`` to ``target`` for one app, with what they cost and what they serve."""

    app: str
    metrics: tuple[str, ...]
    current: dict[str, Target]
    target: dict[str, Target]
    placements: dict[str, Placement]
    steps: tuple[PlanStep, ...]
    guardrails: Guardrails
    blocked: tuple[str, ...] = ()
    cost_before: float = 0.0  # USD/h of the app's nodes now
    cost_after: float = 0.0  # USD/h once applied
    peak_cost: float = 0.0  # USD/h while old and new capacity overlap
    serving_before: tuple[float, ...] = ()  # from the ready replicas when planned
    serving_after: tuple[float, ...] = ()  # once every target replica is ready
    notes: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        object.__setattr__(self, "app", checked_app(self.app))

    @property
    def noop(self) -> bool:
        return not self.steps and not self.blocked

    @property
    def scale_in(self) -> bool:
        return any(s.scale_in for s in self.steps)

    def to_dict(self) -> dict[str, Any]:
        return {
            "app": self.app,
            "metrics": list(self.metrics),
            "current": {t: asdict(v) for t, v in self.current.items() if v.nodes or v.replicas},
            "target": {t: asdict(v) for t, v in self.target.items() if v.nodes or v.replicas},
            "steps": [s.to_dict() for s in self.steps],
            "blocked": list(self.blocked),
            "noop": self.noop,
            "scale_in": self.scale_in,
            "cost_before": round(self.cost_before, 4),
            "cost_after": round(self.cost_after, 4),
            "peak_cost": round(self.peak_cost, 4),
            "serving_before": dict(zip(self.metrics, self.serving_before, strict=True)),
            "serving_after": dict(zip(self.metrics, self.serving_after, strict=True)),
            "guardrails": asdict(self.guardrails),
            "notes": list(self.notes),
        }


# ------------------------------------------------------------------------------------------------ inputs


def replicas_per_node(profile: AppProfile, rtype: ResourceType) -> int:
    """Replicas of the app on one node of ``rtype``, capped at the kubelet's pod limit."""
    return max(0, min(profile.replicas_per_node(rtype), MAX_PODS_PER_NODE))


def placement(rtype: ResourceType, profile: AppProfile) -> Placement:
    """The app on ``rtype``'s pool: labels, taints, per-replica requests and what one replica serves."""
    rpn = replicas_per_node(profile, rtype)
    if rpn < 1:
        raise PlanError(f"no replica of app {profile.name!r} fits on {rtype.name!r}: {profile.incompatibility(rtype)}")
    shape = profile.replica
    share = {  # a replica gets its share of the node's accelerators, at least what it asks for
        "gpus": max(shape.gpus, rtype.capacity.gpus // rpn),
        "fpgas": max(shape.fpgas, rtype.capacity.fpgas // rpn),
    }
    return Placement(
        rtype=rtype.name,
        kind=rtype.kind,
        pool=rtype.pool.name,
        labels=dict(rtype.pool.labels),
        taints=tuple(t.model_dump() for t in rtype.pool.taints),
        replicas_per_node=rpn,
        requests={"vcpu": shape.vcpu, "memory_gib": shape.memory_gib, **share},
        serves_per_replica=tuple(v / rpn for v in profile.served(rtype)),
        price_per_hour=rtype.price.on_demand,
        spot_price_per_hour=rtype.price.spot,
        lead_time_seconds=rtype.lead_time_seconds,
        quota=rtype.quota,
    )


def serving(replicas: Mapping[str, int], placements: Mapping[str, Placement], metrics: int) -> tuple[float, ...]:
    """Serving capacity (per metric) of ready replicas per type."""
    total = [0.0] * metrics
    for name, count in replicas.items():
        if count > 0 and name in placements:
            for i, v in enumerate(placements[name].serves_per_replica):
                total[i] += count * v
    return tuple(total)


def at_least(have: tuple[float, ...], floor: tuple[float, ...]) -> bool:
    """``have >= floor`` on every metric, up to a relative tolerance."""
    return all(h + TOLERANCE * max(1.0, abs(f)) >= f for h, f in zip(have, floor, strict=True))


# -------------------------------------------------------------------------------------------------- plans


def make_plan(
    app: str,
    holdings: Mapping[str, Holding],
    target_nodes: Mapping[str, int],
    *,
    catalog: Catalog,
    profile: AppProfile,
    guardrails: Guardrails,
    spot: Mapping[str, int] | None = None,
    others: Mapping[str, int] | None = None,
) -> Plan:
    """The plan from ``holdings`` (what ``app`` holds now) to ``target_nodes`` (type -> nodes).

    ``spot``: of the target nodes, how many per type are spot (costs only). ``others``: nodes of each type
    claimed by other apps, counted against the type's quota. Raises ``PlanError`` for an invalid app name, an
    unknown type or one the app cannot run on; guardrail violations block the plan instead (``Plan.blocked``).
    """
    app = checked_app(app)
    negative = {t: n for t, n in target_nodes.items() if n < 0}
    if negative:
        raise PlanError(f"target node counts must be >= 0, got {negative}")
    names = sorted({*holdings, *(t for t, n in target_nodes.items() if n > 0)})
    placements = {name: _placement_for(name, catalog, profile, wanted=target_nodes.get(name, 0)) for name in names}
    current = {n: Target(holdings[n].nodes, holdings[n].replicas) if n in holdings else Target() for n in names}
    target = {}
    for name in names:
        nodes, rpn = int(target_nodes.get(name, 0)), placements[name].replicas_per_node
        target[name] = Target(nodes=nodes, replicas=nodes * rpn, spot=min(int((spot or {}).get(name, 0)), nodes))
    blocked = _guardrail_reasons(
        app, current, target, placements=placements, profile=profile, rails=guardrails, others=others or {}
    )
    steps = () if blocked else build_steps(current, target, placements, guardrails=guardrails, ready=holdings)
    return _assemble(
        app,
        profile.metric_names,
        current,
        target,
        placements=placements,
        steps=steps,
        guardrails=guardrails,
        blocked=blocked,
        holdings=holdings,
    )


def restore_plan(plan: Plan, holdings: Mapping[str, Holding], checkpoint: Mapping[str, Target]) -> Plan:
    """A rollback: the plan from ``holdings`` back to ``checkpoint`` (no guardrail blocks a rollback)."""
    names = sorted(set(plan.placements))
    current = {n: Target(holdings[n].nodes, holdings[n].replicas) if n in holdings else Target() for n in names}
    target = {n: checkpoint.get(n, Target()) for n in names}
    # no wait-only steps: a rollback restores claims and replicas, not a readiness the checkpoint lacked too
    left = {n: replace(h, pool_ready=True) for n, h in holdings.items()}
    steps = build_steps(current, target, plan.placements, guardrails=plan.guardrails, ready=left)
    return _assemble(
        plan.app,
        plan.metrics,
        current,
        target,
        placements=plan.placements,
        steps=steps,
        guardrails=plan.guardrails,
        blocked=(),
        holdings=holdings,
        notes=("rollback",),
    )


def build_steps(
    current: Mapping[str, Target],
    target: Mapping[str, Target],
    placements: Mapping[str, Placement],
    *,
    guardrails: Guardrails,
    ready: Mapping[str, Holding] | None = None,
) -> tuple[PlanStep, ...]:
    """Make steps for every type that grows, then break steps for every type that shrinks (module docstring)."""
    ready = ready or {}
    shrink_in = _shrinks_serving(current, target, placements)
    order = sorted(placements, key=lambda n: (-placements[n].lead_time_seconds, n))
    raw: list[tuple] = []
    for name in order:
        raw += _make_chunks(
            name, current[name], target[name], place=placements[name], rails=guardrails, held=ready.get(name)
        )
    for name in sorted(placements):
        raw += _break_chunks(
            name, current[name], target[name], place=placements[name], rails=guardrails, scale_in=shrink_in
        )
        held = ready.get(name)
        if held is not None and held.exists and current[name].replicas == 0 == target[name].replicas:
            raw.append(("drain", name, 0, 0, guardrails.rollout_deadline_seconds, False, True))  # left-over
    return tuple(
        PlanStep(
            index=i,
            action=a,
            rtype=t,
            pool=placements[t].pool,
            before=b,
            after=x,
            deadline_seconds=d,
            scale_in=s,
            checkpoint=c,
        )
        for i, (a, t, b, x, d, s, c) in enumerate(raw)
    )


def _make_chunks(
    name: str, cur: Target, tgt: Target, *, place: Placement, rails: Guardrails, held: Holding | None
) -> list[tuple]:
    """Provision up to the target in chunks, each followed by starting the replicas its nodes hold."""
    rpn, deadline = place.replicas_per_node, rails.rollout_deadline_seconds
    wait = deadline + place.lead_time_seconds
    out: list[tuple] = []
    nodes, replicas = cur.nodes, cur.replicas
    if tgt.nodes == nodes > 0 and held is not None and not held.pool_ready:
        out.append(["provision", name, nodes, nodes, wait, False, True])  # claimed, not ready yet: wait
    while nodes < tgt.nodes:
        step_to = min(tgt.nodes, nodes + rails.max_step_nodes)
        out.append(["provision", name, nodes, step_to, wait, False, True])
        nodes = step_to
        want = min(tgt.replicas, nodes * rpn)
        if want > replicas:
            out[-1][-1] = False  # the chunk ends with its start step
            out.append(["start", name, replicas, want, deadline, False, True])
            replicas = want
    want = min(tgt.replicas, nodes * rpn)
    if want > replicas:
        if out:
            out[-1][-1] = False
        out.append(["start", name, replicas, want, deadline, False, True])
    return [tuple(x) for x in out]


def _break_chunks(
    name: str, cur: Target, tgt: Target, *, place: Placement, rails: Guardrails, scale_in: bool
) -> list[tuple]:
    """From what the make phase left, drain and release down to the target in chunks."""
    rpn, deadline = place.replicas_per_node, rails.rollout_deadline_seconds
    out: list[tuple] = []
    nodes = max(cur.nodes, tgt.nodes)
    replicas = max(cur.replicas, min(tgt.replicas, nodes * rpn))
    while nodes > tgt.nodes or replicas > tgt.replicas:
        step_to = max(tgt.nodes, nodes - rails.max_step_nodes)
        want = tgt.replicas if step_to == tgt.nodes else max(tgt.replicas, min(replicas, step_to * rpn))
        if want < replicas:
            out.append(("drain", name, replicas, want, deadline, scale_in, step_to == nodes))
            replicas = want
        if step_to < nodes:
            out.append(("release", name, nodes, step_to, deadline, False, True))
            nodes = step_to
    return out


def _shrinks_serving(
    current: Mapping[str, Target], target: Mapping[str, Target], placements: Mapping[str, Placement]
) -> bool:
    if not placements:
        return False
    width = len(next(iter(placements.values())).serves_per_replica)
    before = serving({n: t.replicas for n, t in current.items()}, placements, width)
    after = serving({n: t.replicas for n, t in target.items()}, placements, width)
    return not at_least(after, before)


# --------------------------------------------------------------------------------------------- guardrails


def _placement_for(name: str, catalog: Catalog, profile: AppProfile, *, wanted: int) -> Placement:
    rtype = catalog.get(name)
    if rtype is None:
        raise PlanError(
            f"type {name!r} is not in the catalog ({len(catalog)} types); add it back to the catalog so the plan "
            "can drain it, or remove its pool by hand"
        )
    why = profile.incompatibility(rtype)
    if why is not None and wanted > 0:
        raise PlanError(f"app {profile.name!r} cannot run on {name!r}: {why}")
    if replicas_per_node(profile, rtype) < 1:
        raise PlanError(f"app {profile.name!r} cannot run on {name!r}: {why}")
    return placement(rtype, profile)


def _guardrail_reasons(
    app: str,
    current: Mapping[str, Target],
    target: Mapping[str, Target],
    *,
    placements: Mapping[str, Placement],
    profile: AppProfile,
    rails: Guardrails,
    others: Mapping[str, int],
) -> tuple[str, ...]:
    """Why the plan must not run (min/max nodes, quota left, budget), each naming the values."""
    reasons: list[str] = []
    total = sum(t.nodes for t in target.values())
    least = max(rails.min_nodes, profile.min_nodes)
    if total < least:
        reasons.append(
            f"target has {total} node(s) for app {app!r}, below the minimum {least} "
            f"(cluster.min_nodes_per_app={rails.min_nodes}, profile min_nodes={profile.min_nodes})"
        )
    if profile.max_nodes is not None and total > profile.max_nodes:
        reasons.append(f"target has {total} node(s) for app {app!r}, above the profile's max_nodes {profile.max_nodes}")
    for name, tgt in target.items():
        left = placements[name].quota - int(others.get(name, 0))
        if tgt.nodes > left:
            reasons.append(
                f"{tgt.nodes} node(s) of {name!r} exceed its quota left for app {app!r}: {left} "
                f"(quota {placements[name].quota}, {others.get(name, 0)} held by other apps)"
            )
    reasons += _over_budget(current, target, placements=placements, cap=rails.budget_per_hour)
    return tuple(reasons)


def _over_budget(
    current: Mapping[str, Target],
    target: Mapping[str, Target],
    *,
    placements: Mapping[str, Placement],
    cap: float | None,
) -> list[str]:
    """The peak cost is while old and new capacity overlap: every type at the larger of its two counts."""
    peak = _cost(_peak(current, target), placements)
    if cap is None or peak <= cap + TOLERANCE:
        return []
    return [
        f"peak cost {peak:.2f} USD/h while old and new capacity overlap (target alone "
        f"{_cost(target, placements):.2f} USD/h) exceeds the budget cap {cap:.2f} USD/h "
        "(cluster.budget_per_hour); raise the cap, or let the allocation choose a mix closer to what runs"
    ]


def _peak(current: Mapping[str, Target], target: Mapping[str, Target]) -> dict[str, Target]:
    return {n: Target(max(current[n].nodes, target[n].nodes), spot=target[n].spot) for n in target}


def _cost(counts: Mapping[str, Target], placements: Mapping[str, Placement]) -> float:
    total = 0.0
    for name, t in counts.items():
        place = placements[name]
        spot = min(t.spot, t.nodes) if place.spot_price_per_hour is not None else 0
        total += (t.nodes - spot) * place.price_per_hour + spot * (place.spot_price_per_hour or 0.0)
    return total


def _assemble(
    app: str,
    metrics: tuple[str, ...],
    current: dict[str, Target],
    target: dict[str, Target],
    *,
    placements: dict[str, Placement],
    steps: tuple[PlanStep, ...],
    guardrails: Guardrails,
    blocked: tuple[str, ...],
    holdings: Mapping[str, Holding],
    notes: tuple[str, ...] = (),
) -> Plan:
    width = len(metrics)
    ready_now = {n: h.ready_replicas for n, h in holdings.items()}
    peak = _peak(current, target)
    return Plan(
        app=app,
        metrics=tuple(metrics),
        current=current,
        target=target,
        placements=placements,
        steps=steps,
        guardrails=guardrails,
        blocked=blocked,
        cost_before=_cost(current, placements),
        cost_after=_cost(target, placements),
        peak_cost=_cost(peak, placements),
        serving_before=serving(ready_now, placements, width),
        serving_after=serving({n: t.replicas for n, t in target.items()}, placements, width),
        notes=notes,
    )
