"""infra/prefect + infra/kubernetes/worker: the Kubernetes work pool, its worker and its deployments agree.

The job template is checked against prefect-kubernetes itself: it must keep every key of the worker type's
default template and every variable's schema (only defaults and descriptions change), pass the checks the
Prefect server runs when a pool is created (placeholders declared, defaults valid) and, rendered by the
worker's own code from its defaults (``KubernetesWorkerJobConfiguration``, as for a real flow run), give a Job
that ``kubernetes-validate`` accepts in strict mode. The worker's manifests are validated the same way as the
rest of infra/kubernetes (``tests/cluster/test_manifests.py``), then compared with the template: one pool, one
namespace, one API URL, one Prefect version. ``prefect.kubernetes.yaml`` must stay ``prefect.yaml`` with
another work pool.

What this cannot check here: that the images exist, and the worker against a real API server (its RBAC is
compared with the calls prefect-kubernetes makes, listed below, not recorded from a run).
"""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml
from prefect.client.schemas.objects import FlowRun
from prefect.server.schemas.actions import validate_base_job_template
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.utilities.schema_tools import ValidationError, is_valid_schema, validate
from prefect_kubernetes.worker import KubernetesWorker, KubernetesWorkerJobConfiguration

from tests.cluster.test_manifests import KUBERNETES_VERSION, _docs

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "infra" / "prefect" / "kubernetes-job-template.json"
DEPLOYMENTS = REPO / "infra" / "prefect" / "prefect.kubernetes.yaml"
HELM_VALUES = REPO / "infra" / "prefect" / "helm-values.yaml"
KUBERNETES = REPO / "infra" / "kubernetes"
WORKER = KUBERNETES / "worker"
WORKER_MANIFESTS = sorted(WORKER.glob("*.yaml"))
POOL = "prescale-k8s"

# Where prefect-kubernetes requires them (its `_get_base_job_manifest`), though they are Job fields, not pod
# fields: the worker rejects a template without them; Kubernetes drops them. Validated without them.
UPSTREAM_POD_SPEC_EXTRAS = ("parallelism", "completions")

# What the worker does to the cluster (prefect_kubernetes.worker and .observer, 0.8): create a Job per flow
# run and delete it to cancel; the observer (kopf, namespaced) lists and watches Jobs and pods, reads a Job
# and a crashed pod's log, and posts Events.
WORKER_NEEDS = {
    ("batch", "jobs", "create"), ("batch", "jobs", "delete"), ("batch", "jobs", "get"),
    ("batch", "jobs", "list"), ("batch", "jobs", "watch"),
    ("", "pods", "list"), ("", "pods", "watch"), ("", "pods/log", "get"), ("", "events", "create"),
}  # fmt: skip


def _template() -> dict:
    return json.loads(TEMPLATE.read_text())


def _default() -> dict:
    return KubernetesWorker.get_default_base_job_template()


def _worker_docs() -> list[tuple[str, dict]]:
    docs = [(p, d) for p in WORKER_MANIFESTS for d in _docs(p)]
    return [(f"{p.relative_to(REPO)}:{d['kind']}/{d['metadata']['name']}", d) for p, d in docs]


def _worker(kind: str) -> dict:
    return next(d for _, d in _worker_docs() if d["kind"] == kind)


def _render(template: dict, values: dict | None = None) -> dict:
    """The Job the worker submits for a flow run: the worker's own templating and preparation.

    A dead API URL keeps Prefect from starting a temporary server: nothing here needs one.
    """
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        config = asyncio.run(KubernetesWorkerJobConfiguration.from_template_and_values(template, values or {}))
        config.prepare_for_flow_run(FlowRun(flow_id=uuid.uuid4(), name="test-run"))
    return config.job_manifest


def _container_env(job: dict) -> dict[str, str]:
    container = job["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value") for e in container["env"]}


def _key_paths(node, prefix=()) -> set[tuple]:
    if isinstance(node, dict):
        return {prefix + (k,) for k in node} | {p for k, v in node.items() for p in _key_paths(v, prefix + (k,))}
    if isinstance(node, list):
        return {p for i, v in enumerate(node) for p in _key_paths(v, prefix + (i,))}
    return set()


def _validate_job(job: dict) -> None:
    job = copy.deepcopy(job)
    pod = job["spec"]["template"]["spec"]
    for field in UPSTREAM_POD_SPEC_EXTRAS:
        assert pod.pop(field) == 1, f"prefect-kubernetes expects pod spec {field}: 1"
    kubernetes_validate.validate(job, KUBERNETES_VERSION, strict=True)


# -- the job template --------------------------------------------------------------------------------------------


