"""Names at the cluster boundary: an invalid app, pool or namespace name is refused before it is written.

``apply --app ../../x`` or ``Bad_App`` must never become a key of the simulated cluster's state, nor a
Kubernetes object name, label or annotation; a catalog pool name that is no valid Kubernetes name is
refused too (it names an existing MachineDeployment, so it is not rewritten into another name).
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from kubernetes import client

from prescale.cluster import ClusterError, ClusterUnavailable, FaultEvent, Guardrails, PlanError, SimulatedCluster
from prescale.cluster import make_plan as plan_of
from prescale.cluster.kubernetes import KubeOptions, KubernetesCluster, api_client, workload_name
from prescale.cluster.plan import placement

CPU = "c7g.2xlarge"
BAD_APPS = [
    pytest.param("../../x", id="traversal"),
    pytest.param("Bad_App", id="upper-case-and-underscore"),
    pytest.param("web/../../ledger/app=web", id="traversal-into-the-ledger"),
    pytest.param("", id="empty"),
    pytest.param("a" * 64, id="64-characters"),
    pytest.param("-web", id="leading-dash"),
    pytest.param("9web", id="leading-digit"),
    pytest.param("web.", id="dot"),
]


@pytest.mark.parametrize("app", BAD_APPS)
def test_make_plan_refuses_an_invalid_app_name(catalog, profile, app):
    with pytest.raises(PlanError, match="is not a valid"):
        plan_of(app, {}, {CPU: 1}, catalog=catalog, profile=profile, guardrails=Guardrails())


def test_a_plan_cannot_be_built_for_an_invalid_app_name(catalog, profile):
    plan = plan_of("web", {}, {CPU: 1}, catalog=catalog, profile=profile, guardrails=Guardrails())
    with pytest.raises(PlanError, match="'Bad_App' is not a valid"):
        replace(plan, app="Bad_App")


@pytest.mark.parametrize("app", BAD_APPS)
def test_the_simulated_cluster_writes_no_invalid_app_name(tmp_path, catalog, profile, app):
    path = tmp_path / "state.json"
    sim = SimulatedCluster.open(path, catalog)
    place = placement(catalog[CPU], profile)
    writes = [
        lambda: sim.set_nodes(app, place, 1),
        lambda: sim.set_replicas(app, place, 1),
        lambda: sim.cleanup(app, place),
    ]
    if app:  # to a hold and a scheduled fault, no app ("") means the whole pool
        writes += [
            lambda: sim.hold("pods-never-ready", CPU, app=app),
            lambda: sim.schedule([FaultEvent(at=1.0, kind="preempt", rtype=CPU, app=app)]),
        ]
    for write in writes:
        with pytest.raises(ClusterError, match="is not a valid"):
            write()
    sim.save()
    world = json.loads(path.read_text())["world"]
    assert (world["claims"], world["workloads"], world["holds"], world["schedule"]) == ({}, {}, [], [])


def test_the_simulated_cluster_refuses_a_type_its_catalog_lacks(catalog, profile):
    sim = SimulatedCluster(catalog)
    gone = replace(placement(catalog[CPU], profile), rtype="x9.huge")
    for write in (
        lambda: sim.set_nodes("web", gone, 1),
        lambda: sim.set_replicas("web", gone, 1),
        lambda: sim.hold("nodes-never-ready", "x9.huge"),
        lambda: sim.schedule([FaultEvent(at=1.0, kind="preempt", rtype="x9.huge")]),
    ):
        with pytest.raises(ClusterError, match="no type 'x9.huge'"):
            write()


@pytest.fixture
def nowhere(catalog):
    """A Kubernetes backend whose API server does not exist: a name check must refuse before any request."""
    cfg = client.Configuration()
    cfg.host = "http://127.0.0.1:9"
    return KubernetesCluster(api_client(cfg), catalog, options=KubeOptions(retries=0), sleep=lambda _: None)


@pytest.mark.parametrize("app", BAD_APPS)
def test_kubernetes_names_refuse_an_invalid_app_name_before_any_request(nowhere, catalog, profile, app):
    place = placement(catalog[CPU], profile)
    template = {"metadata": {"name": "t"}, "spec": {"selector": {"matchLabels": {"a": "b"}}}}
    for write in (
        lambda: workload_name(app, place.pool),
        lambda: nowhere.set_nodes(app, place, 1),
        lambda: nowhere.set_replicas(app, place, 1),
        lambda: nowhere.cleanup(app, place),
        lambda: nowhere.render_workload(app, place, template, replicas=1),
    ):
        with pytest.raises(ClusterError, match="is not a valid") as caught:
            write()
        assert not isinstance(caught.value, ClusterUnavailable)


@pytest.mark.parametrize(
    "pool",
    [
        pytest.param("prescale-Standard_D4s_v5", id="azure-type-name"),
        pytest.param("prescale-m7i.xlarge", id="dot"),
        pytest.param("p" * 64, id="64-characters"),
        pytest.param("../pools", id="traversal"),
        pytest.param("pool-", id="trailing-dash"),
    ],
)
def test_kubernetes_refuses_a_pool_name_that_is_no_valid_name_or_label(nowhere, catalog, profile, pool):
    place = replace(placement(catalog[CPU], profile), pool=pool)
    template = {"metadata": {"name": "t"}, "spec": {"selector": {"matchLabels": {"a": "b"}}}}
    for write in (
        lambda: workload_name("web", pool),
        lambda: nowhere.set_nodes("web", place, 1),
        lambda: nowhere.set_replicas("web", place, 1),
        lambda: nowhere.render_workload("web", place, template, replicas=1),
    ):
        with pytest.raises(ClusterError, match="node pool name .* is not a valid Kubernetes name") as caught:
            write()
        assert not isinstance(caught.value, ClusterUnavailable)


def test_every_catalog_pool_is_a_valid_kubernetes_name(catalog):
    for rtype in catalog:
        assert workload_name("a" * 63, rtype.pool.name).endswith(rtype.pool.name)


@pytest.mark.parametrize("field", ["namespace", "pool_namespace"])
def test_kubernetes_refuses_a_namespace_that_is_no_valid_name(field):
    with pytest.raises(ClusterError, match="namespace .*'../x' is not a valid Kubernetes name"):
        KubeOptions(**{field: "../x"})
