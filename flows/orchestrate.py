"""`orchestrate`: every minute, per app, forecast -> the predictive rule -> plan -> apply -> ledger. Wiring only.

1. ``observe-cluster``: what runs now (once for the cycle).
2. per app, mapped in parallel on the settings' task runner (threads, or Dask:
   ``flows/runners.py``): ``gather-inputs`` (recent rows, phase, recent
   decisions, the rule's and the SLO controller's state, the app's SLO
   budget, the champion's forecast and tuned SLO policy; or why there is
   none) then ``plan-app`` (``prescale.cycle.plan_app``: the SLO policy's
   rule of ``prescale.decision`` with its reactive floor, steered by the
   online controller, then the plan and the ledger row).
3. ``apply-plans``: one app after another through the cluster backend
   (make-before-break), unless dry run.
4. ``record-decisions``: one ledger row per app; one ``request-retraining`` for
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

from flows.runners import task_runner
from prescale.catalog import list_profiles
from prescale.cycle import Decided
from prescale.metrics.store import MetricsStore, utc
from prescale.names import AppName, app_names
from prescale.settings import load_settings
from tasks.orchestrate import (
    apply_plans,
    gather,
    observe,
    plan_app,
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
    gathered = gather.map(apps, unmapped(now), unmapped(settings))
    planned = plan_app.map(gathered, [views[app] for app in apps], unmapped(settings))
    decided = [_settle(app, now, g, p) for app, g, p in zip(apps, gathered, planned, strict=True)]
    decided = apply_plans(decided, settings, clock)
    record(decided, str(settings.orchestrate.ledger), settings.store.compact_min_files)
    retrain = [d.app for d in decided if d.row.retrain_requested]
    if retrain:
        get_run_logger().info(request_retraining(
            retrain, settings.orchestrate.retrain_deployment,
            cooldown_minutes=settings.orchestrate.retrain_cooldown_minutes))
    publish_artifact(decided, settings)
    return [d.row.to_record() for d in decided]


def _apps_with_profiles(settings) -> list[AppName]:
    known = set(list_profiles(settings.search.profiles))
    return [AppName(app) for app in MetricsStore(settings.store.root).apps() if app in known]


def _settle(app: str, now, gathered, planned) -> Decided:
    """The app's decision, or its ``failed`` row with the error of whichever step raised."""
    for future in (gathered, planned):
        future.wait()
        if not future.state.is_completed():
            return Decided.failed(app, now, _error(future.state))
    return planned.result()


def _error(state) -> BaseException:
    try:
        state.result()
    except BaseException as exc:  # noqa: BLE001 - we want the exception object itself
        return exc
    return RuntimeError(f"task ended in state {state.name}")
