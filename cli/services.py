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

With ``live`` (``prescale serve --live``, :class:`Live`) the bundled traces play as live demand
(``prescale.live``), and between steps 2 and 3:

2a. where ``prometheus`` and ``promtool`` are on PATH: the last ``history_days`` of played demand
    (counted in trace time: at speed s, the last history/s real days) are backfilled with
    ``promtool tsdb create-blocks-from openmetrics`` into ``<home>/prometheus/data`` (rebuilt at each
    start: it is derived from the traces, and the store keeps what was ingested), then
    ``python -m prescale.live.exporter`` (healthy at ``/health``) and ``prometheus`` with a generated
    ``<home>/prometheus/prometheus.yml`` scraping it every 15 s on loopback (healthy at ``/-/ready``);
    ``ingest-every-minute`` queries it with the queries file of ``write_queries``. Elsewhere it says so
    and ``ingest-every-minute`` reads the traces directly (the ``replay`` source);
2b. one ``ingest-metrics`` flow run (source ``replay``, named ``live-history``) seeds the store with
    the same history, so the first ``orchestrate`` finds recent metrics;
3'. the deployments come from ``<home>/serve/prefect.yaml``, the repository's ``prefect.yaml`` with
    the ingest deployment's parameters set to the live source (a generated file rather than an API
    call after deploying: what is deployed stays one file to read, and this module stays free of
    Prefect's client);
4'. after the worker: one ``orchestrate-every-minute`` run now, so the first decisions need not wait
    for the schedule's first minute.

A port that already answers before its server starts stops everything: a health check would
otherwise accept another program's server on that port (and deploy to a stranger's Prefect).

It imports neither Prefect nor MLflow: it only starts their programs.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import yaml

from prescale.live import LiveTraces, write_openmetrics, write_queries
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
    port_setting: str = ""  # where its port is chosen, for the message when the port is taken


@dataclass
class ControlPlane:
    """The URLs and environment of a running control plane."""

    prefect_api: str
    prefect_ui: str
    mlflow_ui: str
    env: dict[str, str]
    services: list[Service] = field(default_factory=list)
    backends: dict[str, str] = field(default_factory=dict)  # Backends.describe(): passwords masked
    live: dict = field(default_factory=dict)  # Live.describe() plus where Prometheus is; empty without --live


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
            port_setting="PRESCALE_SERVE__PREFECT_PORT",
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
            port_setting="PRESCALE_SERVE__MLFLOW_PORT",
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


def _check_port_free(service: Service) -> None:
    """Refuse a port something already listens on: the health check would accept that program's server."""
    where = urlsplit(service.health_url)
    with socket.socket() as sock:
        sock.settimeout(1.0)
        taken = sock.connect_ex((where.hostname, where.port)) == 0
    if taken:
        choose = f" ({service.port_setting})" if service.port_setting else ""
        raise ServiceError(
            f"{service.name} cannot start: {where.hostname}:{where.port} is already in use by another program; "
            f"stop it or choose another port{choose}"
        )


def _start(service: Service, env: dict[str, str], *, timeout: float) -> None:
    if service.health_url:
        _check_port_free(service)
    service.log.parent.mkdir(parents=True, exist_ok=True)
    with service.log.open("ab") as log:
        service.process = subprocess.Popen(
            service.argv, stdout=log, stderr=subprocess.STDOUT, env={**env, **service.env}, cwd=REPO_ROOT,
            start_new_session=True,
        )
    if service.health_url:
        _wait_healthy(service, timeout=timeout)


def _run(argv: list[str], env: dict[str, str], log: Path, *, what: str | None = None) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT, timeout=600)
    if done.returncode != 0:
        raise ServiceError(f"{what or '`' + ' '.join(argv[1:]) + '`'} failed with code {done.returncode}; see {log}")


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


def start_control_plane(
    settings: Settings, *, live: Live | None = None, progress: Callable[[str], None] = print
) -> ControlPlane:
    """Start servers, (live: the live source and the seed), create the pool, deploy, start a worker; stop what
    started if any step fails."""
    serve = settings.serve
    plane = start_servers(settings, progress=progress)
    env = plane.env
    prefect, logs = str(BIN / "prefect"), settings.home / "logs"
    with _stopped_on_failure(plane):
        prefect_file = REPO_ROOT / "prefect.yaml"
        if live is not None:
            ingest = start_live(plane, settings, live, progress=progress)
            progress(f"seeding the store with {live.history_days:g} days of played history (flow run "
                     f"{SEED_RUN_NAME!r}) ...")  # fmt: skip
            _run([sys.executable, "-c", _SEED, json.dumps(live.seed_parameters())], env, logs / "live-history.log",
                 what=f"the {SEED_RUN_NAME!r} ingest run")  # fmt: skip
            prefect_file = write_prefect_file(prefect_file, ingest, settings.home / "serve" / "prefect.yaml")
        progress(f"creating work pool {serve.work_pool!r} and deploying {prefect_file} ...")
        _run([prefect, "work-pool", "create", serve.work_pool, "--type", "process", "--overwrite"], env,
             logs / "setup.log")  # fmt: skip
        _run([prefect, "--no-prompt", "deploy", "--all", "--prefect-file", str(prefect_file)], env, logs / "setup.log")
        worker = Service("prefect-worker", [prefect, "worker", "start", "--pool", serve.work_pool], None,
                         logs / "prefect-worker.log")  # fmt: skip
        plane.services.append(worker)
        _start(worker, env, timeout=serve.startup_timeout_seconds)
        if live is not None:  # the schedule's first run is a minute after deploying: decide now too
            _run([prefect, "deployment", "run", f"orchestrate/{ORCHESTRATE_DEPLOYMENT}"], env, logs / "setup.log")
    return plane


