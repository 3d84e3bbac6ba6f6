"""infra/compose: the single-host stack is a valid Compose file, and its services agree with each other.

The file is validated, after interpolation with ``.env.example``, against the Compose Specification's JSON
schema as check-jsonschema ships it (``check_jsonschema/builtin_schemas/vendor/compose-spec.json``, from the
compose-spec project, Apache-2.0). The schema cannot see what ties services together, so the rest is checked
by hand: every dependency exists and waits for a real signal (a healthcheck, or a one-shot's exit), Prefect
and MLflow connect to the roles and databases the PostgreSQL init script creates with the passwords compose
gives it, every ``s3://`` bucket in use is one the bucket job creates, the clients reach the servers by their
service names and ports, MLflow keeps its host-header checks while allowing its clients, and published ports
neither collide nor leave the loopback interface.

What this cannot check without a Docker engine: that the images pull and the stack comes up.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
from importlib.resources import files
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml
from mlflow.server.security_utils import is_allowed_host_header

REPO = Path(__file__).resolve().parents[2]
COMPOSE_DIR = REPO / "infra" / "compose"
COMPOSE = COMPOSE_DIR / "compose.yaml"
ENV_EXAMPLE = COMPOSE_DIR / ".env.example"
INIT_SCRIPT = COMPOSE_DIR / "postgres" / "init-databases.sh"
INITDB = "/docker-entrypoint-initdb.d/"

_VARIABLE = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)


def _env_file(path: Path) -> dict[str, str]:
    lines = (line.strip() for line in path.read_text().splitlines())
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def _interpolate(value, env: dict[str, str]):
    """Compose's variable interpolation (``$$``, ``${X}``, ``${X:-d}``, ``${X-d}``, ``${X:?e}``, ``${X:+a}``)."""
    if isinstance(value, dict):
        return {k: _interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name") or match.group("bare"), match.group("op"), match.group("arg")
        current, unset = env.get(name), name not in env
        empty = unset or (op or "").startswith(":") and current == ""
        if op in (":-", "-"):
            return arg if empty else current
        if op in (":?", "?"):
            if empty:
                raise KeyError(f"{name}: {arg}")
            return current
        if op in (":+", "+"):
            return "" if empty else arg
        return current or ""

    return _VARIABLE.sub(one, value)


def _raw() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _compose() -> dict:
    return _interpolate(_raw(), _env_file(ENV_EXAMPLE))


def _services() -> dict[str, dict]:
    return _compose()["services"]


def _argv(service: dict) -> list[str]:
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else command


def _option(argv: list[str], name: str) -> str:
    assert name in argv, f"{name} missing from {argv}"
    return argv[argv.index(name) + 1]


def _schema() -> dict:
    return json.loads((files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json").read_text())


def _checks_health(service: dict) -> bool:
    check = service.get("healthcheck") or {}
    test = check.get("test") or ["NONE"]
    return not check.get("disable") and (test if isinstance(test, list) else [test])[0] != "NONE"


def _strings(node) -> list[str]:
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return [node] if isinstance(node, str) else []


# -- the Compose Specification ------------------------------------------------------------------------------------


def test_the_compose_file_follows_the_compose_specification():
    schema = _schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(_compose())]
    assert not errors


@pytest.mark.parametrize(
    "break_it",
    [
        pytest.param(lambda c: c["services"]["mlflow"].update(helthcheck={}), id="unknown-key"),
        pytest.param(lambda c: c["services"]["mlflow"]["depends_on"].update(db={"condition": "up"}), id="bad-wait"),
        pytest.param(lambda c: c["services"]["postgres"].update(ports="5432"), id="ports-not-a-list"),
    ],
)  # fmt: skip
def test_a_broken_compose_file_is_caught(break_it):
    broken = copy.deepcopy(_compose())
    break_it(broken)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, _schema())


def test_every_required_variable_is_in_the_env_example():
    required = {m.group("name") for m in _VARIABLE.finditer(COMPOSE.read_text()) if (m.group("op") or "").endswith("?")}
    assert required and required <= _env_file(ENV_EXAMPLE).keys()
    with pytest.raises(KeyError, match="POSTGRES_PASSWORD"):
        _interpolate(_raw(), {k: v for k, v in _env_file(ENV_EXAMPLE).items() if k != "POSTGRES_PASSWORD"})


# -- the services together ----------------------------------------------------------------------------------------


def test_every_dependency_exists_and_waits_for_a_real_signal():
    services = _services()
    for name, service in services.items():
        for target, dependency in service.get("depends_on", {}).items():
            assert target in services, f"{name} depends on {target}, which is not a service"
            condition = dependency["condition"]
            if condition == "service_healthy":
                assert _checks_health(services[target]), f"{name} waits for {target} to be healthy: no healthcheck"
            elif condition == "service_completed_successfully":
                assert services[target].get("restart", "no") == "no", f"{target} is waited for to exit: a one-shot"
            else:
                pytest.fail(f"{name} -> {target}: {condition} waits for nothing")
    long_running = [n for n, s in services.items() if s.get("restart", "no") != "no"]
    assert long_running and [n for n in long_running if not _checks_health(services[n])] == []


def test_the_servers_use_the_databases_the_init_script_creates():
    sql = INIT_SCRIPT.read_text()
    owners = dict(re.findall(r"CREATE DATABASE (\w+) OWNER (\w+);", sql))
    password_vars = dict(re.findall(r"CREATE ROLE (\w+) LOGIN PASSWORD :'(\w+)';", sql))
    shell_vars = dict(re.findall(r'-v (\w+)="\$(\w+)"', sql))
    assert set(owners) == {"prefect", "mlflow"} and set(owners.values()) <= set(password_vars)
    postgres = _services()["postgres"]
    assert any(v.startswith(f"./postgres/{INIT_SCRIPT.name}:{INITDB}") for v in postgres["volumes"])
    urls = {
        "prefect": _services()["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"],
        "mlflow": _services()["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"],
    }
    for name, service in _services().items():  # passwords never on a command line (ps, docker inspect)
        assert not any("postgresql" in arg for arg in _argv(service)), name
    assert urlsplit(urls["prefect"]).scheme == "postgresql+asyncpg"
    assert urlsplit(urls["mlflow"]).scheme == "postgresql"
    for server, url in urls.items():
        parts = urlsplit(url)
        database, user = parts.path.lstrip("/"), parts.username
        assert parts.hostname == "postgres" and parts.port == 5432, f"{server}: {url}"
        assert owners.get(database) == user, f"{server} connects to {database} as {user}: the script creates {owners}"
        assert parts.password == postgres["environment"][shell_vars[password_vars[user]]], f"{server}: password"


def test_every_bucket_in_use_is_created_by_the_bucket_job():
    script = "\n".join(_argv(_services()["buckets"]))
    mb_lines = [line for line in script.splitlines() if line.strip().startswith("mc mb")]
    created = {bucket for line in mb_lines for bucket in re.findall(r"store/([\w.-]+)", line)}
    used = {urlsplit(s).netloc for s in _strings(_services()) if s.startswith("s3://")}
    artifacts = _option(_argv(_services()["mlflow"]), "--artifacts-destination")
    assert artifacts.startswith("s3://") and urlsplit(artifacts).netloc in created
    assert used and used <= created, f"buckets used {sorted(used)}, created {sorted(created)}"
    assert "mc alias set store http://minio:9000" in script


def test_the_object_store_clients_use_minio_and_its_credentials():
    services = _services()
    minio = services["minio"]["environment"]
    expected = {"AWS_ACCESS_KEY_ID": minio["MINIO_ROOT_USER"], "AWS_SECRET_ACCESS_KEY": minio["MINIO_ROOT_PASSWORD"]}
    for name, endpoint_var in (("mlflow", "MLFLOW_S3_ENDPOINT_URL"), ("worker", "AWS_ENDPOINT_URL")):
        env = services[name]["environment"]
        assert expected.items() <= env.items(), name
        endpoint = urlsplit(env[endpoint_var])
        assert endpoint.hostname == "minio" and endpoint.port == 9000, name


def test_the_clients_reach_the_servers_by_service_name():
    services = _services()
    prefect_port = int(_option(_argv(services["prefect-server"]), "--port"))
    mlflow_port = int(_option(_argv(services["mlflow"]), "--port"))
    for client in ("prefect-deploy", "worker"):
        api = urlsplit(services[client]["environment"]["PREFECT_API_URL"])
        assert (api.hostname, api.port, api.path) == ("prefect-server", prefect_port, "/api"), client
    tracking = urlsplit(services["worker"]["environment"]["PRESCALE_REGISTRY__TRACKING_URI"])
    assert (tracking.hostname, tracking.port) == ("mlflow", mlflow_port)
    deploy = _services()["prefect-deploy"]["command"][-1]
    pool = _option(_argv(services["worker"]), "--pool")
    assert f"prefect work-pool create {pool} --type process" in deploy
    deployments = yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]
    assert {d["work_pool"]["name"] for d in deployments} == {pool}


