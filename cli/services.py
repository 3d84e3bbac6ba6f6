"""Run the local control plane: Prefect server, MLflow server, a work pool, the deployments, a worker.

`prescale serve` is a small supervisor over the projects' own command-line tools,
started as child processes in this order, each waited for before the next:

1. ``prefect server start`` (SQLite under ``<home>/prefect``, or the PostgreSQL
   database of ``serve.prefect_database_url``), healthy when ``/api/health`` answers;
2. ``mlflow server`` (SQLite registry under ``<home>/mlflow``, or the database of
   ``serve.mlflow_backend_store_uri``; artifacts under ``<home>/mlflow``, or
   ``serve.mlflow_artifacts_destination`` such as ``s3://bucket/prefix``, which the
   server proxies so clients need no storage credentials; its host-header and CORS
   checks stay on), healthy when ``/health`` answers;
3. ``prefect work-pool create <pool> --type process --overwrite`` and
   ``prefect --no-prompt deploy --all`` (every deployment of ``prefect.yaml`` with
   its schedule);
4. ``prefect worker start --pool <pool>``, which runs the scheduled flow runs.

Production backends (docs/backends.md) reach only the child that needs them, by
environment, never on a command line (which any local user can read with ``ps``):
``PREFECT_SERVER_DATABASE_CONNECTION_URL`` for Prefect's server,
``MLFLOW_BACKEND_STORE_URI`` and ``MLFLOW_S3_ENDPOINT_URL`` for MLflow's. Progress
lines name each backend with its password masked (:func:`redact`).

Each long-lived child gets its own process group and a log file under
``<home>/logs``. Ctrl-C (SIGINT) or SIGTERM stops them in reverse order: SIGINT to
the group, then SIGTERM, then SIGKILL after a grace period. If a child dies on its
own, everything is stopped and the command exits non-zero with that child's log.

It imports neither Prefect nor MLflow: it only starts their programs.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from prescale.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


class ServiceError(RuntimeError):
    """A service did not start, or a setup command failed."""


class BackendConfigError(ValueError):
    """A production backend setting is malformed. The message never holds the value's password."""


@dataclass
class Service:
    name: str
    argv: list[str]
    health_url: str | None
    log: Path
    process: subprocess.Popen | None = None
    env: dict[str, str] = field(default_factory=dict, repr=False)  # for this child only (may hold secrets)
    about: str = ""  # what the progress line says after the name (secrets masked)


@dataclass
class ControlPlane:
    """The URLs and environment of a running control plane."""

    prefect_api: str
    prefect_ui: str
    mlflow_ui: str
    env: dict[str, str]
    services: list[Service] = field(default_factory=list)
    backends: dict[str, str] = field(default_factory=dict)  # Backends.describe(): passwords masked


# settings carrying a password: each reaches only the one server that needs it (Backends), never the rest
_SECRET_VARIABLES = ("PRESCALE_SERVE__PREFECT_DATABASE_URL", "PRESCALE_SERVE__MLFLOW_BACKEND_STORE_URI")


def control_plane_env(settings: Settings) -> dict[str, str]:
    """Environment for every child: Prefect and MLflow pointed at the local servers, no database URLs."""
    serve = settings.serve
    env = {k: v for k, v in os.environ.items() if k.upper() not in _SECRET_VARIABLES}
    env.update(
        {
            "PREFECT_HOME": str(settings.prefect.home),
            "PREFECT_API_URL": f"http://{serve.host}:{serve.prefect_port}/api",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_CLI_PROMPT": "false",
            "PRESCALE_HOME": str(settings.home),
            "PRESCALE_REPO": str(REPO_ROOT),
            "PRESCALE_REGISTRY__TRACKING_URI": f"http://{serve.host}:{serve.mlflow_port}",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }
    )
    return env


# ``password=`` up to the next ``&name=`` parameter or the end: a password holding ``&``, ``#`` or ``;`` stays masked.
_PASSWORD_PARAM = re.compile(r"(?i)([?&;]password=).*?(?=[&;][A-Za-z_][\w.-]*=|$)", re.S)


