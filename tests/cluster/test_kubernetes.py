"""``KubernetesCluster`` over real HTTP: migration make-before-break, rendering, idempotence, shared pools, errors.

The controllers are played by the test (``controllers.py``) on a virtual clock, so a 330 s GPU boot takes
no wall time. Tests taking ``rig`` run on kmock's emulator and, with ``-m real_cluster``, on a real API server.
"""

from __future__ import annotations

import json

import pytest
from kubernetes import client

from prescale.catalog import LABEL_POOL
from prescale.cluster import ClusterError
from prescale.cluster.kubernetes import KubeOptions, KubernetesCluster, workload_name
from prescale.cluster.plan import at_least, placement
from tests.cluster.rig import APP, CPU, CPU_POOL, GPU, GPU_POOL, START, TARGET


def test_migration_from_cpu_to_gpu_never_drops_serving_capacity(rig):
    assert rig.apply(START).status == "applied"
    start, since = rig.serving_now(), rig.clock.now
    assert start == pytest.approx((52.8,))
    report = rig.apply(TARGET)
    assert report.status == "applied", report.detail
    assert [(o.step.action, o.step.rtype) for o in report.outcomes] == [
        ("provision", GPU),
        ("start", GPU),
        ("drain", CPU),
        ("release", CPU),
    ]
    assert at_least(rig.lowest_since(since), start), rig.lowest_since(since)
    assert report.serving_min == pytest.approx(start) and report.serving_end == pytest.approx((424.2,))
    assert rig.orphans() == [] and rig.converged(TARGET) == []


def test_the_gpu_workload_is_placed_on_its_pool_behind_the_one_service(rig):
    rig.apply(TARGET)
    dep = json.loads(
        client.AppsV1Api(rig.raw)
        .read_namespaced_deployment(workload_name(APP, GPU_POOL), rig.namespace, _preload_content=False)
        .data
    )
    pod = dep["spec"]["template"]
    assert pod["spec"]["nodeSelector"] == {LABEL_POOL: GPU_POOL}
    assert {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"} in pod["spec"][
        "tolerations"
    ]
    resources = pod["spec"]["containers"][0]["resources"]
    assert resources["requests"] == {"cpu": "2", "memory": "12Gi", "nvidia.com/gpu": "1"}
    assert resources["limits"] == {"nvidia.com/gpu": "1"}
    assert dep["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": APP, LABEL_POOL: GPU_POOL}
    svc = json.loads(client.CoreV1Api(rig.raw).read_namespaced_service(APP, rig.namespace, _preload_content=False).data)
    assert svc["spec"]["selector"].items() <= pod["metadata"]["labels"].items()


def test_a_rerun_writes_nothing(emulated):
    emulated.apply(TARGET)
    before = len(emulated.api.writes)
    report = emulated.apply(TARGET)
    assert report.status == "noop" and report.outcomes == ()
    assert emulated.api.writes[before:] == []


def test_an_explicit_scale_in_goes_no_lower_than_the_target(rig):
    rig.apply({CPU: 6})
    since = rig.clock.now
    plan = rig.plan({CPU: 2})
    assert plan.scale_in
    report = rig.cluster.apply(plan)
    assert report.status == "applied", report.detail
    assert report.floor == pytest.approx(plan.serving_after)
    assert at_least(rig.lowest_since(since), plan.serving_after)
    assert rig.converged({CPU: 2}) == []


def test_apps_share_a_pool_through_their_claims(emulated):
    other = "inference-b"
    _add_app(emulated, other)
    emulated.apply({CPU: 3})
    other_plan = _plan_for(emulated, other, {CPU: 2})
    assert emulated.cluster.apply(other_plan).status == "applied"
    md = emulated.api.get("machinedeployments", emulated.namespace, CPU_POOL)
    assert md["spec"]["replicas"] == 5
    assert emulated.apply({GPU: 1}).status == "applied"
    md = emulated.api.get("machinedeployments", emulated.namespace, CPU_POOL)
    assert md["spec"]["replicas"] == 2 and md["metadata"]["annotations"] == {"nodes.prescale.io/inference-b": "2"}
    assert emulated.cluster.observe().workload(other, CPU).ready == 2
    assert emulated.orphans() == []


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        pytest.param(
            lambda rig: rig.api.objects[
                ("cluster.x-k8s.io/v1beta1/machinedeployments", rig.namespace, GPU_POOL)
            ].delete(),
            f"no MachineDeployment prescale/{GPU_POOL}",
            id="no-node-pool",
        ),
        pytest.param(
            lambda rig: rig.api.objects[("apps/v1/deployments", rig.namespace, "inference-template")].delete(),
            "no template Deployment prescale/inference-template",
            id="no-template",
        ),
        pytest.param(
            lambda rig: rig.api.objects[("v1/services", rig.namespace, APP)].patch(
                {"spec": {"selector": {"app.kubernetes.io/name": "other"}}}
            ),
            "must be a non-empty subset",
            id="service-selects-other-pods",
        ),
        pytest.param(
            lambda rig: rig.api.objects[("apps/v1/deployments", rig.namespace, "inference-template")].patch(
                {"metadata": {"annotations": {"prescale.io/service": "../../x"}}}
            ),
            "Service in annotation prescale.io/service of template Deployment prescale/inference-template '../../x' is "
            "not a valid",
            id="service-annotation-not-a-name",
        ),
    ],
)
def test_missing_or_wrong_objects_fail_the_step_with_what_to_do(emulated, break_it, message):
    with emulated.api.lock:
        break_it(emulated)
    report = emulated.apply(TARGET)
    assert report.status == "failed"
    assert message in report.detail
    assert emulated.orphans() == []


