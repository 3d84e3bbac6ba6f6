"""`ingest-metrics`: a file or a Prometheus window into the Parquet store. Wiring only.

Two modes, chosen by parameters:
- ``path`` given: read that CSV/Parquet file (``mapping`` optional) for ``app``;
- otherwise: query Prometheus for the last ``lookback_minutes`` for every app in
  ``prometheus_config`` (what the one-minute deployment in ``prefect.yaml`` runs;
  the overlap between consecutive windows is collapsed by the store on read).

Either way: read -> validate -> store (quarantine + accepted rows, idempotent batch)
-> compact the partitions of the apps the batch stored rows for that piled up files
(minute batches add one file per partition each run; a quarantined name is never
compacted: it was refused, so it never becomes a path) -> a markdown artifact with read / accepted /
quarantined per app.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prefect import flow

from prescale.metrics.ingest import IngestReport
from prescale.settings import load_settings
from tasks.ingest import compact, publish_artifact, read_file, read_prometheus, store, summarise, validate


@flow(name="ingest-metrics", log_prints=True)
def ingest_metrics(
    path: str | None = None,
    app: str | None = None,
    mapping: str | None = None,
    prometheus_config: str | None = None,
    lookback_minutes: int = 10,
) -> IngestReport:
    settings = load_settings()
    if path is not None:
        batch = read_file(path, app, mapping, settings.ingest.block_size_mib)
    else:
        if prometheus_config is None:
            raise ValueError("give either `path` (a metrics file) or `prometheus_config` (PromQL per app and metric)")
        end = datetime.now(UTC)
        prom = settings.prometheus
        batch = read_prometheus(
            prometheus_config,
            start=end - timedelta(minutes=lookback_minutes),
            end=end,
            prometheus={
                "url": prom.url,
                "step_seconds": prom.step_seconds,
                "chunk_hours": prom.chunk_hours,
                "timeout_seconds": prom.timeout_seconds,
                "retries": prom.retries,
                "backoff_seconds": prom.backoff_seconds,
            },
        )
    result = validate(batch)
    written = store(batch, result, str(settings.store.root), str(settings.store.quarantine))
    summary = summarise(batch, result, written, str(settings.store.root))
    compact(str(settings.store.root), summary.stored_apps, settings.store.compact_min_files)
    publish_artifact([summary])
    return summary
