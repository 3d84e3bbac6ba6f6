"""`orchestrate`: every minute, per app, forecast -> the predictive rule -> plan -> apply -> ledger. Wiring only.

1. ``observe-cluster``: what runs now (once for the cycle).
2. ``decide-apps``, mapped over chunks of apps in parallel on the settings'
   task runner (threads, or Dask: ``flows/runners.py``), a few chunks per
   worker (``tasks.orchestrate.chunks``); each task run is named for its
   first and last app. Per chunk: one store read for all its apps, then per
   app its recent decisions, the rule's and the SLO controller's state, the
   app's SLO budget, phase and champion health, the champions' forecasts in
   one batch, the tuned SLO policies (or why there is none), then
   ``prescale.cycle.plan_app`` per app (the SLO policy's rule of
   ``prescale.decision`` with its reactive floor, steered by the online
   controller, then the plan and the ledger row). Why chunks and not one
   task per app: a Prefect task run costs some milliseconds of its own on
   threads and much more on Dask (its inputs pickled, its state reported
   back), which at 1,000 apps came to more than the decisions themselves.
3. ``apply-plans``: one app after another through the cluster backend
   (make-before-break), unless dry run.
4. ``record-decisions``: one ledger row per app (the rows the flow returns add
   the record step's CPU per app to ``timing``); one ``request-retraining`` for
   the apps whose champion is missing, failed to load or forecast, or fell
   outside its error budget; a markdown artifact.

An app whose step raises gets a ``failed`` row with the error; the others go on.
``at`` replays the loop at a past instant (tests, the demo); default: now.
``apps`` must be valid app names (``prescale.names.AppName``; an invalid one
fails the run before anything is read); default: every app in the store that
has a profile.
"""

from __future__ import annotations

import time

import pandas as pd
from prefect import flow, get_run_logger, unmapped
from prefect.context import FlowRunContext
from prefect.utilities.annotations import quote

from flows.runners import pinned, placements, task_runner, workers
from prescale.catalog import list_profiles
from prescale.cycle import Decided
from prescale.metrics.store import MetricsStore, utc
from prescale.names import AppName, app_names
from prescale.settings import load_settings
from tasks.orchestrate import (
    apply_plans,
    chunk_label,
    chunks,
    decide_apps,
    observe,
    publish_artifact,
    record,
    request_retraining,
)


@flow(name="orchestrate", log_prints=True, task_runner=task_runner(threads=load_settings().orchestrate.max_workers))
def orchestrate(apps: list[str] | None = None, at: str | None = None, dry_run: bool | None = None) -> list[dict]:
    settings = load_settings()
    if dry_run is not None:
        settings.orchestrate.dry_run = dry_run
    now = utc(at) if at else pd.Timestamp.now(tz="UTC").floor("s")
    apps = list(dict.fromkeys(app_names(apps))) if apps else _apps_with_profiles(settings)
    clock = time.time() if at is None else now.timestamp()
    views = observe(apps, settings, clock)
    runner = FlowRunContext.get().task_runner
    parts = chunks(apps, workers(runner))
    addresses = placements(runner)
    if addresses:  # Dask: chunk i to the same worker every cycle, where its apps' champions are loaded
        futures = []
        for i, part in enumerate(parts):
            with pinned(addresses, i):
                futures.append(decide_apps.submit(part, {app: views[app] for app in part}, now, settings,
                                                  label=chunk_label(part)))  # fmt: skip
    else:
        futures = decide_apps.map(parts, [{app: views[app] for app in part} for part in parts], unmapped(now),
                                  unmapped(settings), label=[chunk_label(part) for part in parts])  # fmt: skip
    decided = [d for part, future in zip(parts, futures, strict=True) for d in _settle(part, now, future)]
    # quote(): Prefect would otherwise walk every Decided (rows, plans) of the cycle looking for futures
    # before each of these three tasks: 12 s of a 46 s warm cycle at 1,000 apps
    decided = apply_plans(quote(decided), settings, clock)
    started = time.thread_time()
    record(quote(decided), str(settings.orchestrate.ledger), settings.store.compact_min_files)
    record_ms = round(1000 * (time.thread_time() - started) / max(len(decided), 1), 3)
    for d in decided:
        d.row.timing = {"cpu_ms": {**d.row.timing.get("cpu_ms", {}), "record": record_ms}}
    retrain = [d.app for d in decided if d.row.retrain_requested]
    if retrain:
        get_run_logger().info(request_retraining(
            retrain, settings.orchestrate.retrain_deployment,
            cooldown_minutes=settings.orchestrate.retrain_cooldown_minutes))
    publish_artifact(quote(decided), settings)
    return [d.row.to_record() for d in decided]


def _apps_with_profiles(settings) -> list[AppName]:
    known = set(list_profiles(settings.search.profiles))
    return [AppName(app) for app in MetricsStore(settings.store.root).apps() if app in known]


def _settle(apps: list[str], now, future) -> list[Decided]:
    """The chunk's decisions, or a ``failed`` row per app with the error of its task when the chunk failed."""
    future.wait()
    if not future.state.is_completed():
        error = _error(future.state)
        return [Decided.failed(app, now, error) for app in apps]
    return future.result()


def _error(state) -> BaseException:
    try:
        state.result()
    except BaseException as exc:  # noqa: BLE001 - we want the exception object itself
        return exc
    return RuntimeError(f"task ended in state {state.name}")
