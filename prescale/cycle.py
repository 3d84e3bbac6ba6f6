"""One app's decision in an orchestrate cycle, as plain data in and a ledger row and a plan out.

The orchestrate tasks (``tasks/orchestrate.py``) fetch; this module decides. Per app:

* :class:`Gathered`: everything the decision needs, read before deciding (recent rows, phase, the champion's
  forecast of stored metrics or why there is none, its health, the app's SLO budget and the champion's tuned
  :class:`~prescale.slo.SloPolicy` if any, the rule's and the SLO controller's previous state, a gather error);
* :class:`ClusterView`: what the cluster holds for the app (holdings per type) and what the other apps claim
  (for quotas), from one observation of the cluster per cycle;
* :func:`plan_app` turns both into a :class:`Decided`. First the SLO (:func:`slo_step`): the policy is the
  champion's tuned one at the app's budget (``SloPolicy.for_budget``) or the untuned start
  (``SloPolicy.untuned``); the online controller (``prescale.slo.controller.Tracker``) observes whether the
  newest observed minute was under-provisioned (its demand per profile metric above the serving capacity
  of the app's *ready* nodes) and gives the scale ``s``; the knobs follow (``prescale.orchestrate.knobs_for``).
  Then the champion's forecast bound to the profile's metrics (:func:`demand_of`; none under the policy's
  ``reactive`` rule, which decides on observed demand alone: the decision's reactive rule, HPA-like, whose
  recent recommendations travel in ``rule_state`` as the predictive rule's keep levels do), the rule's input
  (``prescale.decide_inputs.assemble``), the rule (``prescale.decision.decide``), the make-before-break
  plan (``prescale.cluster.make_plan``) and the :class:`~prescale.ledger.LedgerRow` saying what was decided
  and why (``why`` starts with the policy's rule and reason; ``slo`` carries the budget, rule, setting,
  scale and realised rate; ``rule_state`` the rule's and the controller's state for the next decision).
  The row's mode is ``predictive`` (the champion's forecast decided), ``fallback`` (a forecast the rule
  could not use) or ``reactive`` (no champion, or the policy's reactive rule);
* :func:`cycle_table`: the cycle's Markdown table (the flow publishes it as an artifact).

Pure: no clock, no settings, no I/O. The catalog, the hold window and margin, the guardrails and the cover
solver are the caller's (a cover cache is a speed matter only); the row's ``duration_s`` is the caller's to
time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from prescale.catalog import AppProfile, Catalog
from prescale.cluster import ClusterState, Guardrails, Holding, Plan, make_plan
from prescale.decide_inputs import Held, SloState, assemble, fleet_of, rejected, state_to_json, target_nodes
from prescale.decision import Covers, RuleState, decide
from prescale.fleet import Fleet
from prescale.forecast import Forecast
from prescale.ledger import LedgerRow
from prescale.monitoring import Health
from prescale.orchestrate import bind_forecast, knobs_for, observed_demand, sources, summarise_forecast
from prescale.phases import DEFAULT_PHASE
from prescale.slo.controller import Tracker, under_provisioned
from prescale.slo.policy import SloPolicy

LOOP_SECONDS = 60  # the orchestrate deployment's interval (prefect.yaml): the loop decides every minute


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
    budget: float | None = None  # the SLO's violation budget (profile, then settings); None: the profile's
    slo_policy: SloPolicy | None = None  # the champion's tuned policy; None: untuned
    slo_state: SloState | None = None  # the SLO controller's state after the app's previous decision

    @property
    def violation_budget(self) -> float:
        return self.profile.slo.violation_budget if self.budget is None else self.budget

    def policy(self) -> SloPolicy:
        """The policy this decision runs: the tuned one at the app's budget, else the untuned start."""
        budget = self.violation_budget
        return self.slo_policy.for_budget(budget) if self.slo_policy is not None else SloPolicy.untuned(budget)

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


