"""`demo`: the main job on the bundled traces (what `make run` runs). Wiring only.

Today: ingest every app of ``data/demo.yaml`` through the ``ingest-metrics`` flow
(a subflow run each, visible in the Prefect UI), then summarise the store.
Training, replay and plans join here as those parts land.
"""

from __future__ import annotations

from prefect import flow, task

from flows.ingest import ingest_metrics
from prescale.demo import DEFAULT_MANIFEST, load_manifest, summarise_store
from prescale.metrics.store import MetricsStore
from prescale.settings import load_settings


@task(name="summarise-store", retries=2, retry_delay_seconds=2)
def summarise(root: str, apps: list[str]) -> list[dict]:
    return summarise_store(MetricsStore(root), apps)


@flow(name="demo", log_prints=True)
def demo(manifest: str = str(DEFAULT_MANIFEST)) -> dict:
    settings = load_settings()
    spec = load_manifest(manifest)
    reports = [
        ingest_metrics(path=str(entry.file), app=entry.app, mapping=str(entry.mapping) if entry.mapping else None)
        for entry in spec.apps
    ]
    stored = summarise(str(settings.store.root), [entry.app for entry in spec.apps])
    return {
        "home": str(settings.home),
        "store": str(settings.store.root),
        "ingest": [r.to_dict() for r in reports],
        "stored": stored,
    }
