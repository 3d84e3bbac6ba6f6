"""`demo`: the main job on the bundled traces (what `make run` runs). Wiring only.

1. ingest every app of ``data/demo.yaml`` through the ``ingest-metrics`` flow (a
   subflow run each, visible in the Prefect UI) and summarise the store;
2. train and register each app's forecasters (``train-forecasters``, the ``small``
   preset: about a minute on 2 cores; ``quick`` trims history and epochs further
   for the test suite, on the same code path).
"""

from __future__ import annotations

from prefect import flow, task

from flows.ingest import ingest_metrics
from flows.train import train_forecasters
from prescale.demo import DEFAULT_MANIFEST, load_manifest, summarise_store
from prescale.metrics.store import MetricsStore
from prescale.settings import load_settings


@task(name="summarise-store", retries=2, retry_delay_seconds=2)
def summarise(root: str, apps: list[str]) -> list[dict]:
    return summarise_store(MetricsStore(root), apps)


@flow(name="demo", log_prints=True)
def demo(manifest: str = str(DEFAULT_MANIFEST), quick: bool = False) -> dict:
    settings = load_settings()
    spec = load_manifest(manifest)
    reports = [
        ingest_metrics(path=str(entry.file), app=entry.app, mapping=str(entry.mapping) if entry.mapping else None)
        for entry in spec.apps
    ]
    apps = [entry.app for entry in spec.apps]
    stored = summarise(str(settings.store.root), apps)
    trained = train_forecasters(apps=apps, preset="small", history_days=3.0 if quick else None)
    return {
        "quick": quick,
        "tracking_uri": settings.registry.tracking_uri,
        "train": trained.to_dict(),
        "home": str(settings.home),
        "store": str(settings.store.root),
        "ingest": [r.to_dict() for r in reports],
        "stored": stored,
    }