@dataclass(frozen=True)
class SloStep:
    """The SLO part of one decision: the policy, the controller's state after observing, and what it saw."""

    policy: SloPolicy
    state: SloState
    missed: bool | None  # the newest observed minute was under-provisioned (None: no new observation)

    @property
    def scale(self) -> float:
        return self.state.tracker.scale

    @property
    def why(self) -> str:
        return f"{self.policy.rule} rule ({'; '.join(self.policy.reasons) or self.policy.setting})"

    def summary(self) -> dict:
        """The ledger row's ``slo``."""
        tracker = self.state.tracker
        return {"violation_budget": self.policy.violation_budget, "rule": self.policy.rule,
                "setting": self.policy.setting, "tuned": self.policy.tuned, "scale": round(self.scale, 6),
                "missed": self.missed, "steps": tracker.steps, "misses": tracker.misses,
                "realised_rate": None if tracker.rate is None else round(tracker.rate, 6)}  # fmt: skip


def slo_step(gathered: Gathered, view: ClusterView, catalog: Catalog, observed: Mapping[str, float]) -> SloStep:
    """The policy, and the controller updated with the newest observed minute (see the module docstring).

    Under-provisioned: the demand observed per profile metric above what the app's ready nodes serve
    (``Fleet.capacity``; booting nodes served nothing yet). The minute counts once: an observation no newer
    than the one the previous decision counted leaves the state as it was."""
    policy = gathered.policy()
    before = gathered.slo_state or SloState()
    newest = newest_observed(gathered.rows, gathered.profile)
    if newest is None or (before.observed_at is not None and newest <= before.observed_at):
        return SloStep(policy, before, None)
    fleet = fleet_of(catalog, gathered.profile, data_step(gathered.rows))
    ready = Held.of(view.holdings).ready
    serving = fleet.capacity([ready.get(name, 0) for name in fleet.names])
    metrics = [j for j, m in enumerate(fleet.metrics) if m in observed]
    missed = under_provisioned([observed[fleet.metrics[j]] for j in metrics], [serving[j] for j in metrics])
    if missed is None:
        return SloStep(policy, before, None)
    tracker = Tracker(policy.violation_budget, gain=policy.gain)
    return SloStep(policy, SloState(tracker.update(before.tracker, missed), newest), missed)


def newest_observed(rows: pd.DataFrame, profile: AppProfile) -> pd.Timestamp | None:
    """The instant of the newest observation of a bound profile metric (None: none observed)."""
    stored = [source for source, _ in sources(profile).values()]
    if not len(rows) or not stored:
        return None
    seen = np.isin(rows["metric"].to_numpy(), stored) & ~np.isnan(rows["value"].to_numpy(dtype=float))
    return pd.Timestamp(rows["ts"][seen].max()) if seen.any() else None