def redact(url: str) -> str:
    """``url`` with any password (``user:PASSWORD@host``, ``?password=...``) replaced by ``***``.

    Not through ``urlsplit``: a password holding an unencoded ``/``, ``#``, ``?`` or ``@`` ends its netloc
    early, and the rest of the password was printed as path or fragment. So the user information is
    everything between ``://`` and the *last* ``@`` (the host, port and database name hold none), and
    everything after the user name's first ``:`` in it is masked. Where the URL is ambiguous (an ``@`` in
    the query) this masks more than the password, never less.
    """
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if sep and at:
        user, colon, _password = userinfo.partition(":")
        if colon:
            url = f"{scheme}://{user}:***@{host}"
    return _PASSWORD_PARAM.sub(r"\1***", url)


@dataclass(frozen=True)
class Backends:
    """Where the servers keep their state: the embedded defaults, or the production backends of the settings."""

    prefect_database: str | None  # None: Prefect's own default (SQLite under PREFECT_HOME)
    mlflow_store: str
    mlflow_artifacts: str
    s3_endpoint: str | None

    def describe(self) -> dict[str, str]:
        """Each backend for people and logs: passwords masked."""
        return {
            "prefect_database": redact(self.prefect_database) if self.prefect_database else "sqlite (PREFECT_HOME)",
            "mlflow_backend_store": redact(self.mlflow_store),
            "mlflow_artifacts": self.mlflow_artifacts
            + (f" (endpoint {self.s3_endpoint})" if self.s3_endpoint else ""),
        }


def backends(settings: Settings) -> Backends:
    """Read and check the backend settings; errors name the setting, never its secret value."""
    serve = settings.serve
    prefect_db = serve.prefect_database_url.get_secret_value() if serve.prefect_database_url else None
    if prefect_db is not None:
        scheme, is_url, _rest = prefect_db.partition("://")
        if scheme not in {"postgresql+asyncpg", "sqlite+aiosqlite"}:
            found = f"uses the driver {scheme!r}" if is_url else "is not a URL (the value is not shown)"
            raise BackendConfigError(
                f"serve.prefect_database_url {found}; Prefect's server needs an async driver: "
                "postgresql+asyncpg://USER:PASSWORD@HOST:5432/DB (PRESCALE_SERVE__PREFECT_DATABASE_URL)"
            )
    store = serve.mlflow_backend_store_uri.get_secret_value() if serve.mlflow_backend_store_uri else None
    if store is not None and "://" not in store:
        raise BackendConfigError(
            "serve.mlflow_backend_store_uri must be a database URL such as postgresql://USER:PASSWORD@HOST:5432/DB "
            "(PRESCALE_SERVE__MLFLOW_BACKEND_STORE_URI; the value is not shown: it may hold a password)"
        )
    return Backends(
        prefect_database=prefect_db,
        mlflow_store=store or f"sqlite:///{settings.home / 'mlflow' / 'mlflow.db'}",
        mlflow_artifacts=serve.mlflow_artifacts_destination or str(settings.registry.artifacts),
        s3_endpoint=serve.s3_endpoint_url,
    )


def _services(settings: Settings) -> list[Service]:
    serve, logs = settings.serve, settings.home / "logs"
    prefect, mlflow = str(BIN / "prefect"), str(BIN / "mlflow")
    base = f"http://{serve.host}"
    found = backends(settings)
    shown = found.describe()
    prefect_env = {"PREFECT_SERVER_DATABASE_CONNECTION_URL": found.prefect_database} if found.prefect_database else {}
    mlflow_env = {"MLFLOW_BACKEND_STORE_URI": found.mlflow_store}
    if found.s3_endpoint:
        mlflow_env["MLFLOW_S3_ENDPOINT_URL"] = found.s3_endpoint
    return [
        Service(
            "prefect-server",
            [prefect, "server", "start", "--host", serve.host, "--port", str(serve.prefect_port)],
            f"{base}:{serve.prefect_port}/api/health",
            logs / "prefect-server.log",
            env=prefect_env,
            about=f"database {shown['prefect_database']}",
        ),
        Service(  # the backend store URI goes by environment, not argv: it may hold a password
            "mlflow-server",
            [
                mlflow,
                "server",
                "--artifacts-destination",
                found.mlflow_artifacts,
                "--host",
                serve.host,
                "--port",
                str(serve.mlflow_port),
            ],  # fmt: skip
            f"{base}:{serve.mlflow_port}/health",
            logs / "mlflow-server.log",
            env=mlflow_env,
            about=f"store {shown['mlflow_backend_store']}, artifacts {shown['mlflow_artifacts']}",
        ),
    ]


