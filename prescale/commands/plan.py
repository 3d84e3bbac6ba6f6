"""`prescale plan --app APP`: one allocation decision, shown and not applied (a dry run).

Composition root for the decision: reads the catalog and the app profile (``SearchSettings.catalog`` and
``.profiles``), the demand (a file, or the profile's example), the running nodes (``--current``), builds the
:class:`~prescale.allocation.Policy` from ``SearchSettings`` and calls the pure ``allocate``.

Until the live forecast is wired in, demand comes from ``--demand FILE`` or, without it, from the profile's
``example_demand``: a median that ramps linearly from ``base`` to ``peak`` over ``steps`` steps, with normal
quantiles ``spread`` wide (q0.9 = (1 + spread) x median), starting one step from now, and the profile's
``example_demand.current`` as the running nodes unless ``--current`` is given.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import typer
from rich.table import Table

from prescale.allocation import Allocation, AllocationError, Policy, allocate
from prescale.catalog import AppProfile, Catalog, CatalogError, check_profile, load_catalog, resolve_profile
from prescale.commands.common import UserError, console, emit_json, run_guarded, settings_for_command
from prescale.forecast import Forecast, ForecastError
from prescale.settings import SearchSettings

DEMAND_HELP = (
    "Demand per step. CSV: optional column ts (ISO 8601; else steps start one step from now), then per metric "
    "either one column <metric> (the median; quantiles spread by --spread) or quantile columns <metric>@<q> "
    "(e.g. requests_per_second@0.1, @0.5, @0.9). JSON: {start, step_seconds, metrics, quantiles, values} with "
    "values shaped [step][metric][quantile] (prescale.forecast.Forecast.to_dict)."
)


def register(app: typer.Typer) -> None:
    @app.command()
    def plan(
        app_name: str = typer.Option(..., "--app", help="App to plan for."),
        profile: str | None = typer.Option(None, "--profile", help="Use this profile (infra/apps/NAME.yaml)."),
        demand: Path | None = typer.Option(None, "--demand", help=DEMAND_HELP),
        current: list[str] = typer.Option(
            [],
            "--current",
            help="Running nodes, TYPE=N (repeat). Default: none, or the example's when no --demand is given.",
        ),
        step_seconds: int = typer.Option(60, "--step-seconds", help="Step of a CSV without ts.", min=1),
        spread: float = typer.Option(0.15, "--spread", help="(q0.9 - q0.5) / q0.5 for median-only CSV.", min=0),
        solver: str | None = typer.Option(None, "--solver", help="optuna or milp (default: settings)."),
        trials: int | None = typer.Option(None, "--trials", help="Most Optuna trials.", min=1),
        budget_ms: int | None = typer.Option(None, "--budget-ms", help="Time budget of the search.", min=1),
        seed: int | None = typer.Option(None, "--seed", help="Seed of the search."),
        multi_objective: bool = typer.Option(False, "--pareto", help="Return the cost/risk Pareto front."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object (allocation, cost_per_hour...)."),
    ) -> None:
        """Choose node counts per resource type for an app's demand and explain the choice (no changes made).

        Prints the allocation, its cost per hour, whether the covered quantile is served, runner-up mixes
        and a reason for every type not used. Without --demand: the profile's example demand.
        Exit code 2 on bad input.
        """

        def body() -> None:
            settings = settings_for_command()
            search = settings.search
            overrides = {"solver": solver, "trials": trials, "time_budget_ms": budget_ms, "seed": seed}
            policy = policy_from_settings(
                search,
                multi_objective=multi_objective or search.multi_objective,
                **{k: v for k, v in overrides.items() if v is not None},
            )
            catalog = load_catalog(search.catalog)
            prof = resolve_profile(app_name, search.profiles, profile)
            check_profile(prof, catalog)
            forecast, running, source = _inputs(prof, demand, current, step_seconds=step_seconds, spread=spread)
            decision = allocate(forecast, catalog, prof, running, policy)
            payload = {**decision.to_dict(), "profile": profile or app_name, "demand": source, "current": running}
            if as_json:
                emit_json(payload)
            else:
                print_plan(decision, catalog, source, running)

        run_guarded(body, as_json=as_json, user_errors=(CatalogError, ForecastError, AllocationError))


def policy_from_settings(search: SearchSettings, **overrides: Any) -> Policy:
    """The :class:`Policy` for ``allocate`` from the settings group (same field names), plus overrides."""
    return Policy.from_settings(search, **overrides)


def parse_current(items: list[str]) -> dict[str, int]:
    """``["g6.xlarge=2", ...]`` -> ``{"g6.xlarge": 2}``."""
    out: dict[str, int] = {}
    for item in items:
        name, sep, count = item.partition("=")
        if not sep or not name or not count.strip().isdigit():
            raise UserError(f"--current {item!r}: expected TYPE=N with N a whole number, e.g. c7g.2xlarge=4")
        out[name.strip()] = out.get(name.strip(), 0) + int(count)
    return out


def _inputs(
    profile: AppProfile, demand: Path | None, current: list[str], *, step_seconds: int, spread: float
) -> tuple[Forecast, dict[str, int], str]:
    running = parse_current(current)
    start = pd.Timestamp.now(tz="UTC").floor(f"{step_seconds}s") + pd.Timedelta(seconds=step_seconds)
    if demand is not None:
        return read_demand(demand, profile, start=start, step_seconds=step_seconds, spread=spread), running, str(demand)
    if profile.example_demand is None:
        raise UserError(f"profile {profile.name!r} has no example_demand; pass --demand FILE")
    return example_forecast(profile, start=start), running or dict(profile.example_demand.current), "example"


def example_forecast(profile: AppProfile, *, start: pd.Timestamp) -> Forecast:
    """The profile's example demand: a linear ramp from base to peak with normal quantiles."""
    ex = profile.example_demand
    if ex is None:
        raise UserError(f"profile {profile.name!r} has no example_demand")
    base = np.array([ex.base[m] for m in profile.metric_names])
    peak = np.array([ex.peak[m] for m in profile.metric_names])
    median = np.linspace(base, peak, ex.steps)
    return Forecast.from_median(
        median, start=start, step_seconds=ex.step_seconds, metrics=profile.metric_names, spread=ex.spread
    )


