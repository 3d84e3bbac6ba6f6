"""`ingest-metrics`: one batch of a metrics source into the Parquet store. Wiring only.

Which source, and its options, come from the parameters:
- ``source`` and ``options``: any registered source (``prescale.metrics.sources.SOURCES``) by name,
  with its options as a dict, e.g. ``source="prometheus", options={"config": "queries.yaml"}``;
- or the two shorthands the command line and the deployments use: ``path`` (with ``app`` and
  ``mapping``) for the file source, ``prometheus_config`` for Prometheus (what the one-minute
  deployment in ``prefect.yaml`` runs). The first given of ``source``, ``path`` and
  ``prometheus_config`` wins.

A live source is read over the last ``lookback_minutes`` (the overlap between consecutive windows
is collapsed by the store on read); a file is read whole. Either way: read (one task for every
source, retried on transient failures) -> validate -> store (quarantine + accepted rows, idempotent
batch) -> compact the partitions of the apps the batch stored rows for that piled up files (minute
batches add one file per partition each run; a quarantined name is never compacted: it was refused,
so it never becomes a path) -> a markdown artifact with read / accepted / quarantined per app.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import flow

from prescale.metrics.ingest import IngestReport
from prescale.metrics.sources import Window, build_source
from prescale.settings import load_settings
from tasks.ingest import compact, publish_artifact, read, store, summarise, validate


@flow(name="ingest-metrics", log_prints=True)
def ingest_metrics(
    path: str | None = None,
    app: str | None = None,
    mapping: str | None = None,
    prometheus_config: str | None = None,
    lookback_minutes: int = 10,
    source: str | None = None,
    options: dict[str, Any] | None = None,
) -> IngestReport:
    settings = load_settings()
    name, chosen = requested_source(
        path=path, app=app, mapping=mapping, prometheus_config=prometheus_config, source=source, options=options
    )
    metrics_source = build_source(name, chosen, settings)
    window = Window.last(lookback_minutes, end=datetime.now(UTC)) if metrics_source.live else None
    batch = read(metrics_source, window)
    result = validate(batch)
    written = store(batch, result, str(settings.store.root), str(settings.store.quarantine))
    summary = summarise(batch, result, written, str(settings.store.root))
    compact(str(settings.store.root), summary.stored_apps, settings.store.compact_min_files)
    publish_artifact([summary])
    return summary


def requested_source(
    *,
    path: str | None,
    app: str | None,
    mapping: str | None,
    prometheus_config: str | None,
    source: str | None,
    options: dict[str, Any] | None,
) -> tuple[str, dict[str, Any]]:
    """The source's registry name and options: ``source`` if given, else ``path``, else ``prometheus_config``.

    The first given wins, so a run of the Prometheus deployment given a ``path`` is a one-off file backfill.
    """
    if source is not None:
        return source, dict(options or {})
    if path is not None:
        return "file", {k: v for k, v in {"path": path, "app": app, "mapping": mapping}.items() if v is not None}
    if prometheus_config is not None:
        return "prometheus", {"config": prometheus_config}
    raise ValueError(
        "give `path` (a metrics file), `prometheus_config` (PromQL per app and metric), "
        "or `source` and `options` (a registered metrics source)"
    )
