"""`prescale serve`: Prefect and MLflow servers, the deployments with their schedules, and a worker."""

from __future__ import annotations

import typer
from rich.table import Table

from cli.commands.common import console, emit_json, err_console, run_guarded, settings_for_command
from cli.services import BackendConfigError, ServiceError, start_control_plane, supervise


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object with the URLs once ready."),
    ) -> None:
        """Start Prefect's server and UI, MLflow's server and UI (SQLite under PRESCALE_HOME), create the work
        pool, deploy everything in prefect.yaml with its schedules, and start a worker. Ctrl-C stops it all.

        Ports and pool: PRESCALE_SERVE__PREFECT_PORT (4200), PRESCALE_SERVE__MLFLOW_PORT (5000),
        PRESCALE_SERVE__WORK_POOL (prescale). Logs: <home>/logs/.

        Production backends (docs/backends.md): PRESCALE_SERVE__PREFECT_DATABASE_URL
        (postgresql+asyncpg://...), PRESCALE_SERVE__MLFLOW_BACKEND_STORE_URI (postgresql://...),
        PRESCALE_SERVE__MLFLOW_ARTIFACTS_DESTINATION (s3://bucket/prefix), PRESCALE_SERVE__S3_ENDPOINT_URL.
        """

        def body() -> None:
            settings = settings_for_command()
            say = (lambda _msg: None) if as_json else (lambda msg: console.print(msg, highlight=False))
            plane = start_control_plane(settings, progress=say)
            ready = {
                "prefect_ui": plane.prefect_ui,
                "prefect_api": plane.prefect_api,
                "mlflow_ui": plane.mlflow_ui,
                "work_pool": settings.serve.work_pool,
                "logs": str(settings.home / "logs"),
                "backends": plane.backends,
                "ready": True,
            }
            if as_json:
                emit_json(ready)
            else:
                table = Table(title="prescale is serving (Ctrl-C stops everything)")
                table.add_column("what")
                table.add_column("where")
                for key in ("prefect_ui", "mlflow_ui", "work_pool", "logs"):
                    table.add_row(key, str(ready[key]))
                for key, where in plane.backends.items():
                    table.add_row(key, where)
                console.print(table)
                console.print(f"Use it from another shell: export PREFECT_API_URL={plane.prefect_api}")
            supervise(plane)
            say("stopped.")

        try:
            run_guarded(body, as_json=as_json, user_errors=(BackendConfigError,))
        except ServiceError as exc:  # a server that would not start is a failure, not bad input
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(1) from exc