def test_the_template_keeps_every_key_of_the_default():
    ours, default = _template()["job_configuration"], _default()["job_configuration"]
    missing = _key_paths(default) - _key_paths(ours)
    assert not missing, f"keys of prefect-kubernetes' default template missing from {TEMPLATE.name}: {sorted(missing)}"


def test_the_template_keeps_every_variable_of_the_default():
    ours, default = _template()["variables"], _default()["variables"]
    assert ours["type"] == default["type"] and ours["definitions"] == default["definitions"]
    assert ours["properties"].keys() == default["properties"].keys()
    for name, schema in default["properties"].items():
        mine = {k: v for k, v in ours["properties"][name].items() if k not in ("default", "description")}
        theirs = {k: v for k, v in schema.items() if k not in ("default", "description")}
        assert mine == theirs, f"variable {name!r}: its schema changed"


def test_the_variables_are_valid_json_schema_with_valid_defaults():
    variables = _template()["variables"]
    jsonschema.validators.validator_for(variables).check_schema(variables)
    is_valid_schema(variables, preprocess=False)  # what the server runs before validating job variables
    defaults = {k: p["default"] for k, p in variables["properties"].items() if "default" in p}
    jsonschema.validate(defaults, variables)
    assert validate(defaults, variables, raise_on_error=True, ignore_required=True, allow_none_with_default=True) == []
    validate_base_job_template(_template())  # every placeholder is a declared variable


def test_a_bad_default_or_an_undeclared_placeholder_is_caught():
    template = _template()
    template["variables"]["properties"]["backoff_limit"]["default"] = -1
    defaults = {k: p["default"] for k, p in template["variables"]["properties"].items() if "default" in p}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(defaults, template["variables"])
    template = _template()
    template["job_configuration"]["job_manifest"]["spec"]["activeDeadlineSeconds"] = "{{ deadline }}"
    with pytest.raises(ValueError, match="deadline"):
        validate_base_job_template(template)


