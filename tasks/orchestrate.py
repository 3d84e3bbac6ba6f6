"""Prefect tasks of the orchestrate loop: gather (I/O), decide (pure CPU), apply (cluster), record (ledger).

Per app, ``gather`` reads everything a decision needs (recent rows, the phase
report, the ledger's recent decisions for monitoring and the rule's state after
the app's newest decision, the champion's forecaster: registry I/O, cached per
process by ``ChampionLoader`` and refreshed when the alias moves) and ``decide``
turns it into a decision of the predictive rule and a plan with no I/O:
``prescale.decide_inputs.assemble`` builds the rule's input (the champion's
forecast bound to the profile's metrics, its steps still ahead at ``now``; the
last observed demand as the reactive floor; what the cluster holds, booting
nodes by expected arrival; the knobs of ``prescale.orchestrate.knobs_from``; the
rule's previous state), ``prescale.decision.decide`` decides (the rule the replay
scores and ``prescale plan`` / ``apply`` run), and ``make_plan`` turns its target
into the make-before-break plan. ``apply_plans`` then carries the plans out one
app after another through the one cluster backend (the simulated cluster keeps
one state file; Kubernetes sees one writer), and ``record`` appends one ledger
row per app, with the rule's new state in ``rule_state``. A failure of one app
becomes that app's row (``outcome="failed"`` with the error): it never stops the
others.

Training and serving read the same metrics: ``gather`` asks the store for the
profile's source metrics and every input of the champion, which may be more (a
mapping that stores two metrics trains on both). Every champion failure (missing,
outside its error budget, failing to load or forecast) means no forecast, so the
rule's reactive fallback (the fastest tier covers observed demand over the target
utilisation), a ``why`` saying so, and ``retrain_requested`` on the row, which the
flow turns into one retraining request per cycle. The row's mode is
``predictive`` (the champion's forecast decided), ``fallback`` (a forecast the rule
could not use) or ``reactive`` (no champion).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE

from models.registry import ChampionLoader, Registry
from models.series import panel_from_long, phase_labels
from prescale.catalog import AppProfile, check_profile, load_catalog, resolve_profile
from prescale.cluster import guardrails_from, make_plan, open_cluster
from prescale.decide_inputs import Held, assemble, rejected, state_from_json, state_to_json, target_nodes
from prescale.decision import RuleState
from prescale.decision import decide as decide_rule
from prescale.forecast import Forecast
from prescale.ledger import DecisionRow, Ledger
from prescale.metrics.store import MetricsStore
from prescale.monitoring import Health, forecast_health
from prescale.names import AppName
from prescale.orchestrate import bind_forecast, knobs_from, observed_demand, sources, summarise_forecast
from prescale.phase_reports import read_report
from prescale.phases import DEFAULT_PHASE, PhaseReport, current_phase
from prescale.replay.covers import shared_covers
from prescale.settings import Settings
from tasks.ingest import IO_RETRIES, IO_RETRY_DELAYS

_LOADERS: dict[str, ChampionLoader] = {}


def champion_loader(tracking_uri: str) -> ChampionLoader:
    """One loader per registry per process, so champions stay cached across cycles of a long-lived worker."""
    if tracking_uri not in _LOADERS:
        _LOADERS[tracking_uri] = ChampionLoader(Registry(tracking_uri))
    return _LOADERS[tracking_uri]


@dataclass
class Gathered:
    """Everything one decision needs, fetched before deciding."""

    app: str
    now: pd.Timestamp
    profile: AppProfile
    rows: pd.DataFrame
    phase: str
    forecast: Any = None  # a Forecast of stored metrics, from the champion
    champion_version: str | None = None
    why: str = ""
    health: Health | None = None
    error: str = ""
    read: frozenset[str] = frozenset()  # the metrics asked of the store
    retrain: bool = False  # the champion is missing, failed or outside its budget: ask for retraining
    rule_state: RuleState | None = None  # the predictive rule's state after the app's previous decision


@dataclass
class Decided:
    app: str
    row: DecisionRow
    plan: Any = None


@task(name="gather-inputs", retries=IO_RETRIES, retry_delay_seconds=IO_RETRY_DELAYS, cache_policy=NONE)
def gather(app: str, now: pd.Timestamp, settings: Settings) -> Gathered:
    """Recent rows, phase, recent decisions and the champion's forecast for one app.

    The rows read are the profile's source metrics and the metrics the phase report was made of; the champion
    then adds its own inputs (:attr:`~models.forecaster.Forecaster.inputs`) when it reads more (a mapping that
    stores several metrics trains on all of them), so training and serving read the same metrics.
    """
    app = AppName(app)
    catalog = load_catalog(settings.search.catalog)
    profile = resolve_profile(app, settings.search.profiles)
    check_profile(profile, catalog)
    report = _report(app, settings)
    wanted = {source for source, _ in sources(profile).values()} | set(report.metrics if report else ())
    rows = _read(app, now, sorted(wanted), settings)
    gathered = Gathered(app=app, now=now, profile=profile, rows=rows, phase=DEFAULT_PHASE, read=frozenset(wanted))
    if rows.empty:
        gathered.error = f"no metrics for {app!r} in the {settings.orchestrate.lookback_hours:g} h before {now}"
        return gathered
    age = now - rows["ts"].max()
    if age > pd.Timedelta(hours=settings.orchestrate.max_staleness_hours):
        gathered.error = f"newest metric of {app!r} is {age} old (limit {settings.orchestrate.max_staleness_hours} h)"
        return gathered
    gathered.rule_state = rule_state(app, now, settings)
    gathered.phase = _phase(rows, report)
    gathered.health = _health(app, rows, now, profile, settings, champion=_champion_version(app, gathered.phase,
                                                                                            settings))
    _forecast(gathered, settings)
    return gathered


def rule_state(app: str, now: pd.Timestamp, settings: Settings, *, rows: int = 3) -> RuleState | None:
    """The rule's state after the app's newest decision before ``now`` that carries one (the ledger's
    ``rule_state``; a decision that was never taken, after a gather error or a crash, carries none, so the
    few newest rows are looked at)."""
    cfg = settings.orchestrate
    recent = Ledger(cfg.ledger).read(app, start=now - pd.Timedelta(hours=cfg.lookback_hours), end=now, last=rows)
    for data in reversed(recent["rule_state"].tolist() if "rule_state" in recent else []):
        state = state_from_json(data)
        if state is not None:
            return state
    return None


def _read(app: str, now: pd.Timestamp, metrics: list[str], settings: Settings) -> pd.DataFrame:
    """The app's rows of ``metrics`` over the lookback window ending at ``now``."""
    start = now - pd.Timedelta(hours=settings.orchestrate.lookback_hours)
    return MetricsStore(settings.store.root).read(app, start=start, end=now + pd.Timedelta(seconds=1),
                                                  metrics=metrics)  # fmt: skip


