"""Read applications' metrics from Prometheus (`query_range`) into raw metric rows.

Which PromQL yields which metric is configuration, one YAML file
(:func:`load_prometheus_config`; format in ``infra/prometheus/README.md``)::

    apps:
      web:
        cpu_cores: sum(rate(container_cpu_usage_seconds_total{namespace="web"}[1m]))
        app.requests_per_s: sum(rate(http_requests_total{app="web"}[1m]))

App names are Kubernetes names and metric names are known metrics or
``app.<snake_case>``, the same rules :mod:`prescale.metrics.schema` applies to
every row, checked here once at load time so a typo fails before any request.

:func:`fetch_range` moves data in four steps:

1. **grid**: ``start`` is rounded up to a multiple of the step (counted from the
   Unix epoch), so every fetch of the same period yields the same timestamps and a
   repeated or overlapping ingest deduplicates downstream.
2. **chunks** (:func:`plan_chunks`): the range is cut into chunks of at most
   ``chunk_hours``, and of at most :data:`MAX_POINTS` evaluation steps because
   Prometheus rejects a range query of more than 11,000 steps per series (the
   chunk shrinks when the step is small). ``query_range`` includes both ends, so
   each chunk ends one step before the next begins: no timestamp is fetched twice
   and none is skipped.
3. **requests**: one POST per (app, metric, chunk), each with its own timeout.
   Connection errors, timeouts and 5xx answers are retried with exponential
   backoff (``backoff_seconds``, then twice that, ...); after ``retries`` retries
   :class:`PrometheusUnavailableError` names the server and the last failure.
   A 4xx answer is never retried: it means the query itself is wrong (a PromQL
   syntax error, say), a user error that :class:`PrometheusQueryError` reports
   with the app, the metric, the query and Prometheus' own message. A query must
   return at most one series; several series mean the PromQL forgot to aggregate.
4. **frame**: rows ``app`` (str), ``ts`` (datetime64[ns, UTC]), ``metric`` (str),
   ``value`` (float64), sorted by ``(app, ts, metric)``. Prometheus writes
   special values as ``"NaN"``, ``"+Inf"`` and ``"-Inf"``; they become float NaN
   and infinities and are kept: validation quarantines them with a reason, so
   ``accepted + quarantined == read`` still counts them.

What this module deliberately does not do: validate values (that is
``validation.py``), write anything, or read settings (callers pass plain values
from ``settings.prometheus``). Requests run one after another: an ingest every
minute is one chunk per metric, and a long backfill should not flood a shared
Prometheus, whose concurrent queries are capped (``--query.max-concurrency``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

import httpx
import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from prescale.metrics.schema import KNOWN_METRICS, is_known_metric
from prescale.names import AppName

log = logging.getLogger(__name__)

MAX_POINTS = 11_000
"""Evaluation steps per request. Prometheus refuses ``(end - start) / step > 11000``, i.e. more than 11,001 points."""

QUERY_RANGE_PATH = "/api/v1/query_range"

Progress = Callable[[int, int], None]
"""Called as ``progress(done, total)`` with request counts: once before the first request, then after each."""


# --- errors -------------------------------------------------------------------------------------------------------


class PrometheusError(RuntimeError):
    """Fetching from Prometheus failed."""


class PrometheusQueryError(PrometheusError):
    """A configured query is wrong (rejected by Prometheus, or returns several series). Never retried."""


class PrometheusUnavailableError(PrometheusError):
    """Prometheus could not be reached, or kept failing, through every retry."""


class PrometheusConfigError(ValueError):
    """The queries file is missing, not YAML, or does not follow the format."""


# --- configuration ------------------------------------------------------------------------------------------------


class PrometheusConfig(BaseModel):
    """Per app, the PromQL query of each metric: ``apps[app][metric] = query``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    apps: dict[str, dict[str, str]] = Field(
        min_length=1, description="App name (Kubernetes name) -> metric name -> PromQL returning one series."
    )

    @field_validator("apps")
    @classmethod
    def _check_apps(cls, apps: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        return {_checked_app(app): _checked_queries(app, queries) for app, queries in apps.items()}


def _checked_app(app: str) -> str:
    return AppName(app, what="app name")  # an InvalidNameError is a ValueError: pydantic reports it with the field


def _checked_queries(app: str, queries: dict[str, str]) -> dict[str, str]:
    if not queries:
        raise ValueError(f"app {app!r} has no metrics: map at least one metric name to a PromQL query")
    return {_checked_metric(app, metric): _checked_query(app, metric, query) for metric, query in queries.items()}


def _checked_metric(app: str, metric: str) -> str:
    if not is_known_metric(metric):
        raise ValueError(
            f"metric {metric!r} of app {app!r} is unknown: use one of {', '.join(sorted(KNOWN_METRICS))}, "
            "or an app metric named 'app.<snake_case>', e.g. 'app.requests_per_s'"
        )
    return metric


def _checked_query(app: str, metric: str, query: str) -> str:
    if not query.strip():
        raise ValueError(f"the query of metric {metric!r} of app {app!r} is empty: write the PromQL that yields it")
    return query.strip()


def load_prometheus_config(path: str | Path) -> PrometheusConfig:
    """Read and validate a queries file; any problem raises :class:`PrometheusConfigError` naming the file."""
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PrometheusConfigError(f"cannot read Prometheus queries file {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise PrometheusConfigError(f"Prometheus queries file {path} is not valid YAML: {exc}") from exc
    if not isinstance(document, dict):
        raise PrometheusConfigError(
            f"Prometheus queries file {path} must be a mapping with an 'apps' key, got {type(document).__name__}: "
            "see infra/prometheus/queries.yaml for an example"
        )
    try:
        return PrometheusConfig.model_validate(document)
    except ValidationError as exc:
        raise PrometheusConfigError(f"Prometheus queries file {path} is invalid:\n{_describe(exc)}") from exc


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        lines.append(f"  - {where}: {error['msg'].removeprefix('Value error, ')}")
    return "\n".join(lines)


# --- chunks -------------------------------------------------------------------------------------------------------


class Chunk(NamedTuple):
    """One `query_range` request: evaluation timestamps ``first_ms, first_ms + step, ... <= last_ms``."""

    first_ms: int
    last_ms: int


def plan_chunks(start_ms: int, end_ms: int, *, step_ms: int, chunk_ms: int) -> list[Chunk]:
    """Cut ``[start_ms, end_ms]`` into consecutive, non-overlapping chunks on the grid ``start_ms + k * step_ms``.

    Each chunk holds ``min(chunk_ms // step_ms, MAX_POINTS)`` grid points (at least one), so
    chunk ``i`` starts at ``start_ms + i * points * step_ms`` and ends one step before chunk ``i + 1``.
    """
    if step_ms <= 0 or chunk_ms <= 0:
        raise ValueError(f"step_ms ({step_ms}) and chunk_ms ({chunk_ms}) must be positive")
    points = max(1, min(chunk_ms // step_ms, MAX_POINTS))
    firsts = range(start_ms, end_ms + 1, points * step_ms)
    return [Chunk(first, min(first + (points - 1) * step_ms, end_ms)) for first in firsts]


# --- fetching -----------------------------------------------------------------------------------------------------


class _Target(NamedTuple):
    app: str
    metric: str
    query: str

    def describe(self) -> str:
        return f"app {self.app!r}, metric {self.metric!r}, query {self.query!r}"


class _Request(NamedTuple):
    """Everything one HTTP request needs besides its target and chunk."""

    client: httpx.Client
    endpoint: str
    step_ms: int
    timeout_seconds: float
    retries: int
    backoff_seconds: float
    sleep: Callable[[float], None]


def fetch_range(
    config: PrometheusConfig,
    *,
    url: str,
    start: datetime,
    end: datetime,
    step_seconds: float,
    chunk_hours: float,
    timeout_seconds: float,
    retries: int,
    backoff_seconds: float,
    apps: Sequence[str] | None = None,
    progress: Progress | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> pd.DataFrame:
    """Fetch every configured metric of ``apps`` (default: all) over ``[start, end]`` as raw long rows.

    ``start`` and ``end`` must be time-zone aware; ``start`` is rounded up to the step grid.
    ``sleep`` waits between retries (tests pass a recorder).
    """
    _check_numbers(
        step_seconds=step_seconds,
        chunk_hours=chunk_hours,
        timeout_seconds=timeout_seconds,
        retries=retries,
        backoff_seconds=backoff_seconds,
    )
    start_ms, end_ms, step_ms = _epoch_ms(start, "start"), _epoch_ms(end, "end"), round(step_seconds * 1000)
    if start_ms > end_ms:
        raise ValueError(f"start ({start.isoformat()}) is after end ({end.isoformat()}): swap them")
    grid_start_ms = -(-start_ms // step_ms) * step_ms
    chunks = plan_chunks(grid_start_ms, end_ms, step_ms=step_ms, chunk_ms=round(chunk_hours * 3_600_000))
    targets = _targets(config, apps)
    with httpx.Client(timeout=timeout_seconds) as client:
        request = _Request(client, _endpoint(url), step_ms, timeout_seconds, retries, backoff_seconds, sleep)
        frames = list(_fetch_all(request, targets, chunks, progress))
    return _assemble(frames)


def _check_numbers(
    *, step_seconds: float, chunk_hours: float, timeout_seconds: float, retries: int, backoff_seconds: float
) -> None:
    rules = [
        (step_seconds >= 0.001, f"step_seconds ({step_seconds}) must be at least 0.001 (one millisecond)"),
        (chunk_hours > 0, f"chunk_hours ({chunk_hours}) must be positive"),
        (timeout_seconds > 0, f"timeout_seconds ({timeout_seconds}) must be positive"),
        (retries >= 0, f"retries ({retries}) must be 0 or more"),
        (backoff_seconds >= 0, f"backoff_seconds ({backoff_seconds}) must be 0 or more"),
    ]
    for ok, message in rules:
        if not ok:
            raise ValueError(f"{message}; see settings.prometheus")


def _epoch_ms(moment: datetime, name: str) -> int:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} ({moment.isoformat()}) has no time zone: pass an aware datetime, e.g. in UTC")
    return pd.Timestamp(moment).value // 1_000_000


def _endpoint(url: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"Prometheus url {url!r} must start with http:// or https://, e.g. http://127.0.0.1:9090")
    return url.rstrip("/") + QUERY_RANGE_PATH


def _targets(config: PrometheusConfig, apps: Sequence[str] | None) -> list[_Target]:
    chosen = list(config.apps) if apps is None else list(apps)
    unknown = [app for app in chosen if app not in config.apps]
    if unknown:
        raise ValueError(
            f"app(s) {', '.join(map(repr, unknown))} have no queries in the Prometheus config; "
            f"configured apps: {', '.join(config.apps)}"
        )
    return [_Target(app, metric, query) for app in chosen for metric, query in config.apps[app].items()]


def _fetch_all(
    request: _Request, targets: list[_Target], chunks: list[Chunk], progress: Progress | None
) -> Iterable[pd.DataFrame]:
    total, done = len(targets) * len(chunks), 0
    _report(progress, done, total)
    for target in targets:
        for chunk in chunks:
            yield _frame(target, _query_chunk(request, target, chunk))
            done += 1
            _report(progress, done, total)


def _report(progress: Progress | None, done: int, total: int) -> None:
    if progress is not None:
        progress(done, total)


def _query_chunk(request: _Request, target: _Target, chunk: Chunk) -> list[list]:
    form = {
        "query": target.query,
        "start": _seconds(chunk.first_ms),
        "end": _seconds(chunk.last_ms),
        "step": _seconds(request.step_ms),
        "timeout": f"{request.timeout_seconds:g}",  # Prometheus stops evaluating when we stop waiting
    }
    response = _post_with_retries(request, form, target)
    return _series_values(response, target)


def _seconds(ms: int) -> str:
    return f"{ms / 1000:.3f}"


def _post_with_retries(request: _Request, form: dict[str, str], target: _Target) -> httpx.Response:
    failures: list[str] = []
    for attempt in range(request.retries + 1):
        if attempt:
            delay = request.backoff_seconds * 2 ** (attempt - 1)
            log.warning(
                "Prometheus request failed (%s); retry %d/%d in %.2fs: %s",
                failures[-1],
                attempt,
                request.retries,
                delay,
                target.describe(),
            )
            request.sleep(delay)
        failure, response = _post_once(request, form)
        if failure is None:
            return response
        failures.append(failure)
    raise PrometheusUnavailableError(
        f"Prometheus at {request.endpoint} failed {len(failures)} attempts ({request.retries} retries) for "
        f"{target.describe()}; last failure: {failures[-1]}. Check that the url is right and the server is up, "
        "or raise settings.prometheus.timeout_seconds / retries"
    )


def _post_once(request: _Request, form: dict[str, str]) -> tuple[str | None, httpx.Response | None]:
    """One attempt: (None, response) when the answer is final, (failure, None) when it is worth retrying."""
    try:
        response = request.client.post(request.endpoint, data=form)
    except httpx.TimeoutException as exc:
        return f"timed out after {request.timeout_seconds:g}s ({type(exc).__name__})", None
    except httpx.TransportError as exc:
        return f"{type(exc).__name__}: {exc}", None
    if response.status_code >= 500:
        return f"HTTP {response.status_code}: {_error_text(response)}", None
    return None, response


def _error_text(response: httpx.Response) -> str:
    payload = _json(response)
    if payload and payload.get("error"):
        return f"{payload.get('errorType', 'error')}: {payload['error']}"
    return response.text.strip()[:200] or response.reason_phrase


def _json(response: httpx.Response) -> dict | None:
    try:
        payload = response.json()
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


def _series_values(response: httpx.Response, target: _Target) -> list[list]:
    payload = _json(response)
    if payload is None or "status" not in payload:
        raise PrometheusError(
            f"{response.url} answered HTTP {response.status_code} without a Prometheus API response "
            f"({_error_text(response)!r}) for {target.describe()}: is the url a Prometheus server?"
        )
    if response.is_error or payload["status"] != "success":
        raise PrometheusQueryError(
            f"Prometheus rejected the query of {target.describe()} (HTTP {response.status_code}) with "
            f"{_error_text(response)}. Fix the PromQL in the Prometheus queries file"
        )
    for warning in payload.get("warnings") or []:
        log.warning("Prometheus warning for %s: %s", target.describe(), warning)
    return _single_series(payload.get("data") or {}, target)


def _single_series(data: dict, target: _Target) -> list[list]:
    result = data.get("result") or []
    if data.get("resultType") != "matrix":
        raise PrometheusQueryError(
            f"query of {target.describe()} returned a {data.get('resultType')!r}, not a range of samples: "
            "write an expression that yields one time series"
        )
    if len(result) > 1:
        labels = "; ".join(str(series.get("metric", {})) for series in result[:3])
        raise PrometheusQueryError(
            f"query of {target.describe()} returned {len(result)} series (e.g. {labels}); prescale needs one series "
            f"per metric: aggregate with sum() or avg(), e.g. sum({target.query})"
        )
    if result and "values" not in result[0]:
        raise PrometheusQueryError(
            f"query of {target.describe()} returned native histograms, not float samples: "
            "reduce them to a number, e.g. with histogram_quantile() or histogram_sum()"
        )
    return result[0]["values"] if result else []


def _frame(target: _Target, values: list[list]) -> pd.DataFrame:
    ts_ms = np.fromiter((round(float(ts) * 1000) for ts, _ in values), dtype=np.int64, count=len(values))
    # float() reads Prometheus' "NaN", "+Inf" and "-Inf"; they are kept for validation to quarantine.
    value = np.fromiter((float(v) for _, v in values), dtype=np.float64, count=len(values))
    return pd.DataFrame(
        {
            "app": pd.Series([target.app] * len(values), dtype="str"),
            "ts": pd.to_datetime(ts_ms * 1_000_000, unit="ns", utc=True),
            "metric": pd.Series([target.metric] * len(values), dtype="str"),
            "value": value,
        }
    )


def _assemble(frames: list[pd.DataFrame]) -> pd.DataFrame:
    if not frames:
        return _frame(_Target("", "", ""), [])
    frame = pd.concat(frames, ignore_index=True)
    return frame.sort_values(["app", "ts", "metric"], kind="stable", ignore_index=True)
