"""`prescale backtest --app APP`: replay the last days of an app under every policy, through the `backtest` flow.

Prints a progress bar while the policies' settings run, then the table (each policy at its headline setting,
and its cost at each violation budget), how predictive compares at equal violations, and where the plots
are. ``--json`` prints the DESIGN.md contract instead (``policies``, ``budget_costs``, and more).
"""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from cli.commands.common import console, emit_json, quiet_flow_errors, run_guarded, settings_for_command
from prescale.catalog import CatalogError, resolve_profile
from prescale.names import AppName
from prescale.replay import POLICIES
from prescale.replay.report import slo_lines


def register(app: typer.Typer) -> None:
    @app.command()
    def backtest(
        app_name: str = typer.Option(..., "--app", help="App whose stored metrics are replayed."),
        profile: str | None = typer.Option(None, "--profile", help="Use this profile (infra/apps/NAME.yaml)."),
        days: float | None = typer.Option(
            None, "--days", help="Days replayed (default: settings, 7; at most 366).", min=0.01, max=366
        ),
        metric: str | None = typer.Option(None, "--metric", help="Stored metric driving demand (default: by name)."),
        forecaster: str | None = typer.Option(
            None, "--forecaster", help="best (train all candidates), or a baseline: seasonal_naive, holt_winters..."
        ),
        policies: str | None = typer.Option(
            None, "--policies", help=f"Comma-separated subset of {','.join(POLICIES)} (default: all)."
        ),
        peak_scale: float | None = typer.Option(
            None, "--peak-scale", help="The history's p99 becomes this multiple of the profile's example peak.", min=0
        ),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object (policies, budget_costs...)."),
    ) -> None:
        """Replay the last days of an app's demand under every registered policy (predictive, reactive, static...).

        Each policy's knob is swept into a cost-versus-violations frontier and the policies are compared at
        equal violation budgets (0.5% of the minutes, and zero); aws and crane are the published predictive
        autoscalers (AWS predictive scaling, Crane's EHPA). Ex ante, the app's SLO policy is tuned on the
        days before the window (replay.tune_days) and run once over it, against reactive, aws and crane at the
        same realised violations (--json: slo, ex_ante). Writes PNG plots and report.json.
        """

        def body() -> None:
            app = AppName(app_name, what="--app")
            settings = settings_for_command()
            resolve_profile(app, settings.search.profiles, profile)  # a bad --profile fails before Prefect starts
            from flows.backtest import backtest as backtest_flow
            from tasks.backtest import progress_listeners

            chosen = [p.strip() for p in policies.split(",") if p.strip()] if policies else None
            params = {"app": app, "profile": profile, "days": days, "metric": metric,
                      "forecaster": forecaster, "policies": chosen, "peak_scale": peak_scale}
            if as_json:
                with quiet_flow_errors(user_errors):
                    emit_json(backtest_flow(**params))
                return
            with _progress() as bar:
                job = bar.add_task("replaying", total=None)

                def listener(done: int, total: int, message: str) -> None:
                    bar.update(job, completed=done, total=total, description=message[:60])

                progress_listeners.append(listener)
                try:
                    with quiet_flow_errors(user_errors):
                        summary = backtest_flow(**params)
                finally:
                    progress_listeners.remove(listener)
            print_summary(summary)

        from prescale.fleet import FleetError  # here, not at import: `prescale --help` stays light
        from prescale.replay.errors import ReplayError

        user_errors = (ReplayError, FleetError, CatalogError, FileNotFoundError)
        run_guarded(body, as_json=as_json, user_errors=user_errors)


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True)


def print_summary(summary: dict[str, Any]) -> None:
    budgets = list(next(iter(summary["budget_costs"].values()), {}).keys())
    window = summary["window"]
    table = Table(title=f"backtest {summary['app']} (profile {summary['profile']}): {window['start'][:16]} .. "
                        f"{window['end'][:16]}, {window['step_seconds']} s steps")
    for col in ("policy", "setting", "USD", "viol. min", "slack", "migr."):
        table.add_column(col, justify="left" if col in ("policy", "setting") else "right")
    for b in budgets:
        table.add_column(f"USD @{b}", justify="right")
    for name, p in summary["policies"].items():
        costs = summary["budget_costs"].get(name, {})
        table.add_row(name, str(p.get("setting")), _num(p.get("cost")), _num(p.get("slo_violation_minutes")),
                      _num(p.get("slack")), str(p.get("migrations")), *(_num(costs.get(b)) for b in budgets))
    console.print(table)
    console.print("each policy at its cheapest setting within 0.5% violation minutes (else its fewest violations)")
    for budget, c in summary["comparison"].items():
        console.print(f"at a {budget} violation budget, predictive costs {_than(c['vs_reactive'], 'reactive')}, "
                      f"{_than(c['vs_static'], 'static')}, {_pct(c['over_oracle'])} vs the oracle", highlight=False)
    for line in slo_lines(summary):
        console.print(line, highlight=False)
    source = summary.get("source", {})
    console.print(f"demand from {source.get('demand', {}).get('metric')}, forecaster {source.get('forecaster', '-')}",
                  highlight=False)
    for name, path in summary.get("files", {}).items():
        console.print(f"  {name}: {path}", highlight=False)


def _num(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:,.2f}" if isinstance(value, float) else str(value)


def _than(saving: float | None, other: str) -> str:
    if saving is None:
        return f"n/a vs {other}"
    return f"{abs(saving):.1%} {'less' if saving >= 0 else 'more'} than {other}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1%}"