def _report(app: str, settings: Settings) -> PhaseReport | None:
    data = read_report(settings.forecast.phase_reports, app)  # written by training (tasks/train.py)
    return None if data is None else PhaseReport.from_dict(data)


def _phase(rows: pd.DataFrame, report: PhaseReport | None, *, max_fill_steps: int = 3) -> str:
    """The current phase, from the rows put on the grid the way training put them (``panel_from_long`` and
    ``phase_labels``), so training and serving derive a phase alike; the report's first phase if they cannot."""
    if report is None:
        return DEFAULT_PHASE
    try:
        metrics = [m for m in report.metrics if m in set(rows["metric"])] or None
        panel = panel_from_long(rows, metrics=metrics, max_fill_steps=max_fill_steps)
        return current_phase(panel.to_frame(), report, labels=phase_labels(rows, panel))
    except (ValueError, KeyError):  # SeriesError is a ValueError
        return report.ids[0] if report.ids else DEFAULT_PHASE


def _champion_version(app: str, phase: str, settings: Settings) -> str | None:
    """The version the champion alias names now (None: no champion, or the registry did not answer)."""
    try:
        return champion_loader(settings.registry.tracking_uri).champion_version(app, phase)
    except Exception:  # noqa: BLE001 - monitoring then judges every predictive decision, as without versions
        return None