def test_without_cluster_api_observe_says_what_to_install(emulated):
    cluster = KubernetesCluster(
        emulated.cluster._apps.api_client,
        emulated.catalog,
        options=KubeOptions(namespace="prescale", pool_namespace="prescale", capi_version="v1alpha9"),
    )
    with pytest.raises(ClusterError, match="install Cluster API"):
        cluster.observe()


def test_retry_after_is_honoured(emulated):
    from tests.cluster.kube_api import Fault

    emulated.api.add_fault(Fault("PATCH", rf"/machinedeployments/{GPU_POOL}$", status=429))
    before = emulated.clock.now
    emulated.cluster.set_nodes(APP, placement(emulated.catalog[GPU], emulated.profile), 1)
    assert emulated.cluster.retried == 1
    assert emulated.clock.now - before == pytest.approx(1.0)  # Retry-After: 1, not the backoff (2 s)
    assert emulated.api.get("machinedeployments", emulated.namespace, GPU_POOL)["spec"]["replicas"] == 1


def test_connect_reads_a_kubeconfig(emulated, tmp_path, catalog):
    host = emulated.cluster._apps.api_client.configuration.host
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "test",
                "clusters": [{"name": "emulator", "cluster": {"server": host}}],
                "users": [{"name": "me", "user": {"token": "not-checked"}}],
                "contexts": [{"name": "test", "context": {"cluster": "emulator", "user": "me"}}],
            }
        )
    )
    cluster = KubernetesCluster.connect(
        catalog,
        kubeconfig=kubeconfig,
        context="test",
        options=KubeOptions(namespace="prescale", pool_namespace="prescale"),
    )
    assert set(cluster.observe().pools) == {"c7g.2xlarge", "g6.xlarge", "vt1.3xlarge", "c7g.metal"}


def test_connect_without_a_kubeconfig_is_a_clear_error(tmp_path, catalog):
    with pytest.raises(ClusterError, match="PRESCALE_CLUSTER__KUBECONFIG"):
        KubernetesCluster.connect(catalog, kubeconfig=tmp_path / "missing")


def _add_app(rig, name: str) -> None:
    """A second app: copies of the example template and Service under another name."""
    apps, core = client.AppsV1Api(rig.raw), client.CoreV1Api(rig.raw)
    template = json.loads(
        apps.read_namespaced_deployment("inference-template", rig.namespace, _preload_content=False).data
    )
    labels = {"app.kubernetes.io/name": name, LABEL_POOL: "template"}
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"{name}-template", "annotations": {"prescale.io/service": name}},
        "spec": {
            **template["spec"],
            "selector": {"matchLabels": labels},
            "template": {**template["spec"]["template"], "metadata": {"labels": labels}},
        },
    }
    apps.create_namespaced_deployment(rig.namespace, body, _preload_content=False)
    core.create_namespaced_service(
        rig.namespace,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name},
            "spec": {"selector": {"app.kubernetes.io/name": name}, "ports": [{"port": 80}]},
        },
        _preload_content=False,
    )
    rig.controllers.serves[(name, CPU_POOL)] = placement(rig.catalog[CPU], rig.profile).serves_per_replica


def _plan_for(rig, app: str, target):
    from prescale.cluster import make_plan

    state = rig.cluster.observe()
    return make_plan(
        app,
        state.holdings(app),
        target,
        catalog=rig.catalog,
        profile=rig.profile.renamed(app),
        guardrails=rig.guardrails,
        others=state.others(app),
    )


@pytest.mark.parametrize(
    "claims, want",
    [
        pytest.param({"web": 3}, {"web": (-20.0, 60.0, 100.0)}, id="one-app-machine-times-then-full-lead"),
        pytest.param({"web": 2, "api": 1}, {}, id="shared-pool-untold"),
    ],
)
def test_booting_nodes_are_expected_at_their_machine_creation_plus_the_lead_time(claims, want):
    from prescale.cluster.kubernetes import CLAIM_PREFIX, pool_state

    def machine(created: str, phase: str) -> dict:
        return {"metadata": {"labels": {LABEL_POOL: "p"}, "creationTimestamp": created}, "status": {"phase": phase}}

    md = {"metadata": {"name": "p", "generation": 1, "annotations": {CLAIM_PREFIX + a: str(n) for a, n in
                                                                      claims.items()}},
          "spec": {"replicas": 3}, "status": {"replicas": 3, "readyReplicas": 0, "observedGeneration": 1}}
    machines = [machine("2026-01-01T00:00:00Z", "Provisioning"), machine("2026-01-01T00:01:20Z", "Pending"),
                machine("2025-12-31T00:00:00Z", "Failed")]
    now = 1767225600.0 + 120  # 2026-01-01T00:02:00Z
    state = pool_state(md, CPU, nodes=[], machines=machines, lead=100.0, now=now)
    assert dict(state.booting) == want
