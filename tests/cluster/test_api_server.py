"""The API server the backend tests rely on behaves like the real one (kmock subclass; or -m real_cluster).

Each test speaks to it with the official client over HTTP. The fault tests need the emulator.
"""

from __future__ import annotations

import json

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.cluster.kube_api import Fault

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"


def _data(resp) -> dict:
    return json.loads(resp.data)


def _deployment(name: str, *, labels: dict | None = None) -> dict:
    pod_labels = {"app.kubernetes.io/name": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": pod_labels},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]},
            },
        },
    }


def test_create_answers_201_with_versions(rig):
    apps = client.AppsV1Api(rig.raw)
    resp = apps.create_namespaced_deployment_with_http_info(rig.namespace, _deployment("made"), _preload_content=False)
    assert resp.status == 201
    made = _data(resp)
    assert made["metadata"]["resourceVersion"] and made["metadata"]["uid"] and made["metadata"]["generation"] == 1
    with pytest.raises(ApiException) as exc:
        apps.create_namespaced_deployment(rig.namespace, _deployment("made"))
    assert exc.value.status == 409


def test_a_stale_resource_version_is_a_409_and_spec_changes_bump_the_generation(rig):
    apps = client.AppsV1Api(rig.raw)
    apps.create_namespaced_deployment(rig.namespace, _deployment("versioned"), _preload_content=False)
    first = _data(apps.read_namespaced_deployment("versioned", rig.namespace, _preload_content=False))
    rv = first["metadata"]["resourceVersion"]
    body = {"metadata": {"resourceVersion": rv, "annotations": {"a": "1"}}}
    second = _data(
        apps.patch_namespaced_deployment("versioned", rig.namespace, body, _content_type=MERGE, _preload_content=False)
    )
    assert second["metadata"]["resourceVersion"] != rv
    assert second["metadata"]["generation"] == first["metadata"]["generation"], "metadata is not spec"
    with pytest.raises(ApiException) as exc:
        apps.patch_namespaced_deployment(
            "versioned", rig.namespace, {**body, "spec": {"replicas": 3}}, _content_type=MERGE
        )
    assert exc.value.status == 409
    fresh = {"metadata": {"resourceVersion": second["metadata"]["resourceVersion"]}, "spec": {"replicas": 3}}
    third = _data(
        apps.patch_namespaced_deployment("versioned", rig.namespace, fresh, _content_type=MERGE, _preload_content=False)
    )
    assert third["metadata"]["generation"] == first["metadata"]["generation"] + 1


def test_label_selectors_filter_lists(rig):
    apps = client.AppsV1Api(rig.raw)
    for name, labels in (("sel-a", {"tier": "a", "x": "1"}), ("sel-b", {"tier": "b"}), ("sel-c", {"tier": "c"})):
        apps.create_namespaced_deployment(rig.namespace, _deployment(name, labels=labels), _preload_content=False)

    def names(selector: str) -> set[str]:
        items = _data(apps.list_namespaced_deployment(rig.namespace, label_selector=selector, _preload_content=False))[
            "items"
        ]
        return {i["metadata"]["name"] for i in items if i["metadata"]["name"].startswith("sel-")}

    assert names("tier=a") == {"sel-a"}
    assert names("tier in (a,b)") == {"sel-a", "sel-b"}
    assert names("tier notin (a,b),tier") == {"sel-c"}
    assert names("tier!=a,tier") == {"sel-b", "sel-c"}
    assert names("x") == {"sel-a"} and names("!x,tier") == {"sel-b", "sel-c"}


def test_scale_subresource_reads_and_writes_spec_replicas(rig):
    apps = client.AppsV1Api(rig.raw)
    apps.create_namespaced_deployment(rig.namespace, _deployment("scaled"), _preload_content=False)
    scale = _data(apps.read_namespaced_deployment_scale("scaled", rig.namespace, _preload_content=False))
    assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 1
    body = {"metadata": {"resourceVersion": scale["metadata"]["resourceVersion"]}, "spec": {"replicas": 4}}
    apps.patch_namespaced_deployment_scale("scaled", rig.namespace, body, _content_type=MERGE, _preload_content=False)
    assert (
        _data(apps.read_namespaced_deployment("scaled", rig.namespace, _preload_content=False))["spec"]["replicas"] == 4
    )
    with pytest.raises(ApiException) as exc:  # the same resourceVersion again is stale now
        apps.patch_namespaced_deployment_scale("scaled", rig.namespace, body, _content_type=MERGE)
    assert exc.value.status == 409
    md_scale = _data(
        client.CustomObjectsApi(rig.raw).get_namespaced_custom_object_scale(
            "cluster.x-k8s.io",
            "v1beta1",
            rig.namespace,
            "machinedeployments",
            "prescale-g6-xlarge",
            _preload_content=False,
        )
    )
    assert md_scale["spec"]["replicas"] == 0