def _health(app: str, rows: pd.DataFrame, now: pd.Timestamp, profile: AppProfile, settings: Settings,
            *, champion: str | None = None) -> Health:
    """The champion's recent record; only its own decisions count (``champion``: the version it is now), so a
    retrained champion is judged afresh instead of inheriting the record of the one it replaced."""
    cfg = settings.orchestrate
    # only predictive decisions carry a champion's forecast. The ledger filters on the mode before it counts,
    # so the newest monitor_points of them (each forecasts at least one point) are found however many reactive
    # rows came since: while a champion is set aside every decision is reactive, and judging only the newest
    # rows of any mode would find no forecast, call it "warming-up" and reinstate the bad champion.
    decisions = Ledger(cfg.ledger).read(app, start=now - pd.Timedelta(hours=cfg.lookback_hours), end=now,
                                        last=cfg.monitor_points, mode="predictive")  # fmt: skip
    if champion is not None and not decisions.empty:
        decisions = decisions[decisions["champion_version"] == champion]
    bound = sources(profile)
    if decisions.empty or not bound:
        return Health("warming-up", 0, reason="no earlier predictive decision")
    name, (source, scale) = next(iter(bound.items()))
    observed = rows[rows["metric"] == source].set_index("ts")["value"] * scale
    return forecast_health(
        decisions,
        observed,
        window=cfg.monitor_points,
        min_points=cfg.min_points,
        error_budget=cfg.error_budget,
        min_coverage=cfg.min_coverage,
    )


def _forecast(gathered: Gathered, settings: Settings) -> None:
    """The champion's forecast, or the reactive fallback with a retraining request and the reason.

    Every way the champion can fail asks for retraining the same way (``Gathered.retrain``, one request per app
    per cycle, sent by the flow): it is missing, it is outside its error budget, or it fails to load or forecast.
    """
    if gathered.health is not None and not gathered.health.healthy:
        _fall_back(gathered, f"champion set aside: {gathered.health.reason}")
        return
    loader = champion_loader(settings.registry.tracking_uri)
    _inference_threads(settings.forecast.threads)
    try:
        forecaster = loader.get(gathered.app, gathered.phase)
        _read_inputs(gathered, forecaster.inputs, settings)
        history = gathered.rows[gathered.rows["ts"] <= gathered.now]
        gathered.forecast = forecaster.forecast(history)
        gathered.champion_version = loader.version(gathered.app, gathered.phase)
        gathered.why = f"champion v{gathered.champion_version} ({forecaster.candidate}) of phase {gathered.phase}"
    except LookupError as exc:
        _fall_back(gathered, f"no champion: {exc}")
    except Exception as exc:  # noqa: BLE001 - a corrupt or failing model must not stop the decision
        _fall_back(gathered, f"champion failed ({type(exc).__name__}: {exc})")


def _fall_back(gathered: Gathered, reason: str) -> None:
    gathered.why, gathered.retrain = f"{reason}; reactive fallback, retraining requested", True


def _read_inputs(gathered: Gathered, inputs: tuple[str, ...], settings: Settings) -> None:
    """Add the rows of the champion's inputs that the first read did not ask for (an older champion may read
    metrics the phase report no longer lists)."""
    extra = sorted(set(inputs) - gathered.read)
    if not extra:
        return
    more = _read(gathered.app, gathered.now, extra, settings)
    gathered.rows = pd.concat([gathered.rows, more], ignore_index=True).sort_values(["ts", "metric"],
                                                                                  ignore_index=True)
    gathered.read = gathered.read | set(extra)


def _inference_threads(threads: int) -> None:
    """Torch threads for forecasting (``forecast.threads``, default 1). The flow already decides apps in
    parallel and a small LSTM gains nothing from more threads, while oversubscribed OpenMP threads spin:
    measured 305 -> 80 ms per LSTM forecast on a busy 2-core machine (`torch.set_num_threads` is per process)."""
    import torch

    if torch.get_num_threads() != max(1, threads):
        torch.set_num_threads(max(1, threads))


