"""Prefect tasks of the orchestrate loop: thin I/O steps around the pure decision of ``prescale.cycle``.

The cycle's apps are cut into a few contiguous chunks per worker of the runner (:func:`chunks`), and one
``decide-apps`` task per chunk (:func:`decide_apps`) gathers and plans them. Gathering
(:func:`gather_many`) reads everything a decision needs into a ``prescale.cycle.Gathered`` per app: the
recent rows of all the chunk's apps in one store read (``MetricsStore.read_many``), the phase report, the
ledger's recent predictive decisions for monitoring and the rule's and the SLO controller's state after the
app's newest decision (from this process's cache of the ledger's recent rows, :func:`recent_rows`, which
reads only the ledger files it has not seen), the app's SLO budget (``slo.violation_budget`` of its
profile, over which ``Settings.slo.budget_for`` puts the settings' overrides), the champions' forecasts in
one batch (``forecast_many``) and the SLO policy tuned with each champion (``ChampionLoader.policy``; a
loader without it, or no policy, means untuned): registry I/O, cached per process by ``ChampionLoader`` and
refreshed when the alias moves; :func:`forget_champions` empties both caches. Then, per app, ``plan_app``
hands it, with the app's ``prescale.cycle.ClusterView`` from ``observe-cluster``, to
``prescale.cycle.plan_app``: the SLO policy's rule and knobs, steered by its controller
(``prescale.decision.decide``, the rule the replay scores and ``prescale plan`` / ``apply`` run) on the input
``prescale.decide_inputs.assemble`` builds, then the make-before-break plan and the ledger row, with no I/O.
``apply_plans`` then carries the plans out one app after another through the one cluster backend (the
simulated cluster keeps one state file; Kubernetes sees one writer), and ``record`` appends one ledger row
per app, with the rule's and the controller's new state in ``rule_state`` (so a restarted worker steers on)
and the CPU time of each stage in ``timing``. A failure of one app becomes that app's row
(``outcome="failed"`` with the error): it never stops the others. ``gather`` and ``plan_app`` remain tasks
of one app each (the profiling benchmark and the tests run them one app at a time).

Training and serving read the same metrics: the gather asks the store for the profile's source metrics and
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
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE

from models.forecaster import forecast_many
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
from prescale.ledger import Ledger, RecentRows
from prescale.metrics.store import MetricsStore
from prescale.monitoring import Health, champion_health, judged_decisions
from prescale.names import AppName
from prescale.orchestrate import sources
from prescale.phase_reports import load_report
from prescale.phases import DEFAULT_PHASE
from prescale.replay.covers import shared_covers
from prescale.settings import Settings
from prescale.slo.policy import SloPolicy
from tasks.ingest import IO_RETRIES, IO_RETRY_DELAYS, transient_only

PICTURE_EVERY_MINUTES = 10  # cycles whose instant is a multiple of this embed the picture of the recent decisions
PICTURE_HOURS = 6.0  # the picture's span
PICTURE_MAX_BYTES = 30_000  # the embedded PNG, before base64
PICTURE_MAX_APPS = 12  # panels in the picture: beyond this many apps, the costliest this cycle

CHUNKS_PER_WORKER = 4  # decide-apps tasks per worker of the runner (see chunks())
MIN_CHUNK_APPS = 10  # no smaller chunks: the batched read and forecast pay off over many apps
STATE_ROWS = 3  # newest ledger rows looked at for the rule's and the controller's state
STAGES = ("read", "phase", "health", "forecast", "decide")  # the CPU time a row's `timing` splits

_LOADERS: dict[str, ChampionLoader] = {}
_RECENT: dict[tuple[str, int], RecentRows] = {}


def champion_loader(tracking_uri: str) -> ChampionLoader:
    """One loader per registry per process, so champions stay cached across cycles of a long-lived worker."""
    if tracking_uri not in _LOADERS:
        _LOADERS[tracking_uri] = ChampionLoader(Registry(tracking_uri))
    return _LOADERS[tracking_uri]


def forget_champions() -> None:
    """Drop this process's champion loaders and cached ledger rows: the next cycle loads every champion and
    reads every app's recent decisions afresh (a cold cycle)."""
    _LOADERS.clear()
    _RECENT.clear()