# --- live: the bundled traces as live demand -------------------------------------------------------------------

INGEST_DEPLOYMENT = "ingest-every-minute"
ORCHESTRATE_DEPLOYMENT = "orchestrate-every-minute"
SEED_RUN_NAME = "live-history"
SCRAPE_SECONDS = 15
# The seed: one `ingest-metrics` run recorded by the Prefect server (PREFECT_API_URL of the environment), run in
# its own process like the worker's runs, so this module keeps out of Prefect's API.
_SEED = (
    "import json, sys\n"
    "from flows.ingest import ingest_metrics\n"
    f"ingest_metrics.with_options(flow_run_name={SEED_RUN_NAME!r})(**json.loads(sys.argv[1]))\n"
)


@dataclass(frozen=True)
class Live:
    """What ``serve --live`` plays (the traces, already read and checked) and where its pieces listen."""

    traces: LiveTraces
    manifest: Path
    history_days: float = 8.0  # what orchestrate looks back (192 h), in trace time
    prometheus_port: int = 9090
    exporter_port: int = 9469
    use_prometheus: bool | None = None  # None: when `prometheus` and `promtool` are both on PATH

    def __post_init__(self) -> None:
        if not (math.isfinite(self.history_days) and self.history_days > 0):
            raise ValueError(f"the live history ({self.history_days!r} days) must be a positive number, e.g. 8")

    @property
    def with_prometheus(self) -> bool:
        if self.use_prometheus is not None:
            return self.use_prometheus
        return shutil.which("prometheus") is not None and shutil.which("promtool") is not None

    @property
    def history(self) -> timedelta:
        """The real time the history spans: ``history_days`` of trace time played at the speed."""
        return timedelta(days=self.history_days) / self.traces.speed

    def replay_options(self) -> dict:
        """Options of the ``replay`` source playing these traces, as a flow parameter (JSON)."""
        epoch = self.traces.epoch
        return {"manifest": str(self.manifest), "speed": self.traces.speed,
                "epoch": epoch.isoformat() if epoch is not None else None}  # fmt: skip

    def seed_parameters(self) -> dict:
        """The seed run's ``ingest_metrics`` parameters: the replay source over the whole history."""
        minutes = math.ceil(self.history / timedelta(minutes=1))
        return {"source": "replay", "options": self.replay_options(), "lookback_minutes": minutes}

    def describe(self) -> list[dict]:
        """Per app, what plays: the file, its loop and what the loop keeps, the speed."""
        speed = self.traces.speed
        return [{"app": d["app"], "file": d["file"], "loop": _span(d["loop"]), "keeps": d["keeps"], "speed": speed}
                for d in self.traces.describe()]  # fmt: skip


def _span(delta: timedelta) -> str:
    days = delta / timedelta(days=1)
    return f"{days:g} days" if days >= 1 else f"{delta / timedelta(hours=1):g} h"


def ingest_parameters(live: Live, queries: Path | None, *, lookback_minutes: int = 10) -> dict:
    """``ingest-every-minute``'s parameters: Prometheus with ``queries`` where it runs, else the replay source."""
    if queries is not None:
        return {"prometheus_config": str(queries), "lookback_minutes": lookback_minutes}
    return {"source": "replay", "options": live.replay_options(), "lookback_minutes": lookback_minutes}


