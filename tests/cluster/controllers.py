"""The controllers a real cluster runs, played by the tests through the API, on a virtual clock.

``Controllers.tick(now)`` does, over HTTP with the official client (its own User-Agent, so injected faults
never hit it), what these controllers would have done by virtual time ``now``:

* Cluster API's MachineSet: a Machine and a Node (labels from the MachineDeployment's template) for every
  missing replica, ``Ready`` after the pool's lead time; surplus ones deleted, not-ready and newest first;
  the MachineDeployment's status (replicas, readyReplicas, ``observedGeneration``);
* the Deployment controller, scheduler and kubelets: replicas onto free slots of the pool's ready nodes
  (``prescale.io/replicas-per-node`` each), available ``pod_start_seconds`` later; surplus replicas removed
  (unscheduled first, then the newest); the Deployment's status with ``observedGeneration``.

The truth (which nodes exist, which replicas run and are available) lives here, so the tests measure the
serving capacity of each app from it after every tick (``record``): the invariant is checked against what
ran, not against what the backend believed.

Holds model a rollout that never completes, as in the simulated cluster: ``nodes-never-ready:<pool>``,
``nodes-never-removed:<pool>``, ``pods-never-ready:<deployment>``, ``pods-never-removed:<deployment>``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

from prescale.catalog import LABEL_POOL
from prescale.cluster.kubernetes import ANNOTATION_RPN, CAPI_GROUP, LABEL_APP, MANAGED_BY

MERGE = "application/merge-patch+json"


@dataclass
class VirtualClock:
    """The tests' clock: ``sleep`` moves time forward and lets the controllers catch up."""

    now: float = 0.0
    on_sleep: list[Callable[[float], None]] = field(default_factory=list)

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)
        for hook in self.on_sleep:
            hook(self.now)


@dataclass
class _Node:
    name: str
    ready_at: float
    ready: bool = False


@dataclass
class _Pods:
    waiting: int = 0
    scheduled: list[list[Any]] = field(default_factory=list)  # [at, count, held]


