"""`prescale ingest PATH`: one file into the metrics store, through the `ingest-metrics` flow."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from cli.commands.common import (
    UserError,
    console,
    emit_json,
    quiet_flow_errors,
    run_guarded,
    settings_for_command,
)
from prescale.metrics.validation import REASONS, MetricsInputError
from prescale.names import AppName

USER_ERRORS = (MetricsInputError, FileNotFoundError)


def register(app: typer.Typer) -> None:
    @app.command()
    def ingest(
        path: Path = typer.Argument(
            ..., help="CSV or Parquet file: canonical long format, or any table with --mapping."
        ),
        app_name: str | None = typer.Option(
            None, "--app", help="App name for rows without one (with a one-app-per-column mapping: the name prefix)."
        ),
        mapping: Path | None = typer.Option(None, "--mapping", help="YAML column mapping (see infra/mappings/)."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object (read/accepted/quarantined...)."),
    ) -> None:
        """Validate a metrics file and store it as Parquet; bad rows go to quarantine with a reason.

        Canonical format: columns ts (ISO 8601 with offset, or epoch seconds), app, metric, value[, phase].
        A repeated file is a no-op (idempotent batch). --app must be a valid app name (with a one-app-per-column
        mapping, the prefix too). Exit code 2 on unusable input; nothing is written then.
        """

        def body() -> None:
            app = AppName(app_name, what="--app") if app_name is not None else None
            for what, given in (("metrics file", path), ("--mapping", mapping)):
                if given is not None and not given.is_file():
                    raise UserError(f"{what} {given} not found (or not a file)")
            settings_for_command()
            from flows.ingest import ingest_metrics

            with quiet_flow_errors(USER_ERRORS):
                result = ingest_metrics(path=str(path), app=app, mapping=str(mapping) if mapping else None)
            if as_json:
                emit_json(result.to_dict())
            else:
                print_report(result)

        run_guarded(body, as_json=as_json, user_errors=USER_ERRORS)


def print_report(result) -> None:
    table = Table(title=f"ingested {result.source}", show_footer=True)
    table.add_column("app", footer="all")
    table.add_column("read", justify="right", footer=f"{result.read:,}")
    table.add_column("accepted", justify="right", footer=f"{result.accepted:,}")
    table.add_column("quarantined", justify="right", footer=f"{result.quarantined:,}")
    for app, counts in result.per_app.items():
        table.add_row(app, f"{counts.read:,}", f"{counts.accepted:,}", f"{counts.quarantined:,}")
    console.print(table)
    for reason, count in sorted(result.quarantine_reasons.items(), key=lambda kv: -kv[1]):
        console.print(f"  quarantined {count:,} x [bold]{reason}[/]: {REASONS.get(reason, '')}", highlight=False)
    if result.already_ingested:
        console.print(f"batch {result.batch_id} was already ingested: nothing new written.")
    else:
        console.print(f"stored in {result.store} (batch {result.batch_id}, {result.files_written} files)")
