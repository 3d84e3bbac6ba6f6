"""`prescale plan --app APP`: one decision of the app's SLO policy, shown and not applied (a dry run).

Composition root for the decision: reads the catalog and the app profile (``SearchSettings.catalog`` and
``.profiles``), the demand (a file, or the profile's example), the running nodes (``--current``), the SLO
policy (``--slo-policy FILE``, else the untuned start for the app's violation budget), and decides with
the rule every caller runs (``cli.commands.rule.decide_once``: the orchestrate loop's assembly and
``prescale.decision.decide``, knobs from the SLO policy as the loop takes them), at the demand's first
step. ``covered`` says whether the plan meets the SLO (``cli/commands/rule.py``).

Demand comes from ``--demand FILE`` or, without it, from the profile's ``example_demand``: a median that
ramps linearly from ``base`` to ``peak`` over ``steps`` steps, with normal quantiles ``spread`` wide
(q0.9 = (1 + spread) x median), starting one step from now, and the profile's ``example_demand.current``
as the running nodes unless ``--current`` is given. Demand files are read and checked in ``demand.py``
(shared with ``prescale apply``); a demand too short for any usable node to be ready within it is refused
there too (``check_reach``).

``--pareto`` adds, beside the rule's decision and never instead of it, the reference expected-cost search
(``prescale.allocation.allocate``: Optuna over quantile, headroom, spot share and kinds, completed by the
exact MILP) with its cost/risk Pareto front, under the JSON key ``reference``; ``--solver``, ``--trials``,
``--budget-ms`` and ``--seed`` tune that search and are refused without ``--pareto``. No command applies
the reference: the rule is the one decision the loop, ``plan``, ``apply`` and the replay run (issue 14).
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import typer
from rich.table import Table

from cli.commands.common import UserError, console, emit_json, run_guarded, settings_for_command
from cli.commands.demand import DEMAND_HELP, check_reach, example_forecast, read_demand
from cli.commands.rule import SLO_POLICY_HELP, Ruled, SloPolicyError, decide_once, read_policy
from prescale.allocation import Allocation, AllocationError, SolverSettings, allocate
from prescale.catalog import AppProfile, Catalog, CatalogError, check_profile, load_catalog, resolve_profile
from prescale.decide_inputs import Held
from prescale.fleet import FleetError
from prescale.forecast import MAX_STEP_SECONDS, Forecast, ForecastError
from prescale.names import AppName, shown

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
        solver: str | None = typer.Option(
            None, "--solver", help="With --pareto: the reference search's solver, optuna or milp."
        ),
        trials: int | None = typer.Option(
            None, "--trials", help="With --pareto: most Optuna trials of the reference search.", min=1, max=100_000
        ),
        budget_ms: int | None = typer.Option(
            None, "--budget-ms", help="With --pareto: time budget of the reference search (at most 10 minutes).",
            min=1, max=600_000,
        ),
        seed: int | None = typer.Option(
            None, "--seed", help="With --pareto: seed of the reference search.", min=0, max=2**32 - 1
        ),
        slo_policy: Path | None = typer.Option(None, "--slo-policy", help=SLO_POLICY_HELP),
        multi_objective: bool = typer.Option(
            False, "--pareto", help="Also show the reference expected-cost search (allocate) and its cost/risk "
            "Pareto front, beside the rule's decision; never applied."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object (allocation, cost_per_hour...)."),
    ) -> None:
        """Decide an app's node counts per resource type for its demand with its SLO policy (no changes).

        The same rule the every-minute loop, `prescale apply` and the replay run, with knobs derived from the
        app's SLO (slo.violation_budget of the profile, or the settings' override): slow tiers (bare metal,
        FPGAs, GPUs) hold bands sized by their break-even, the fastest tier fills the rest by readiness.
        Prints the target nodes, their cost per hour, whether they meet the SLO (cover its covered demand
        over the steps the rule decides now), the rule's reasons and a reason for every type not used.
        Without --demand: the profile's example demand; without --slo-policy: the untuned policy for the
        budget. --pareto adds the reference expected-cost search for comparison. Exit code 2 on bad input.
        """

        def body() -> None:
            settings = settings_for_command()
            search = settings.search
            overrides = {"solver": solver, "trials": trials, "time_budget_ms": budget_ms, "seed": seed}
            given = [f"--{k.replace('_', '-').replace('time-', '')}" for k, v in overrides.items() if v is not None]
            if given and not multi_objective:
                raise UserError(f"{', '.join(given)} tune the reference search: pass --pareto with them (the "
                                "rule itself has no solver, trials or seed)")
            catalog = load_catalog(search.catalog)
            prof = resolve_profile(AppName(app_name, what="--app"), search.profiles, profile)
            check_profile(prof, catalog)
            forecast, running, source = _inputs(prof, demand, current, step_seconds=step_seconds, spread=spread)
            check_reach(forecast, catalog, prof, source=f"demand file {demand}" if demand else "the example demand")
            _known(running, catalog)
            ruled = decide_once(catalog, prof, forecast, Held(ready=running), settings, read_policy(slo_policy))
            payload = {**ruled.to_dict(), "profile": profile or app_name, "demand": source, "current": running}
            reference = None
            if multi_objective:
                searched = SolverSettings.from_settings(search, multi_objective=True,
                                                        **{k: v for k, v in overrides.items() if v is not None})
                reference = allocate(forecast, catalog, prof, running, searched)
                payload["reference"] = reference.to_dict()
            if as_json:
                emit_json(payload)
            else:
                print_plan(ruled, catalog, source, running, reference)

        run_guarded(body, as_json=as_json,
                    user_errors=(CatalogError, ForecastError, AllocationError, FleetError, SloPolicyError))


def _known(running: dict[str, int], catalog: Catalog) -> None:
    unknown = sorted(set(running) - set(catalog.names))
    if unknown:
        raise UserError(f"--current: unknown type(s) {unknown}; the catalog lists {', '.join(catalog.names)}")


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


def print_plan(
    ruled: Ruled, catalog: Catalog, source: str, running: dict[str, int], reference: Allocation | None = None
) -> None:
    fleet = ruled.assembled.fleet
    policy = ruled.policy
    console.print(f"[bold]{fleet.app}[/]: the {policy.rule} rule ({policy.setting}; "
                  f"{'tuned' if policy.tuned else 'untuned'} for a violation budget of {policy.violation_budget:.2%})"
                  f" on {source} demand ({fleet.step_seconds} s steps)", highlight=False)  # fmt: skip
    table = Table(title="target", show_footer=True)
    table.add_column("type", footer="total")
    table.add_column("kind")
    table.add_column("nodes", justify="right", footer=str(sum(ruled.nodes.values())))
    table.add_column("running now", justify="right", footer=str(sum(running.values())))
    table.add_column("USD/h", justify="right", footer=f"{ruled.cost_per_hour:,.2f}")
    for name in sorted(set(ruled.nodes) | set(running), key=catalog.names.index):
        rtype, n = catalog[name], ruled.nodes.get(name, 0)
        table.add_row(name, rtype.kind, str(n), str(running.get(name, 0)), f"{n * rtype.price.on_demand:,.2f}")
    console.print(table)
    colour, status = ("green", "meets the SLO") if ruled.covered else ("yellow", "does not meet the SLO")
    steps = ruled.assembled.inp.fleet.fast.ready + ruled.assembled.inp.hold + 1
    console.print(f"[{colour}]{status}[/]: the covered demand (1 + h) Q_q of the next {steps} step(s), once the "
                  "target's nodes serve",
                  highlight=False)
    for reason in ruled.reasons:
        console.print(f"- {reason}", highlight=False)
    rejected = Table(title="not chosen")
    rejected.add_column("type")
    rejected.add_column("reason")
    for name, reason in ruled.rejected.items():
        rejected.add_row(name, reason)
    console.print(rejected)
    if reference is not None:
        _print_reference(reference)


def _print_reference(reference: Allocation) -> None:
    mix = ", ".join(f"{k} x{v}" for k, v in reference.nodes.items()) or "nothing"
    console.print(f"[bold]reference[/] (allocate, {reference.solver}, {reference.trials} trials; not applied): "
                  f"{mix}, {reference.cost_per_hour:,.2f} USD/h, {reference.status}", highlight=False)
    if reference.pareto:
        front = Table(title="reference: cost/risk Pareto front")
        for col in ("mix", "USD/h", "risk"):
            front.add_column(col)
        for point in reference.pareto:
            text = ", ".join(f"{k} x{v}" for k, v in point.nodes.items())
            front.add_row(text, f"{point.cost_per_hour:,.2f}", f"{point.risk:.2%}")
        console.print(front)
