"""`prescale apply --app APP`: decide (the predictive rule, then the plan) and act (the cluster backend).

Composition root for one decision carried out, in order: the app name (an ``AppName``) -> settings ->
catalog and the app's profile -> demand (``--demand FILE``, or the profile's example ramp, checked as in
``prescale plan``; all of the user's input is checked before the cluster is opened) -> the cluster
(``cluster.backend``: the simulated one under PRESCALE_HOME by default, or Kubernetes) -> ``observe()`` ->
the app's SLO policy (``--slo-policy FILE``, else the untuned start for its violation budget) and its
rule on what the app holds, booting nodes with their expected arrival (``cli.commands.rule.decide_once``:
the orchestrate loop's rule, knobs from the SLO policy) -> ``make_plan`` with the
guardrails from ``ClusterSettings`` -> with ``--dry-run`` stop here and show the plan (the same code
without the apply); otherwise ``cluster.apply(plan)`` and show each step's outcome.

Exit codes: 0 applied, nothing to do, or a dry run; 1 the plan failed or was rolled back (the report says
which step and why; the cluster is left consistent and the next run continues from it), or the cluster's
API stayed unreachable; 2 bad input, or a plan blocked by a guardrail (nothing was changed).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd
import typer
from rich.table import Table

from cli.commands.common import (
    EXIT_USER_ERROR,
    console,
    emit_json,
    err_console,
    run_guarded,
    settings_for_command,
)
from cli.commands.demand import DEMAND_HELP, check_reach, example_forecast, read_demand
from cli.commands.rule import SLO_POLICY_HELP, SloPolicyError, decide_once, read_policy
from prescale.allocation import AllocationError
from prescale.catalog import CatalogError, check_profile, load_catalog, resolve_profile
from prescale.cluster import (
    ApplyReport,
    ClusterError,
    ClusterUnavailable,
    Plan,
    PlanError,
    guardrails_from,
    make_plan,
    open_cluster,
)
from prescale.decide_inputs import Held
from prescale.fleet import FleetError
from prescale.forecast import ForecastError
from prescale.names import AppName


def register(app: typer.Typer) -> None:
    @app.command()
    def apply(
        app_name: str = typer.Option(..., "--app", help="App to decide for and provision."),
        profile: str | None = typer.Option(None, "--profile", help="Use this profile (infra/apps/NAME.yaml)."),
        demand: Path | None = typer.Option(None, "--demand", help=DEMAND_HELP),
        slo_policy: Path | None = typer.Option(None, "--slo-policy", help=SLO_POLICY_HELP),
        dry_run: bool = typer.Option(False, "--dry-run", help="Show the plan; change nothing."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object (allocation, plan, report)."),
    ) -> None:
        """Decide the app's nodes for its demand with its SLO policy and move it there make-before-break.

        The rule and knobs are the ones the every-minute loop and `prescale plan` run, derived from the app's
        SLO (without --slo-policy: the untuned policy for its violation budget), on what the cluster holds now.

        New capacity is provisioned and the app started there before old capacity is drained; a step not done
        within the rollout deadline is rolled back. Backend and guardrails: PRESCALE_CLUSTER__* (simulated by
        default, its state under PRESCALE_HOME). Exit code 1 if the plan failed or was rolled back, 2 on bad
        input or a plan a guardrail blocked.
        """
        outcome: dict[str, Any] = {}

        def body() -> None:
            try:
                result = decide_and_apply(app_name, profile=profile, demand=demand, dry_run=dry_run,
                                          slo_policy=slo_policy)  # fmt: skip
            except ClusterUnavailable as exc:  # not bad input: the cluster's API is down; exit 1 below
                outcome["unavailable"] = exc
                return
            outcome.update(result)
            if as_json:
                emit_json(result["payload"])
            else:
                print_result(result["plan"], result["report"], result["payload"])

        run_guarded(
            body, as_json=as_json,
            user_errors=(CatalogError, ForecastError, AllocationError, FleetError, PlanError, ClusterError,
                         SloPolicyError),
        )
        if "unavailable" in outcome:
            error = outcome["unavailable"]
            if as_json:
                emit_json({"error": str(error), "type": type(error).__name__})
            else:
                err_console.print(f"[bold red]error:[/] {error}", highlight=False)
            raise typer.Exit(1)
        plan, report = outcome.get("plan"), outcome.get("report")
        if plan is not None and plan.blocked:
            raise typer.Exit(EXIT_USER_ERROR)
        if report is not None and not report.ok:
            raise typer.Exit(1)


def decide_and_apply(app: str, *, profile: str | None, demand: Path | None, dry_run: bool,
                     slo_policy: Path | None = None) -> dict[str, Any]:  # fmt: skip
    """The command's work, returned for printing: the rule's target, the plan and (unless dry) the report."""
    app = AppName(app, what="--app")
    settings = settings_for_command()
    catalog = load_catalog(settings.search.catalog)
    prof = resolve_profile(app, settings.search.profiles, profile)
    check_profile(prof, catalog)
    forecast, source = _demand(prof, demand)
    check_reach(forecast, catalog, prof, source=f"demand file {demand}" if demand else "the example demand")
    policy = read_policy(slo_policy)
    cluster = open_cluster(settings.cluster, catalog, now=time.time())
    state = cluster.observe()
    holdings = state.holdings(app)
    running = {t: h.nodes for t, h in holdings.items() if h.nodes}
    ruled = decide_once(catalog, prof, forecast, Held.of(holdings), settings, policy)
    plan = make_plan(
        app,
        holdings,
        ruled.nodes,
        catalog=catalog,
        profile=prof,
        guardrails=guardrails_from(settings.cluster),
        others=state.others(app),
    )
    report = None if dry_run or plan.blocked else cluster.apply(plan)
    payload = {
        "app": app,
        "backend": settings.cluster.backend,
        "dry_run": dry_run,
        "demand": source,
        "current": running,
        "allocation": ruled.nodes,
        "cost_per_hour": round(ruled.cost_per_hour, 4),
        "slo": ruled.to_dict()["slo"],
        "covered": ruled.covered,
        "rejected": ruled.rejected,
        "reasons": ruled.reasons,
        "plan": plan.to_dict(),
        "status": "blocked" if plan.blocked else ("dry-run" if report is None else report.status),
        "report": report.to_dict() if report is not None else None,
    }
    return {"plan": plan, "report": report, "payload": payload}


def _demand(prof, demand: Path | None):
    start = pd.Timestamp.now(tz="UTC").floor("60s") + pd.Timedelta(seconds=60)
    if demand is not None:
        return read_demand(demand, prof, start=start, step_seconds=60, spread=0.15), str(demand)
    if prof.example_demand is None:
        raise PlanError(f"profile {prof.name!r} has no example_demand; pass --demand FILE")
    return example_forecast(prof, start=start), "example"


def print_result(plan: Plan, report: ApplyReport | None, payload: dict[str, Any]) -> None:
    alloc = ", ".join(f"{t} x{n}" for t, n in payload["allocation"].items()) or "nothing"
    console.print(
        f"[bold]{plan.app}[/] on {payload['backend']}: allocation {alloc} "
        f"({payload['cost_per_hour']:,.2f} USD/h, {'covered' if payload['covered'] else 'NOT covered'})",
        highlight=False,
    )
    if plan.blocked:
        for reason in plan.blocked:
            console.print(f"[bold red]blocked:[/] {reason}", highlight=False)
        return
    table = Table(title="plan (make-before-break)" + (" - dry run" if report is None else ""))
    for col in ("#", "step", "outcome", "seconds", "detail"):
        table.add_column(col)
    done = {(o.step.index, o.rollback): o for o in report.outcomes} if report else {}
    for step in plan.steps:
        o = done.get((step.index, False))
        table.add_row(
            str(step.index),
            step.describe(),
            o.status if o else "-",
            f"{o.seconds:,.0f}" if o else "",
            o.detail if o else "",
        )
    for o in (x for x in (report.outcomes if report else ()) if x.rollback):
        table.add_row("", "rollback: " + o.step.describe(), o.status, f"{o.seconds:,.0f}", o.detail)
    console.print(table)
    console.print(
        f"cost {plan.cost_before:,.2f} -> {plan.cost_after:,.2f} USD/h (peak {plan.peak_cost:,.2f} while "
        "old and new overlap)",
        highlight=False,
    )
    if report is None:
        console.print("dry run: nothing changed" if plan.steps else "nothing to change")
        return
    colour = "green" if report.ok else "red"
    console.print(f"[{colour}]{report.status}[/]: {report.detail}", highlight=False)
    floor = ", ".join(f"{m} {v:,.1f}" for m, v in zip(report.metrics, report.floor, strict=True))
    low = ", ".join(f"{m} {v:,.1f}" for m, v in zip(report.metrics, report.serving_min, strict=True))
    console.print(f"serving capacity: lowest {low} (floor {floor})", highlight=False)