def test_status_is_written_only_through_its_subresource(rig):
    apps = client.AppsV1Api(rig.raw)
    apps.create_namespaced_deployment(rig.namespace, _deployment("statused"), _preload_content=False)
    apps.patch_namespaced_deployment(
        "statused", rig.namespace, {"status": {"replicas": 7}}, _content_type=MERGE, _preload_content=False
    )
    dep = _data(apps.read_namespaced_deployment("statused", rig.namespace, _preload_content=False))
    assert (dep.get("status") or {}).get("replicas") != 7
    apps.patch_namespaced_deployment_status(
        "statused",
        rig.namespace,
        {"status": {"replicas": 7}, "spec": {"replicas": 9}},
        _content_type=MERGE,
        _preload_content=False,
    )
    dep = _data(apps.read_namespaced_deployment("statused", rig.namespace, _preload_content=False))
    assert dep["status"]["replicas"] == 7 and dep["spec"]["replicas"] == 1


def test_a_strategic_merge_patch_on_a_custom_resource_is_refused(rig):
    custom = client.CustomObjectsApi(rig.raw)
    with pytest.raises(ApiException) as exc:
        custom.patch_namespaced_custom_object(
            "cluster.x-k8s.io",
            "v1beta1",
            rig.namespace,
            "machinedeployments",
            "prescale-g6-xlarge",
            {"spec": {"replicas": 1}},
            _content_type=STRATEGIC,
        )
    assert exc.value.status == 415


def test_delete_honours_a_resource_version_precondition(rig):
    apps = client.AppsV1Api(rig.raw)
    made = _data(apps.create_namespaced_deployment(rig.namespace, _deployment("doomed"), _preload_content=False))
    apps.patch_namespaced_deployment(
        "doomed", rig.namespace, {"spec": {"replicas": 2}}, _content_type=MERGE, _preload_content=False
    )
    stale = client.V1DeleteOptions(
        preconditions=client.V1Preconditions(resource_version=made["metadata"]["resourceVersion"])
    )
    with pytest.raises(ApiException) as exc:
        apps.delete_namespaced_deployment("doomed", rig.namespace, body=stale)
    assert exc.value.status == 409
    apps.delete_namespaced_deployment("doomed", rig.namespace, _preload_content=False)
    with pytest.raises(ApiException) as exc:
        apps.read_namespaced_deployment("doomed", rig.namespace)
    assert exc.value.status == 404


# ------------------------------------------------------------------------------------ faults (emulator only)


@pytest.mark.parametrize("status", [pytest.param(s, id=str(s)) for s in (409, 429, 500)])
def test_an_injected_status_comes_before_the_write_is_stored(emulated, status):
    apps = client.AppsV1Api(emulated.raw)
    emulated.api.add_fault(Fault("POST", r"/deployments$", status=status, agent=""))
    with pytest.raises(ApiException) as exc:
        apps.create_namespaced_deployment(emulated.namespace, _deployment("faulted"))
    assert exc.value.status == status
    assert emulated.api.get("deployments", emulated.namespace, "faulted") is None
    if status == 429:
        assert exc.value.headers.get("Retry-After") == "1"
    apps.create_namespaced_deployment(emulated.namespace, _deployment("faulted"), _preload_content=False)
    assert emulated.api.get("deployments", emulated.namespace, "faulted") is not None


def test_a_concurrent_writer_makes_the_stale_write_a_real_conflict(emulated):
    apps = client.AppsV1Api(emulated.raw)
    made = _data(apps.create_namespaced_deployment(emulated.namespace, _deployment("raced"), _preload_content=False))
    emulated.api.add_fault(Fault("PATCH", r"/deployments/raced$", conflict=True, agent=""))
    body = {"metadata": {"resourceVersion": made["metadata"]["resourceVersion"]}, "spec": {"replicas": 5}}
    with pytest.raises(ApiException) as exc:
        apps.patch_namespaced_deployment("raced", emulated.namespace, body, _content_type=MERGE)
    assert exc.value.status == 409
    stored = emulated.api.get("deployments", emulated.namespace, "raced")
    assert stored["spec"]["replicas"] == 1 and stored["metadata"]["annotations"]["test/touched-by"] == "someone-else"


def test_a_delayed_answer_times_out_with_the_write_done(emulated):
    apps = client.AppsV1Api(emulated.raw)
    emulated.api.add_fault(Fault("POST", r"/deployments$", delay=1.0, agent=""))
    with pytest.raises(Exception) as exc:  # urllib3's ReadTimeoutError (retries are off)
        apps.create_namespaced_deployment(emulated.namespace, _deployment("late"), _request_timeout=0.3)
    assert "timed out" in str(exc.value).lower()
    assert emulated.api.get("deployments", emulated.namespace, "late") is not None


def test_an_undeclared_resource_is_a_404(emulated):
    custom = client.CustomObjectsApi(emulated.raw)
    with pytest.raises(ApiException) as exc:
        custom.list_namespaced_custom_object("cluster.x-k8s.io", "v1alpha9", emulated.namespace, "machinedeployments")
    assert exc.value.status == 404
