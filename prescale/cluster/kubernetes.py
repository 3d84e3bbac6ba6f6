"""``KubernetesCluster``: node pools as Cluster API MachineDeployments, workloads as Deployments per pool.

The only module of prescale that imports the ``kubernetes`` client (an import-linter contract says so).

Objects, and who owns what:

* **node pool** = one ``MachineDeployment`` (``cluster.x-k8s.io``) per resource type, named after the
  catalog's pool (``prescale-g6-xlarge``), created beforehand (``infra/kubernetes/nodepools/``). Each app's
  claim is an annotation ``nodes.prescale.io/<app>: "<n>"``; ``spec.replicas`` is the sum of the claims.
  Both change in one JSON merge patch that carries ``metadata.resourceVersion``, so a concurrent writer
  makes it fail with 409 instead of being overwritten; the backend then re-reads and recomputes.
  Readiness comes from the MachineDeployment's status (``observedGeneration``, ``readyReplicas``) and from
  the Nodes carrying the pool label (``prescale.io/pool``) with ``Ready=True``; failed nodes from its
  Machines in phase ``Failed``.
* **workload** = one ``Deployment`` per (app, pool), ``<app>-<pool>``, made from the app's template
  Deployment ``<app>-template`` (replicas 0, in ``namespace``): its pod template plus the pool's
  nodeSelector, tolerations for the pool's taints and the replica's requests (cpu, memory,
  ``nvidia.com/gpu``, the FPGA device plugin's resource), selector and pod labels plus ``prescale.io/pool``.
  The app's one Service (``<app>``, or the template's ``prescale.io/service`` annotation) must select the
  template's pod labels, so every pool's pods serve behind it; the backend checks it and never edits it.
  Replicas change through the ``/scale`` subresource with the read ``resourceVersion``; a Deployment is
  created once (a 409 on create means an earlier, interrupted run made it: it is read and scaled) and
  deleted, with a resourceVersion precondition, once drained to zero.

Names: every object name and label value built here is checked where it is built. An app name is an
``AppName`` (an RFC 1035 label: it is the Service's name, a label value, an annotation key's name part and
the first part of ``<app>-<pool>`` and ``<app>-template``), and so is a Service name taken from a
template's annotation; a pool name and the namespaces must be DNS-1123 labels (at most 63 lower-case
alphanumerics and ``-``), which makes them valid object names and label values alike. An invalid one
raises ``ClusterError`` naming it before any request. Nothing is sanitised: a pool name is the name of a
MachineDeployment that already exists, and a different name would address a different object.

Every call has a timeout and is retried with exponential backoff (honouring ``Retry-After``) on 429, 5xx and
timeouts or dropped connections; a 409 re-reads and recomputes; after ``retries`` the call raises
``ClusterUnavailable``. urllib3's own retries are off (``Configuration.retries = False``), or 429s would
be retried silently. Writes are idempotent (a value already there is not written again), so a rerun after
a partial failure converges. Configuration comes from a kubeconfig, or from the pod's service account.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from prescale.catalog import LABEL_POOL, Catalog
from prescale.cluster.executor import execute
from prescale.cluster.plan import Placement, Plan, checked_app
from prescale.cluster.protocol import (
    ApplyReport,
    ClusterError,
    ClusterState,
    ClusterUnavailable,
    PoolState,
    WorkloadState,
)
from prescale.names import is_dns_label, shown

CAPI_GROUP = "cluster.x-k8s.io"
MANAGED_BY = ("app.kubernetes.io/managed-by", "prescale")
LABEL_APP = "prescale.io/app"
CLAIM_PREFIX = "nodes.prescale.io/"
ANNOTATION_RPN = "prescale.io/replicas-per-node"
ANNOTATION_TYPE = "prescale.io/resource-type"
ANNOTATION_CONTAINER = "prescale.io/container"
ANNOTATION_SERVICE = "prescale.io/service"
TEMPLATE_SUFFIX = "-template"
GPU_RESOURCE = "nvidia.com/gpu"
RETRYABLE = {429, 500, 502, 503, 504}
MERGE_PATCH = "application/merge-patch+json"
USER_AGENT = "prescale/0.1"


@dataclass(frozen=True)
class KubeOptions:
    """Where the objects are and how hard to try (``ClusterSettings`` holds the configured values)."""

    namespace: str = "prescale"
    pool_namespace: str = "prescale"
    capi_version: str = "v1beta1"
    fpga_resource: str = "xilinx.com/fpga"
    retries: int = 5
    backoff_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    request_timeout_seconds: float = 30.0
    poll_seconds: float = 5.0

    def __post_init__(self) -> None:
        dns_label(self.namespace, what="namespace (PRESCALE_CLUSTER__NAMESPACE)")
        dns_label(self.pool_namespace, what="pool namespace (PRESCALE_CLUSTER__POOL_NAMESPACE)")


class _Conflict(Exception):
    """HTTP 409: a stale write or an object that already exists."""


class _NotFound(Exception):
    """HTTP 404."""


class KubernetesCluster:
    """The ``Cluster`` protocol on a Kubernetes cluster with Cluster API node pools (module docstring)."""

    def __init__(
        self,
        api: client.ApiClient,
        catalog: Catalog,
        *,
        options: KubeOptions | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.options = options or KubeOptions()
        self.catalog = catalog
        self._clock, self._sleep, self._wall = clock, sleep, wall_clock
        self._apps, self._core = client.AppsV1Api(api), client.CoreV1Api(api)
        self._custom = client.CustomObjectsApi(api)
        self._pools = {t.pool.name: t.name for t in catalog}
        self.retried = 0  # API calls retried so far (for reports and tests)

    @classmethod
    def connect(
        cls, catalog: Catalog, *, kubeconfig: Path | None = None, context: str | None = None, **kwargs: Any
    ) -> KubernetesCluster:
        """Connect with a kubeconfig (default: $KUBECONFIG or ~/.kube/config), or in-cluster inside a pod."""
        cfg = client.Configuration()
        in_pod = kubeconfig is None and "KUBERNETES_SERVICE_HOST" in os.environ and "KUBECONFIG" not in os.environ
        try:
            if in_pod:
                config.load_incluster_config(client_configuration=cfg)
            else:
                path = str(kubeconfig) if kubeconfig else None
                config.load_kube_config(config_file=path, context=context, client_configuration=cfg)
        except (config.ConfigException, OSError) as exc:
            where = "in-cluster service account" if in_pod else f"kubeconfig {kubeconfig or '$KUBECONFIG'}"
            raise ClusterError(
                f"cannot configure the Kubernetes client from the {where}: {exc}; set "
                "PRESCALE_CLUSTER__KUBECONFIG / __CONTEXT, or use the simulated backend"
            ) from None
        return cls(api_client(cfg), catalog, **kwargs)

    # ------------------------------------------------------------------------------------ the protocol

    def observe(self) -> ClusterState:
        opts = self.options
        selector = LABEL_POOL
        mds = self._list(
            "MachineDeployments",
            lambda **kw: self._custom.list_namespaced_custom_object(
                CAPI_GROUP, opts.capi_version, opts.pool_namespace, "machinedeployments", label_selector=selector, **kw
            ),
        )
        machines = self._list(
            "Machines",
            lambda **kw: self._custom.list_namespaced_custom_object(
                CAPI_GROUP, opts.capi_version, opts.pool_namespace, "machines", label_selector=selector, **kw
            ),
        )
        nodes = self._list("Nodes", lambda **kw: self._core.list_node(label_selector=selector, **kw))
        deps = self._list(
            "Deployments",
            lambda **kw: self._apps.list_namespaced_deployment(
                opts.namespace, label_selector="=".join(MANAGED_BY), **kw
            ),
        )
        pools = {}
        for md in mds.get("items", []):
            name = md["metadata"]["name"]
            if name in self._pools:
                rtype = self._pools[name]
                pools[rtype] = pool_state(md, rtype, nodes=nodes["items"], machines=machines["items"],
                                           lead=self.catalog[rtype].lead_time_seconds, now=self._wall())
        works = tuple(w for d in deps.get("items", []) if (w := self._workload_state(d)) is not None)
        return ClusterState(at=self._clock(), pools=pools, workloads=works)

    def apply(self, plan: Plan) -> ApplyReport:
        return execute(plan, self, poll_seconds=self.options.poll_seconds)

    def now(self) -> float:
        return self._clock()

    def wait(self, seconds: float) -> None:
        self._sleep(seconds)

    # ------------------------------------------------------------------------------- the driver writes

    def set_nodes(self, app: str, place: Placement, nodes: int, *, spot: int = 0) -> None:
        """Set the app's claim on the pool and the pool's replicas to the sum of the claims (one patch)."""
        app, name, opts = checked_app(app, error=ClusterError), pool_name(place), self.options
        what = f"MachineDeployment {opts.pool_namespace}/{name}"

        def read() -> dict[str, Any]:
            try:
                return self._call(
                    f"read {what}",
                    lambda **kw: self._custom.get_namespaced_custom_object(
                        CAPI_GROUP, opts.capi_version, opts.pool_namespace, "machinedeployments", name, **kw
                    ),
                )
            except _NotFound:
                raise ClusterError(
                    f"no {what} for type {place.rtype!r} ({place.kind}); create the node pool first "
                    "(see infra/kubernetes/nodepools/)"
                ) from None

        def change(md: dict[str, Any]) -> dict[str, Any] | None:
            claims = _claims(md)
            claims[app] = nodes
            total = sum(claims.values())
            if _claims(md).get(app, 0) == nodes and md.get("spec", {}).get("replicas") == total:
                return None
            value = str(nodes) if nodes else None  # null removes the annotation (merge patch)
            return {
                "metadata": {
                    "resourceVersion": md["metadata"]["resourceVersion"],
                    "annotations": {CLAIM_PREFIX + app: value},
                },
                "spec": {"replicas": total},
            }

        def write(body: dict[str, Any]) -> None:
            self._call(
                f"patch {what}",
                lambda **kw: self._custom.patch_namespaced_custom_object(
                    CAPI_GROUP,
                    opts.capi_version,
                    opts.pool_namespace,
                    "machinedeployments",
                    name,
                    body,
                    _content_type=MERGE_PATCH,
                    **kw,
                ),
            )

        self._update(what, read=read, change=change, write=write)

    def set_replicas(self, app: str, place: Placement, replicas: int) -> None:
        """Create the app's Deployment on the pool from its template, or scale it (``/scale``)."""
        name, ns = workload_name(app, pool_name(place)), self.options.namespace
        what = f"Deployment {ns}/{name}"
        if self._read_deployment(name) is None:
            if replicas == 0:
                return
            body = self.render_workload(app, place, self._template(app), replicas=replicas)
            try:
                self._call(f"create {what}", lambda **kw: self._apps.create_namespaced_deployment(ns, body, **kw))
                return
            except _Conflict:
                pass  # made by an earlier attempt whose answer was lost: scale it below

        def read() -> dict[str, Any]:
            found = self._read_deployment(name)
            if found is None:
                raise ClusterError(f"{what} vanished while being scaled; rerun to recreate it")
            return found

        def change(dep: dict[str, Any]) -> dict[str, Any] | None:
            if dep.get("spec", {}).get("replicas") == replicas:
                return None
            return {"metadata": {"resourceVersion": dep["metadata"]["resourceVersion"]}, "spec": {"replicas": replicas}}

        def write(body: dict[str, Any]) -> None:
            self._call(
                f"scale {what}",
                lambda **kw: self._apps.patch_namespaced_deployment_scale(
                    name, ns, body, _content_type=MERGE_PATCH, **kw
                ),
            )

        self._update(what, read=read, change=change, write=write)

    def cleanup(self, app: str, place: Placement) -> None:
        """Delete the app's drained Deployment on the pool (only while it still has zero replicas)."""
        name, ns = workload_name(app, pool_name(place)), self.options.namespace
        dep = self._read_deployment(name)
        if dep is None or dep.get("spec", {}).get("replicas", 0) != 0:
            return
        opts = client.V1DeleteOptions(
            preconditions=client.V1Preconditions(resource_version=dep["metadata"]["resourceVersion"]),
            propagation_policy="Background",
        )
        with contextlib.suppress(_NotFound, _Conflict):  # gone already, or changed: the next plan decides
            self._call(
                f"delete Deployment {ns}/{name}",
                lambda **kw: self._apps.delete_namespaced_deployment(name, ns, body=opts, **kw),
            )

    # --------------------------------------------------------------------------------------- rendering

    def render_workload(self, app: str, place: Placement, template: dict[str, Any], *, replicas: int) -> dict[str, Any]:
        """The Deployment of ``app`` on ``place``'s pool, from the app's template Deployment."""
        app, pool = checked_app(app, error=ClusterError), pool_name(place)
        name = workload_name(app, pool)
        tname = template.get("metadata", {}).get("name", app + TEMPLATE_SUFFIX)
        spec = copy.deepcopy(template.get("spec") or {})
        match = dict((spec.get("selector") or {}).get("matchLabels") or {})
        pod = spec.get("template") or {}
        if not match or not pod.get("spec", {}).get("containers"):
            raise ClusterError(
                f"template Deployment {tname} needs spec.selector.matchLabels and at least one "
                "container in spec.template.spec.containers"
            )
        meta = pod.setdefault("metadata", {})
        meta["labels"] = {**(meta.get("labels") or {}), LABEL_APP: app, LABEL_POOL: pool}
        podspec = pod["spec"]
        podspec["nodeSelector"] = {**(podspec.get("nodeSelector") or {}), LABEL_POOL: pool}
        podspec["tolerations"] = _tolerations(podspec.get("tolerations") or [], place)
        _set_requests(_container(podspec, template, tname), self._requests(place))
        labels = {MANAGED_BY[0]: MANAGED_BY[1], LABEL_APP: app, LABEL_POOL: pool}
        notes = {
            ANNOTATION_RPN: str(place.replicas_per_node),
            ANNOTATION_TYPE: place.rtype,
            "prescale.io/template": tname,
        }
        spec.update(replicas=replicas, selector={"matchLabels": {**match, LABEL_POOL: pool}}, template=pod)
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": name,
                "namespace": self.options.namespace,
                "labels": labels,
                "annotations": notes,
            },
            "spec": spec,
        }

    def _requests(self, place: Placement) -> dict[str, str]:
        req, out = place.requests, {}
        if req.get("vcpu"):
            out["cpu"] = _cpu(req["vcpu"])
        if req.get("memory_gib"):
            out["memory"] = _memory(req["memory_gib"])
        if place.kind == "gpu-vm" and req.get("gpus"):
            out[GPU_RESOURCE] = str(int(req["gpus"]))
        if place.kind == "fpga" and req.get("fpgas"):
            out[self.options.fpga_resource] = str(int(req["fpgas"]))
        return out

    def _template(self, app: str) -> dict[str, Any]:
        ns, name = self.options.namespace, app + TEMPLATE_SUFFIX
        template = self._read_deployment(name)
        if template is None:
            raise ClusterError(
                f"no template Deployment {ns}/{name} for app {app!r}; apply one with replicas: 0 "
                "(example: infra/kubernetes/apps/inference.yaml)"
            )
        self._check_service(app, template)
        return template

    def _check_service(self, app: str, template: dict[str, Any]) -> None:
        ns = self.options.namespace
        named = (template["metadata"].get("annotations") or {}).get(ANNOTATION_SERVICE)
        what = f"Service in annotation {ANNOTATION_SERVICE} of template Deployment {ns}/{app}{TEMPLATE_SUFFIX}"
        name = app if named is None else checked_app(named, error=ClusterError, what=what)
        try:
            svc = self._call(
                f"read Service {ns}/{name}", lambda **kw: self._core.read_namespaced_service(name, ns, **kw)
            )
        except _NotFound:
            raise ClusterError(
                f"no Service {ns}/{name} for app {app!r}; every pool's pods serve behind it "
                "(example: infra/kubernetes/apps/inference.yaml)"
            ) from None
        selector = (svc.get("spec") or {}).get("selector") or {}
        labels = ((template.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels") or {}
        if not selector or any(labels.get(k) != v for k, v in selector.items()) or LABEL_POOL in selector:
            raise ClusterError(
                f"Service {ns}/{name} selects {selector} but the template's pods carry {labels}; "
                "the selector must be a non-empty subset of them, without the pool label"
            )

    # ---------------------------------------------------------------------------------------- reading

    def _list(self, what: str, fn: Callable[..., Any]) -> dict[str, Any]:
        try:
            return self._call(f"list {what}", fn)
        except _NotFound:
            raise ClusterError(
                f"the cluster serves no {what} (404); install Cluster API (group {CAPI_GROUP}, version "
                f"{self.options.capi_version}) or fix PRESCALE_CLUSTER__CAPI_VERSION / __NAMESPACE"
            ) from None

    def _read_deployment(self, name: str) -> dict[str, Any] | None:
        ns = self.options.namespace
        try:
            return self._call(
                f"read Deployment {ns}/{name}", lambda **kw: self._apps.read_namespaced_deployment(name, ns, **kw)
            )
        except _NotFound:
            return None

    def _workload_state(self, dep: dict[str, Any]) -> WorkloadState | None:
        labels = dep["metadata"].get("labels") or {}
        rtype = self._pools.get(labels.get(LABEL_POOL, ""))
        if rtype is None or LABEL_APP not in labels:
            return None
        status, spec = dep.get("status") or {}, dep.get("spec") or {}
        return WorkloadState(
            app=labels[LABEL_APP],
            rtype=rtype,
            pool=labels[LABEL_POOL],
            desired=int(spec.get("replicas", 1)),
            current=int(status.get("replicas") or 0),
            ready=int(status.get("availableReplicas") or 0),
            settled=_observed(dep),
        )

    # -------------------------------------------------------------------------------- calls and retries

    def _update(
        self,
        what: str,
        *,
        read: Callable[[], dict[str, Any]],
        change: Callable[[dict[str, Any]], dict[str, Any] | None],
        write: Callable[[dict[str, Any]], None],
    ) -> None:
        """Read, compute the change, write it with the read resourceVersion; on 409 start over."""
        for attempt in range(self.options.retries + 1):
            body = change(read())
            if body is None:
                return
            try:
                write(body)
                return
            except _Conflict:
                self.retried += 1
                if attempt < self.options.retries:
                    self._sleep(self._delay(attempt))
        raise ClusterUnavailable(
            f"{what}: still conflicting after {self.options.retries + 1} attempts (409: "
            "another writer keeps changing it); the state is consistent, rerun to continue"
        )

    def _call(self, what: str, fn: Callable[..., Any]) -> dict[str, Any]:
        """One API call with a timeout, retried on 429/5xx/timeouts; 404 and 409 raise for the caller."""
        last = ""
        for attempt in range(self.options.retries + 1):
            try:
                resp = fn(_preload_content=False, _request_timeout=self.options.request_timeout_seconds)
                return json.loads(resp.data or b"{}")
            except ApiException as exc:
                if exc.status == 404:
                    raise _NotFound(what) from None
                if exc.status == 409:
                    raise _Conflict(what) from None
                if exc.status not in RETRYABLE:
                    raise ClusterError(f"{what}: HTTP {exc.status} {exc.reason}: {_message(exc)}") from None
                last, pause = f"HTTP {exc.status} {exc.reason}", _retry_after(exc)
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                last, pause = f"{type(exc).__name__}: {exc}", None
            if attempt < self.options.retries:
                self.retried += 1
                self._sleep(min(pause, self.options.backoff_max_seconds) if pause else self._delay(attempt))
        raise ClusterUnavailable(
            f"{what}: gave up after {self.options.retries + 1} attempts (last: {last}); "
            "nothing more was written, rerun to continue from the state the cluster is in"
        )

    def _delay(self, attempt: int) -> float:
        return min(self.options.backoff_seconds * 2**attempt, self.options.backoff_max_seconds)


# ---------------------------------------------------------------------------------------------- helpers


def api_client(cfg: client.Configuration) -> client.ApiClient:
    """An ApiClient with urllib3's own retries off (they would retry 429s silently) and our user agent."""
    cfg.retries = False
    api = client.ApiClient(cfg)
    api.user_agent = USER_AGENT
    return api


def workload_name(app: str, pool: str) -> str:
    """The Deployment of ``app`` on ``pool`` (at most 63 + 1 + 63 characters: a valid object name)."""
    app = checked_app(app, error=ClusterError)
    return f"{app}-{dns_label(pool, what=f'node pool name of the Deployment of app {app!r}')}"


def pool_name(place: Placement) -> str:
    """The name of ``place``'s MachineDeployment, also the value of its ``prescale.io/pool`` label."""
    return dns_label(place.pool, what=f"node pool name of type {place.rtype!r} (the catalog's pool.name)")


def dns_label(value: object, *, what: str) -> str:
    """``value`` if it is a DNS-1123 label (a valid object name and label value), else ``ClusterError``."""
    if is_dns_label(value):
        return value
    raise ClusterError(
        f"{what} {shown(value)} is not a valid Kubernetes name: at most 63 lower-case letters, digits and '-', "
        "starting and ending alphanumeric (DNS-1123 label); rename it"
    )


def pool_state(
    md: dict[str, Any], rtype: str, *, nodes: list[dict], machines: list[dict], lead: float = 0.0, now: float = 0.0
) -> PoolState:
    """A pool's state read from its MachineDeployment ``md``, the cluster's Nodes and Machines (plain dicts).

    Booting nodes are dated by their Machine's creation plus the type's ``lead`` seconds, and told per app only
    when one app claims the pool (a shared pool's booting nodes cannot be told apart).
    """
    name = md["metadata"]["name"]
    mine = [n for n in nodes if (n["metadata"].get("labels") or {}).get(LABEL_POOL) == name]
    ready_nodes = sum(1 for n in mine if _node_ready(n))
    failed = sum(
        1
        for m in machines
        if (m["metadata"].get("labels") or {}).get(LABEL_POOL) == name
        and (m.get("status") or {}).get("phase") == "Failed"
    )
    status = md.get("status") or {}
    current = max(int(status.get("replicas") or 0), len(mine))
    ready = min(int(status.get("readyReplicas") or 0), ready_nodes)
    claims = {a: n for a, n in _claims(md).items() if n}
    pool_machines = [m for m in machines if (m["metadata"].get("labels") or {}).get(LABEL_POOL) == name]
    return PoolState(
        rtype=rtype,
        pool=name,
        desired=int((md.get("spec") or {}).get("replicas") or 0),
        current=current,
        ready=ready,
        failed=failed,
        settled=_observed(md),
        claims=claims,
        booting=_booting(pool_machines, claims, booting=max(0, current - ready), lead=lead, now=now),
    )


def _booting(
    machines: list[dict[str, Any]], claims: dict[str, int], *, booting: int, lead: float, now: float
) -> dict[str, tuple[float, ...]]:
    """Seconds until each booting node of a pool with one claiming app is expected ready: its Machine's
    creation time plus the type's lead time, minus now (the newest Machines not yet running, soonest first; a
    booting node without a Machine yet: the whole lead). Nodes of a pool several apps claim belong to no app
    in particular, so no app is told about them (the decision then counts the app's claim as serving)."""
    if len(claims) != 1:
        return {}
    pending = [m for m in machines if (m.get("status") or {}).get("phase") not in ("Running", "Failed", "Deleting")]
    times = sorted(_created(m) + lead - now for m in pending)[:booting]
    times += [float(lead)] * (booting - len(times))
    return {next(iter(claims)): tuple(sorted(times))}


def _created(obj: dict[str, Any]) -> float:
    stamp = obj["metadata"].get("creationTimestamp")
    if not stamp:
        return float("inf")
    return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()


def _claims(md: dict[str, Any]) -> dict[str, int]:
    notes = md["metadata"].get("annotations") or {}
    out = {}
    for key, value in notes.items():
        if key.startswith(CLAIM_PREFIX):
            try:
                out[key[len(CLAIM_PREFIX) :]] = int(value)
            except (TypeError, ValueError):
                raise ClusterError(
                    f"MachineDeployment {md['metadata']['name']}: annotation {key}={value!r} "
                    "must be a whole number of nodes; fix or remove it"
                ) from None
    return out


def _observed(obj: dict[str, Any]) -> bool:
    seen = (obj.get("status") or {}).get("observedGeneration")
    return seen is not None and int(seen) >= int(obj["metadata"].get("generation") or 0)


def _node_ready(node: dict[str, Any]) -> bool:
    if (node.get("spec") or {}).get("unschedulable"):
        return False
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _tolerations(existing: list[dict[str, Any]], place: Placement) -> list[dict[str, Any]]:
    out = list(existing)
    for taint in place.taints:
        tol = {"key": taint["key"], "operator": "Equal", "value": taint.get("value", ""), "effect": taint["effect"]}
        if tol not in out:
            out.append(tol)
    return out


def _container(podspec: dict[str, Any], template: dict[str, Any], tname: str) -> dict[str, Any]:
    containers = podspec["containers"]
    wanted = (template["metadata"].get("annotations") or {}).get(ANNOTATION_CONTAINER)
    if wanted is None:
        return containers[0]
    found = next((c for c in containers if c.get("name") == wanted), None)
    if found is None:
        names = [c.get("name") for c in containers]
        raise ClusterError(
            f"template Deployment {tname}: {ANNOTATION_CONTAINER}={wanted!r} names no container (have {names})"
        )
    return found


def _set_requests(container: dict[str, Any], requests: dict[str, str]) -> None:
    res = container.setdefault("resources", {})
    res["requests"] = {**(res.get("requests") or {}), **requests}
    extended = {k: v for k, v in requests.items() if k not in ("cpu", "memory")}
    if extended:  # extended resources cannot be overcommitted: limits must equal requests
        res["limits"] = {**(res.get("limits") or {}), **extended}


def _cpu(vcpu: float) -> str:
    return str(int(vcpu)) if float(vcpu).is_integer() else f"{round(vcpu * 1000)}m"


def _memory(gib: float) -> str:
    return f"{int(gib)}Gi" if float(gib).is_integer() else f"{round(gib * 1024)}Mi"


def _message(exc: ApiException) -> str:
    try:
        return json.loads(exc.body or "{}").get("message") or str(exc.body)
    except (ValueError, AttributeError):
        return str(exc.body)


def _retry_after(exc: ApiException) -> float | None:
    value = (exc.headers or {}).get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