def plan_app(
    gathered: Gathered,
    view: ClusterView,
    *,
    catalog: Catalog,
    hold_minutes: float,
    margin: float,
    guardrails: Guardrails,
    covers: Callable[[Fleet], Covers],
) -> Decided:
    """The SLO's policy and controller, then its rule on the assembled input, then the plan, recorded as a
    ledger row (``planned``); a gather error is a ``skipped`` row with no plan."""
    profile = gathered.profile
    row = LedgerRow(
        decided_at=gathered.now, app=gathered.app, phase=gathered.phase, mode="reactive", why=gathered.why,
        champion_version=gathered.champion_version, covered_quantile=None,
        cost_per_hour=0.0, outcome="skipped", health=gathered.health.to_dict() if gathered.health else {},
    )  # fmt: skip
    if gathered.error:
        row.error, row.why = gathered.error, "no decision: " + gathered.error
        return Decided(gathered.app, row)
    observed = observed_demand(gathered.rows, profile)
    slo = slo_step(gathered, view, catalog, observed)
    knobs = knobs_for(slo.policy, slo.scale, hold_minutes=hold_minutes, margin=margin)
    reactive = slo.policy.rule == "reactive"
    forecast, row.mode, note = demand_of(None if reactive else gathered.forecast, profile)
    if reactive and gathered.forecast is not None:
        note += "; the policy's reactive rule decides on observed demand: the forecast is not used"
    assembled = assemble(catalog, profile, forecast=forecast, observed=observed, held=Held.of(view.holdings),
                         knobs=knobs, state=gathered.rule_state, now=gathered.now, covers=covers,
                         fallback_step_seconds=data_step(gathered.rows),
                         decision_seconds=LOOP_SECONDS)  # fmt: skip
    decision = decide(assembled.inp)
    fleet = assembled.fleet
    nodes = target_nodes(fleet, decision)
    plan = make_plan(gathered.app, view.holdings, nodes, catalog=catalog, profile=profile, guardrails=guardrails,
                     others=view.others)  # fmt: skip
    if decision.fallback and row.mode == "predictive":
        row.mode = "fallback"
    row.why = "; ".join(part for part in (slo.why, gathered.why + note, *assembled.notes, *decision.reasons)
                        if part)  # fmt: skip
    row.covered_quantile = None if reactive else knobs.quantile
    row.observed = observed
    row.forecast = summarise_forecast(forecast, forecast.metrics[0]) if forecast is not None else {}
    row.allocation, row.cost_per_hour = nodes, fleet.cost_per_hour(decision.target)
    covered = assembled.inp.covered
    row.reasons = rejected(catalog, profile, fleet, decision, horizon=None if covered is None else len(covered))
    row.rule_state = state_to_json(decision.state, slo.state)
    row.slo = slo.summary()
    row.plan = plan.to_dict().get("steps", [])
    row.retrain_requested = gathered.retrain
    row.outcome = "planned"
    return Decided(gathered.app, row, plan=plan)


def data_step(rows: pd.DataFrame) -> int:
    """The metrics' step in seconds (the median gap between instants; 60 with one instant)."""
    instants = np.unique(pd.DatetimeIndex(rows["ts"]).as_unit("ns").asi8)  # long rows: one per metric per instant
    return int(np.median(np.diff(instants)) / 1e9) if len(instants) > 1 else 60


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


def cycle_table(decided: list[Decided], *, picture: str | None = None, note: str = "") -> str:
    """The cycle as a Markdown table: one line per app (phase, mode, the SLO's budget, rule and setting and
    the realised violation rate so far, allocation, cost, outcome, why). Above it, ``note`` and, when given,
    ``picture`` (an image URI: the task layer's drawing of the recent decisions), so the page opens on them."""
    lines = ["# Orchestrate cycle", ""]
    if note:
        lines += [note, ""]
    if picture:
        lines += [f"![observed demand against decided capacity]({picture})", ""]
    lines += ["| app | phase | mode | SLO budget | rule (setting) | realised | allocation | $/h | outcome | why |",
              "|---|---|---|---:|---|---:|---|---:|---|---|"]  # fmt: skip
    for d in decided:
        alloc = ", ".join(f"{n}x {t}" for t, n in sorted(d.row.allocation.items())) or "-"
        why = (d.row.why + (f" ({d.row.error})" if d.row.error else "")).replace("|", "/")
        slo = d.row.slo or {}
        budget = f"{slo['violation_budget']:.2%}" if "violation_budget" in slo else "-"
        rule = f"{slo['rule']} ({slo['setting']})".replace("|", "/") if "rule" in slo else "-"
        rate = slo.get("realised_rate")
        realised = f"{rate:.2%} of {slo.get('steps', 0)}" if rate is not None else "-"
        lines.append(f"| {d.app} | {d.row.phase} | {d.row.mode} | {budget} | {rule} | {realised} | {alloc} | "
                     f"{d.row.cost_per_hour:.2f} | {d.row.outcome} | {why} |")  # fmt: skip
    return "\n".join(lines) + "\n"
