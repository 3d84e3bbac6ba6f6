"""One app's decision in an orchestrate cycle, as plain data in and a ledger row and a plan out.

The orchestrate tasks (``tasks/orchestrate.py``) fetch; this module decides. Per app:

* :class:`Gathered`: everything the decision needs, read before deciding (recent rows, phase, the champion's
  forecast of stored metrics or why there is none, its health, the rule's previous state, a gather error);
* :class:`ClusterView`: what the cluster holds for the app (holdings per type) and what the other apps claim
  (for quotas), from one observation of the cluster per cycle;
* :func:`plan_app` turns both into a :class:`Decided`: the champion's forecast bound to the profile's metrics
  (:func:`demand_of`), the rule's input (``prescale.decide_inputs.assemble``), the predictive rule
  (``prescale.decision.decide``), the make-before-break plan (``prescale.cluster.make_plan``) and the
  :class:`~prescale.ledger.LedgerRow` saying what was decided and why. The row's mode is ``predictive``
  (the champion's forecast decided), ``fallback`` (a forecast the rule could not use) or ``reactive``
  (no champion);
* :func:`cycle_table`: the cycle's Markdown table (the flow publishes it as an artifact).

Pure: no clock, no settings, no I/O. The catalog, the knobs, the guardrails and the cover solver are the
caller's (a cover cache is a speed matter only); the row's ``duration_s`` is the caller's to time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pandas as pd

from prescale.catalog import AppProfile, Catalog
from prescale.cluster import ClusterState, Guardrails, Holding, Plan, make_plan
from prescale.decide_inputs import Held, Knobs, assemble, rejected, state_to_json, target_nodes
from prescale.decision import Covers, RuleState, decide
from prescale.fleet import Fleet
from prescale.forecast import Forecast
from prescale.ledger import LedgerRow
from prescale.monitoring import Health
from prescale.orchestrate import bind_forecast, observed_demand, sources, summarise_forecast
from prescale.phases import DEFAULT_PHASE


@dataclass
class Gathered:
    """Everything one decision needs, fetched before deciding (the gather step fills it in as it reads)."""

    app: str
    now: pd.Timestamp
    profile: AppProfile
    rows: pd.DataFrame
    phase: str
    forecast: Forecast | None = None  # of stored metrics, from the champion
    champion_version: str | None = None
    why: str = ""
    health: Health | None = None
    error: str = ""
    read: frozenset[str] = frozenset()  # the metrics asked of the store
    retrain: bool = False  # the champion is missing, failed or outside its budget: ask for retraining
    rule_state: RuleState | None = None  # the predictive rule's state after the app's previous decision

    def fall_back(self, reason: str) -> None:
        """No forecast from the champion: the rule's reactive fallback decides, and retraining is requested."""
        self.why, self.retrain = f"{reason}; reactive fallback, retraining requested", True


@dataclass(frozen=True)
class ClusterView:
    """The cluster as one app's decision sees it: its holdings per type, the other apps' nodes per type."""

    holdings: Mapping[str, Holding]
    others: Mapping[str, int]

    @classmethod
    def of(cls, state: ClusterState, app: str) -> ClusterView:
        return cls(holdings=state.holdings(app), others=state.others(app))


@dataclass
class Decided:
    """One app's ledger row and the plan that carries its decision out (None: nothing to apply)."""

    app: str
    row: LedgerRow
    plan: Plan | None = None

    @classmethod
    def failed(cls, app: str, now: pd.Timestamp, error: BaseException) -> Decided:
        """The row of an app whose gather or decide step raised: ``failed``, with the error."""
        row = LedgerRow(decided_at=now, app=app, phase=DEFAULT_PHASE, mode="none", why="decision failed",
                        champion_version=None, covered_quantile=None, cost_per_hour=0.0, outcome="failed",
                        error=f"{type(error).__name__}: {error}")  # fmt: skip
        return cls(app, row)