@task(name="decide", cache_policy=NONE)
def decide(gathered: Gathered, held: dict, settings: Settings) -> Decided:
    """The predictive rule (``prescale.decision.decide``) on the assembled input, then the plan; pure given
    its inputs (the cover cache only saves time)."""
    started = time.perf_counter()
    profile = gathered.profile
    row = DecisionRow(
        decided_at=gathered.now, app=gathered.app, phase=gathered.phase, mode="reactive", why=gathered.why,
        champion_version=gathered.champion_version, covered_quantile=settings.search.covered_quantile,
        cost_per_hour=0.0, outcome="skipped", health=gathered.health.to_dict() if gathered.health else {},
    )  # fmt: skip
    if gathered.error:
        row.error, row.why = gathered.error, "no decision: " + gathered.error
        return Decided(gathered.app, row)
    catalog = load_catalog(settings.search.catalog)
    observed = observed_demand(gathered.rows, profile)
    forecast, row.mode, note = _demand(gathered)
    holdings, others = held["holdings"], held["others"]
    assembled = assemble(catalog, profile, forecast=forecast, observed=observed, held=Held.of(holdings),
                         knobs=knobs_from(settings), state=gathered.rule_state, now=gathered.now,
                         covers=shared_covers(settings.replay.cover_resolution),
                         fallback_step_seconds=data_step(gathered.rows))  # fmt: skip
    decision = decide_rule(assembled.inp)
    fleet = assembled.fleet
    nodes = target_nodes(fleet, decision)
    plan = make_plan(gathered.app, holdings, nodes, catalog=catalog, profile=profile,
                     guardrails=guardrails_from(settings.cluster), others=others)  # fmt: skip
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
    row.duration_s = time.perf_counter() - started
    return Decided(gathered.app, row, plan=plan)


def data_step(rows: pd.DataFrame) -> int:
    """The metrics' step in seconds (the median gap between instants; 60 with one instant)."""
    instants = rows["ts"].drop_duplicates().sort_values()  # long rows: one per metric per instant
    return int(instants.diff().dropna().median().total_seconds()) if len(instants) > 1 else 60


def _demand(gathered: Gathered) -> tuple[Forecast | None, str, str]:
    """The champion's forecast in the profile's metrics (None without one), the mode, and what ``why`` adds."""
    if gathered.forecast is None:
        return None, "reactive", ""
    bound, unbound = bind_forecast(gathered.forecast, gathered.profile)
    return bound, "predictive", _unbound_note(unbound, gathered.profile)


def _unbound_note(unbound: tuple[str, ...], profile: AppProfile) -> str:
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


@task(name="observe-cluster", retries=IO_RETRIES, retry_delay_seconds=IO_RETRY_DELAYS, cache_policy=NONE)
def observe(apps: list[str], settings: Settings, now: float) -> dict[str, dict]:
    """What runs now, per app: its node holdings per type and the other apps' claims (for quotas)."""
    cluster = open_cluster(settings.cluster, load_catalog(settings.search.catalog), now=now)
    state = cluster.observe()
    return {app: {"holdings": state.holdings(app), "others": state.others(app)} for app in apps}


@task(name="apply-plans", cache_policy=NONE)
def apply_plans(decided: list[Decided], settings: Settings, now: float) -> list[Decided]:
    """Carry out each planned decision, one app after another; a failure is that app's outcome only."""
    if settings.orchestrate.dry_run:
        for d in decided:
            if d.row.outcome == "planned":
                d.row.outcome = "dry-run"
        return decided
    cluster = open_cluster(settings.cluster, load_catalog(settings.search.catalog), now=now)
    logger = get_run_logger()
    for d in decided:
        if d.row.outcome != "planned":
            continue
        if d.plan.blocked:
            d.row.outcome, d.row.error = "blocked", "; ".join(d.plan.blocked)
            continue
        try:
            report = cluster.apply(d.plan)
            d.row.outcome = report.status
        except Exception as exc:  # noqa: BLE001 - one app's failure is recorded, the others go on
            d.row.outcome, d.row.error = "failed", f"{type(exc).__name__}: {exc}"
            logger.warning("apply failed for %s: %s", d.app, exc)
    return decided


