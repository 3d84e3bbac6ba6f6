"""infra/kubernetes: every manifest is valid, the node pools match the catalog, and RBAC is exactly what is used.

Built-in kinds are validated with ``kubernetes-validate`` (strict: unknown fields fail) against the OpenAPI
schema of a pinned Kubernetes version. The package has no schema for Cluster API's MachineDeployment or for
kustomize's Kustomization, so those are checked structurally: MachineDeployments against the schema of the
minimal Cluster API CRD the tests use (``crds/cluster-api-minimal.yaml``, itself validated as a built-in
CustomResourceDefinition), which keeps what Cluster API requires; the Kustomization by its keys and by
listing exactly the manifests of the folder.

RBAC is compared with the backend's real calls: a migration on the emulator records every request the
backend made (method, resource, subresource), and the Roles must allow each of them and nothing else.
"""

from __future__ import annotations

from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from prescale.catalog import LABEL_POOL
from tests.cluster.rig import START, TARGET, emulated_rig

KUBERNETES_VERSION = "1.33.0"
REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra" / "kubernetes"
CRDS = Path(__file__).resolve().parent / "crds" / "cluster-api-minimal.yaml"
MANIFESTS = sorted(p for p in INFRA.rglob("*.yaml") if p.name != "kustomization.yaml")


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _all_docs() -> list[tuple[str, dict]]:
    return [
        (f"{p.relative_to(REPO)}:{d['kind']}/{d['metadata']['name']}", d) for p in [*MANIFESTS, CRDS] for d in _docs(p)
    ]


def _crd_schema(kind: str) -> dict:
    crd = next(d for d in _docs(CRDS) if d["spec"]["names"]["kind"] == kind)
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


@pytest.mark.parametrize(("where", "doc"), [pytest.param(w, d, id=w) for w, d in _all_docs()])
def test_every_manifest_is_valid(where, doc):
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        assert doc["kind"] == "MachineDeployment", f"{where}: no schema and no structural check"
        jsonschema.validate(doc, _crd_schema("MachineDeployment"))
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{where}: {exc.message} at {'.'.join(map(str, exc.path))}")


def test_a_broken_manifest_is_caught():
    deployment = next(d for _, d in _all_docs() if d["kind"] == "Deployment")
    broken = {**deployment, "spec": {**deployment["spec"], "replicas": "zero"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)
    md = next(d for _, d in _all_docs() if d["kind"] == "MachineDeployment")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**md, "spec": {**md["spec"], "clusterName": ""}}, _crd_schema("MachineDeployment"))


def test_the_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((INFRA / "kustomization.yaml").read_text())
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kustomization["kind"] == "Kustomization"
    assert sorted(INFRA / r for r in kustomization["resources"]) == MANIFESTS


def test_node_pools_match_the_catalog(catalog):
    pools = [d for _, d in _all_docs() if d["kind"] == "MachineDeployment"]
    assert {
        catalog.get(d["spec"]["template"]["metadata"]["labels"]["node.kubernetes.io/instance-type"]).kind for d in pools
    } == {"cpu-vm", "gpu-vm", "fpga", "bare-metal"}
    by_pool = {t.pool.name: t for t in catalog}
    for md in pools:
        rtype = by_pool[md["metadata"]["name"]]
        labels = md["spec"]["template"]["metadata"]["labels"]
        assert rtype.pool.labels.items() <= labels.items(), md["metadata"]["name"]
        assert md["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert md["metadata"]["labels"][LABEL_POOL] == md["metadata"]["name"]
        assert md["spec"]["replicas"] == 0


def test_the_app_template_is_behind_its_service():
    docs = {d["kind"]: d for d in _docs(INFRA / "apps" / "inference.yaml")}
    template, service = docs["Deployment"], docs["Service"]
    assert template["spec"]["replicas"] == 0
    pod_labels = template["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert LABEL_POOL not in service["spec"]["selector"]


def test_rbac_allows_exactly_what_the_backend_does(catalog, profile):
    with emulated_rig(catalog, profile) as rig:
        rig.apply(START)
        rig.apply(TARGET)
        used = {_permission(r) for r in rig.api._requests if r.headers.get("User-Agent", "").startswith("prescale")}
    granted = set()
    for doc in _docs(INFRA / "rbac.yaml"):
        for rule in doc.get("rules", []):
            scope = "cluster" if doc["kind"] == "ClusterRole" else "namespace"
            granted |= {(scope, g, r, v) for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    assert used == granted


def test_rbac_binds_the_service_account(catalog):
    docs = _docs(INFRA / "rbac.yaml")
    roles = {(d["kind"], d["metadata"]["name"]) for d in docs if d["kind"] in ("Role", "ClusterRole")}
    bound = {(d["roleRef"]["kind"], d["roleRef"]["name"]) for d in docs if d["kind"].endswith("Binding")}
    assert roles == bound
    for binding in (d for d in docs if d["kind"].endswith("Binding")):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "prescale", "namespace": "prescale"}]


def _permission(request) -> tuple[str, str, str, str]:
    res = request.resource
    plural = res.plural + (f"/{request.subresource}" if request.subresource else "")
    method = str(request.method.value).upper()
    verb = {"POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}.get(method)
    if verb is None:
        verb = "get" if request.name else "list"
    return ("namespace" if request.namespace else "cluster", res.group, plural, verb)