def test_mlflow_keeps_its_host_checks_and_allows_its_clients():
    mlflow = _services()["mlflow"]
    argv = _argv(mlflow)
    assert "--disable-security-middleware" not in argv
    allowed = [h.strip() for h in _option(argv, "--allowed-hosts").split(",")]
    assert "*" not in allowed
    tracking = urlsplit(_services()["worker"]["environment"]["PRESCALE_REGISTRY__TRACKING_URI"]).netloc
    published = [p.split(":")[-2] for p in mlflow["ports"]]
    for host in [tracking, *(f"localhost:{p}" for p in published), *(f"127.0.0.1:{p}" for p in published)]:
        assert is_allowed_host_header(allowed, host), f"MLflow would refuse Host: {host}"
    assert not is_allowed_host_header(allowed, "attacker.example:5000")
    assert mlflow["environment"]["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert mlflow["environment"]["MLFLOW_DISABLE_TELEMETRY"] == "true"


def test_published_ports_do_not_collide_and_stay_on_loopback():
    published = []
    for name, service in _services().items():
        for port in service.get("ports", []):
            if isinstance(port, dict):
                host_ip, host_port, protocol = port.get("host_ip", ""), str(port["published"]), port.get("protocol")
            else:
                spec, _, protocol = str(port).partition("/")
                host_ip, host_port, _ = spec.rsplit(":", 2) if spec.count(":") == 2 else ("", *spec.split(":"))
            assert host_ip == "127.0.0.1", f"{name} publishes {port} beyond this host"
            published.append((host_port, protocol or "tcp", name))
    ports = [(p, proto) for p, proto, _ in published]
    assert len(ports) == len(set(ports)), f"published twice: {sorted(published)}"
    assert "postgres" not in {n for _, _, n in published}, "the database stays inside the compose network"


def test_the_worker_image_is_the_repository_at_prescale_repo():
    worker = _services()["worker"]
    build = worker["build"]
    dockerfile = (COMPOSE_DIR / build["context"] / build["dockerfile"]).resolve()
    assert (COMPOSE_DIR / build["context"]).resolve() == REPO and dockerfile.is_file()
    text = dockerfile.read_text()
    workdir = re.search(r"^WORKDIR (\S+)", text, re.M).group(1)
    assert re.search(rf"PRESCALE_REPO={re.escape(workdir)}\b", text), "prefect.yaml's pull step runs in PRESCALE_REPO"
    assert _services()["prefect-deploy"]["image"] == worker["image"]