@task(name="record-decisions", retries=IO_RETRIES, retry_delay_seconds=IO_RETRY_DELAYS, cache_policy=NONE)
def record(decided: list[Decided], ledger_root: str, compact_min_files: int = 8) -> int:
    """Append the cycle's rows; merge an app's day of ledger files once it holds ``compact_min_files``."""
    ledger = Ledger(ledger_root)  # a folder or an object-store URI (orchestrate.ledger)
    ledger.append([d.row for d in decided])
    for app in sorted({d.app for d in decided}):
        ledger.compact(app, min_files=compact_min_files)
    return len(decided)


@task(name="request-retraining", retries=1, retry_delay_seconds=5, cache_policy=NONE)
def request_retraining(apps: list[str], deployment: str, *, cooldown_minutes: float = 0.0) -> str:
    """Start the training deployment for these apps, except those it ran for within the cooldown.

    Prefect's own record of the deployment's runs says what was already asked (a worker restart or a second
    worker changes nothing); said plainly when the deployment does not exist here (local runs).
    """
    from prefect.deployments import run_deployment

    try:
        recent = _recently_trained(deployment, cooldown_minutes) if cooldown_minutes > 0 else set()
        due = [app for app in apps if app not in recent and "*" not in recent]
        if not due:
            return f"retraining of {apps} already requested within the last {cooldown_minutes:g} min"
        run = run_deployment(deployment, parameters={"apps": due}, timeout=0)
    except Exception as exc:  # noqa: BLE001 - no deployment (local runs): the ledger still carries the request
        return f"retraining of {apps} requested, but deployment {deployment!r} could not be run: {exc}"
    return f"retraining of {due} scheduled as flow run {run.name}"


def _recently_trained(deployment: str, minutes: float) -> set[str]:
    """Apps the deployment ran or will run for, expected to start in the last ``minutes`` (``*``: all apps)."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterDeploymentId,
        FlowRunFilterExpectedStartTime,
    )

    now = pd.Timestamp.now(tz="UTC")
    window = FlowRunFilterExpectedStartTime(after_=now - pd.Timedelta(minutes=minutes), before_=now)
    with get_client(sync_client=True) as client:
        found = client.read_deployment_by_name(deployment)
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            deployment_id=FlowRunFilterDeploymentId(any_=[found.id]), expected_start_time=window))  # fmt: skip
    return {app for run in runs for app in ((run.parameters or {}).get("apps") or ["*"])}


@task(name="publish-orchestrate-artifact", retries=IO_RETRIES, retry_delay_seconds=IO_RETRY_DELAYS,
      cache_policy=NONE)  # fmt: skip
def publish_artifact(decided: list[Decided]) -> None:
    lines = ["# Orchestrate cycle", "", "| app | phase | mode | allocation | $/h | outcome | why |",
             "|---|---|---|---|---:|---|---|"]  # fmt: skip
    for d in decided:
        alloc = ", ".join(f"{n}x {t}" for t, n in sorted(d.row.allocation.items())) or "-"
        why = (d.row.why + (f" ({d.row.error})" if d.row.error else "")).replace("|", "/")
        lines.append(f"| {d.app} | {d.row.phase} | {d.row.mode} | {alloc} | {d.row.cost_per_hour:.2f} | "
                     f"{d.row.outcome} | {why} |")  # fmt: skip
    create_markdown_artifact(key="orchestrate-cycle", markdown="\n".join(lines) + "\n",
                             description="One decision per app")  # fmt: skip


def unexpected(app: str, now: pd.Timestamp, error: BaseException) -> Decided:
    """The ledger row of an app whose gather or decide step raised."""
    row = DecisionRow(decided_at=now, app=app, phase=DEFAULT_PHASE, mode="none", why="decision failed",
                      champion_version=None, covered_quantile=None, cost_per_hour=0.0, outcome="failed",
                      error=f"{type(error).__name__}: {error}")  # fmt: skip
    return Decided(app, row)
