"""What a metrics row is: names, units, bounds, and the pandera contract.

A metrics row is ``(app, ts, metric, value[, phase])``:

- ``app``: a valid Kubernetes Service name (RFC 1035 label: lower-case
  alphanumerics and ``-``, at most 63 characters, starting with a letter and ending
  alphanumeric), because each app becomes Deployments and a Service named after it.
- ``ts``: a UTC instant (stored as ``timestamp[ns, tz=UTC]``).
- ``metric``: one of :data:`KNOWN_METRICS` (fixed unit and bounds), or a free-form
  app-level metric ``app.<snake_case>`` such as ``app.requests_per_s``. App metrics
  are rates or levels of demand, so they are non-negative too.
- ``value``: a finite float inside the metric's bounds.
- ``phase``: optional label of the app's phase (``serving``, ``batch``...), same
  alphabet as app names plus ``_``.

:data:`ROW_SCHEMA` is the pandera schema every accepted batch satisfies; each of
its checks is named after the quarantine reason it produces, so the validation
step (``validation.py``) can run pandera once, lazily, over a whole batch and turn
its failure cases into one reason per row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pandera.pandas as pa

from prescale.names import is_valid_app_name, is_valid_phase

APP_METRIC_PATTERN = r"app\.[a-z][a-z0-9_]{0,62}"
COLUMNS = ("app", "ts", "metric", "value", "phase")
REQUIRED_COLUMNS = ("ts", "metric", "value")


@dataclass(frozen=True)
class MetricSpec:
    """Unit and physical bounds of a known metric."""

    unit: str
    description: str
    maximum: float | None = None
    minimum: float = 0.0


KNOWN_METRICS: dict[str, MetricSpec] = {
    "cpu_cores": MetricSpec("cores", "CPU in use, in cores (1.0 = one core busy)"),
    "cpu_util_pct": MetricSpec("percent", "CPU utilisation of the app's nodes", maximum=100.0),
    "memory_gib": MetricSpec("GiB", "resident memory"),
    "memory_util_pct": MetricSpec("percent", "memory utilisation of the app's nodes", maximum=100.0),
    "net_rx_mbps": MetricSpec("Mbit/s", "network received"),
    "net_tx_mbps": MetricSpec("Mbit/s", "network sent"),
    "disk_read_mbps": MetricSpec("MB/s", "disk read throughput"),
    "disk_write_mbps": MetricSpec("MB/s", "disk write throughput"),
    "gpu_util": MetricSpec("percent", "GPU utilisation, summed over the app's GPUs / GPU count", maximum=100.0),
}

_METRIC_RE = re.compile(APP_METRIC_PATTERN)


def is_known_metric(name: object) -> bool:
    return isinstance(name, str) and (name in KNOWN_METRICS or _METRIC_RE.fullmatch(name) is not None)


def metric_unit(name: str) -> str:
    """The unit of a metric name ("per app" for free-form app metrics)."""
    spec = KNOWN_METRICS.get(name)
    return spec.unit if spec else "app-defined"


def _on_categories(series: pd.Series, predicate) -> pd.Series:
    """Evaluate a per-value predicate once per distinct value, then broadcast.

    Metric, app and phase columns hold a handful of distinct strings over millions of
    rows; checking each distinct value once keeps validation linear in rows with a
    tiny constant. Missing values pass here: nullability is its own check.
    """
    cat = series if isinstance(series.dtype, pd.CategoricalDtype) else series.astype("category")
    ok = np.fromiter((bool(predicate(v)) for v in cat.cat.categories), dtype=bool, count=len(cat.cat.categories))
    codes = cat.cat.codes.to_numpy()
    result = np.ones(len(codes), dtype=bool)
    present = codes >= 0
    result[present] = ok[codes[present]]
    return pd.Series(result, index=series.index)


def _bounds_by_metric() -> tuple[dict[str, float], dict[str, float]]:
    lower = {name: spec.minimum for name, spec in KNOWN_METRICS.items()}
    upper = {name: spec.maximum for name, spec in KNOWN_METRICS.items() if spec.maximum is not None}
    return lower, upper


_LOWER, _UPPER = _bounds_by_metric()


def _per_metric_limit(frame: pd.DataFrame, limits: dict[str, float], default: float) -> np.ndarray:
    metric = frame["metric"]
    cat = metric if isinstance(metric.dtype, pd.CategoricalDtype) else metric.astype("category")
    per_cat = np.array([limits.get(c, default) for c in cat.cat.categories] + [default], dtype=float)
    return per_cat[cat.cat.codes.to_numpy()]


def _not_negative(frame: pd.DataFrame) -> pd.Series:
    value = frame["value"].to_numpy()
    return pd.Series(~(value < _per_metric_limit(frame, _LOWER, 0.0)), index=frame.index)


def _within_maximum(frame: pd.DataFrame) -> pd.Series:
    value = frame["value"].to_numpy()
    return pd.Series(~(value > _per_metric_limit(frame, _UPPER, np.inf)), index=frame.index)


# Each check's name is the quarantine reason it yields (see validation.REASONS).
ROW_SCHEMA = pa.DataFrameSchema(
    {
        "app": pa.Column(
            pd.CategoricalDtype(),
            checks=pa.Check(lambda s: _on_categories(s, is_valid_app_name), name="invalid_app_name"),
            nullable=False,
            coerce=False,
        ),
        "ts": pa.Column(pd.DatetimeTZDtype("ns", "UTC"), nullable=False),
        "metric": pa.Column(
            pd.CategoricalDtype(),
            checks=pa.Check(lambda s: _on_categories(s, is_known_metric), name="unknown_metric"),
            nullable=False,
        ),
        "value": pa.Column(
            "float64",
            checks=[
                pa.Check(lambda s: pd.Series(~np.isinf(s.to_numpy()), index=s.index), name="infinite_value"),
            ],
            nullable=False,
        ),
        "phase": pa.Column(
            pd.CategoricalDtype(),
            checks=pa.Check(lambda s: _on_categories(s, is_valid_phase), name="invalid_phase"),
            nullable=True,
            required=False,
        ),
    },
    checks=[
        pa.Check(_not_negative, name="negative_value"),
        pa.Check(_within_maximum, name="out_of_range"),
    ],
    strict=False,
    ordered=False,
    name="metrics",
)