class Controllers:
    """Plays the cluster's controllers (module docstring)."""

    def __init__(
        self,
        api: client.ApiClient,
        *,
        namespace: str,
        pool_namespace: str,
        lead_seconds: dict[str, float],
        serves: dict[tuple[str, str], tuple[float, ...]],
        pod_start_seconds: float = 20.0,
        capi_version: str = "v1beta1",
    ) -> None:
        self.core, self.apps = client.CoreV1Api(api), client.AppsV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.ns, self.pool_ns, self.capi = namespace, pool_namespace, capi_version
        self.lead, self.serves, self.pod_start = lead_seconds, serves, pod_start_seconds
        self.holds: set[str] = set()
        self.nodes: dict[str, list[_Node]] = {}
        self.pods: dict[str, _Pods] = {}
        self.record: list[tuple[float, dict[str, tuple[float, ...]]]] = []
        self.owners: dict[str, tuple[str, str, int]] = {}  # deployment -> (app, pool, replicas per node)
        self._written: dict[str, Any] = {}
        self._count = 0

    # ----------------------------------------------------------------------------------------- ticks

    def tick(self, now: float) -> None:
        mds = self._get(
            lambda **kw: self.custom.list_namespaced_custom_object(
                CAPI_GROUP, self.capi, self.pool_ns, "machinedeployments", label_selector=LABEL_POOL, **kw
            )
        )["items"]
        for md in mds:
            self._pool(md, now)
        deps = self._get(
            lambda **kw: self.apps.list_namespaced_deployment(self.ns, label_selector="=".join(MANAGED_BY), **kw)
        )["items"]
        seen = set()
        for dep in sorted(deps, key=lambda d: d["metadata"]["name"]):
            seen.add(dep["metadata"]["name"])
            self._deployment(dep, now)
        for gone in set(self.pods) - seen:
            del self.pods[gone]
        self.record.append((now, self.serving(now)))

    def settle(self, clock: VirtualClock, *, seconds: float = 3600.0, step: float = 30.0) -> None:
        """Let virtual time pass (the controllers catch up); no backend involved."""
        end = clock.now + seconds
        while clock.now < end:
            clock.sleep(step)

    def serving(self, now: float) -> dict[str, tuple[float, ...]]:
        """Per app: available replicas times what one serves, per metric (the truth, not the status)."""
        out: dict[str, list[float]] = {}
        for name, pods in self.pods.items():
            app, pool, _ = self.owners.get(name, ("", "", 1))
            per = self.serves.get((app, pool))
            if per is None:
                continue
            ready = self._ready(pods, now)
            acc = out.setdefault(app, [0.0] * len(per))
            for i, v in enumerate(per):
                acc[i] += ready * v
        return {a: tuple(v) for a, v in out.items()}

    # ----------------------------------------------------------------------------------------- pools

    def _pool(self, md: dict[str, Any], now: float) -> None:
        name = md["metadata"]["name"]
        want = int((md.get("spec") or {}).get("replicas") or 0)
        nodes = self.nodes.setdefault(name, [])
        for node in nodes:
            if not node.ready and now >= node.ready_at and f"nodes-never-ready:{name}" not in self.holds:
                node.ready = True
                self._node_status(node.name, ready=True)
        while len(nodes) < want:
            self._count += 1
            node = _Node(name=f"{name}-{self._count}", ready_at=now + self.lead.get(name, 60.0))
            self._create_node(md, node)
            nodes.append(node)
        if len(nodes) > want and f"nodes-never-removed:{name}" not in self.holds:
            for node in sorted(nodes, key=lambda n: (n.ready, -int(n.name.rsplit("-", 1)[1])))[: len(nodes) - want]:
                self._delete_node(node)
                nodes.remove(node)
        ready = sum(1 for n in nodes if n.ready)
        status = {
            "replicas": len(nodes),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "updatedReplicas": len(nodes),
            "observedGeneration": md["metadata"].get("generation", 1),
            "phase": "Running" if ready == len(nodes) == want else "ScalingUp",
        }
        self._status(
            f"md/{name}",
            status,
            lambda body, **kw: self.custom.patch_namespaced_custom_object_status(
                CAPI_GROUP, self.capi, self.pool_ns, "machinedeployments", name, body, _content_type=MERGE, **kw
            ),
        )

    def _create_node(self, md: dict[str, Any], node: _Node) -> None:
        labels = dict((((md.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {})
        machine = {
            "apiVersion": f"{CAPI_GROUP}/{self.capi}",
            "kind": "Machine",
            "metadata": {
                "name": node.name,
                "namespace": self.pool_ns,
                "labels": {**labels, "cluster.x-k8s.io/deployment-name": md["metadata"]["name"]},
            },
            "spec": {"clusterName": md["spec"].get("clusterName", "prescale"), "bootstrap": {}},
        }
        self._get(
            lambda **kw: self.custom.create_namespaced_custom_object(
                CAPI_GROUP, self.capi, self.pool_ns, "machines", machine, **kw
            )
        )
        self._machine_phase(node.name, "Provisioning")
        self._get(
            lambda **kw: self.core.create_node(
                {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node.name, "labels": labels}}, **kw
            )
        )
        self._node_status(node.name, ready=False)

    def _delete_node(self, node: _Node) -> None:
        self._get(lambda **kw: self.core.delete_node(node.name, **kw))
        self._get(
            lambda **kw: self.custom.delete_namespaced_custom_object(
                CAPI_GROUP, self.capi, self.pool_ns, "machines", node.name, **kw
            )
        )

    def _node_status(self, name: str, *, ready: bool) -> None:
        body = {
            "status": {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True" if ready else "False",
                        "reason": "KubeletReady" if ready else "KubeletNotReady",
                    }
                ]
            }
        }
        self._get(lambda **kw: self.core.patch_node_status(name, body, _content_type=MERGE, **kw))
        if ready:
            self._machine_phase(name, "Running")

    def _machine_phase(self, name: str, phase: str) -> None:
        self._get(
            lambda **kw: self.custom.patch_namespaced_custom_object_status(
                CAPI_GROUP,
                self.capi,
                self.pool_ns,
                "machines",
                name,
                {"status": {"phase": phase}},
                _content_type=MERGE,
                **kw,
            )
        )

    # ----------------------------------------------------------------------------------- deployments

    def _deployment(self, dep: dict[str, Any], now: float) -> None:
        meta = dep["metadata"]
        name, labels = meta["name"], meta.get("labels") or {}
        pool = labels.get(LABEL_POOL, "")
        rpn = int((meta.get("annotations") or {}).get(ANNOTATION_RPN, "1"))
        self.owners[name] = (labels.get(LABEL_APP, ""), pool, rpn)
        pods = self.pods.setdefault(name, _Pods())
        self._size(name, pods, int((dep.get("spec") or {}).get("replicas", 1)))
        held = f"pods-never-ready:{name}" in self.holds
        if not held:
            for bucket in pods.scheduled:
                if bucket[2]:
                    bucket[0], bucket[2] = now, False
        slots = self._slots(pool, name) * rpn
        placed = sum(b[1] for b in pods.scheduled)
        if placed > slots:
            pods.waiting += _drop(pods.scheduled, placed - slots)
        free = slots - sum(b[1] for b in pods.scheduled)
        if free > 0 and pods.waiting:
            moved = min(free, pods.waiting)
            pods.waiting -= moved
            pods.scheduled.append([now, moved, held])
        total = pods.waiting + sum(b[1] for b in pods.scheduled)
        ready = self._ready(pods, now)
        status = {
            "observedGeneration": meta.get("generation", 1),
            "replicas": total,
            "updatedReplicas": total,
            "readyReplicas": ready,
            "availableReplicas": ready,
        }
        self._status(
            f"dep/{name}",
            status,
            lambda body, **kw: self.apps.patch_namespaced_deployment_status(
                name, self.ns, body, _content_type=MERGE, **kw
            ),
        )

    def _size(self, name: str, pods: _Pods, want: int) -> None:
        total = pods.waiting + sum(b[1] for b in pods.scheduled)
        if total < want:
            pods.waiting += want - total
        elif total > want and f"pods-never-removed:{name}" not in self.holds:
            cut = min(total - want, pods.waiting)
            pods.waiting -= cut
            _drop(pods.scheduled, total - want - cut)

    def _slots(self, pool: str, name: str) -> int:
        """Ready nodes of the pool not used by the deployments sorted before ``name`` (one app per node)."""
        ready = sum(1 for n in self.nodes.get(pool, []) if n.ready)
        used = 0
        for other, (_, other_pool, rpn) in self.owners.items():
            if other_pool == pool and other < name and other in self.pods:
                used += -(-sum(b[1] for b in self.pods[other].scheduled) // rpn)
        return max(0, ready - used)

    def _ready(self, pods: _Pods, now: float) -> int:
        return sum(c for at, c, held in pods.scheduled if not held and at + self.pod_start <= now + 1e-9)

    # ----------------------------------------------------------------------------------------- calls

    def _status(self, key: str, status: dict[str, Any], patch: Callable[..., Any]) -> None:
        if self._written.get(key) == status:
            return
        self._get(lambda **kw: patch({"status": status}, **kw))
        self._written[key] = status

    @staticmethod
    def _get(fn: Callable[..., Any]) -> dict[str, Any]:
        resp = fn(_preload_content=False, _request_timeout=10)
        return json.loads(resp.data or b"{}")


def _drop(buckets: list[list[Any]], count: int) -> int:
    removed = 0
    while count > removed and buckets:
        at, c, held = buckets[-1]
        take = min(c, count - removed)
        removed += take
        if take == c:
            buckets.pop()
        else:
            buckets[-1] = [at, c - take, held]
    return removed
