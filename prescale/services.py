"""Run the local control plane: Prefect server, MLflow server, a work pool, the deployments, a worker.

`prescale serve` is a small supervisor over the projects' own command-line tools,
started as child processes in this order, each waited for before the next:

1. ``prefect server start`` (SQLite under ``<home>/prefect``), healthy when
   ``/api/health`` answers;
2. ``mlflow server`` (SQLite registry, ``--artifacts-destination`` under
   ``<home>/mlflow``; its host-header and CORS checks stay on), healthy when
   ``/health`` answers;
3. ``prefect work-pool create <pool> --type process --overwrite`` and
   ``prefect --no-prompt deploy --all`` (every deployment of ``prefect.yaml`` with
   its schedule);
4. ``prefect worker start --pool <pool>``, which runs the scheduled flow runs.

Each long-lived child gets its own process group and a log file under
``<home>/logs``. Ctrl-C (SIGINT) or SIGTERM stops them in reverse order: SIGINT to
the group, then SIGTERM, then SIGKILL after a grace period. If a child dies on its
own, everything is stopped and the command exits non-zero with that child's log.

It imports neither Prefect nor MLflow: it only starts their programs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from prescale.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


class ServiceError(RuntimeError):
    """A service did not start, or a setup command failed."""


@dataclass
class Service:
    name: str
    argv: list[str]
    health_url: str | None
    log: Path
    process: subprocess.Popen | None = None


@dataclass
class ControlPlane:
    """The URLs and environment of a running control plane."""

    prefect_api: str
    prefect_ui: str
    mlflow_ui: str
    env: dict[str, str]
    services: list[Service] = field(default_factory=list)


def control_plane_env(settings: Settings) -> dict[str, str]:
    """Environment for every child: Prefect and MLflow pointed at the local servers."""
    serve = settings.serve
    env = dict(os.environ)
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


def _services(settings: Settings) -> list[Service]:
    serve, logs = settings.serve, settings.home / "logs"
    prefect, mlflow = str(BIN / "prefect"), str(BIN / "mlflow")
    base = f"http://{serve.host}"
    return [
        Service(
            "prefect-server",
            [prefect, "server", "start", "--host", serve.host, "--port", str(serve.prefect_port)],
            f"{base}:{serve.prefect_port}/api/health",
            logs / "prefect-server.log",
        ),
        Service(
            "mlflow-server",
            [
                mlflow,
                "server",
                "--backend-store-uri",
                f"sqlite:///{settings.home / 'mlflow' / 'mlflow.db'}",
                "--artifacts-destination",
                str(settings.registry.artifacts),
                "--host",
                serve.host,
                "--port",
                str(serve.mlflow_port),
            ],  # fmt: skip
            f"{base}:{serve.mlflow_port}/health",
            logs / "mlflow-server.log",
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
            service.argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT, start_new_session=True
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


def start_control_plane(settings: Settings, *, progress: Callable[[str], None] = print) -> ControlPlane:
    """Start servers, create the pool, deploy, start a worker; stop what started if any step fails."""
    env = control_plane_env(settings)
    serve = settings.serve
    services = _services(settings)
    plane = ControlPlane(
        prefect_api=env["PREFECT_API_URL"],
        prefect_ui=f"http://{serve.host}:{serve.prefect_port}",
        mlflow_ui=env["PRESCALE_REGISTRY__TRACKING_URI"],
        env=env,
        services=[],
    )
    prefect, logs = str(BIN / "prefect"), settings.home / "logs"
    try:
        for service in services:
            progress(f"starting {service.name} ...")
            plane.services.append(service)
            _start(service, env, timeout=serve.startup_timeout_seconds)
        progress(f"creating work pool {serve.work_pool!r} and deploying prefect.yaml ...")
        _run([prefect, "work-pool", "create", serve.work_pool, "--type", "process", "--overwrite"], env,
             logs / "setup.log")  # fmt: skip
        _run([prefect, "--no-prompt", "deploy", "--all"], env, logs / "setup.log")
        worker = Service("prefect-worker", [prefect, "worker", "start", "--pool", serve.work_pool], None,
                         logs / "prefect-worker.log")  # fmt: skip
        plane.services.append(worker)
        _start(worker, env, timeout=serve.startup_timeout_seconds)
    except BaseException:
        stop(plane.services)
        raise
    return plane


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
