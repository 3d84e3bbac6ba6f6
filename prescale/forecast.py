"""`Forecast`: what the forecasting side hands the allocation search.

A forecast covers ``horizon`` steps of ``step_seconds`` each, the first at ``start`` (UTC). For every step and
every demand metric it holds the values of a few quantiles (at least 0.1, 0.5 and 0.9), in one array::

    values[t, m, k] = the quantiles[k]-quantile of metric m at time start + t * step_seconds

:meth:`Forecast.quantile` reads any level ``q`` in (0, 1) from that grid. Between two given levels it
interpolates linearly in *probit* space (in ``z = Phi^-1(q)``), which is exact when the predictive
distribution is normal; beyond the outermost levels it extrapolates the same straight line, so
``quantile(0.99)`` of a forecast that stops at 0.9 is a normal-tail guess, not a clamp. Crossed quantiles
(a model's q0.9 below its q0.5 at some step) are repaired by sorting along the quantile axis.

Helpers build forecasts that did not come from a model: :meth:`Forecast.from_median` spreads a median
path into normal quantiles (for demand files and the example demand of ``prescale plan``), and
:meth:`Forecast.to_dict` / :meth:`Forecast.from_dict` round-trip through JSON.

Model output and user input are held to different rules on purpose. A model's crossed quantiles are a known
artefact of fitting each level separately, so they are repaired (sorted) when read. Demand a user wrote (a
``--demand`` file, read through :meth:`Forecast.from_dict` or ``cli/commands/demand.py``) is checked by
:func:`check_demand` instead and refused when it is not finite, negative, above :data:`MAX_DEMAND`, or
decreasing as the level rises: a hand-written q0.9 below its q0.5 is a mistake (columns swapped, a typo),
and sorting it would plan for numbers the user never wrote.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import ndtri

from prescale.names import shown

DEFAULT_QUANTILES: tuple[float, ...] = (0.1, 0.5, 0.9)

# Bounds on demand a user gives. 1e9 per metric per step is three orders of magnitude above the busiest
# services' request rates (about 1e6 requests/s) and far below where the search's sums and squares of
# demand stop being finite (about 1e154), so every planned number stays a number: 1e308 used to give
# "nan% uncovered". A week of one-minute steps bounds the horizon (the exact solve grows with it), and a
# step of at most a day bounds ``step_seconds``.
MAX_DEMAND = 1e9
MAX_STEPS = 7 * 24 * 60
MAX_STEP_SECONDS = 86_400


class ForecastError(ValueError):
    """A forecast's shape or values do not fit together; the message names the offending value."""


