"""Ingestion as three steps: read a source, validate, store. Plain functions, no Prefect.

A source (``prescale.metrics.sources``: a file, Prometheus...) reads a :class:`RawBatch` with a
stable id derived from what was read; :func:`validate_batch` splits its rows into accepted and
quarantined; :func:`store_batch` writes both, which makes a retried or repeated batch a no-op;
:func:`summarise_batch` counts what happened, per app. The Prefect flow (``flows/ingest.py``) runs
these same steps as tasks, with retries on the two I/O steps; :func:`ingest` is the whole path
without Prefect (tests, benchmarks).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from prescale.metrics.sources import RawBatch, Source, Window
from prescale.metrics.store import MetricsStore, WriteResult
from prescale.metrics.validation import ValidationResult, split
from prescale.names import AppName


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


def validate_batch(batch: RawBatch) -> ValidationResult:
    return split(batch.rows, app=batch.app)


def store_batch(batch: RawBatch, result: ValidationResult, store: MetricsStore) -> WriteResult:
    """Quarantine first, then the accepted rows: the batch commits only once both are on disk."""
    if not store.has_batch(batch.batch_id):
        store.write_quarantine(result.quarantined, batch_id=batch.batch_id, source=batch.source)
    return store.write_batch(result.accepted, batch_id=batch.batch_id, source=batch.source)


def summarise_batch(
    batch: RawBatch, result: ValidationResult, written: WriteResult, store: MetricsStore
) -> IngestReport:
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


def ingest(source: Source, *, store: MetricsStore, window: Window | None = None) -> IngestReport:
    """Read, validate and store one batch of ``source``; the whole path without Prefect."""
    batch = source.read(window)
    result = validate_batch(batch)
    written = store_batch(batch, result, store)
    return summarise_batch(batch, result, written, store)