def _wait_healthy(service: Service, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise ServiceError(f"{service.name} exited with code {service.process.returncode}; see {service.log}")
        try:
            if httpx.get(service.health_url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise ServiceError(f"{service.name} did not answer {service.health_url} within {timeout:.0f} s; see {service.log}")


def _start(service: Service, env: dict[str, str], *, timeout: float) -> None:
    service.log.parent.mkdir(parents=True, exist_ok=True)
    with service.log.open("ab") as log:
        service.process = subprocess.Popen(
            service.argv, stdout=log, stderr=subprocess.STDOUT, env={**env, **service.env}, cwd=REPO_ROOT,
            start_new_session=True,
        )
    if service.health_url:
        _wait_healthy(service, timeout=timeout)


def _run(argv: list[str], env: dict[str, str], log: Path) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT, timeout=600)
    if done.returncode != 0:
        raise ServiceError(f"`{' '.join(argv[1:])}` failed with code {done.returncode}; see {log}")


def stop(services: list[Service], *, grace: float = 20.0) -> None:
    """Stop children in reverse start order: SIGINT, then SIGTERM, then SIGKILL."""
    for service in reversed(services):
        proc = service.process
        if proc is None or proc.poll() is not None:
            continue
        for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, grace / 2), (signal.SIGKILL, 5)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue


def start_servers(settings: Settings, *, progress: Callable[[str], None] = print) -> ControlPlane:
    """Start Prefect's and MLflow's servers on their backends (steps 1-2); stop what started if one fails."""
    env = control_plane_env(settings)
    serve = settings.serve
    services = _services(settings)
    plane = ControlPlane(
        prefect_api=env["PREFECT_API_URL"],
        prefect_ui=f"http://{serve.host}:{serve.prefect_port}",
        mlflow_ui=env["PRESCALE_REGISTRY__TRACKING_URI"],
        env=env,
        services=[],
        backends=backends(settings).describe(),
    )
    with _stopped_on_failure(plane):
        for service in services:
            progress(f"starting {service.name} ({service.about}) ...")
            plane.services.append(service)
            _start(service, env, timeout=serve.startup_timeout_seconds)
    return plane


def start_control_plane(settings: Settings, *, progress: Callable[[str], None] = print) -> ControlPlane:
    """Start servers, create the pool, deploy, start a worker; stop what started if any step fails."""
    serve = settings.serve
    plane = start_servers(settings, progress=progress)
    env = plane.env
    prefect, logs = str(BIN / "prefect"), settings.home / "logs"
    with _stopped_on_failure(plane):
        progress(f"creating work pool {serve.work_pool!r} and deploying prefect.yaml ...")
        _run([prefect, "work-pool", "create", serve.work_pool, "--type", "process", "--overwrite"], env,
             logs / "setup.log")  # fmt: skip
        _run([prefect, "--no-prompt", "deploy", "--all"], env, logs / "setup.log")
        worker = Service("prefect-worker", [prefect, "worker", "start", "--pool", serve.work_pool], None,
                         logs / "prefect-worker.log")  # fmt: skip
        plane.services.append(worker)
        _start(worker, env, timeout=serve.startup_timeout_seconds)
    return plane


@contextmanager
def _stopped_on_failure(plane: ControlPlane) -> Iterator[None]:
    """Stop every service the plane started if the block fails (Ctrl-C included), then re-raise."""
    try:
        yield
    except BaseException:
        stop(plane.services)
        raise


def supervise(plane: ControlPlane, *, poll_seconds: float = 1.0) -> int:
    """Block until SIGINT/SIGTERM (exit 0) or a child dies (exit 1); stop everything either way."""
    stopping = {"signal": None}

    def _on_signal(signum, _frame):
        stopping["signal"] = signum

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while stopping["signal"] is None:
            dead = [s for s in plane.services if s.process.poll() is not None]
            if dead:
                stop(plane.services)
                raise ServiceError(f"{dead[0].name} exited with code {dead[0].process.returncode}; see {dead[0].log}")
            time.sleep(poll_seconds)
    finally:
        stop(plane.services)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
