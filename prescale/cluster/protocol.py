"""The ``Cluster`` protocol: ``observe()`` what runs now, ``apply(plan)`` a plan step by step.

Every backend (``SimulatedCluster``, ``KubernetesCluster``, a test's recording fake) speaks it:

* ``observe() -> ClusterState``: per resource type, the node pool (nodes wanted, existing, ready,
  provisioning, failed, each app's claim on it, and when each app's booting nodes are expected ready)
  and, per (app, type), the app's workload (replicas wanted, existing, available).
  ``ClusterState.holdings(app)`` is what a plan starts from.
* ``apply(plan) -> ApplyReport``: carries the plan out make-before-break (``executor.py``) and reports
  each step's outcome, the serving capacity at the start, its lowest point and at the end.

A pool is shared by the apps that run on its type; each app *claims* nodes on it and the pool's size is
the sum of the claims, so one app's plan never resizes another's share. ``settled`` says the backend's
controller has seen the last change (Kubernetes: ``status.observedGeneration >= metadata.generation``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from prescale.cluster.plan import Holding, Placement, Plan, PlanStep, serving


class ClusterError(RuntimeError):
    """The cluster refused or lacks something a plan needs; the message names the object and what to do."""


class ClusterUnavailable(ClusterError):
    """The cluster's API kept failing (409/429/5xx/timeouts) after every retry; nothing more was written."""


@dataclass(frozen=True)
class PoolState:
    """One node pool (one resource type), cluster-wide."""

    rtype: str
    pool: str
    desired: int  # nodes asked for (the sum of the claims)
    current: int  # nodes that exist, ready or not
    ready: int
    failed: int = 0  # nodes that failed and are being replaced
    settled: bool = True
    claims: Mapping[str, int] = field(default_factory=dict)  # app -> nodes
    # app -> seconds until each of its nodes not ready yet is expected ready (soonest first); an app the
    # backend cannot tell about is absent (Kubernetes: a pool shared by several apps)
    booting: Mapping[str, tuple[float, ...]] = field(default_factory=dict)

    @property
    def provisioning(self) -> int:
        return max(0, self.current - self.ready)


@dataclass(frozen=True)
class WorkloadState:
    """One app's replicas on one pool."""

    app: str
    rtype: str
    pool: str
    desired: int
    current: int  # replicas that exist (status.replicas)
    ready: int  # replicas available to serve
    settled: bool = True


@dataclass(frozen=True)
class ClusterState:
    """What runs now (``at``: the backend's clock, seconds)."""

    at: float
    pools: Mapping[str, PoolState]  # by resource type
    workloads: tuple[WorkloadState, ...] = ()

    def workload(self, app: str, rtype: str) -> WorkloadState | None:
        return next((w for w in self.workloads if w.app == app and w.rtype == rtype), None)

    def holdings(self, app: str) -> dict[str, Holding]:
        """Per type the app claims nodes on or runs replicas on: its claim, replicas, and pool readiness."""
        out: dict[str, Holding] = {}
        names = {t for t, p in self.pools.items() if p.claims.get(app, 0)} | {
            w.rtype for w in self.workloads if w.app == app
        }
        for name in sorted(names):
            pool, work = self.pools.get(name), self.workload(app, name)
            out[name] = Holding(
                nodes=pool.claims.get(app, 0) if pool else 0,
                replicas=work.desired if work else 0,
                ready_replicas=work.ready if work else 0,
                pool_ready=pool is not None and pool.settled and pool.ready >= pool.desired,
                exists=work is not None,
                booting=tuple(pool.booting[app]) if pool is not None and app in pool.booting else None,
            )
        return out

    def others(self, app: str) -> dict[str, int]:
        """Nodes per type claimed by apps other than ``app`` (for quotas)."""
        return {t: sum(n for a, n in p.claims.items() if a != app) for t, p in self.pools.items()}

    def serving(self, app: str, placements: Mapping[str, Placement], metrics: int) -> tuple[float, ...]:
        """The app's serving capacity: its available replicas times what one serves, per metric."""
        ready = {w.rtype: w.ready for w in self.workloads if w.app == app}
        return serving(ready, placements, metrics)

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "pools": {
                t: {**asdict(p), "claims": dict(p.claims), "booting": {a: list(b) for a, b in p.booting.items()},
                    "provisioning": p.provisioning}
                for t, p in self.pools.items()
            },
            "workloads": [asdict(w) for w in self.workloads],
        }


StepStatus = Literal["done", "timeout", "refused", "failed"]
ApplyStatus = Literal["applied", "noop", "blocked", "rolled-back", "failed"]


@dataclass(frozen=True)
class StepOutcome:
    """How one step went; ``rollback`` marks the steps of a rollback."""

    step: PlanStep
    status: StepStatus
    seconds: float
    detail: str = ""
    rollback: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step.to_dict(),
            "status": self.status,
            "seconds": round(self.seconds, 3),
            "detail": self.detail,
            "rollback": self.rollback,
        }


@dataclass(frozen=True)
class ApplyReport:
    """The outcome of ``apply(plan)``: per-step outcomes and the serving capacity along the way."""

    app: str
    status: ApplyStatus
    outcomes: tuple[StepOutcome, ...]
    detail: str
    metrics: tuple[str, ...]
    floor: tuple[float, ...]  # serving capacity the plan may not go below
    serving_start: tuple[float, ...]
    serving_min: tuple[float, ...]  # lowest observed, per metric, while applying
    serving_end: tuple[float, ...]
    started_at: float
    finished_at: float

    @property
    def ok(self) -> bool:
        return self.status in ("applied", "noop")

    def to_dict(self) -> dict[str, Any]:
        named = {
            k: dict(zip(self.metrics, getattr(self, k), strict=True))
            for k in ("floor", "serving_start", "serving_min", "serving_end")
        }
        return {
            "app": self.app,
            "status": self.status,
            "ok": self.ok,
            "detail": self.detail,
            "steps": [o.to_dict() for o in self.outcomes],
            **named,
            "seconds": round(self.finished_at - self.started_at, 3),
        }


@runtime_checkable
class Cluster(Protocol):
    """A cluster backend."""

    def observe(self) -> ClusterState:
        """What runs now."""
        ...

    def apply(self, plan: Plan) -> ApplyReport:
        """Carry the plan out, make-before-break; never raises for a step that fails (see the report)."""
        ...
