"""The played traces on the wire: one gauge, ``prescale_live_value{app="web",metric="app.requests_per_s"}``.

One family holds every (app, metric) as labels rather than a family per metric, because metric
names such as ``app.requests_per_s`` are not valid Prometheus metric names while any string is a
valid label value; the queries file :func:`prometheus_queries` writes then selects each series back
by its labels, so :class:`~prescale.metrics.sources.prometheus.PrometheusSource` reads the same
(app, metric) pairs the traces hold.

- :func:`exposition`: the Prometheus text format (version 0.0.4) an exporter serves at one instant,
  no timestamps (Prometheus stamps the scrape);
- :func:`write_openmetrics`: OpenMetrics text of :meth:`LiveTraces.rows` over a window, samples
  stamped, one series after another and ``# EOF`` last, which is what ``promtool tsdb
  create-blocks-from openmetrics`` backfills;
- :func:`prometheus_queries` / :func:`write_queries`: the queries file, shaped as
  ``infra/prometheus/queries.yaml``.

A row the file source flagged (a missing or unparsable value, or one the mapping excludes) goes out
as ``NaN``, never as a number: validation on the far side quarantines it, as it would the file's row.
Values are written with ``repr``, the shortest text that reads back to the same float.
"""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from prescale.live.player import FLAGS, LiveTraces

GAUGE = "prescale_live_value"
HELP = "The bundled demo traces played as live demand (prescale.live), one series per app and metric."


def exposition(rows: pd.DataFrame) -> str:
    """Prometheus text exposition of ``rows`` (one per (app, metric), e.g. :meth:`LiveTraces.at`)."""
    lines = [f"# HELP {GAUGE} {HELP}", f"# TYPE {GAUGE} gauge"]
    for labels, value in zip(_labels(rows), _values(rows), strict=True):
        lines.append(f"{GAUGE}{labels} {value}")
    return "\n".join(lines) + "\n"


def write_openmetrics(traces: LiveTraces, start: datetime, end: datetime, path: Path) -> int:
    """Write OpenMetrics text of ``traces.rows(start, end)`` to ``path``; the number of samples written."""
    rows = traces.rows(start, end).sort_values(["app", "metric", "ts"], kind="stable", ignore_index=True)
    seconds = pd.DatetimeIndex(rows["ts"]).asi8 / 1e9
    samples = [
        f"{GAUGE}{labels} {value} {stamp:.3f}"
        for labels, value, stamp in zip(_labels(rows), _values(rows), seconds, strict=True)
    ]
    text = "\n".join([f"# HELP {GAUGE} {HELP}", f"# TYPE {GAUGE} gauge", *samples, "# EOF"]) + "\n"
    Path(path).write_text(text, encoding="utf-8")
    return len(samples)


def query(app: str, metric: str) -> str:
    """The PromQL of one (app, metric): the scraped series where there is one, else the backfilled history.

    A backfilled history (:func:`write_openmetrics` through promtool) has no ``instance`` label; a
    scraped series always has one. For the lookback (5 min) after the backfill ends both exist, and
    the backfill's last sample is older than the scrape's: ``or`` keeps the left side wherever it has
    a value, so the scrape wins, and the history answers where nothing was scraped. ``max`` makes
    each side one series (a restarted exporter's old target lingers for the lookback too); ``sum``
    would add the copies up.
    """
    labels = f"app={_quoted(app)},metric={_quoted(metric)}"
    return f'max({GAUGE}{{{labels},instance!=""}}) or max({GAUGE}{{{labels}}})'


def prometheus_queries(traces: LiveTraces) -> dict:
    """The queries file PrometheusSource reads: ``{"apps": {app: {metric: PromQL}}}``, one per played series."""
    return {
        "apps": {app: {metric: query(app, metric) for metric in metrics} for app, metrics in traces.metrics.items()}
    }


def write_queries(traces: LiveTraces, path: Path) -> Path:
    """Write :func:`prometheus_queries` as YAML to ``path`` (made with its folder); the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (
        "# Written by prescale.live.write_queries: the live exporter's gauge, one series per app and metric.\n"
        "# Format: infra/prometheus/README.md.\n"
    )
    path.write_text(header + yaml.safe_dump(prometheus_queries(traces), sort_keys=False, width=200), encoding="utf-8")
    return path


def _labels(rows: pd.DataFrame) -> list[str]:
    return [
        f"{{app={_quoted(app)},metric={_quoted(metric)}}}"
        for app, metric in zip(rows["app"], rows["metric"], strict=True)
    ]


def _values(rows: pd.DataFrame) -> list[str]:
    flagged = np.zeros(len(rows), dtype=bool)
    for flag in FLAGS:
        if flag in rows.columns:
            flagged |= rows[flag].fillna(False).to_numpy(dtype=bool)
    return ["NaN" if bad else sample_value(float(value)) for value, bad in zip(rows["value"], flagged, strict=True)]


def sample_value(value: float) -> str:
    """One sample in the text format: NaN, +Inf, -Inf, or the shortest repr that reads back exactly."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _quoted(text: str) -> str:
    """A label value in double quotes, escaped as the text formats require (backslash, quote, newline)."""
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
