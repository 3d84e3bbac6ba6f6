"""``SimulatedCluster``: the embedded default backend, a discrete-event model of node pools and workloads.

Time is virtual: ``now()`` is the simulation's clock and ``wait(seconds)`` advances it, so a plan whose GPU
nodes take 330 s to boot applies in milliseconds, and a replay can drive the clock itself (``advance``).

The model, per resource type (a node pool) and app:

* **nodes**: an app's claim on a pool is carried out at once and on every event (a MachineSet's loop):
  missing nodes are requested (within the type's quota over all apps), surplus nodes removed
  (provisioning ones first, then the newest). A node is ready ``lead_time_seconds`` after its request
  (the catalog's; times ``slow_start_factor`` with ``slow_start_probability``), or fails then with
  ``provision_failure_rate``: a failed node is billed and shown as failed for ``REMEDIATION_SECONDS``,
  then replaced. A spot node is reclaimed after an exponential time (``spot_preemption_per_hour``).
* **replicas**: a workload's replicas are scheduled onto free slots of the app's ready nodes of that type
  (``replicas_per_node`` each) and are ready ``pod_start_seconds`` later; lowering the replicas removes
  unscheduled ones first, then the newest; a lost node takes its replicas back to unscheduled.
* **faults** beyond the rates: *holds*, each on one pool or workload, model a rollout that never
  completes: ``nodes-never-ready`` (requested nodes never boot), ``nodes-never-removed`` (surplus nodes are
  never deleted), ``pods-never-ready`` (new replicas never become available), ``pods-never-removed`` (surplus
  replicas never terminate); and a schedule of timed ``FaultEvent`` s (preempt N nodes, hold, lift).

Cost is accounted exactly per node-second: between two events every existing node (provisioning, ready
or failed) accrues the elapsed seconds under (app, type, spot), priced at report time; the lifetime of
every node is kept too (``lifetimes()``), a second, independent account of the same seconds.

State lives in one JSON file (``save``/``open``; format, checks and lock in ``statefile.py``), the random
source's state included, so repeated runs continue the same cluster, with the same draws, from where the
last one stopped. With ``record=True`` the cluster keeps a timeline of ready replicas after every change,
to check invariants against.

**Several writers, no lost update.** Two ``prescale apply`` on different apps each open the file,
observe, plan and apply; each used to save the whole state it had read, so the later save erased the
earlier one's app. Now ``apply`` holds the state's exclusive lock across *re-read -> execute -> save* (for
milliseconds: its waits are virtual). Under the lock it compares the file's ``generation`` (one more on
every save) with the one this object read or wrote; if another writer saved since, it continues from the
file's world instead of its own (advanced to this object's clock if that is later), carries the plan out
there and saves generation + 1. A plan is per app and was computed from what was observed; executing it
on the fresher state is right, because every driver write sets only this app's claim or replicas
(absolute values, not deltas) and the quota is enforced over all apps when nodes are requested. ``save``
is a compare-and-swap under the same lock: it refuses (``ClusterError``) to overwrite a generation it has
not seen, since changes made directly (``set_nodes``, ``advance``) cannot be replayed onto another
writer's state. Rejected alternative: merging the two worlds at save time, per app: the apps share more
than their keys (the pool's quota and nodes, one clock, one random source, node ids, cost accounts), so
no merge of two diverged worlds is the world either writer would have produced.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from prescale.catalog import Catalog
from prescale.cluster.executor import execute
from prescale.cluster.plan import Placement, Plan, checked_app
from prescale.cluster.protocol import ApplyReport, ClusterError, ClusterState, PoolState, WorkloadState
from prescale.cluster.statefile import STATE_VERSION, generation_of, locked, read_state, write_state

REMEDIATION_SECONDS = 60.0
FaultKind = Literal["preempt", "hold", "lift"]
Hold = Literal["nodes-never-ready", "nodes-never-removed", "pods-never-ready", "pods-never-removed"]
HOLDS: tuple[str, ...] = ("nodes-never-ready", "nodes-never-removed", "pods-never-ready", "pods-never-removed")


@dataclass(frozen=True)
class FaultEvent:
    """A fault at virtual time ``at``: preempt ``count`` ready nodes of ``rtype`` (of ``app`` if given), or
    place (``hold``) or ``lift`` the hold ``hold`` on the pool of ``rtype`` or the workload of (``app``, ``rtype``)."""

    at: float
    kind: FaultKind
    rtype: str
    app: str = ""
    count: int = 1
    hold: str = ""

    def __post_init__(self) -> None:
        if self.app:
            checked_app(self.app, error=ClusterError)


@dataclass(frozen=True)
class Faults:
    """Fault rates (``SimulationSettings`` holds the configured values)."""

    provision_failure_rate: float = 0.0
    spot_preemption_per_hour: float = 0.0
    slow_start_probability: float = 0.0
    slow_start_factor: float = 3.0

    def __post_init__(self) -> None:
        for name in ("provision_failure_rate", "slow_start_probability"):
            if not 0 <= getattr(self, name) <= 1:
                raise ClusterError(f"simulation {name} must be in [0, 1], got {getattr(self, name)}")
        if self.spot_preemption_per_hour < 0 or self.slow_start_factor < 1:
            raise ClusterError(
                f"simulation spot_preemption_per_hour ({self.spot_preemption_per_hour}) must be >= 0 and "
                f"slow_start_factor ({self.slow_start_factor}) >= 1"
            )


@dataclass(frozen=True)
class Snapshot:
    """Ready replicas per (app, type) right after a change; ``cause`` is ``write`` or ``event``."""

    at: float
    cause: str
    ready: dict[tuple[str, str], int]


@dataclass
class _World:
    """Everything that is saved: plain data only."""

    now: float = 0.0
    next_id: int = 0
    claims: dict[str, dict[str, int]] = field(default_factory=dict)  # type -> app -> nodes
    spot: dict[str, dict[str, int]] = field(default_factory=dict)  # type -> app -> spot nodes wanted
    nodes: list[dict[str, Any]] = field(default_factory=list)
    workloads: dict[str, dict[str, Any]] = field(default_factory=dict)  # "app/type" -> workload
    node_seconds: dict[str, float] = field(default_factory=dict)  # "app/type/spot|on-demand" -> seconds
    ledger: list[dict[str, Any]] = field(default_factory=list)  # lifetimes of removed nodes
    failed_total: dict[str, int] = field(default_factory=dict)
    preempted_total: dict[str, int] = field(default_factory=dict)
    holds: list[str] = field(default_factory=list)  # "<hold>:<type>" or "<hold>:<app>/<type>"
    schedule: list[dict[str, Any]] = field(default_factory=list)


class SimulatedCluster:
    """A virtual-time cluster (see the module docstring); implements ``Cluster`` and the executor's driver."""

    def __init__(
        self,
        catalog: Catalog,
        *,
        path: Path | None = None,
        faults: Faults | None = None,
        seed: int = 0,
        pod_start_seconds: float = 20.0,
        poll_seconds: float = 5.0,
        start: float = 0.0,
        record: bool = False,
    ) -> None:
        self.catalog = catalog
        self.path = Path(path) if path is not None else None
        self.faults = faults or Faults()
        self.pod_start_seconds = pod_start_seconds
        self.poll_seconds = poll_seconds
        self._w = _World(now=float(start))
        self._rng = random.Random(seed)
        self._generation = 0  # of the state file as this object last read or wrote it
        self.timeline: list[Snapshot] | None = [] if record else None

    @classmethod
    def open(cls, path: Path, catalog: Catalog, *, now: float | None = None, **options: Any) -> SimulatedCluster:
        """The cluster saved at ``path`` (a new, empty one if there is none), advanced to ``now`` if later."""
        sim = cls(catalog, path=path, start=now or 0.0, **options)
        if Path(path).is_file():
            sim._adopt(Path(path), read_state(Path(path), catalog))
            if now is not None and now > sim.now():
                sim.advance_to(now)
        return sim

    # ------------------------------------------------------------------------------------ the protocol

    def observe(self) -> ClusterState:
        w = self._w
        types = sorted({n["type"] for n in w.nodes} | {t for t, c in w.claims.items() if any(c.values())})
        pools = {t: self._pool_state(t) for t in types}
        works = tuple(self._workload_state(k) for k in sorted(w.workloads))
        return ClusterState(at=w.now, pools=pools, workloads=works)

    def apply(self, plan: Plan) -> ApplyReport:
        """Carry ``plan`` out; with a state file, under its lock on the newest state, then save (docstring)."""
        if self.path is None:
            return execute(plan, self, poll_seconds=self.poll_seconds)
        with locked(self.path):
            self._catch_up(self.path)
            report = execute(plan, self, poll_seconds=self.poll_seconds)
            self._write(self.path)
        return report

    # ------------------------------------------------------------------------------- the driver writes

    def set_nodes(self, app: str, place: Placement, nodes: int, *, spot: int = 0) -> None:
        app = self._checked(app, place.rtype)
        self._w.claims.setdefault(place.rtype, {})[app] = int(nodes)
        self._w.spot.setdefault(place.rtype, {})[app] = int(min(spot, nodes))
        self._reconcile("write")

    def set_replicas(self, app: str, place: Placement, replicas: int) -> None:
        app = self._checked(app, place.rtype)
        key = f"{app}/{place.rtype}"
        work = self._w.workloads.setdefault(
            key, {"app": app, "type": place.rtype, "pool": place.pool, "waiting": 0, "scheduled": []}
        )
        work["rpn"] = place.replicas_per_node
        work["desired"] = int(replicas)
        self._reconcile("write")

    def cleanup(self, app: str, place: Placement) -> None:
        key = f"{self._checked(app, place.rtype)}/{place.rtype}"
        work = self._w.workloads.get(key)
        if work is not None and work["desired"] == 0 and not _count(work):
            del self._w.workloads[key]

    def now(self) -> float:
        return self._w.now

    def wait(self, seconds: float) -> None:
        self.advance(seconds)

    # ------------------------------------------------------------------------------------ simulation

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ClusterError(f"cannot advance the simulated clock by {seconds} s; time only moves forward")
        self.advance_to(self._w.now + seconds)

    def advance_to(self, t: float) -> None:
        """Run every event up to virtual time ``t`` (accruing cost between events)."""
        while (nxt := self._next_event()) <= t:
            self._accrue(max(nxt, self._w.now))
            self._process_due()
            self._reconcile("event")
        self._accrue(max(t, self._w.now))

    def hold(self, hold: str, rtype: str, *, app: str = "", on: bool = True) -> None:
        """Place (or lift, ``on=False``) a never-completing rollout on a pool or an app's workload."""
        if hold not in HOLDS:
            raise ClusterError(f"unknown hold {hold!r}; use one of {', '.join(HOLDS)}")
        if hold.startswith("pods") and not app:
            raise ClusterError(f"hold {hold!r} is on a workload: name the app")
        self._checked_type(rtype)
        app = checked_app(app, error=ClusterError) if app else ""
        key = f"{hold}:{app}/{rtype}" if hold.startswith("pods") else f"{hold}:{rtype}"
        _toggle(self._w.holds, key, on)
        if not on and hold == "pods-never-ready":
            self._start_held(f"{app}/{rtype}")
        self._process_due()
        self._reconcile("event")

    def clear_faults(self) -> None:
        """Lift every hold, drop the scheduled faults and zero the fault rates."""
        for key in list(self._w.holds):
            hold, _, target = key.partition(":")
            app, _, rtype = target.rpartition("/")
            self.hold(hold, rtype, app=app, on=False)
        self._w.schedule = []
        self.faults = Faults()

    def holding(self, hold: str, key: str) -> bool:
        return f"{hold}:{key}" in self._w.holds

    def schedule(self, events: Iterable[FaultEvent]) -> None:
        """Add timed faults (applied when the clock reaches them)."""
        events = list(events)
        for event in events:
            self._checked_type(event.rtype)
        self._w.schedule = sorted([*self._w.schedule, *(asdict(e) for e in events)], key=lambda e: e["at"])

    def costs(self) -> dict[str, Any]:
        """USD spent so far: total, per app, per type, and the node-seconds behind them."""
        by_app: dict[str, float] = {}
        by_type: dict[str, float] = {}
        for key, seconds in self._w.node_seconds.items():
            app, rtype, market = key.split("/")
            price = self.catalog[rtype].hourly_price(spot=market == "spot")
            usd = seconds * price / 3600.0
            by_app[app] = by_app.get(app, 0.0) + usd
            by_type[rtype] = by_type.get(rtype, 0.0) + usd
        return {
            "total": sum(by_app.values()),
            "by_app": by_app,
            "by_type": by_type,
            "node_seconds": dict(self._w.node_seconds),
        }

    def lifetimes(self) -> list[dict[str, Any]]:
        """Every node ever requested: type, app, spot, start, end (now for a node that still exists)."""
        live = [{**_life(n), "end": self._w.now, "how": "running"} for n in self._w.nodes]
        return [*self._w.ledger, *live]

    # ----------------------------------------------------------------------------------- persistence

    def save(self) -> None:
        """Write the state (no-op without a path), unless another writer saved since it was read (docstring)."""
        if self.path is None:
            return
        with locked(self.path):
            found = generation_of(self.path, self.catalog)
            if found != self._generation:
                raise ClusterError(
                    f"simulated cluster state {self.path} was saved by another writer (generation {found}) since "
                    f"this cluster read it (generation {self._generation}); open it again and redo the change"
                )
            self._write(self.path)

    def _catch_up(self, path: Path) -> None:
        """Under the lock: continue from the file's world if another writer saved it since, at our clock."""
        if not path.is_file():
            return
        data = read_state(path, self.catalog)
        if data["generation"] != self._generation:
            clock = self._w.now
            self._adopt(path, data)
            if clock > self._w.now:
                self.advance_to(clock)

    def _write(self, path: Path) -> None:
        version, internal, gauss = self._rng.getstate()
        data = {
            "version": STATE_VERSION,
            "generation": self._generation + 1,
            "world": asdict(self._w),
            "rng": [version, list(internal), gauss],
        }
        write_state(path, data)
        self._generation += 1

    def _adopt(self, path: Path, data: dict[str, Any]) -> None:
        """Take over a state read by ``read_state`` (already checked whole)."""
        version, internal, gauss = data["rng"]
        try:
            self._rng.setstate((version, tuple(internal), gauss))
        except (TypeError, ValueError, OverflowError) as exc:
            raise ClusterError(
                f"simulated cluster state {path}: rng is not a random generator's state ({exc}); "
                "delete it to start afresh"
            ) from None
        self._w = _World(**data["world"])
        self._generation = data["generation"]

    def _checked(self, app: str, rtype: str) -> str:
        """``app`` as a valid app name on a type the catalog lists, else ``ClusterError``."""
        self._checked_type(rtype)
        return checked_app(app, error=ClusterError)

    def _checked_type(self, rtype: str) -> None:
        if self.catalog.get(rtype) is None:
            raise ClusterError(f"the simulated cluster has no type {rtype!r}: its catalog does not list it")

    # -------------------------------------------------------------------------------------- internals

    def _pool_state(self, rtype: str) -> PoolState:
        nodes = [n for n in self._w.nodes if n["type"] == rtype]
        claims = {a: n for a, n in self._w.claims.get(rtype, {}).items() if n}
        alive = sum(1 for n in nodes if n["state"] != "failed")
        desired = sum(claims.values())
        return PoolState(
            rtype=rtype,
            pool=self.catalog[rtype].pool.name,
            desired=desired,
            current=alive,
            ready=sum(1 for n in nodes if n["state"] == "ready"),
            failed=sum(1 for n in nodes if n["state"] == "failed"),
            claims=claims,
            booting=self._booting(nodes, claims),
        )

    def _booting(self, nodes: list[dict[str, Any]], claims: dict[str, int]) -> dict[str, tuple[float, ...]]:
        """Per claiming app, seconds until each of its provisioning nodes is ready (the simulation knows)."""
        now = self._w.now
        booting = [n for n in nodes if n["state"] == "provisioning"]
        return {app: tuple(sorted(n["ready_at"] - now for n in booting if n["app"] == app)) for app in claims}

    def _workload_state(self, key: str) -> WorkloadState:
        work = self._w.workloads[key]
        current = _count(work)
        return WorkloadState(
            app=work["app"],
            rtype=work["type"],
            pool=work["pool"],
            desired=work["desired"],
            current=current,
            ready=self._ready_replicas(work),
        )

    def _ready_replicas(self, work: dict[str, Any]) -> int:
        due = self._w.now - self.pod_start_seconds
        return sum(c for at, c, held in work["scheduled"] if not held and at <= due + 1e-9)

    def _next_event(self) -> float:
        w, times = self._w, [math.inf]
        for n in w.nodes:
            if n["state"] == "provisioning" and not self.holding("nodes-never-ready", n["type"]):
                times.append(n["ready_at"])
            elif n["state"] == "failed":
                times.append(n["failed_at"] + REMEDIATION_SECONDS)
            if n["preempt_at"] is not None and n["state"] != "failed":
                times.append(n["preempt_at"])
        if w.schedule:
            times.append(w.schedule[0]["at"])
        return min(times)

    def _accrue(self, t: float) -> None:
        dt = t - self._w.now
        if dt > 0:
            for n in self._w.nodes:
                key = f"{n['app']}/{n['type']}/{'spot' if n['spot'] else 'on-demand'}"
                self._w.node_seconds[key] = self._w.node_seconds.get(key, 0.0) + dt
            self._w.now = t

    def _process_due(self) -> None:
        w, now = self._w, self._w.now
        for n in list(w.nodes):
            if n["preempt_at"] is not None and n["preempt_at"] <= now and n["state"] != "failed":
                self._remove(n, "preempted")
            elif (
                n["state"] == "provisioning"
                and n["ready_at"] <= now
                and not self.holding("nodes-never-ready", n["type"])
            ):
                if n["fails"]:
                    n.update(state="failed", failed_at=now)
                    w.failed_total[n["type"]] = w.failed_total.get(n["type"], 0) + 1
                else:
                    n["state"] = "ready"
            elif n["state"] == "failed" and n["failed_at"] + REMEDIATION_SECONDS <= now:
                self._remove(n, "failed")
        while w.schedule and w.schedule[0]["at"] <= now:
            self._fault(FaultEvent(**w.schedule.pop(0)))

    def _fault(self, event: FaultEvent) -> None:
        if event.kind == "preempt":
            ready = [
                n
                for n in self._w.nodes
                if n["type"] == event.rtype and n["state"] == "ready" and (not event.app or n["app"] == event.app)
            ]
            for n in sorted(ready, key=lambda n: -n["created"])[: event.count]:
                self._remove(n, "preempted")
        else:
            self.hold(event.hold, event.rtype, app=event.app, on=event.kind == "hold")

    def _remove(self, node: dict[str, Any], how: str) -> None:
        self._w.nodes.remove(node)
        self._w.ledger.append({**_life(node), "end": self._w.now, "how": how})
        if how == "preempted":
            self._w.preempted_total[node["type"]] = self._w.preempted_total.get(node["type"], 0) + 1

    def _reconcile(self, cause: str) -> None:
        for rtype in sorted(self._w.claims):
            for app in sorted(self._w.claims[rtype]):
                self._size(app, rtype)
        for key in sorted(self._w.workloads):
            self._place(key, self._w.workloads[key])
        if self.timeline is not None:
            ready = {(wk["app"], wk["type"]): self._ready_replicas(wk) for wk in self._w.workloads.values()}
            self.timeline.append(Snapshot(at=self._w.now, cause=cause, ready=ready))

    def _size(self, app: str, rtype: str) -> None:
        """Request missing nodes (within quota) or remove surplus ones for the app's claim."""
        want = self._w.claims[rtype].get(app, 0)
        mine = [n for n in self._w.nodes if n["type"] == rtype and n["app"] == app and n["state"] != "failed"]
        if len(mine) > want:
            if self.holding("nodes-never-removed", rtype):
                return
            order = sorted(mine, key=lambda n: (n["state"] == "ready", -n["created"]))
            for n in order[: len(mine) - want]:
                self._remove(n, "released")
            return
        quota = self.catalog[rtype].quota
        used = sum(1 for n in self._w.nodes if n["type"] == rtype and n["state"] != "failed")
        spot_want = self._w.spot.get(rtype, {}).get(app, 0)
        spot_have = sum(1 for n in mine if n["spot"])
        for i in range(min(want - len(mine), max(0, quota - used))):
            self._request(app, rtype, spot=spot_have + i < spot_want)

    def _request(self, app: str, rtype: str, *, spot: bool) -> None:
        kind, f, now = self.catalog[rtype], self.faults, self._w.now
        lead = kind.lead_time_seconds
        if self._rng.random() < f.slow_start_probability:
            lead *= f.slow_start_factor
        fails = self._rng.random() < f.provision_failure_rate
        spot = spot and kind.price.spot is not None
        preempt = None
        if spot and f.spot_preemption_per_hour > 0:
            preempt = now + self._rng.expovariate(f.spot_preemption_per_hour / 3600.0)
        self._w.next_id += 1
        self._w.nodes.append(
            {
                "id": f"{rtype}-{self._w.next_id}",
                "type": rtype,
                "app": app,
                "spot": spot,
                "created": now,
                "ready_at": now + lead,
                "fails": fails,
                "preempt_at": preempt,
                "state": "provisioning",
                "failed_at": None,
            }
        )

    def _place(self, key: str, work: dict[str, Any]) -> None:
        """Trim or add replicas to ``desired``, unschedule those without a slot, schedule onto free slots."""
        desired, now = work["desired"], self._w.now
        surplus = _count(work) - desired
        if surplus > 0 and self.holding("pods-never-removed", key):
            pass
        elif surplus > 0:
            cut = min(surplus, work["waiting"])
            work["waiting"] -= cut
            _drop_newest(work["scheduled"], surplus - cut)
        else:
            work["waiting"] += -surplus
        ready_nodes = sum(
            1 for n in self._w.nodes if n["type"] == work["type"] and n["app"] == work["app"] and n["state"] == "ready"
        )
        slots = ready_nodes * work["rpn"]
        placed = sum(b[1] for b in work["scheduled"])
        if placed > slots:
            work["waiting"] += _drop_newest(work["scheduled"], placed - slots)
        free = slots - sum(b[1] for b in work["scheduled"])
        if free > 0 and work["waiting"] > 0:
            moved = min(free, work["waiting"])
            work["waiting"] -= moved
            work["scheduled"].append([now, moved, self.holding("pods-never-ready", key)])

    def _start_held(self, key: str) -> None:
        """A lifted pods-never-ready hold: the held replicas start now."""
        work = self._w.workloads.get(key)
        for bucket in work["scheduled"] if work else []:
            if bucket[2]:
                bucket[0], bucket[2] = self._w.now, False


def _count(work: dict[str, Any]) -> int:
    return work["waiting"] + sum(b[1] for b in work["scheduled"])


def _drop_newest(buckets: list[list[Any]], count: int) -> int:
    """Remove ``count`` replicas from the newest scheduled buckets ``[at, count, held]``; returns how many."""
    removed = 0
    while count > removed and buckets:
        at, c, held = buckets[-1]
        take = min(c, count - removed)
        removed += take
        if take == c:
            buckets.pop()
        else:
            buckets[-1] = [at, c - take, held]
    return int(removed)


def _toggle(items: list[str], key: str, on: bool) -> None:
    if on and key not in items:
        items.append(key)
    elif not on and key in items:
        items.remove(key)


def _life(node: dict[str, Any]) -> dict[str, Any]:
    return {"id": node["id"], "type": node["type"], "app": node["app"], "spot": node["spot"], "start": node["created"]}