def write_prefect_file(base: Path, ingest: dict, path: Path) -> Path:
    """``base`` (the repository's prefect.yaml) with ``ingest-every-minute``'s parameters replaced, at ``path``."""
    config = yaml.safe_load(base.read_text(encoding="utf-8"))
    found = [d for d in config.get("deployments", []) if d.get("name") == INGEST_DEPLOYMENT]
    if not found:
        raise ServiceError(f"{base} has no deployment named {INGEST_DEPLOYMENT!r} for the live source to feed")
    found[0]["parameters"] = ingest
    source = "the live exporter's gauge in Prometheus" if "prometheus_config" in ingest else "the replayed traces"
    minutes = ingest["lookback_minutes"]
    found[0]["description"] = f"Ingest the last {minutes} minutes of {source} (prescale serve --live)."
    path.parent.mkdir(parents=True, exist_ok=True)
    header = f"# Written by `prescale serve --live` from {base}: only {INGEST_DEPLOYMENT}'s parameters differ.\n"
    path.write_text(header + yaml.safe_dump(config, sort_keys=False, width=200), encoding="utf-8")
    return path


def prometheus_config(exporter: str, *, scrape_seconds: int = SCRAPE_SECONDS) -> str:
    """prometheus.yml: one job scraping the live exporter at ``exporter`` (host:port)."""
    return yaml.safe_dump(
        {
            "global": {"scrape_interval": f"{scrape_seconds}s", "evaluation_interval": "1m"},
            "scrape_configs": [{"job_name": "prescale-live", "static_configs": [{"targets": [exporter]}]}],
        },
        sort_keys=False,
    )


def backfill(traces: LiveTraces, *, start: datetime, end: datetime, data: Path, log: Path) -> int:
    """The played rows in ``[start, end)`` as TSDB blocks in ``data`` (emptied first); the samples written."""
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    text = data.parent / "backfill.om"
    samples = write_openmetrics(traces, start, end, text)
    _run(["promtool", "tsdb", "create-blocks-from", "openmetrics", "--max-block-duration=24h", str(text), str(data)],
         os.environ.copy(), log, what="promtool's backfill")  # fmt: skip
    text.unlink()
    return samples


def start_live(plane: ControlPlane, settings: Settings, live: Live, *, progress: Callable[[str], None]) -> dict:
    """The live source's servers where Prometheus runs; ``ingest-every-minute``'s parameters either way."""
    host, home, logs = settings.serve.host, settings.home / "prometheus", settings.home / "logs"
    plane.live = {"playing": live.describe(), "history_days": live.history_days, "speed": live.traces.speed,
                  "epoch": live.replay_options()["epoch"], "prometheus": None, "exporter": None}  # fmt: skip
    if not live.with_prometheus:
        progress("Prometheus not installed: the ingest flow reads the traces directly (file replay)")
        plane.live["ingest_source"] = "replay"
        return ingest_parameters(live, None)
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    progress(f"backfilling Prometheus with {live.history_days:g} days of played history (promtool) ...")
    samples = backfill(live.traces, start=end - live.history, end=end, data=home / "data", log=logs / "promtool.log")
    exporter, prometheus = _live_services(settings, live)
    (home / "prometheus.yml").write_text(prometheus_config(f"{host}:{live.exporter_port}"), encoding="utf-8")
    for service in (exporter, prometheus):
        progress(f"starting {service.name} ({service.about}) ...")
        plane.services.append(service)
        _start(service, plane.env, timeout=settings.serve.startup_timeout_seconds)
    url = f"http://{host}:{live.prometheus_port}"
    plane.env["PRESCALE_PROMETHEUS__URL"] = url  # the worker's ingest runs query it
    queries = write_queries(live.traces, home / "queries.yaml")
    plane.live.update(ingest_source="prometheus", prometheus=url, exporter=f"http://{host}:{live.exporter_port}",
                      backfilled_samples=samples, queries=str(queries))  # fmt: skip
    return ingest_parameters(live, queries)


def _live_services(settings: Settings, live: Live) -> tuple[Service, Service]:
    host, home, logs = settings.serve.host, settings.home / "prometheus", settings.home / "logs"
    timing = ["--speed", repr(live.traces.speed), "--epoch", live.replay_options()["epoch"]] \
        if live.traces.epoch is not None else []  # fmt: skip
    exporter = Service(
        "live-exporter",
        [sys.executable, "-m", "prescale.live.exporter", "--manifest", str(live.manifest), "--host", host,
         "--port", str(live.exporter_port), *timing],  # fmt: skip
        f"http://{host}:{live.exporter_port}/health",
        logs / "live-exporter.log",
        about=f"{len(live.traces.apps)} apps at speed {live.traces.speed:g}",
        port_setting="--exporter-port",
    )
    prometheus = Service(
        "prometheus",
        ["prometheus", f"--config.file={home / 'prometheus.yml'}", f"--storage.tsdb.path={home / 'data'}",
         "--storage.tsdb.retention.time=3650d", f"--web.listen-address={host}:{live.prometheus_port}"],  # fmt: skip
        f"http://{host}:{live.prometheus_port}/-/ready",
        logs / "prometheus.log",
        about=f"scraping the exporter every {SCRAPE_SECONDS} s, data under {home / 'data'}",
        port_setting="--prometheus-port",
    )
    return exporter, prometheus


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
