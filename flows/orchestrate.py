"""`orchestrate`: every minute, per app, forecast -> allocate -> plan -> apply -> ledger. Wiring only.

1. ``observe-cluster``: what runs now (once for the cycle).
2. per app, mapped in parallel: ``gather-inputs`` (recent rows, phase, recent
   decisions, the champion's forecast; or why there is none) then ``decide``
   (demand to cover with the reactive floor, allocation, plan).
3. ``apply-plans``: one app after another through the cluster backend
   (make-before-break), unless dry run.
4. ``record-decisions``: one ledger row per app; ``request-retraining`` for apps
   whose champion fell outside its error budget; a markdown artifact.

An app whose step raises gets a ``failed`` row with the error; the others go on.
``at`` replays the loop at a past instant (tests, the demo); default: now.
"""

from __future__ import annotations

import time

import pandas as pd
from prefect import flow, get_run_logger, unmapped
from prefect.task_runners import ThreadPoolTaskRunner

from prescale.catalog import list_profiles
from prescale.metrics.store import MetricsStore, utc
from prescale.settings import load_settings
from tasks.orchestrate import (
    apply_plans,
    decide,
    gather,
    observe,
    publish_artifact,
    record,
    request_retraining,
    unexpected,
)


@flow(name="orchestrate", log_prints=True, task_runner=ThreadPoolTaskRunner(max_workers=2))
def orchestrate(apps: list[str] | None = None, at: str | None = None, dry_run: bool | None = None) -> list[dict]:
    settings = load_settings()
    if dry_run is not None:
        settings.orchestrate.dry_run = dry_run
    now = utc(at) if at else pd.Timestamp.now(tz="UTC").floor("s")
    apps = list(apps) if apps else _apps_with_profiles(settings)
    clock = time.time() if at is None else now.timestamp()
    held = observe(apps, settings, clock)
    gathered = gather.map(apps, unmapped(now), unmapped(settings))
    decided = []
    for app, future in zip(apps, gathered, strict=True):
        future.wait()
        state = future.state
        if state.is_failed():
            decided.append(unexpected(app, now, _error(state)))
            continue
        try:
            decided.append(decide.submit(future.result(), held[app], settings).result())
        except Exception as exc:  # noqa: BLE001 - one app's failure never stops the others
            decided.append(unexpected(app, now, exc))
    decided = apply_plans(decided, settings, clock)
    record(decided, str(settings.orchestrate.ledger))
    retrain = [d.app for d in decided if d.row.retrain_requested]
    if retrain:
        get_run_logger().info(request_retraining(retrain, settings.orchestrate.retrain_deployment))
    publish_artifact(decided)
    return [d.row.to_record() for d in decided]


def _apps_with_profiles(settings) -> list[str]:
    known = set(list_profiles(settings.search.profiles))
    return [app for app in MetricsStore(settings.store.root).apps() if app in known]


def _error(state) -> BaseException:
    try:
        state.result()
    except BaseException as exc:  # noqa: BLE001 - we want the exception object itself
        return exc
    return RuntimeError(f"task ended in state {state.name}")
