"""`prescale plan --app APP`: one allocation decision, shown and not applied (a dry run).

Composition root for the decision: reads the catalog and the app profile (``SearchSettings.catalog`` and
``.profiles``), the demand (a file, or the profile's example), the running nodes (``--current``), builds the
:class:`~prescale.allocation.Policy` from ``SearchSettings`` and calls the pure ``allocate``.

Until the live forecast is wired in, demand comes from ``--demand FILE`` or, without it, from the profile's
``example_demand``: a median that ramps linearly from ``base`` to ``peak`` over ``steps`` steps, with normal
quantiles ``spread`` wide (q0.9 = (1 + spread) x median), starting one step from now, and the profile's
``example_demand.current`` as the running nodes unless ``--current`` is given. Demand files are read and
checked in ``demand.py`` (shared with ``prescale apply``); a demand too short for any usable node to be ready
within it is refused there too (``check_reach``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd
import typer
from rich.table import Table

from prescale.allocation import Allocation, AllocationError, Policy, allocate
from prescale.catalog import AppProfile, Catalog, CatalogError, check_profile, load_catalog, resolve_profile
from prescale.commands.common import UserError, console, emit_json, run_guarded, settings_for_command
from prescale.commands.demand import DEMAND_HELP, check_reach, example_forecast, read_demand
from prescale.forecast import MAX_STEP_SECONDS, Forecast, ForecastError
from prescale.names import AppName, shown
from prescale.settings import SearchSettings

# Most running nodes of one type --current accepts: above any quota a cloud account is granted, and far below
# where a count stops fitting the search's 64-bit integers (99999999999999999999 raised OverflowError).
MAX_CURRENT_NODES = 100_000


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
        step_seconds: int = typer.Option(
            60, "--step-seconds", help="Step of a CSV without ts.", min=1, max=MAX_STEP_SECONDS
        ),
        spread: float = typer.Option(
            0.15, "--spread", help="(q0.9 - q0.5) / q0.5 for median-only CSV.", min=0, max=10
        ),
        solver: str | None = typer.Option(None, "--solver", help="optuna or milp (default: settings)."),
        trials: int | None = typer.Option(None, "--trials", help="Most Optuna trials.", min=1, max=100_000),
        budget_ms: int | None = typer.Option(
            None, "--budget-ms", help="Time budget of the search (at most 10 minutes).", min=1, max=600_000
        ),
        seed: int | None = typer.Option(None, "--seed", help="Seed of the search.", min=0, max=2**32 - 1),
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
            prof = resolve_profile(AppName(app_name, what="--app"), search.profiles, profile)
            check_profile(prof, catalog)
            forecast, running, source = _inputs(prof, demand, current, step_seconds=step_seconds, spread=spread)
            check_reach(forecast, catalog, prof, source=f"demand file {demand}" if demand else "the example demand")
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
    """``["g6.xlarge=2", ...]`` -> ``{"g6.xlarge": 2}`` (a repeated type adds up), each count at most
    :data:`MAX_CURRENT_NODES`."""
    out: dict[str, int] = {}
    for item in items:
        name, sep, count = (part.strip() for part in item.partition("="))
        if not sep or not name or not re.fullmatch(r"[0-9]+", count):
            raise UserError(f"--current {shown(item)}: expected TYPE=N with N a whole number, e.g. c7g.2xlarge=4")
        out[name] = out.get(name, 0) + int(count)
        if out[name] > MAX_CURRENT_NODES:
            raise UserError(f"--current {shown(item)}: {out[name]} nodes of {shown(name)} is more than the "
                            f"{MAX_CURRENT_NODES:,} accepted per type; give the number of nodes running now")
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
