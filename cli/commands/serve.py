"""`prescale serve [--live]`: Prefect and MLflow servers, the deployments with their schedules, and a worker.

With ``--live`` the bundled traces play as live demand (``cli.services.Live``): the manifest is read and
checked here, before any server starts, so an entry that cannot be played is a user error (exit 2) that
names its file and leaves nothing running.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.table import Table

from cli.commands.common import UserError, console, emit_json, err_console, run_guarded, settings_for_command
from cli.services import BackendConfigError, Live, ServiceError, start_control_plane, supervise
from prescale.demo import DEFAULT_MANIFEST
from prescale.live import LiveTraces
from prescale.metrics.validation import MetricsInputError

HISTORY_DAYS = 8.0  # what orchestrate looks back (192 h)


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        live: bool = typer.Option(False, "--live", help="Play the bundled traces as live demand (make serve)."),
        speed: float = typer.Option(1.0, "--speed", help="With --live: trace minutes per real minute (1: real time)."),
        manifest: Path = typer.Option(DEFAULT_MANIFEST, "--manifest", help="With --live: which traces become apps."),
        history_days: float = typer.Option(
            HISTORY_DAYS, "--history-days", help="With --live: days of played history to backfill and seed."
        ),
        prometheus_port: int = typer.Option(9090, "--prometheus-port", help="With --live: Prometheus's port."),
        exporter_port: int = typer.Option(9469, "--exporter-port", help="With --live: the trace exporter's port."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object with the URLs once ready."),
    ) -> None:
        """Start Prefect's server and UI, MLflow's server and UI (SQLite under PRESCALE_HOME), create the work
        pool, deploy everything in prefect.yaml with its schedules, and start a worker. Ctrl-C stops it all.

        --live (what `make serve` runs): the traces of --manifest play shifted to now (weekday and time of day
        kept; --speed plays faster). Where `prometheus` and `promtool` are installed, the last --history-days
        are backfilled into a Prometheus under <home>/prometheus that scrapes a loopback exporter of the
        traces, and ingest-every-minute queries it; elsewhere ingest-every-minute reads the traces directly.
        Either way one `live-history` ingest run seeds the store first, and orchestrate-every-minute decides
        on the simulated cluster every minute. A manifest entry that cannot be played stops serve (exit 2).

        Ports and pool: PRESCALE_SERVE__PREFECT_PORT (4200), PRESCALE_SERVE__MLFLOW_PORT (5000),
        PRESCALE_SERVE__WORK_POOL (prescale). Logs: <home>/logs/.

        Production backends (docs/backends.md): PRESCALE_SERVE__PREFECT_DATABASE_URL
        (postgresql+asyncpg://...), PRESCALE_SERVE__MLFLOW_BACKEND_STORE_URI (postgresql://...),
        PRESCALE_SERVE__MLFLOW_ARTIFACTS_DESTINATION (s3://bucket/prefix), PRESCALE_SERVE__S3_ENDPOINT_URL.
        """

        def body() -> None:
            played = _live(live, speed=speed, manifest=manifest, history_days=history_days,
                           prometheus_port=prometheus_port, exporter_port=exporter_port)  # fmt: skip
            settings = settings_for_command()
            say = (lambda _msg: None) if as_json else (lambda msg: console.print(msg, highlight=False))
            plane = start_control_plane(settings, live=played, progress=say)
            ready = {
                "prefect_ui": plane.prefect_ui,
                "prefect_api": plane.prefect_api,
                "mlflow_ui": plane.mlflow_ui,
                "work_pool": settings.serve.work_pool,
                "logs": str(settings.home / "logs"),
                "backends": plane.backends,
                **({"live": plane.live} if plane.live else {}),
                "ready": True,
            }
            if as_json:
                emit_json(ready)
            else:
                _print_ready(ready, plane.prefect_api)
            supervise(plane)
            say("stopped.")

        try:
            run_guarded(body, as_json=as_json, user_errors=(BackendConfigError, MetricsInputError))
        except ServiceError as exc:  # a server that would not start is a failure, not bad input
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(1) from exc


def _live(on: bool, *, speed: float, manifest: Path, history_days: float, prometheus_port: int,
          exporter_port: int) -> Live | None:  # fmt: skip
    """The traces to play, read and checked (MetricsInputError naming the file); None without --live."""
    if not on:
        given = (("--speed", speed, 1.0), ("--manifest", manifest, DEFAULT_MANIFEST),
                 ("--history-days", history_days, HISTORY_DAYS), ("--prometheus-port", prometheus_port, 9090),
                 ("--exporter-port", exporter_port, 9469))  # fmt: skip
        changed = [name for name, value, default in given if value != default]
        if changed:
            raise UserError(f"{', '.join(changed)} only apply with --live: add --live, or drop them")
        return None
    if not history_days > 0:
        raise UserError(f"--history-days ({history_days:g}) must be positive, e.g. {HISTORY_DAYS:g}")
    # Speed 1 keeps the weekday and time of day with no epoch; a faster play starts now, the same for every process.
    epoch = None if speed == 1 else datetime.now(UTC).replace(second=0, microsecond=0)
    traces = LiveTraces.from_manifest(manifest, speed=speed, epoch=epoch)
    return Live(traces, Path(manifest).resolve(), history_days=history_days, prometheus_port=prometheus_port,
                exporter_port=exporter_port)  # fmt: skip


def _print_ready(ready: dict, prefect_api: str) -> None:
    table = Table(title="prescale is serving (Ctrl-C stops everything)")
    table.add_column("what")
    table.add_column("where")
    for key in ("prefect_ui", "mlflow_ui", "work_pool", "logs"):
        table.add_row(key, str(ready[key]))
    for key, where in ready["backends"].items():
        table.add_row(key, where)
    live = ready.get("live")
    if live:
        for played in live["playing"]:
            table.add_row(f"playing {played['app']}",
                          f"{Path(played['file']).name}, loop {played['loop']}, speed {played['speed']:g}")  # fmt: skip
        if live["prometheus"]:
            table.add_row("prometheus", f"{live['prometheus']} (scrapes {live['exporter']})")
            table.add_row("ingest-every-minute", f"queries Prometheus ({Path(live['queries']).name})")
        else:
            table.add_row("prometheus", "not installed")
            table.add_row("ingest-every-minute", "reads the traces directly (file replay)")
    console.print(table)
    console.print(f"Use it from another shell: export PREFECT_API_URL={prefect_api}")