def chunks(apps: list[str], workers: int) -> list[list[str]]:
    """The cycle's apps cut into contiguous chunks, one ``decide-apps`` task each: :data:`CHUNKS_PER_WORKER`
    per worker (so a slow chunk does not leave a worker idle at the end), none smaller than
    :data:`MIN_CHUNK_APPS` apps (a chunk's batched read and forecast pay off over many apps)."""
    if not apps:
        return []
    count = max(1, min(workers * CHUNKS_PER_WORKER, -(-len(apps) // MIN_CHUNK_APPS)))
    return [list(part) for part in np.array_split(np.array(apps, dtype=object), count) if len(part)]


def chunk_label(apps: list[str]) -> str:
    """How the Prefect UI names a chunk's task run: its first and last app and how many."""
    return apps[0] if len(apps) == 1 else f"{apps[0]}..{apps[-1]}-{len(apps)}-apps"


@task(name="decide-apps", task_run_name="decide-{label}", retries=IO_RETRIES, retry_delay_seconds=IO_RETRY_DELAYS,
      retry_condition_fn=transient_only, cache_policy=NONE)  # fmt: skip
def decide_apps(apps: list[str], views: dict[str, ClusterView], now: pd.Timestamp, settings: Settings,
                label: str = "") -> list[Decided]:  # fmt: skip
    """Gather and plan a chunk of apps: one row (and plan) per app, in the order given.

    One store read for the chunk (:func:`gather_many`), the champions' forecasts in one batch
    (``models.forecaster.forecast_many``), then ``prescale.cycle.plan_app`` per app. An app whose step raises
    gets its own ``failed`` row with the error; the others go on. Only a transient I/O failure of the chunk's
    shared store read fails the task, which Prefect then retries (``transient_only``). Each row's ``timing``
    holds the CPU time (this thread's) of each stage, the chunk's divided evenly among its apps.
    """
    clock = StageClock()
    gathered = gather_many(apps, now, settings, clock=clock)
    decided = []
    for app in apps:
        got = gathered[app]
        if isinstance(got, BaseException):
            decided.append(Decided.failed(app, now, got))
            continue
        try:
            with clock.stage("decide"):
                decided.append(plan_app.fn(got, views[app], settings))
        except Exception as exc:  # noqa: BLE001 - one app's failure is its row; the others go on
            decided.append(Decided.failed(app, now, exc))
    cpu_ms = clock.per_app_ms(len(apps))
    for d in decided:
        d.row.timing = {"cpu_ms": dict(cpu_ms)}
    return decided


class StageClock:
    """CPU seconds of this thread per named stage (``time.thread_time``: other threads' work is not counted)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = dict.fromkeys(STAGES, 0.0)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.thread_time()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.thread_time() - started

    def per_app_ms(self, apps: int) -> dict[str, float]:
        return {name: round(1000 * s / max(apps, 1), 3) for name, s in self.seconds.items()}


@task(name="gather-inputs", retries=IO_RETRIES, retry_delay_seconds=IO_RETRY_DELAYS, cache_policy=NONE)
def gather(app: str, now: pd.Timestamp, settings: Settings) -> Gathered:
    """:func:`gather_many` of one app: its inputs, or its error raised."""
    got = gather_many([app], now, settings)[app]
    if isinstance(got, BaseException):
        raise got
    return got


def gather_many(apps: list[str], now: pd.Timestamp, settings: Settings, *,
                clock: StageClock | None = None) -> dict[str, Gathered | BaseException]:  # fmt: skip
    """Recent rows, phase, recent decisions and the champion's forecast of each app (or the error that stopped
    its gather).

    The rows read are the profile's source metrics and the metrics the phase report was made of, for all the
    apps at once (:meth:`~prescale.metrics.store.MetricsStore.read_many`, one scan per set of metrics); the
    champion then adds its own inputs (:attr:`~models.forecaster.Forecaster.inputs`) when it reads more (a
    mapping that stores several metrics trains on all of them), so training and serving read the same
    metrics. The recent decisions come from this process's :class:`~prescale.ledger.RecentRows` of the
    ledger. A failure of the shared store read is raised; any other failure is that app's.
    """
    clock = clock or StageClock()
    out: dict[str, Gathered | BaseException] = {}
    with clock.stage("read"):
        wanted = {}
        for app in apps:
            try:
                wanted[app] = _inputs(app, settings)
            except Exception as exc:  # noqa: BLE001 - no profile, a bad profile: this app's failure only
                out[app] = exc
        rows = _read_many({app: w[2] for app, w in wanted.items()}, now, settings)
    gathered = []
    for app, (profile, report, metrics) in wanted.items():
        try:
            got = _gathered(app, now, profile, report, metrics, rows[app], settings, clock)
        except Exception as exc:  # noqa: BLE001 - this app's failure only
            out[app] = exc
            continue
        out[app] = got
        if not got.error:
            gathered.append(got)
    with clock.stage("forecast"):
        _forecast_all(gathered, settings)
    with clock.stage("read"):
        for got in gathered:
            got.slo_policy = _slo_policy(got, settings)
    return {app: out[app] for app in apps}


def _inputs(app: str, settings: Settings):
    """The app's profile (checked against the catalog), phase report and the metrics to read for it."""
    app = AppName(app)
    profile = resolve_profile(app, settings.search.profiles)
    check_profile(profile, load_catalog(settings.search.catalog))
    report = load_report(settings.forecast.phase_reports, app)  # written by training (tasks/train.py)
    return profile, report, frozenset({source for source, _ in sources(profile).values()} |
                                      set(report.metrics if report else ()))  # fmt: skip


def _gathered(app, now, profile, report, wanted, rows, settings: Settings, clock: StageClock) -> Gathered:
    """One app's inputs but the forecast (a ``Gathered`` with ``error`` set when its rows are missing or
    stale)."""
    cfg = settings.orchestrate
    gathered = Gathered(app=AppName(app), now=now, profile=profile, rows=rows, phase=DEFAULT_PHASE, read=wanted,
                        budget=settings.slo.budget_for(app, profile.slo.violation_budget))  # fmt: skip
    if rows.empty:
        gathered.error = f"no metrics for {app!r} in the {cfg.lookback_hours:g} h before {now}"
        return gathered
    age = now - rows["ts"].iloc[-1]  # the store's rows come sorted by ts
    if age > pd.Timedelta(hours=cfg.max_staleness_hours):
        gathered.error = f"newest metric of {app!r} is {age} old (limit {cfg.max_staleness_hours} h)"
        return gathered
    with clock.stage("read"):
        gathered.rule_state, gathered.slo_state = previous_state(app, now, settings)
    with clock.stage("phase"):
        gathered.phase = serving_phase(rows, report)
    with clock.stage("health"):
        gathered.health = _health(gathered, settings)
    return gathered


def recent_rows(settings: Settings) -> RecentRows:
    """This process's cache of the ledger's recent rows (:class:`~prescale.ledger.RecentRows`), one per ledger:
    the few newest decisions of each app (the rule's state) and its newest ``monitor_points`` predictive ones."""
    cfg = settings.orchestrate
    key = (str(cfg.ledger), cfg.monitor_points)
    if key not in _RECENT:
        _RECENT[key] = RecentRows(Ledger(cfg.ledger), keep={None: STATE_ROWS, "predictive": cfg.monitor_points})
    return _RECENT[key]


def previous_state(app: str, now: pd.Timestamp, settings: Settings, *,
                   rows: int = STATE_ROWS) -> tuple[RuleState | None, SloState | None]:  # fmt: skip
    """The rule's and the SLO controller's state after the app's newest decision before ``now`` that carries
    one (the ledger's ``rule_state``; a decision that was never taken carries none, so the few newest rows
    are looked at)."""
    cfg = settings.orchestrate
    recent = recent_rows(settings).read(app, start=now - pd.Timedelta(hours=cfg.lookback_hours), end=now,
                                        last=rows)  # fmt: skip
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


def _read_many(wanted: dict[str, frozenset[str]], now: pd.Timestamp, settings: Settings) -> dict[str, pd.DataFrame]:
    """Each app's rows of its metrics over the lookback window ending at ``now``: one scan per set of metrics
    (the apps of one profile share theirs). Measured on 250 apps of two metrics each: 2.5-2.8 ms per app
    in chunks of 25-125 apps, against 8 ms per app read alone."""
    start = now - pd.Timedelta(hours=settings.orchestrate.lookback_hours)
    store, out = MetricsStore(settings.store.root), {}
    by_metrics: dict[frozenset[str], list[str]] = {}
    for app, metrics in wanted.items():
        by_metrics.setdefault(metrics, []).append(app)
    for metrics, apps in by_metrics.items():
        out.update(store.read_many(apps, start=start, end=now + pd.Timedelta(seconds=1), metrics=sorted(metrics)))
    return out


def _champion_version(app: str, phase: str, settings: Settings) -> str | None:
    """The version the champion alias names now (None: no champion, or the registry did not answer)."""
    try:
        return champion_loader(settings.registry.tracking_uri).champion_version(app, phase)
    except Exception:  # noqa: BLE001 - monitoring then judges every predictive decision, as without versions
        return None


def _health(gathered: Gathered, settings: Settings) -> Health:
    """The record of the champion the alias names now, read from the ledger (``prescale.monitoring``) through
    this process's cache of its recent rows."""
    cfg = settings.orchestrate
    decisions = judged_decisions(recent_rows(settings), gathered.app, gathered.now,
                                 lookback_hours=cfg.lookback_hours, points=cfg.monitor_points)  # fmt: skip
    return champion_health(decisions, gathered.rows, gathered.profile,
                           champion=_champion_version(gathered.app, gathered.phase, settings),
                           window=cfg.monitor_points, min_points=cfg.min_points, error_budget=cfg.error_budget,
                           min_coverage=cfg.min_coverage)  # fmt: skip


def _forecast_all(gathered: list[Gathered], settings: Settings) -> None:
    """The champions' forecasts, or the reactive fallback with a retraining request and the reason.

    Every way a champion can fail asks for retraining the same way (``Gathered.fall_back``, one request per
    app per cycle, sent by the flow): it is missing, it is outside its error budget, or it fails to load or
    forecast. The forecasts of all the apps that have a healthy champion run as one batch
    (:func:`forecast_many`): one app's failure is its own fallback.
    """
    loader = champion_loader(settings.registry.tracking_uri)
    _inference_threads(settings.forecast.threads)
    jobs, owners = [], []
    for got in gathered:
        if got.health is not None and not got.health.healthy:
            got.fall_back(f"champion set aside: {got.health.reason}")
            continue
        try:
            forecaster = loader.get(got.app, got.phase)
            _read_inputs(got, forecaster.inputs, settings)
        except LookupError as exc:
            got.fall_back(f"no champion: {exc}")
            continue
        except Exception as exc:  # noqa: BLE001 - a corrupt or failing model must not stop the decision
            got.fall_back(f"champion failed ({type(exc).__name__}: {exc})")
            continue
        jobs.append((forecaster, got.rows[got.rows["ts"] <= got.now]))
        owners.append(got)
    for got, (forecaster, _), result in zip(owners, jobs, forecast_many(jobs), strict=True):
        if isinstance(result, BaseException):
            got.fall_back(f"champion failed ({type(result).__name__}: {result})")
            continue
        try:
            got.forecast = result
            got.champion_version = loader.version(got.app, got.phase)
            got.why = f"champion v{got.champion_version} ({forecaster.candidate}) of phase {got.phase}"
        except Exception as exc:  # noqa: BLE001 - as a failing model
            got.forecast = None
            got.fall_back(f"champion failed ({type(exc).__name__}: {exc})")


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
    """Append the cycle's rows; merge an app's day of ledger files once it holds ``compact_min_files``. This
    process's cached recent rows of the ledger (:func:`recent_rows`) take the rows as written."""
    ledger = Ledger(ledger_root)  # a folder or an object-store URI (orchestrate.ledger)
    rows = [d.row for d in decided]
    written = ledger.append(rows)
    for (root, _), recent in _RECENT.items():
        if root == str(ledger_root):
            recent.add(rows, written)
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
        apps = len(dict.fromkeys(d.app for d in decided))
        which = "per app" if apps <= PICTURE_MAX_APPS else f"for the {PICTURE_MAX_APPS} costliest of {apps} apps"
        what = f"Observed demand against decided capacity over the last {PICTURE_HOURS:g} h, {which}"
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


def pictured(decided: list[Decided]) -> list[str]:
    """The apps the picture shows: all of them up to :data:`PICTURE_MAX_APPS`, else the costliest this cycle
    (a panel per app: a thousand would be unreadable, and reading their six hours of ledger took 107 s at
    1,000 apps on the 2-core machine)."""
    apps = list(dict.fromkeys(d.app for d in decided))
    if len(apps) <= PICTURE_MAX_APPS:
        return apps
    cost = {d.app: d.row.cost_per_hour for d in decided}
    return sorted(apps, key=lambda app: (-cost[app], app))[:PICTURE_MAX_APPS]


def recent_picture(decided: list[Decided], now: pd.Timestamp, settings: Settings) -> str | None:
    """A ``data:`` URI of :func:`models.plots.decisions_png` over the ledger's last :data:`PICTURE_HOURS`
    before ``now`` for the cycle's apps (:func:`pictured`; None: no app has a row yet), with its size and time
    logged."""
    started = time.perf_counter()
    ledger, catalog = Ledger(settings.orchestrate.ledger), load_catalog(settings.search.catalog)
    start, end = now - pd.Timedelta(hours=PICTURE_HOURS), now + pd.Timedelta(seconds=1)
    recent = {}
    for app in pictured(decided):
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