def test_the_job_of_a_flow_run_is_valid_kubernetes():
    job = _render(_template())
    _validate_job(job)
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert job["metadata"]["namespace"] == "prescale"
    assert pod["serviceAccountName"] == "prescale"
    assert container["resources"]["requests"] == {"cpu": "1", "memory": "2Gi"}
    assert container["resources"]["limits"] == {"cpu": "2", "memory": "4Gi"}
    assert container["args"][:3] == ["prefect", "flow-run", "execute"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    env = _container_env(job)
    assert env["PRESCALE_CLUSTER__BACKEND"] == "kubernetes"
    for setting in ("PRESCALE_STORE__ROOT", "PRESCALE_STORE__QUARANTINE", "PRESCALE_ORCHESTRATE__LEDGER",
                    "PRESCALE_FORECAST__PHASE_REPORTS"):
        assert env[setting].startswith("s3://"), f"{setting}: a flow-run pod keeps nothing; it goes to object storage"
    assert urlsplit(env["PRESCALE_REGISTRY__TRACKING_URI"]).scheme == "http"
    assert env["PRESCALE_REPO"] == "/opt/prescale"  # where prefect.yaml's pull step runs, in the image
    pool_env = _template()["variables"]["properties"]["env"]["default"]
    assert not [n for n in pool_env if "SECRET" in n or "PASSWORD" in n], "secrets belong in the Secret (envFrom)"


def test_a_broken_job_is_caught():
    job = _render(_template())
    job["spec"]["replicas"] = 2  # not a Job field
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate_job(job)
    job = _render(_template())
    job["spec"]["template"]["spec"]["restartPolicy"] = 7
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate_job(job)


def test_deployment_job_variables_override_the_defaults_and_add_to_the_env():
    job = _render(_template(), {"cpu_request": "2", "env": {"PRESCALE_FORECAST__THREADS": "2"}})
    _validate_job(job)
    assert job["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "2"
    env = _container_env(job)
    assert env["PRESCALE_FORECAST__THREADS"] == "2"
    assert env["PRESCALE_CLUSTER__BACKEND"] == "kubernetes", "a deployment's env must not drop the pool's env"


# -- the deployments on the pool -----------------------------------------------------------------------------------


def _deployment_files() -> tuple[dict, dict]:
    return yaml.safe_load((REPO / "prefect.yaml").read_text()), yaml.safe_load(DEPLOYMENTS.read_text())


def test_the_kubernetes_deployments_are_prefect_yaml_on_another_pool():
    local, k8s = _deployment_files()
    assert k8s["prefect-version"] == local["prefect-version"] and k8s["pull"] == local["pull"]
    assert [d["name"] for d in k8s["deployments"]] == [d["name"] for d in local["deployments"]]
    for here, there in zip(local["deployments"], k8s["deployments"], strict=True):
        same = {k: v for k, v in there.items() if k != "work_pool"}
        assert same == {k: v for k, v in here.items() if k != "work_pool"}, f"{here['name']} differs"
        assert there["work_pool"]["name"] == POOL


@pytest.mark.parametrize("deployment", yaml.safe_load(DEPLOYMENTS.read_text())["deployments"], ids=lambda d: d["name"])
def test_the_job_variables_of_each_deployment_are_valid(deployment):
    job_variables = deployment["work_pool"].get("job_variables", {})
    variables = _template()["variables"]
    assert validate(job_variables, variables, raise_on_error=True, ignore_required=True) == []
    _validate_job(_render(_template(), job_variables))


def test_an_invalid_job_variable_is_caught():
    with pytest.raises(ValidationError):
        validate({"backoff_limit": "twice"}, _template()["variables"], raise_on_error=True, ignore_required=True)


# -- the worker --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("where", "doc"), [pytest.param(w, d, id=w) for w, d in _worker_docs()])
def test_every_worker_manifest_is_valid(where, doc):
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{where}: {exc.message} at {'.'.join(map(str, exc.path))}")


def test_the_kustomization_applies_the_worker():
    resources = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())["resources"]
    assert {KUBERNETES / r for r in resources} >= set(WORKER_MANIFESTS)


def test_the_worker_polls_the_pool_of_the_deployments():
    deployment = _worker("Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    argv = container["command"] + container.get("args", [])
    assert argv[:3] == ["prefect", "worker", "start"]
    assert argv[argv.index("--pool") + 1] == POOL and argv[argv.index("--type") + 1] == "kubernetes"
    assert "--no-create-pool-if-not-found" in argv, "a pool made by the worker would have the default template"
    assert {d["work_pool"]["name"] for d in _deployment_files()[1]["deployments"]} == {POOL}
    local_version = _deployment_files()[0]["prefect-version"]
    assert container["image"] == f"prefecthq/prefect:{local_version}-python3.11-kubernetes"


def test_the_worker_and_its_flow_runs_share_namespace_and_api():
    variables = _template()["variables"]["properties"]
    namespace = variables["namespace"]["default"]
    settings = _worker("ConfigMap")["data"]
    assert {d["metadata"]["namespace"] for _, d in _worker_docs()} == {namespace}
    assert settings["PREFECT_INTEGRATIONS_KUBERNETES_OBSERVER_NAMESPACES"] == namespace
    assert settings["PREFECT_API_URL"] == variables["env"]["default"]["PREFECT_API_URL"]
    pod = _worker("Deployment")["spec"]["template"]["spec"]
    assert pod["containers"][0]["envFrom"] == [{"configMapRef": {"name": _worker("ConfigMap")["metadata"]["name"]}}]
    assert pod["serviceAccountName"] == _worker("ServiceAccount")["metadata"]["name"]


def test_the_flow_runs_use_the_rbac_of_the_kubernetes_backend():
    account = _template()["variables"]["properties"]["service_account_name"]["default"]
    rbac = _docs(KUBERNETES / "rbac.yaml")
    assert any(d["kind"] == "ServiceAccount" and d["metadata"]["name"] == account for d in rbac)
    bindings = [d for d in rbac if d["kind"].endswith("Binding")]
    assert bindings and all({"kind": "ServiceAccount", "name": account, "namespace": "prescale"} in b["subjects"]
                            for b in bindings)  # fmt: skip


def test_the_worker_role_allows_exactly_what_the_worker_does():
    assert {d["kind"] for _, d in _worker_docs()} >= {"ServiceAccount", "Role", "RoleBinding"}
    assert not {"ClusterRole", "ClusterRoleBinding"} & {d["kind"] for _, d in _worker_docs()}
    rules = _worker("Role")["rules"]
    granted = {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    assert granted == WORKER_NEEDS
    binding = _worker("RoleBinding")
    assert binding["roleRef"]["name"] == _worker("Role")["metadata"]["name"]
    account = _worker("ServiceAccount")["metadata"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["name"], "namespace": "prescale"}]
    assert account["namespace"] == "prescale"


def test_the_helm_values_describe_the_same_worker():
    values = yaml.safe_load(HELM_VALUES.read_text())
    worker, deployment = values["worker"], _worker("Deployment")
    assert worker["apiConfig"] == "server"
    assert worker["config"]["workPool"] == POOL and worker["config"]["type"] == "kubernetes"
    assert worker["serverApiConfig"]["apiUrl"] == _worker("ConfigMap")["data"]["PREFECT_API_URL"]
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert f"{worker['image']['repository']}:{worker['image']['prefectTag']}" == image
    env = {e["name"]: e["value"] for e in worker["extraEnvVars"]}
    assert env["PREFECT_INTEGRATIONS_KUBERNETES_OBSERVER_NAMESPACES"] == "prescale"