def plan_app(
    gathered: Gathered,
    view: ClusterView,
    *,
    catalog: Catalog,
    knobs: Knobs,
    guardrails: Guardrails,
    covers: Callable[[Fleet], Covers],
) -> Decided:
    """The predictive rule on the assembled input, then the plan, recorded as a ledger row (``planned``);
    a gather error is a ``skipped`` row with no plan."""
    profile = gathered.profile
    row = LedgerRow(
        decided_at=gathered.now, app=gathered.app, phase=gathered.phase, mode="reactive", why=gathered.why,
        champion_version=gathered.champion_version, covered_quantile=knobs.quantile,
        cost_per_hour=0.0, outcome="skipped", health=gathered.health.to_dict() if gathered.health else {},
    )  # fmt: skip
    if gathered.error:
        row.error, row.why = gathered.error, "no decision: " + gathered.error
        return Decided(gathered.app, row)
    observed = observed_demand(gathered.rows, profile)
    forecast, row.mode, note = demand_of(gathered.forecast, profile)
    assembled = assemble(catalog, profile, forecast=forecast, observed=observed, held=Held.of(view.holdings),
                         knobs=knobs, state=gathered.rule_state, now=gathered.now, covers=covers,
                         fallback_step_seconds=data_step(gathered.rows))  # fmt: skip
    decision = decide(assembled.inp)
    fleet = assembled.fleet
    nodes = target_nodes(fleet, decision)
    plan = make_plan(gathered.app, view.holdings, nodes, catalog=catalog, profile=profile, guardrails=guardrails,
                     others=view.others)  # fmt: skip
    if decision.fallback and row.mode == "predictive":
        row.mode = "fallback"
    row.why = "; ".join(part for part in (gathered.why + note, *assembled.notes, *decision.reasons) if part)
    row.observed = observed
    row.forecast = summarise_forecast(forecast, forecast.metrics[0]) if forecast is not None else {}
    row.allocation, row.cost_per_hour = nodes, fleet.cost_per_hour(decision.target)
    covered = assembled.inp.covered
    row.reasons = rejected(catalog, profile, fleet, decision, horizon=None if covered is None else len(covered))
    row.rule_state = state_to_json(decision.state)
    row.plan = plan.to_dict().get("steps", [])
    row.retrain_requested = gathered.retrain
    row.outcome = "planned"
    return Decided(gathered.app, row, plan=plan)


def data_step(rows: pd.DataFrame) -> int:
    """The metrics' step in seconds (the median gap between instants; 60 with one instant)."""
    instants = rows["ts"].drop_duplicates().sort_values()  # long rows: one per metric per instant
    return int(instants.diff().dropna().median().total_seconds()) if len(instants) > 1 else 60


def demand_of(forecast: Forecast | None, profile: AppProfile) -> tuple[Forecast | None, str, str]:
    """The champion's forecast in the profile's metrics (None without one), the mode, and what ``why`` adds."""
    if forecast is None:
        return None, "reactive", ""
    bound, unbound = bind_forecast(forecast, profile)
    return bound, "predictive", unbound_note(unbound, profile)


def unbound_note(unbound: tuple[str, ...], profile: AppProfile) -> str:
    """Why some profile metrics have no forecast: no ``source:`` in the profile, or a source the champion
    was not trained on (it forecasts only what its training read)."""
    bound = sources(profile)
    no_source = [name for name in unbound if name not in bound]
    not_forecast = {name: bound[name][0] for name in unbound if name in bound}
    note = f"; no data for {no_source}: covered at zero" if no_source else ""
    if not_forecast:
        pairs = ", ".join(f"{source!r} (source of {name!r})" for name, source in not_forecast.items())
        note += (f"; the champion does not forecast {pairs}: covered at zero, raised to observed demand by "
                 "the reactive floor until a training includes that metric")
    return note


def cycle_table(decided: list[Decided]) -> str:
    """The cycle as a Markdown table: one line per app (phase, mode, allocation, cost, outcome, why)."""
    lines = ["# Orchestrate cycle", "", "| app | phase | mode | allocation | $/h | outcome | why |",
             "|---|---|---|---|---:|---|---|"]  # fmt: skip
    for d in decided:
        alloc = ", ".join(f"{n}x {t}" for t, n in sorted(d.row.allocation.items())) or "-"
        why = (d.row.why + (f" ({d.row.error})" if d.row.error else "")).replace("|", "/")
        lines.append(f"| {d.app} | {d.row.phase} | {d.row.mode} | {alloc} | {d.row.cost_per_hour:.2f} | "
                     f"{d.row.outcome} | {why} |")  # fmt: skip
    return "\n".join(lines) + "\n"
