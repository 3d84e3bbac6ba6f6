"""Prefect tasks for ingestion: one I/O step each, retried where I/O can fail transiently.

The logic lives in ``prescale.metrics``; these wrappers only add retries, names and
logging. Every source (``prescale.metrics.sources``) is read by the one :func:`read` task.
A user error (a missing column, an empty file, a bad mapping) raises ``MetricsInputError``
and is never retried: retrying cannot fix the input.
"""

from __future__ import annotations

import errno

import httpx
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from prescale.metrics.ingest import IngestReport, store_batch, summarise_batch, validate_batch
from prescale.metrics.prometheus import PrometheusConfigError, PrometheusQueryError, PrometheusUnavailableError
from prescale.metrics.sources import RawBatch, Source, Window
from prescale.metrics.store import CompactionResult, MetricsStore, WriteResult
from prescale.metrics.validation import MetricsInputError, ValidationResult

IO_RETRIES = 3
IO_RETRY_DELAYS = [1, 5, 15]
# AWS error names in pyarrow's S3 messages ("AWS Error NO_SUCH_BUCKET during PutObject ...").
OBJECT_STORE_USER_ERRORS = ("NO_SUCH_BUCKET", "ACCESS_DENIED", "INVALID_ACCESS_KEY_ID", "SIGNATURE_DOES_NOT_MATCH")
# OS errors that the same call meets again: a name too long, a read-only or full disk, no permission.
PERMANENT_ERRNOS = frozenset(
    {errno.ENAMETOOLONG, errno.EINVAL, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}
)


def is_transient(exc: BaseException) -> bool:
    """An allow-list of failures a retry can fix: I/O hiccups and an unreachable server.

    Everything else (bad input, a bad query, a bug) fails at once: retrying the same
    input cannot change the outcome and would only delay the error by the retry delays.
    """
    if isinstance(exc, MetricsInputError | PrometheusQueryError | PrometheusConfigError):
        return False
    if isinstance(exc, FileNotFoundError | IsADirectoryError | NotADirectoryError | PermissionError):
        return False
    if isinstance(exc, OSError) and exc.errno in PERMANENT_ERRNOS:
        return False
    if isinstance(exc, OSError) and any(code in str(exc) for code in OBJECT_STORE_USER_ERRORS):
        return False  # pyarrow's S3 errors are plain OSErrors: a missing bucket or bad keys stay so
    return isinstance(exc, PrometheusUnavailableError | httpx.TransportError | TimeoutError | OSError)


def transient_only(task, task_run, state) -> bool:
    """Prefect retry condition: retry only :func:`is_transient` failures."""
    outcome = state.result(raise_on_failure=False)  # the exception itself; re-raising it here recursed
    return isinstance(outcome, BaseException) and is_transient(outcome)


@task(
    name="read-metrics",
    task_run_name="read-metrics-{source.name}",
    retries=IO_RETRIES,
    retry_delay_seconds=IO_RETRY_DELAYS,
    retry_condition_fn=transient_only,
)
def read(source: Source, window: Window | None) -> RawBatch:
    batch = source.read(window)
    get_run_logger().info("read %s rows from %s (batch %s)", f"{len(batch.rows):,}", batch.source, batch.batch_id)
    return batch


@task(name="validate-metrics")
def validate(batch: RawBatch) -> ValidationResult:
    return validate_batch(batch)


@task(name="store-metrics", retries=IO_RETRIES, retry_delay_seconds=IO_RETRY_DELAYS, retry_condition_fn=transient_only)
def store(batch: RawBatch, result: ValidationResult, root: str, quarantine: str) -> WriteResult:
    written = store_batch(batch, result, MetricsStore(root, quarantine=quarantine))
    logger = get_run_logger()
    if written.skipped:
        logger.info("batch %s was already ingested: nothing written", batch.batch_id)
    else:
        logger.info("wrote %s rows in %d files", f"{written.rows:,}", written.files)
    return written


@task(
    name="compact-metrics", retries=IO_RETRIES, retry_delay_seconds=IO_RETRY_DELAYS, retry_condition_fn=transient_only
)
def compact(root: str, apps: list[str], min_files: int) -> CompactionResult:
    """Merge the partitions of these apps that have piled up `min_files` files (minute batches do)."""
    metrics = MetricsStore(root)
    results = [metrics.compact(app=app, min_files=min_files) for app in apps]
    merged = CompactionResult(
        partitions=sum(r.partitions for r in results),
        files_before=sum(r.files_before for r in results),
        files_after=sum(r.files_after for r in results),
        rows=sum(r.rows for r in results),
    )
    if merged.partitions:
        get_run_logger().info(
            "compacted %d partitions: %d files -> %d", merged.partitions, merged.files_before, merged.files_after
        )
    return merged


@task(name="summarise-ingest")
def summarise(batch: RawBatch, result: ValidationResult, written: WriteResult, root: str) -> IngestReport:
    return summarise_batch(batch, result, written, MetricsStore(root))


@task(name="publish-ingest-artifact", retries=IO_RETRIES, retry_delay_seconds=IO_RETRY_DELAYS)
def publish_artifact(reports: list[IngestReport]) -> str:
    """A markdown artifact: read / accepted / quarantined per app, and the reasons."""
    return str(
        create_markdown_artifact(
            key="ingest-summary",
            markdown=ingest_markdown(reports),
            description="Rows read, accepted and quarantined per app",
        )
    )


def ingest_markdown(reports: list[IngestReport]) -> str:
    lines = ["# Ingest summary", "", "| source | app | read | accepted | quarantined |", "|---|---|---:|---:|---:|"]
    for rep in reports:
        for app, counts in rep.per_app.items():
            name = _cell(app)  # a quarantined name is anything a file held: quoted, cut, no table syntax
            lines.append(f"| {rep.source} | {name} | {counts.read:,} | {counts.accepted:,} | {counts.quarantined:,} |")
        note = " (already ingested: nothing written)" if rep.already_ingested else ""
        lines.append(
            f"| **{rep.source}** | **all**{note} | **{rep.read:,}** | **{rep.accepted:,}** | **{rep.quarantined:,}** |"
        )
    reasons: dict[str, int] = {}
    for rep in reports:
        for reason, count in rep.quarantine_reasons.items():
            reasons[reason] = reasons.get(reason, 0) + count
    if reasons:
        lines += ["", "| quarantine reason | rows |", "|---|---:|"]
        lines += [f"| {reason} | {count:,} |" for reason, count in sorted(reasons.items(), key=lambda kv: -kv[1])]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    """``text`` as one Markdown table cell: at most 60 characters, no line breaks, pipes escaped."""
    text = " ".join(str(text).split())
    text = text if len(text) <= 60 else text[:57] + "..."
    return text.replace("|", "\\|")
