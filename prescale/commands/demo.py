"""`prescale demo`: the whole pipeline on bundled real traces, on embedded defaults."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from prescale.commands.common import console, emit_json, run_guarded, settings_for_command
from prescale.demo import DEFAULT_MANIFEST
from prescale.metrics.validation import MetricsInputError


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(
        manifest: Path = typer.Option(DEFAULT_MANIFEST, "--manifest", help="Which traces become which apps."),
        quick: bool = typer.Option(False, "--quick", help="Less history and training (the test suite's mode)."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    ) -> None:
        """Run the main job on the bundled traces (data/): ingest each app and show what was stored.

        Everything lands under PRESCALE_HOME (default ./.prescale); runs are recorded in Prefect.
        """

        def body() -> None:
            settings = settings_for_command()
            if not as_json:
                console.print(f"prescale demo: state under [bold]{settings.home}[/] (starting Prefect, ~20 s) ...")
            from flows.demo import demo as demo_flow

            result = demo_flow(manifest=str(manifest), quick=quick)
            if as_json:
                emit_json(result)
            else:
                print_summary(result)

        run_guarded(body, as_json=as_json, user_errors=(MetricsInputError,))


def print_summary(result: dict) -> None:
    ingest = Table(title="ingested")
    for column in ("app", "source", "read", "accepted", "quarantined", "note"):
        ingest.add_column(column, justify="right" if column in {"read", "accepted", "quarantined"} else "left")
    for rep in result["ingest"]:
        note = "already ingested" if rep["already_ingested"] else ""
        apps = ", ".join(rep["per_app"])
        ingest.add_row(
            apps, Path(rep["source"]).name, f"{rep['read']:,}", f"{rep['accepted']:,}", f"{rep['quarantined']:,}", note
        )
    console.print(ingest)
    stored = Table(title=f"stored in {result['store']}")
    for column in ("app", "rows", "metrics", "from", "to", "partitions"):
        stored.add_column(column)
    for row in result["stored"]:
        stored.add_row(
            row["app"], f"{row['rows']:,}", ", ".join(row["metrics"]), row["first"], row["last"], str(row["partitions"])
        )
    console.print(stored)
    models = Table(title="forecasters (MLflow)")
    for column in ("app", "phase", "champion", "promoted", "MASE", "cov90", "note"):
        models.add_column(column)
    for m in result["train"]["models"]:
        score = (m.get("scores") or {}).get(m.get("champion") or "", {})
        models.add_row(
            m["app"],
            m["phase"],
            str(m.get("champion") or "-"),
            str(m.get("promoted")),
            _fmt(score.get("mase")),
            _fmt(score.get("coverage_90")),
            m.get("skipped") or "",
        )
    console.print(models)
    console.print(f"MLflow runs and models: {result['tracking_uri']} (open the UI with `prescale serve`)")


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"
