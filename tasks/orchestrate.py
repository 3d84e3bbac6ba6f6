"""Prefect tasks of the orchestrate loop: thin I/O steps around the pure decision of ``prescale.cycle``.

Per app, ``gather`` reads everything a decision needs into a ``prescale.cycle.Gathered`` (recent rows, the
phase report, the ledger's recent predictive decisions for monitoring, the rule's and the SLO controller's
state after the app's newest decision, the app's SLO budget (``slo.violation_budget`` of its profile, over
which ``Settings.slo.budget_for`` puts the settings' overrides), the champion's forecaster and the SLO
policy tuned with it (``ChampionLoader.policy``; a loader without it, or no policy, means untuned):
registry I/O, cached per process by ``ChampionLoader`` and refreshed when the alias moves;
:func:`forget_champions` empties that cache) and ``plan-app`` hands it, with the app's
``prescale.cycle.ClusterView`` from ``observe-cluster``, to ``prescale.cycle.plan_app``: the SLO policy's
rule and knobs, steered by its controller (``prescale.decision.decide``, the rule the replay scores and
``prescale plan`` / ``apply`` run) on the input ``prescale.decide_inputs.assemble`` builds, then the
make-before-break plan and the ledger row, with no I/O. ``apply_plans`` then carries the plans out one app
after another through the one cluster backend (the simulated cluster keeps one state file; Kubernetes sees
one writer), and ``record`` appends one ledger row per app, with the rule's and the controller's new state
in ``rule_state`` (so a restarted worker steers on). A failure of one app becomes that app's row
(``outcome="failed"`` with the error): it never stops the others.

Training and serving read the same metrics: ``gather`` asks the store for the profile's source metrics and
every input of the champion, which may be more (a mapping that stores two metrics trains on both). Every
champion failure (missing, outside its error budget (``prescale.monitoring.champion_health``), failing to
load or forecast) means no forecast, so the rule's reactive fallback (the fastest tier covers observed
demand times the policy's lift), a ``why`` saying so, and ``retrain_requested`` on the row, which the
flow turns into one retraining request per cycle.

``publish-orchestrate-artifact`` publishes the cycle's table and, every :data:`PICTURE_EVERY_MINUTES` minutes,
a small picture of the last hours read back from the ledger (observed demand against decided capacity, per
app), embedded in the artifact so the Prefect UI shows it (:func:`publish_artifact` says why not every cycle).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE

from models.plots import data_uri, decisions_png, shrink_png
from models.registry import ChampionLoader, Registry
from models.series import serving_phase
from prescale import cycle
from prescale.catalog import check_profile, load_catalog, resolve_profile
from prescale.cluster import guardrails_from, open_cluster
from prescale.cycle import ClusterView, Decided, Gathered
from prescale.decide_inputs import SloState, newest_slo_state, newest_state
from prescale.decision import RuleState
from prescale.fleet import Fleet, build_fleet
from prescale.ledger import Ledger
from prescale.metrics.store import MetricsStore
from prescale.monitoring import Health, champion_health, judged_decisions
from prescale.names import AppName
from prescale.orchestrate import sources
from prescale.phase_reports import load_report
from prescale.phases import DEFAULT_PHASE
from prescale.replay.covers import shared_covers
from prescale.settings import Settings
from prescale.slo.policy import SloPolicy
from tasks.ingest import IO_RETRIES, IO_RETRY_DELAYS

PICTURE_EVERY_MINUTES = 10  # cycles whose instant is a multiple of this embed the picture of the recent decisions
PICTURE_HOURS = 6.0  # the picture's span
PICTURE_MAX_BYTES = 30_000  # the embedded PNG, before base64

_LOADERS: dict[str, ChampionLoader] = {}


def champion_loader(tracking_uri: str) -> ChampionLoader:
    """One loader per registry per process, so champions stay cached across cycles of a long-lived worker."""
    if tracking_uri not in _LOADERS:
        _LOADERS[tracking_uri] = ChampionLoader(Registry(tracking_uri))
    return _LOADERS[tracking_uri]


def forget_champions() -> None:
    """Drop this process's champion loaders: the next cycle loads every champion afresh (a cold cycle)."""
    _LOADERS.clear()


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
    report = load_report(settings.forecast.phase_reports, app)  # written by training (tasks/train.py)
    wanted = {source for source, _ in sources(profile).values()} | set(report.metrics if report else ())
    rows = _read(app, now, sorted(wanted), settings)
    gathered = Gathered(app=app, now=now, profile=profile, rows=rows, phase=DEFAULT_PHASE, read=frozenset(wanted),
                        budget=settings.slo.budget_for(app, profile.slo.violation_budget))  # fmt: skip
    if rows.empty:
        gathered.error = f"no metrics for {app!r} in the {settings.orchestrate.lookback_hours:g} h before {now}"
        return gathered
    age = now - rows["ts"].max()
    if age > pd.Timedelta(hours=settings.orchestrate.max_staleness_hours):
        gathered.error = f"newest metric of {app!r} is {age} old (limit {settings.orchestrate.max_staleness_hours} h)"
        return gathered
    gathered.rule_state, gathered.slo_state = previous_state(app, now, settings)
    gathered.phase = serving_phase(rows, report)
    gathered.health = _health(gathered, settings)
    _forecast(gathered, settings)
    gathered.slo_policy = _slo_policy(gathered, settings)
    return gathered