@dataclass(frozen=True, eq=False)
class Forecast:
    """Quantiles of each demand metric at each step of the horizon (see the module docstring)."""

    start: pd.Timestamp
    step_seconds: int
    metrics: list[str]
    quantiles: list[float]
    values: np.ndarray

    def __post_init__(self) -> None:
        start = pd.Timestamp(self.start)
        start = start.tz_localize("UTC") if start.tzinfo is None else start.tz_convert("UTC")
        values = np.asarray(self.values, dtype=float)
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "metrics", list(self.metrics))
        object.__setattr__(self, "quantiles", [float(q) for q in self.quantiles])
        self._validate()

    def _validate(self) -> None:
        if self.step_seconds <= 0:
            raise ForecastError(f"step_seconds must be > 0, got {self.step_seconds}")
        qs = self.quantiles
        if not qs or any(not 0 < q < 1 for q in qs) or sorted(set(qs)) != qs:
            raise ForecastError(f"quantiles must be strictly increasing levels in (0, 1), got {qs}")
        expected = (len(self.metrics), len(qs))
        if self.values.ndim != 3 or self.values.shape[1:] != expected or self.values.shape[0] < 1:
            raise ForecastError(
                f"values must be shaped (horizon >= 1, {expected[0]} metrics, {expected[1]} quantiles), "
                f"got {self.values.shape}"
            )
        if not np.isfinite(self.values).all():
            raise ForecastError("values contain NaN or infinity; fill or drop those steps first")
        if len(set(self.metrics)) != len(self.metrics):
            raise ForecastError(f"duplicate metric names in {self.metrics}")

    @property
    def horizon(self) -> int:
        """Number of steps."""
        return int(self.values.shape[0])

    @property
    def index(self) -> pd.DatetimeIndex:
        """The timestamp of each step."""
        return pd.date_range(self.start, periods=self.horizon, freq=pd.Timedelta(seconds=self.step_seconds))

    def quantile(self, q: float) -> np.ndarray:
        """The ``q``-quantile of every metric at every step, shaped (horizon, n_metrics)."""
        return self.quantiles_at([q])[:, :, 0]

    def quantiles_at(self, levels: Sequence[float]) -> np.ndarray:
        """Several levels at once, shaped (horizon, n_metrics, len(levels)); see :meth:`quantile`."""
        levels = np.asarray(levels, dtype=float)
        if np.any((levels <= 0) | (levels >= 1)):
            raise ForecastError(f"quantile levels must be in (0, 1), got {levels.tolist()}")
        grid = np.sort(self.values, axis=2)
        if len(self.quantiles) == 1:
            return np.repeat(grid, len(levels), axis=2)
        z_known = ndtri(np.asarray(self.quantiles))
        z = ndtri(levels)
        # Segment j joins known levels j and j+1; outside the range the first / last segment is extended.
        seg = np.clip(np.searchsorted(z_known, z, side="right") - 1, 0, len(z_known) - 2)
        z0, z1 = z_known[seg], z_known[seg + 1]
        w = (z - z0) / (z1 - z0)
        lo, hi = grid[:, :, seg], grid[:, :, seg + 1]
        return lo + (hi - lo) * w

    def metric_index(self, name: str) -> int:
        if name not in self.metrics:
            raise ForecastError(f"forecast has no metric {name!r}; it has {self.metrics}")
        return self.metrics.index(name)

    def select(self, metrics: Sequence[str]) -> Forecast:
        """The same forecast restricted to (and ordered by) ``metrics``."""
        idx = [self.metric_index(m) for m in metrics]
        return Forecast(self.start, self.step_seconds, list(metrics), self.quantiles, self.values[:, idx, :])

    def since(self, instant) -> Forecast:
        """The steps still running or ahead at ``instant`` (a step ``[s, s + step)`` ended by then is dropped).

        Data coarser than the decision cadence (5-minute steps, a decision every minute) or a late batch
        leaves a forecast whose first steps began before the decision: those that already ended say
        nothing about what to provision.
        """
        instant = pd.Timestamp(instant)
        instant = instant.tz_localize("UTC") if instant.tzinfo is None else instant.tz_convert("UTC")
        ended = int((instant - self.start).total_seconds() // self.step_seconds)
        if ended <= 0:
            return self
        if ended >= self.horizon:
            raise ForecastError(f"the whole forecast ({self.start} + {self.horizon} x {self.step_seconds} s) "
                                f"ended before {instant}")
        start = self.start + pd.Timedelta(seconds=ended * self.step_seconds)
        return Forecast(start, self.step_seconds, self.metrics, self.quantiles, self.values[ended:])

    @classmethod
    def from_median(
        cls,
        median: np.ndarray,
        *,
        start: pd.Timestamp,
        step_seconds: int,
        metrics: Sequence[str],
        spread: float = 0.15,
        quantiles: Sequence[float] = DEFAULT_QUANTILES,
    ) -> Forecast:
        """Normal quantiles around a median path: ``q0.9 - q0.5 = spread * q0.5`` at every step."""
        median = np.asarray(median, dtype=float)
        if median.ndim == 1:
            median = median[:, None]
        sigma = spread * np.abs(median) / ndtri(0.9)
        z = ndtri(np.asarray(quantiles, dtype=float))
        values = median[:, :, None] + sigma[:, :, None] * z[None, None, :]
        return cls(pd.Timestamp(start), int(step_seconds), list(metrics), list(quantiles), values)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` reads it back."""
        return {
            "start": self.start.isoformat(),
            "step_seconds": self.step_seconds,
            "metrics": self.metrics,
            "quantiles": self.quantiles,
            "values": self.values.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "forecast JSON") -> Forecast:
        """A forecast a user wrote as JSON (see :meth:`to_dict`), checked field by field and by
        :func:`check_demand`; every error starts with ``source`` and names the field and the value."""
        if not isinstance(data, dict):
            raise ForecastError(f"{source}: expected an object with keys {list(_KEYS)}, got {type(data).__name__}")
        missing = [k for k in _KEYS if k not in data]
        if missing:
            raise ForecastError(f"{source} lacks key(s) {missing}; expected {list(_KEYS)}")
        start = _json_start(data["start"], source)
        step = data["step_seconds"]
        if isinstance(step, bool) or not isinstance(step, int) or not 1 <= step <= MAX_STEP_SECONDS:
            raise ForecastError(f"{source}: step_seconds must be a whole number of seconds from 1 to "
                                f"{MAX_STEP_SECONDS}, got {shown(step)}")
        metrics, quantiles = data["metrics"], data["quantiles"]
        if not isinstance(metrics, list) or not metrics or not all(isinstance(m, str) for m in metrics):
            raise ForecastError(f"{source}: metrics must be a non-empty list of names, got {shown(metrics)}")
        if not isinstance(quantiles, list) or not all(_is_number(q) for q in quantiles):
            raise ForecastError(f"{source}: quantiles must be a list of levels in (0, 1), got {shown(quantiles)}")
        values = _json_values(data["values"], (len(metrics), len(quantiles)), source)
        check_demand(values, source=source,
                     cell=lambda t, m, k: f"values[{t}][{m}][{k}] (metric {metrics[m]!r}, level {quantiles[k]:g})")
        try:
            return cls(start, step, metrics, quantiles, values)
        except ForecastError as exc:
            raise ForecastError(f"{source}: {exc}") from None


_KEYS = ("start", "step_seconds", "metrics", "quantiles", "values")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _json_start(value: Any, source: str) -> pd.Timestamp:
    """``start``: an ISO 8601 instant with a UTC offset (an instant without one is ambiguous)."""
    try:
        start = pd.Timestamp(value) if isinstance(value, str) else None
    except (ValueError, OverflowError):
        start = None
    if start is None or pd.isna(start) or start.tzinfo is None:
        raise ForecastError(f"{source}: start must be an ISO 8601 time with a UTC offset, e.g. "
                            f"2026-03-02T10:00:00Z, got {shown(value)}")
    return start


def _json_values(value: Any, shape: tuple[int, int], source: str) -> np.ndarray:
    """``values`` as a float array shaped (steps, metrics, quantiles), at most :data:`MAX_STEPS` steps."""
    expected = f"[step][metric][quantile] lists of numbers, {shape[0]} metric(s) x {shape[1]} quantile(s)"
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_STEPS:
        raise ForecastError(f"{source}: values must hold 1 to {MAX_STEPS} steps of {expected}, got {shown(value)}")
    try:
        array = np.asarray(value, dtype=float)
    except (ValueError, TypeError, OverflowError):
        array = None
    if array is None or array.shape[1:] != shape or not _numbers_only(value):
        raise ForecastError(f"{source}: values must be {expected}")
    return array


def _numbers_only(nested: list) -> bool:
    """No strings or booleans among the leaves (``np.asarray`` would turn "1" and true into numbers)."""
    return all(_numbers_only(x) if isinstance(x, list) else _is_number(x) for x in nested)


def check_demand(values: np.ndarray, *, source: str, cell: Callable[[int, int, int], str]) -> None:
    """Refuse demand a user gave, shaped (steps, metrics, levels): the first bad cell, named by ``source`` and
    ``cell(t, m, k)`` (a row and column of a file, a JSON path).

    Every value must be finite, at least 0 and at most :data:`MAX_DEMAND`, and along the level axis (given in
    increasing order) the values must not decrease. A model's forecast is not checked here: see the module
    docstring.
    """
    values = np.asarray(values, dtype=float)
    finite = np.isfinite(values)
    rules = (
        (~finite, "is not a finite number"),
        (finite & (values < 0), "is negative: demand cannot be below 0"),
        (finite & (values > MAX_DEMAND), f"is above the largest demand accepted ({MAX_DEMAND:g} per metric per "
                                         "step): check the units"),
    )
    for bad, why in rules:
        if bad.any():
            t, m, k = (int(i) for i in np.argwhere(bad)[0])
            raise ForecastError(f"{source}, {cell(t, m, k)}: {float(values[t, m, k])!r} {why}")
    falling = np.diff(values, axis=2) < 0
    if falling.any():
        t, m, k = (int(i) for i in np.argwhere(falling)[0])
        raise ForecastError(
            f"{source}, {cell(t, m, k + 1)}: {values[t, m, k + 1]:g} is below {values[t, m, k]:g} at "
            f"{cell(t, m, k)}: quantiles must not decrease as the level rises; are the columns swapped?"
        )
