"""Ingestion as three steps: read a source, validate, store. Plain functions, no Prefect.

The Prefect flow (``flows/ingest.py``) calls these same functions as tasks, with
retries on the two I/O steps; the CLI and tests may call them directly. Each batch
is identified by a stable id derived from what was read (the file's content digest,
the app and the mapping; or the Prometheus queries and window), which makes a
retried or repeated batch a no-op in the store.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd

from prescale.metrics.files import load_mapping, read_canonical, read_mapped
from prescale.metrics.prometheus import fetch_range, load_prometheus_config
from prescale.metrics.store import MetricsStore, WriteResult, batch_id_for, file_digest
from prescale.metrics.validation import MetricsInputError, ValidationResult, split
from prescale.names import AppName, InvalidNameError


@dataclass
class RawBatch:
    """Rows as read, before validation, and the id that makes their storage idempotent."""

    rows: pd.DataFrame
    batch_id: str
    source: str
    app: str | None = None


@dataclass
class AppCounts:
    read: int = 0
    accepted: int = 0
    quarantined: int = 0


@dataclass
class IngestReport:
    """What one batch did: the counts add up (`accepted + quarantined == read`)."""

    source: str
    batch_id: str
    read: int
    accepted: int
    quarantined: int
    quarantine_reasons: dict[str, int]
    per_app: dict[str, AppCounts] = field(default_factory=dict)
    already_ingested: bool = False
    files_written: int = 0
    store: str = ""

    @property
    def stored_apps(self) -> list[AppName]:
        """The apps this batch stored rows for: the only names a later per-app step may touch.

        ``per_app`` also counts quarantined names (``web/../../x``, a 300-character name): those were
        refused and must never become a path, so they are not here.
        """
        return sorted(AppName(app) for app, counts in self.per_app.items() if counts.accepted)

    def to_dict(self) -> dict:
        return asdict(self)


def read_file_batch(path: Path, *, app: str | None, mapping: Path | None, block_size_mib: int = 64) -> RawBatch:
    """Read a CSV/Parquet file (canonical, or through a YAML mapping) into a raw batch."""
    path = Path(path)
    if app is not None:
        try:
            app = AppName(app, what="--app")
        except InvalidNameError as exc:
            raise MetricsInputError(f"{exc}; e.g. 'web' or 'video-api'") from None
    with ThreadPoolExecutor(max_workers=1) as pool:
        digest = pool.submit(file_digest, path)  # hashing releases the GIL: overlap it with parsing
        if mapping is not None:
            spec = load_mapping(mapping)
            rows = read_mapped(path, spec, app=app)
            mapping_identity = Path(mapping).read_bytes()
        else:
            rows = read_canonical(path, app=app, block_size_mib=block_size_mib)
            mapping_identity = b""
        batch_id = batch_id_for(digest.result(), app or "", mapping_identity)
    return RawBatch(rows=rows, batch_id=batch_id, source=str(path), app=app)


def read_prometheus_batch(
    config: Path, *, start: datetime, end: datetime, url: str, step_seconds: int = 60, **http: float
) -> RawBatch:
    """Query every configured (app, metric) over [start, end] into one raw batch.

    The window is aligned to whole steps, so two runs asking for the same window get
    the same batch id and the second is a no-op.
    """
    step = pd.Timedelta(seconds=step_seconds)
    start, end = pd.Timestamp(start).floor(step), pd.Timestamp(end).floor(step)
    spec = load_prometheus_config(Path(config))
    rows = fetch_range(spec, url=url, start=start, end=end, step_seconds=step_seconds, **http)
    batch_id = batch_id_for("prometheus", url, Path(config).read_bytes(), start.isoformat(), end.isoformat())
    return RawBatch(rows=rows, batch_id=batch_id, source=f"prometheus {url} [{start} .. {end}]")


def validate_batch(batch: RawBatch) -> ValidationResult:
    return split(batch.rows, app=batch.app)


def store_batch(batch: RawBatch, result: ValidationResult, store: MetricsStore) -> WriteResult:
    """Quarantine first, then the accepted rows: the batch commits only once both are on disk."""
    if not store.has_batch(batch.batch_id):
        store.write_quarantine(result.quarantined, batch_id=batch.batch_id, source=batch.source)
    return store.write_batch(result.accepted, batch_id=batch.batch_id, source=batch.source)


def report(batch: RawBatch, result: ValidationResult, written: WriteResult, store: MetricsStore) -> IngestReport:
    per_app: dict[str, AppCounts] = {}
    accepted = result.accepted["app"].value_counts()  # on the categorical: no per-row strings
    quarantined = result.quarantined["app"].fillna("(none)").astype(str).value_counts()
    for name in sorted(set(accepted.index) | set(quarantined.index)):
        a, q = int(accepted.get(name, 0)), int(quarantined.get(name, 0))
        per_app[name] = AppCounts(read=a + q, accepted=a, quarantined=q)
    return IngestReport(
        source=batch.source,
        batch_id=batch.batch_id,
        read=result.read,
        accepted=len(result.accepted),
        quarantined=len(result.quarantined),
        quarantine_reasons={str(k): int(v) for k, v in result.reasons.items()},
        per_app=per_app,
        already_ingested=written.skipped,
        files_written=0 if written.skipped else written.files,
        store=str(store.root),
    )


def ingest_file(
    path: Path, *, store: MetricsStore, app: str | None = None, mapping: Path | None = None, block_size_mib: int = 64
) -> IngestReport:
    """Read, validate and store one file; the whole path without Prefect."""
    batch = read_file_batch(path, app=app, mapping=mapping, block_size_mib=block_size_mib)
    result = validate_batch(batch)
    written = store_batch(batch, result, store)
    return report(batch, result, written, store)
