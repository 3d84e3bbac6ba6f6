"""A Kubernetes test rig: an API server (the emulator, or a real one), the played controllers, the backend.

``emulated_rig`` starts ``KubeAPI`` on 127.0.0.1; ``real_rig`` uses the cluster in ``KUBECONFIG`` (an API
server whose controllers do not fight the played ones: envtest's kube-apiserver + etcd is the intended
target), in a fresh namespace, installing the minimal Cluster API CRDs if they are missing. Both load the
example objects from ``infra/kubernetes`` (the node pools and the ``inference`` app's template and
Service), so the examples are exercised by the backend too.

The app is ``inference`` (infra/apps/inference.yaml); the migration the tests care about goes from 4 x
``c7g.2xlarge`` (CPU, 13.2 req/s each) to 1 x ``g6.xlarge`` (GPU, 424 req/s).
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config

from prescale.catalog import LABEL_POOL, AppProfile, Catalog
from prescale.cluster import ApplyReport, Guardrails, Plan, make_plan
from prescale.cluster.kubernetes import (
    CAPI_GROUP,
    CLAIM_PREFIX,
    LABEL_APP,
    MANAGED_BY,
    KubeOptions,
    KubernetesCluster,
    api_client,
)
from prescale.cluster.plan import at_least, placement
from tests.cluster.controllers import Controllers, VirtualClock
from tests.cluster.kube_api import EmulatorThread, KubeAPI

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra" / "kubernetes"
CRDS = Path(__file__).resolve().parent / "crds" / "cluster-api-minimal.yaml"
APP = "inference"
CPU, GPU = "c7g.2xlarge", "g6.xlarge"
CPU_POOL, GPU_POOL = "prescale-c7g-2xlarge", "prescale-g6-xlarge"
START, TARGET = {CPU: 4}, {GPU: 1}


@dataclass
class Rig:
    """Everything a Kubernetes backend test needs, with the checks it asserts."""

    cluster: KubernetesCluster
    controllers: Controllers
    clock: VirtualClock
    catalog: Catalog
    profile: AppProfile
    guardrails: Guardrails
    namespace: str
    api: KubeAPI | None = None  # the emulator (None on a real cluster: no fault injection)
    raw: client.ApiClient | None = None
    notes: list[str] = field(default_factory=list)

    def plan(self, target: dict[str, int]) -> Plan:
        state = self.cluster.observe()
        return make_plan(
            APP,
            state.holdings(APP),
            target,
            catalog=self.catalog,
            profile=self.profile,
            guardrails=self.guardrails,
            others=state.others(APP),
        )

    def apply(self, target: dict[str, int]) -> ApplyReport:
        return self.cluster.apply(self.plan(target))

    def serving_now(self) -> tuple[float, ...]:
        return self.controllers.serving(self.clock.now).get(APP, (0.0,))

    def lowest_since(self, since: float) -> tuple[float, ...]:
        """Lowest serving capacity of the app the controllers recorded from virtual time ``since`` on."""
        rows = [s.get(APP, (0.0,)) for t, s in self.controllers.record if t >= since]
        return tuple(min(col) for col in zip(*rows, strict=True)) if rows else self.serving_now()

    def orphans(self, *, settled: bool = False) -> list[str]:
        """Objects nobody accounts for: a pool whose size is not the sum of its claims, a Deployment with more
        replicas than its app's claim can hold, (once settled) nodes beyond a pool's size."""
        problems = []
        opts = self.cluster.options
        mds = _items(
            lambda **kw: client.CustomObjectsApi(self.raw).list_namespaced_custom_object(
                CAPI_GROUP, opts.capi_version, opts.pool_namespace, "machinedeployments", **kw
            )
        )
        claims: dict[tuple[str, str], int] = {}
        for md in mds:
            name, notes = md["metadata"]["name"], md["metadata"].get("annotations") or {}
            mine = {k[len(CLAIM_PREFIX) :]: int(v) for k, v in notes.items() if k.startswith(CLAIM_PREFIX)}
            claims.update({(a, name): n for a, n in mine.items()})
            if int(md["spec"].get("replicas") or 0) != sum(mine.values()):
                problems.append(f"pool {name}: replicas {md['spec'].get('replicas')} != claims {mine}")
            nodes = len(self.controllers.nodes.get(name, []))
            if settled and nodes != int(md["spec"].get("replicas") or 0):
                problems.append(f"pool {name}: {nodes} nodes for replicas {md['spec'].get('replicas')}")
        deps = _items(
            lambda **kw: client.AppsV1Api(self.raw).list_namespaced_deployment(
                opts.namespace, label_selector="=".join(MANAGED_BY), **kw
            )
        )
        for dep in deps:
            labels = dep["metadata"]["labels"]
            rpn = int(dep["metadata"]["annotations"]["prescale.io/replicas-per-node"])
            held = claims.get((labels[LABEL_APP], labels[LABEL_POOL]), 0)
            if dep["spec"]["replicas"] > held * rpn:
                problems.append(
                    f"deployment {dep['metadata']['name']}: {dep['spec']['replicas']} replicas on "
                    f"{held} claimed node(s)"
                )
        return problems

    def converged(self, target: dict[str, int]) -> list[str]:
        """Differences between what runs and ``target`` (empty: converged)."""
        state = self.cluster.observe()
        problems = []
        held = {t: h.nodes for t, h in state.holdings(APP).items() if h.nodes}
        if held != target:
            problems.append(f"claims {held} != target {target}")
        for name, nodes in target.items():
            work = state.workload(APP, name)
            want = nodes * placement(self.catalog[name], self.profile).replicas_per_node
            if work is None or work.desired != want or work.ready != want:
                problems.append(f"workload on {name}: {work} (want {want} ready)")
        extra = [w for w in state.workloads if w.app == APP and w.rtype not in target]
        if extra:
            problems.append(f"left-over workloads {extra}")
        if not self.plan(target).noop:
            problems.append("a further plan is not a no-op")
        return problems

    def holds_ok(self, floor: tuple[float, ...], since: float) -> bool:
        return at_least(self.lowest_since(since), floor)


@contextmanager
def emulated_rig(catalog: Catalog, profile: AppProfile, **options: Any) -> Iterator[Rig]:
    """The emulator on 127.0.0.1 with the example objects, the controllers and the backend."""
    api = KubeAPI()
    server = EmulatorThread(api)
    url = server.start()
    try:
        backend_api = api_client(client.Configuration(host=url))
        player_api = _player(client.Configuration(host=url))
        yield _assemble(catalog, profile, backend_api, player_api, namespace="prescale", api=api, **options)
    finally:
        server.stop()


@contextmanager
def real_rig(catalog: Catalog, profile: AppProfile, kubeconfig: str, **options: Any) -> Iterator[Rig]:
    """The same rig on the cluster in ``kubeconfig``, in a throwaway namespace (deleted afterwards)."""
    cfg = client.Configuration()
    config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
    namespace = f"prescale-test-{uuid.uuid4().hex[:8]}"
    backend_api, player_api = api_client(copy.copy(cfg)), _player(copy.copy(cfg))
    _install_crds(player_api)
    core = client.CoreV1Api(player_api)
    core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    rig = None
    try:
        rig = _assemble(catalog, profile, backend_api, player_api, namespace=namespace, **options)
        yield rig
    finally:
        for nodes in rig.controllers.nodes.values() if rig else []:
            for node in nodes:
                _ignore_missing(lambda n=node: core.delete_node(n.name))
        core.delete_namespace(namespace)


def _assemble(
    catalog: Catalog,
    profile: AppProfile,
    backend_api: client.ApiClient,
    player_api: client.ApiClient,
    *,
    namespace: str,
    api: KubeAPI | None = None,
    retries: int = 3,
    request_timeout: float = 5.0,
    max_step_nodes: int = 10,
    deadline: float = 600.0,
) -> Rig:
    clock = VirtualClock()
    lead = {t.pool.name: t.lead_time_seconds for t in catalog}
    serves = {
        (APP, t.pool.name): placement(t, profile).serves_per_replica
        for t in catalog
        if profile.incompatibility(t) is None
    }
    controllers = Controllers(
        player_api, namespace=namespace, pool_namespace=namespace, lead_seconds=lead, serves=serves
    )
    clock.on_sleep.append(controllers.tick)
    options = KubeOptions(
        namespace=namespace,
        pool_namespace=namespace,
        retries=retries,
        backoff_seconds=2.0,
        backoff_max_seconds=8.0,
        request_timeout_seconds=request_timeout,
        poll_seconds=30.0,
    )
    cluster = KubernetesCluster(backend_api, catalog, options=options, clock=clock.time, sleep=clock.sleep)
    _load_examples(player_api, namespace)
    controllers.tick(clock.now)
    rails = Guardrails(max_step_nodes=max_step_nodes, min_nodes=1, rollout_deadline_seconds=deadline)
    return Rig(
        cluster=cluster,
        controllers=controllers,
        clock=clock,
        catalog=catalog,
        profile=profile,
        guardrails=rails,
        namespace=namespace,
        api=api,
        raw=player_api,
    )


def _player(cfg: client.Configuration) -> client.ApiClient:
    cfg.retries = False
    api = client.ApiClient(cfg)
    api.user_agent = "test-controllers"
    return api


def _load_examples(api: client.ApiClient, namespace: str) -> None:
    """Create the example node pools, template and Service from infra/kubernetes in ``namespace``."""
    custom, apps, core = client.CustomObjectsApi(api), client.AppsV1Api(api), client.CoreV1Api(api)
    for path in (INFRA / "nodepools" / "machinedeployments.yaml", INFRA / "apps" / "inference.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc:
                continue
            doc["metadata"]["namespace"] = namespace
            kind = doc["kind"]
            if kind == "MachineDeployment":
                group, version = doc["apiVersion"].split("/")
                custom.create_namespaced_custom_object(
                    group, version, namespace, "machinedeployments", doc, _preload_content=False
                )
            elif kind == "Deployment":
                apps.create_namespaced_deployment(namespace, doc, _preload_content=False)
            elif kind == "Service":
                core.create_namespaced_service(namespace, doc, _preload_content=False)


def _install_crds(api: client.ApiClient) -> None:
    ext = client.ApiextensionsV1Api(api)
    for doc in yaml.safe_load_all(CRDS.read_text()):
        try:
            ext.create_custom_resource_definition(doc, _preload_content=False)
        except client.ApiException as exc:
            if exc.status != 409:
                raise
    time.sleep(2)  # a real API server serves a new CRD a moment after accepting it


def _items(fn) -> list[dict[str, Any]]:
    resp = fn(_preload_content=False)
    return json.loads(resp.data)["items"]


def _ignore_missing(fn) -> None:
    try:
        fn()
    except client.ApiException as exc:
        if exc.status != 404:
            raise
