"""`demo`: the main job on the bundled traces (what `make run` runs). Wiring only.

1. ingest every app of ``data/demo.yaml`` through the ``ingest-metrics`` flow (a
   subflow run each, visible in the Prefect UI) and summarise the store;
2. train and register each app's forecasters (``train-forecasters``, the ``small``
   preset: about a minute on 2 cores);
3. replay the last ``replay_days`` of each app under every policy (``backtest``, a
   subflow run per app): its profile is the one named like the app (``web``,
   ``analytics``, ``inference``, ``transcoder``), the trace's p99 becomes the
   profile's example peak (``peak_scale=1``), and the replay's forecaster is trained
   only on the history before the window (``best``: every candidate, LSTM included;
   quick mode uses the Holt-Winters baseline). One app's failed replay is reported
   with its error; the others go on.

``quick`` trims history, training and the replayed window for the test suite, on
the same code path.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task

from flows.backtest import backtest
from flows.ingest import ingest_metrics
from flows.train import train_forecasters
from prescale.demo import DEFAULT_MANIFEST, load_manifest, summarise_store
from prescale.metrics.store import MetricsStore
from prescale.settings import load_settings

REPLAY_DAYS = 2.0
QUICK_REPLAY_DAYS = 0.5
QUICK_TUNE_DAYS = 0.5  # the SLO policy's tuning stretch in quick mode (settings' replay.tune_days otherwise)


@task(name="summarise-store", retries=2, retry_delay_seconds=2)
def summarise(root: str, apps: list[str]) -> list[dict]:
    return summarise_store(MetricsStore(root), apps)


@flow(name="demo", log_prints=True)
def demo(manifest: str = str(DEFAULT_MANIFEST), quick: bool = False, replay: bool = True) -> dict:
    settings = load_settings()
    spec = load_manifest(manifest)
    reports = [
        ingest_metrics(path=str(entry.file), app=entry.app, mapping=str(entry.mapping) if entry.mapping else None)
        for entry in spec.apps
    ]
    apps = [entry.app for entry in spec.apps]
    stored = summarise(str(settings.store.root), apps)
    trained = train_forecasters(apps=apps, preset="small", history_days=3.0 if quick else None)
    replays = [_replay(app, quick) for app in apps] if replay else []
    return {
        "quick": quick,
        "tracking_uri": settings.registry.tracking_uri,
        "train": trained.to_dict(),
        "replay": replays,
        "home": str(settings.home),
        "store": str(settings.store.root),
        "ingest": [r.to_dict() for r in reports],
        "stored": stored,
    }


def _replay(app: str, quick: bool) -> dict[str, Any]:
    """One app's backtest summary, or ``{"app", "error"}`` when its replay failed (the others go on)."""
    try:
        return backtest(
            app=app,
            days=QUICK_REPLAY_DAYS if quick else REPLAY_DAYS,
            forecaster="holt_winters" if quick else "best",
            peak_scale=1.0,
            tune_days=QUICK_TUNE_DAYS if quick else None,
        )
    except Exception as exc:  # noqa: BLE001 - one app's failure never stops the demo
        get_run_logger().error("replay of %s failed: %s: %s", app, type(exc).__name__, exc)
        return {"app": app, "error": f"{type(exc).__name__}: {exc}"}