def read_demand(path: Path, profile: AppProfile, *, start: pd.Timestamp, step_seconds: int, spread: float) -> Forecast:
    """A demand file (see ``DEMAND_HELP``) as a :class:`Forecast` of the profile's metrics."""
    if not path.is_file():
        raise UserError(f"demand file {path} not found")
    if path.suffix.lower() == ".json":
        try:
            return Forecast.from_dict(json.loads(path.read_text()))
        except json.JSONDecodeError as exc:
            raise UserError(f"demand file {path}: not valid JSON ({exc})") from None
    frame = pd.read_csv(path)
    if frame.empty:
        raise UserError(f"demand file {path} has no rows")
    if "ts" in frame.columns:
        ts = pd.to_datetime(frame.pop("ts"), utc=True)
        start = ts.iloc[0]
        if len(ts) > 1:
            step_seconds = int((ts.iloc[1] - ts.iloc[0]).total_seconds())
    frame = frame.drop(columns=[c for c in ("step",) if c in frame.columns])
    return _frame_forecast(frame, profile, path=path, start=start, step_seconds=step_seconds, spread=spread)


def _frame_forecast(
    frame: pd.DataFrame, profile: AppProfile, *, path: Path, start: pd.Timestamp, step_seconds: int, spread: float
) -> Forecast:
    metrics = list(profile.metric_names)
    quantile_cols = {c: c.split("@", 1) for c in frame.columns if "@" in c}
    if quantile_cols:
        levels = sorted({float(q) for _, q in quantile_cols.values()})
        values = np.empty((len(frame), len(metrics), len(levels)))
        for j, m in enumerate(metrics):
            for k, q in enumerate(levels):
                col = next((c for c, (mm, qq) in quantile_cols.items() if mm == m and float(qq) == q), None)
                if col is None:
                    raise UserError(f"demand file {path}: missing column {m}@{q:g} (have {list(frame.columns)})")
                values[:, j, k] = frame[col].to_numpy(float)
        return Forecast(start, step_seconds, metrics, levels, values)
    missing = [m for m in metrics if m not in frame.columns]
    if missing:
        raise UserError(
            f"demand file {path}: missing column(s) {missing} for app {profile.name!r}; have {list(frame.columns)}"
        )
    median = frame[metrics].to_numpy(float)
    return Forecast.from_median(median, start=start, step_seconds=step_seconds, metrics=metrics, spread=spread)


def print_plan(decision: Allocation, catalog: Catalog, source: str, running: dict[str, int]) -> None:
    console.print(f"[bold]{decision.app}[/]: plan from {source} demand ({decision.solver}, {decision.trials} trials)")
    table = Table(title="allocation", show_footer=True)
    table.add_column("type", footer="total")
    table.add_column("kind")
    table.add_column("nodes", justify="right", footer=str(sum(decision.nodes.values())))
    table.add_column("of which spot", justify="right")
    table.add_column("running now", justify="right", footer=str(sum(running.values())))
    table.add_column("USD/h", justify="right", footer=f"{decision.cost_per_hour:,.2f}")
    for name in sorted(set(decision.nodes) | set(running), key=catalog.names.index):
        rtype = catalog[name]
        n, s = decision.nodes.get(name, 0), decision.spot.get(name, 0)
        cost = (n - s) * rtype.price.on_demand + s * (rtype.price.spot or 0.0)
        table.add_row(name, rtype.kind, str(n), str(s), str(running.get(name, 0)), f"{cost:,.2f}")
    console.print(table)
    colour = "green" if decision.covered else "yellow" if decision.status == "uncovered" else "red"
    console.print(f"[{colour}]{decision.status}[/]: {decision.explanation}", highlight=False)
    console.print(
        f"one-off cost {decision.one_off_cost:,.2f} USD; score {decision.score:,.3f} USD/h; "
        f"risk {decision.risk:.2%} uncovered at the risk quantile",
        highlight=False,
    )
    if decision.runner_ups:
        ups = Table(title="runner-up mixes")
        for col in ("mix", "USD/h", "score", "note"):
            ups.add_column(col)
        for mix in decision.runner_ups:
            text = ", ".join(f"{k} x{v}" for k, v in mix.nodes.items())
            ups.add_row(text, f"{mix.cost_per_hour:,.2f}", f"{mix.score:,.3f}", mix.note)
        console.print(ups)
    rejected = Table(title="not chosen")
    rejected.add_column("type")
    rejected.add_column("reason")
    for name, reason in decision.rejected.items():
        rejected.add_row(name, reason)
    console.print(rejected)