def previous_state(app: str, now: pd.Timestamp, settings: Settings, *,
                   rows: int = 3) -> tuple[RuleState | None, SloState | None]:  # fmt: skip
    """The rule's and the SLO controller's state after the app's newest decision before ``now`` that carries
    one (the ledger's ``rule_state``; a decision that was never taken carries none, so the few newest rows
    are looked at)."""
    cfg = settings.orchestrate
    recent = Ledger(cfg.ledger).read(app, start=now - pd.Timedelta(hours=cfg.lookback_hours), end=now, last=rows)
    written = recent["rule_state"].tolist() if "rule_state" in recent else []
    return newest_state(written), newest_slo_state(written)


def _slo_policy(gathered: Gathered, settings: Settings) -> SloPolicy | None:
    """The SLO policy tuned with the champion (``ChampionLoader.policy``), or None: untuned.

    None too when the loader has no such method, there is no champion, or the registry fails to answer: the
    untuned start is a safe policy, and a failing registry must not stop the decision (``why`` says so). A
    champion set aside by monitoring keeps its policy: the rule's fallback then covers the policy's floor."""
    loader = champion_loader(settings.registry.tracking_uri)
    policy_of = getattr(loader, "policy", None)
    if policy_of is None:
        return None
    try:
        policy = policy_of(gathered.app, gathered.phase)
    except LookupError:
        return None
    except Exception as exc:  # noqa: BLE001 - the untuned policy decides instead
        gathered.why += f"; tuned SLO policy unreadable ({type(exc).__name__}: {exc}): untuned start"
        return None
    return policy if isinstance(policy, SloPolicy) else None


def _read(app: str, now: pd.Timestamp, metrics: list[str], settings: Settings) -> pd.DataFrame:
    """The app's rows of ``metrics`` over the lookback window ending at ``now``."""
    start = now - pd.Timedelta(hours=settings.orchestrate.lookback_hours)
    return MetricsStore(settings.store.root).read(app, start=start, end=now + pd.Timedelta(seconds=1),
                                                  metrics=metrics)  # fmt: skip


def _champion_version(app: str, phase: str, settings: Settings) -> str | None:
    """The version the champion alias names now (None: no champion, or the registry did not answer)."""
    try:
        return champion_loader(settings.registry.tracking_uri).champion_version(app, phase)
    except Exception:  # noqa: BLE001 - monitoring then judges every predictive decision, as without versions
        return None


def _health(gathered: Gathered, settings: Settings) -> Health:
    """The record of the champion the alias names now, read from the ledger (``prescale.monitoring``)."""
    cfg = settings.orchestrate
    decisions = judged_decisions(Ledger(cfg.ledger), gathered.app, gathered.now, lookback_hours=cfg.lookback_hours,
                                 points=cfg.monitor_points)  # fmt: skip
    return champion_health(decisions, gathered.rows, gathered.profile,
                           champion=_champion_version(gathered.app, gathered.phase, settings),
                           window=cfg.monitor_points, min_points=cfg.min_points, error_budget=cfg.error_budget,
                           min_coverage=cfg.min_coverage)  # fmt: skip


def _forecast(gathered: Gathered, settings: Settings) -> None:
    """The champion's forecast, or the reactive fallback with a retraining request and the reason.

    Every way the champion can fail asks for retraining the same way (``Gathered.fall_back``, one request per
    app per cycle, sent by the flow): it is missing, it is outside its error budget, or it fails to load or
    forecast.
    """
    if gathered.health is not None and not gathered.health.healthy:
        gathered.fall_back(f"champion set aside: {gathered.health.reason}")
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
        gathered.fall_back(f"no champion: {exc}")
    except Exception as exc:  # noqa: BLE001 - a corrupt or failing model must not stop the decision
        gathered.fall_back(f"champion failed ({type(exc).__name__}: {exc})")


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


@task(name="plan-app", cache_policy=NONE)
def plan_app(gathered: Gathered, view: ClusterView, settings: Settings) -> Decided:
    """``prescale.cycle.plan_app`` with the catalog, hold window and margin (``replay.hold_minutes``,
    ``replay.consolidation_margin``), guardrails and cover cache of ``settings`` (the quantile and headroom
    come from the app's SLO policy); the row's ``duration_s`` is this step's time. Pure given its inputs (the
    cover cache only saves time)."""
    started = time.perf_counter()
    decided = cycle.plan_app(gathered, view, catalog=load_catalog(settings.search.catalog),
                             hold_minutes=settings.replay.hold_minutes, margin=settings.replay.consolidation_margin,
                             guardrails=guardrails_from(settings.cluster),
                             covers=shared_covers(settings.replay.cover_resolution))  # fmt: skip
    if decided.plan is not None:
        decided.row.duration_s = time.perf_counter() - started
    return decided


