"""`prescale train [--app APP]`: train, score and promote forecasters, through the `train-forecasters` flow."""

from __future__ import annotations

import typer
from rich.table import Table

from cli.commands.common import UserError, console, emit_json, run_guarded, settings_for_command
from models.scoring import rank_key
from prescale.metrics.store import MetricsStore
from prescale.names import AppName

PRESETS = ("default", "small")


def register(app: typer.Typer) -> None:
    @app.command()
    def train(
        app_name: str | None = typer.Option(None, "--app", help="Train this app only (default: every app stored)."),
        preset: str | None = typer.Option(
            None, "--preset", help="default, or small (a tiny network: tests and the demo). Default: settings."
        ),
        metrics: list[str] | None = typer.Option(
            None, "--metric", help="Demand metric to forecast (repeat for several). Default: all of the app's."
        ),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object: models, phases."),
    ) -> None:
        """Train per app and phase: the LSTM and the baselines, scored on a held-out tail, logged to MLflow.

        The `champion` alias moves only when the new model beats the current one by the promotion margin.

        Unusable apps or phases (too little history, constant or gappy series) are listed as skipped.

        Exit code 2 when the app name is invalid or unknown, or the store is empty.
        """

        def body() -> None:
            app = AppName(app_name, what="--app") if app_name is not None else None
            settings = settings_for_command()
            if preset is not None and preset not in PRESETS:
                raise UserError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
            known = MetricsStore(settings.store.root).apps()
            if not known:
                raise UserError(f"the metrics store {settings.store.root} is empty: run `prescale ingest` first")
            if app is not None and app not in known:
                raise UserError(f"no metrics for app {app!r} in {settings.store.root}; "
                                f"stored apps: {', '.join(known)}")
            from flows.train import train_forecasters

            report = train_forecasters(apps=[app] if app else None, preset=preset, metrics=metrics)
            if as_json:
                emit_json(report.to_dict())
            else:
                print_report(report)

        run_guarded(body, as_json=as_json, user_errors=())


def print_report(report) -> None:
    table = Table(title="forecasters (held-out scores; the decision score ranks: pinball at 0.9/0.99/0.995 at the "
                        "tiers' leads, scaled)")
    for column in ("app", "phase", "candidate", "decision", "MAE", "MAE last", "MASE", "sMAPE", "cov 80", "cov 90",
                   ""):
        table.add_column(column, justify="right" if column[:1] in "dMsSc" and column != "candidate" else "left")
    for m in report.models:
        if m.skipped:
            table.add_row(m.app, m.phase, "-", "", "", "", "", "", "", "", f"[yellow]skipped[/]: {m.skipped}")
            continue
        for name, s in sorted(m.scores.items(), key=lambda kv: rank_key(kv[1])):
            mark = "[bold green]champion[/]" if name == m.champion else ("best" if name == m.best else "")
            decision = s.get("decision")
            table.add_row(m.app, m.phase, name, "-" if decision is None else f"{decision:.4f}", f"{s['mae']:.4g}",
                          f"{s['mae_last']:.4g}", f"{s['mase']:.3f}",
                          f"{s['smape']:.1f}", _pct(s["coverage_80"]), _pct(s["coverage_90"]), mark)
    console.print(table)
    for m in report.models:
        if not m.skipped:
            verdict = "promoted" if m.promoted else "not promoted"
            console.print(f"{m.app}/{m.phase}: v{m.version} {verdict}: {m.reason}", highlight=False)


def _pct(value) -> str:
    return "-" if value is None else f"{value:.0%}"