@task(name="observe-cluster", retries=IO_RETRIES, retry_delay_seconds=IO_RETRY_DELAYS, cache_policy=NONE)
def observe(apps: list[str], settings: Settings, now: float) -> dict[str, ClusterView]:
    """What runs now, per app: its node holdings per type and the other apps' claims (for quotas)."""
    cluster = open_cluster(settings.cluster, load_catalog(settings.search.catalog), now=now)
    state = cluster.observe()
    return {app: ClusterView.of(state, app) for app in apps}


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
def publish_artifact(decided: list[Decided], settings: Settings | None = None) -> None:
    """The cycle's table (``prescale.cycle.cycle_table``) as a Markdown artifact in the Prefect UI.

    With ``settings``, a cycle whose instant falls on a multiple of :data:`PICTURE_EVERY_MINUTES` also embeds
    a picture of the last :data:`PICTURE_HOURS` (:func:`recent_picture`); the other cycles say which run
    holds the newest one. Why not every cycle: the loop runs every minute and Prefect keeps every
    artifact, so a picture per cycle would add ~20 KB x 1,440 a day to its database and 0.3-0.5 s of drawing
    to each cycle on a busy 2-core machine; every ten minutes it costs a tenth of that, and the picture
    changes little in between. A picture that cannot be drawn is logged and left out: the table still goes.
    """
    now = max((d.row.decided_at for d in decided), default=None)
    picture, note = None, ""
    if settings is not None and now is not None:
        last = pd.Timestamp(now).floor(f"{PICTURE_EVERY_MINUTES}min")
        what = f"Observed demand against decided capacity over the last {PICTURE_HOURS:g} h, per app"
        if last == pd.Timestamp(now).floor("min"):
            try:
                picture = recent_picture(decided, pd.Timestamp(now), settings)
            except Exception as exc:  # noqa: BLE001 - the table matters more than the picture
                get_run_logger().warning("no picture of the recent decisions: %s: %s", type(exc).__name__, exc)
        note = (f"{what} (redrawn every {PICTURE_EVERY_MINUTES} minutes):" if picture else
                f"{what}: drawn every {PICTURE_EVERY_MINUTES} minutes; the newest is in the run at "
                f"{last:%Y-%m-%d %H:%M} UTC.")
    create_markdown_artifact(key="orchestrate-cycle", markdown=cycle.cycle_table(decided, picture=picture, note=note),
                             description="One decision per app")  # fmt: skip


def recent_picture(decided: list[Decided], now: pd.Timestamp, settings: Settings) -> str | None:
    """A ``data:`` URI of :func:`models.plots.decisions_png` over the ledger's last :data:`PICTURE_HOURS`
    before ``now`` for the cycle's apps (None: no app has a row yet), with its size and time logged."""
    started = time.perf_counter()
    ledger, catalog = Ledger(settings.orchestrate.ledger), load_catalog(settings.search.catalog)
    start, end = now - pd.Timedelta(hours=PICTURE_HOURS), now + pd.Timedelta(seconds=1)
    recent = {}
    for app in dict.fromkeys(d.app for d in decided):
        rows = ledger.read(app, start=start, end=end)
        if len(rows):
            fleet = build_fleet(catalog, resolve_profile(app, settings.search.profiles), step_seconds=60)
            recent[app] = demand_and_capacity(rows, fleet)
    if not recent:
        return None
    png = shrink_png(decisions_png(recent, title=f"Last {PICTURE_HOURS:g} h of decisions up to {now:%Y-%m-%d %H:%M} "
                                                 "UTC"), max_bytes=PICTURE_MAX_BYTES)  # fmt: skip
    get_run_logger().info("picture of the recent decisions: %d apps, %.1f KB, %.0f ms", len(recent), len(png) / 1000,
                          1000 * (time.perf_counter() - started))  # fmt: skip
    return data_uri(png)


def demand_and_capacity(rows: pd.DataFrame, fleet: Fleet) -> pd.DataFrame:
    """Per ledger row: the observed demand and the decided allocation's capacity in the fleet's first metric,
    and whether the plan changed nodes. A row that decided nothing (skipped, failed) has no capacity; a type
    the fleet no longer offers counts for nothing."""
    metric = fleet.metrics[0]
    decided = ~rows["outcome"].isin(("skipped", "failed")).to_numpy()
    counts = [fleet.counts({k: v for k, v in (a or {}).items() if k in fleet.names}) for a in rows["allocation"]]
    capacity = fleet.capacity(np.array(counts).reshape(len(rows), fleet.n))[:, 0] if len(rows) else []
    return pd.DataFrame({
        "ts": pd.to_datetime(rows["decided_at"], utc=True),
        "demand": [float((o or {}).get(metric, np.nan)) for o in rows["observed"]],
        "capacity": np.where(decided, capacity, np.nan),
        "changed": [bool(plan) for plan in rows["plan"]],
        "metric": metric,
    }).reset_index(drop=True)
