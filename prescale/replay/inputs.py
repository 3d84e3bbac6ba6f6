"""From a stored metric series to a :class:`ReplayInput`: which metric, in which units, over which window.

**Which metric.** An app's store holds metrics in their own units (``app.requests_per_s``, ``cpu_util_pct``);
a profile asks for its own (``requests_per_second``, ``streams``). :func:`choose_metric` takes, in order: the
``--metric`` asked for; the stored metric a profile metric declares as its ``source``; one named like a
profile metric; the first ``app.request*`` metric; the first ``*cpu*`` one; the first in name order.

**Which units** (:class:`DemandMap`), two modes:

* *declared* (the default when a profile metric declares the replayed metric as its ``source``): the app's
  own units, as the orchestrator reads them: ``d[t, m] = x[t] * source_scale[m]`` for the metrics with that
  source, 0 for the others (the orchestrator cannot forecast them either and covers them at zero);
* *scaled* (a public trace mapped onto a profile; forced by giving ``peak_scale``): the one source series
  drives every profile metric in proportion, ``d[t, m] = x[t] * v[m] / P``, with ``P`` the ``quantile``
  (0.99) of ``x`` over the history *before* the replay (no peeking at the window) and ``v`` the profile's
  example peak times ``peak_scale`` (ones when the profile has no example): the history's busy level
  becomes the profile's example peak, so a trace of CPU percent becomes requests per second, streams or GB/s
  scanned at the scale the profile was written for. With ``peak_scale`` the same trace can be replayed on a
  bigger app, where whole-node rounding matters less.

Forecast quantiles scale the same way (a positive factor commutes with quantiles).

**Which window** (:func:`plan_window`). The scored window is the last ``days`` of the series; before it, a
warm-up of at least ``warmup_minutes`` and twice the slowest lead time; everything before the warm-up is
history, and only history trains the forecaster. The forecast horizon reaches the slowest lead time plus
``lookahead_minutes``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from prescale.catalog import AppProfile
from prescale.replay.engine import ReplayInput
from prescale.replay.errors import ReplayError


def choose_metric(available: list[str], profile: AppProfile, metric: str | None = None) -> str:
    """The stored metric that drives the replay's demand (see the module docstring)."""
    if not available:
        raise ReplayError(f"app {profile.name!r} has no metrics in the store: ingest some first")
    if metric is not None:
        if metric not in available:
            raise ReplayError(f"app {profile.name!r} has no metric {metric!r}; it has {sorted(available)}")
        return metric
    names = sorted(available)
    declared = [m.source for m in profile.metrics if m.source in available]
    if declared:
        return declared[0]
    for rule in (
        lambda m: m in profile.metric_names or m.removeprefix("app.") in profile.metric_names,
        lambda m: m.startswith("app.request"),
        lambda m: "cpu" in m,
    ):
        found = [m for m in names if rule(m)]
        if found:
            return found[0]
    return names[0]


@dataclass(frozen=True, eq=False)
class DemandMap:
    """``d[t, m] = x[t] * scale[m]`` (see the module docstring)."""

    source: str
    metrics: tuple[str, ...]
    scale: np.ndarray  # (M,)
    reference: np.ndarray  # (M,) the level the history's busy level maps to
    busy: float  # P: the history's quantile of the source
    mode: str = "scaled"  # or "declared"

    def apply(self, values: np.ndarray) -> np.ndarray:
        """Source values ``(...)`` -> demand ``(..., M)``."""
        return np.asarray(values, dtype=float)[..., None] * self.scale

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.source,
            "units": self.mode,
            "busy_level": round(self.busy, 6),
            "maps_to": {m: round(float(v), 4) for m, v in zip(self.metrics, self.reference, strict=True)},
        }


def demand_map(
    history: np.ndarray, profile: AppProfile, metric: str, *, peak_scale: float | None = None, quantile: float = 0.99
) -> DemandMap:
    """The declared units, or (``peak_scale`` given, or nothing declared) the scaled mapping of the docstring."""
    if peak_scale is not None and peak_scale <= 0:
        raise ReplayError(f"peak_scale must be > 0, got {peak_scale}")
    observed = np.asarray(history, dtype=float)
    observed = observed[np.isfinite(observed)]
    if not len(observed):
        raise ReplayError(f"metric {metric!r} has no observed value before the replay window")
    busy = float(np.quantile(observed, quantile))
    if busy <= 0:
        raise ReplayError(f"metric {metric!r} is never above 0 before the window (its {quantile} quantile is {busy})")
    if peak_scale is None and any(m.source == metric for m in profile.metrics):
        scale = np.array([m.source_scale if m.source == metric else 0.0 for m in profile.metrics])
        return DemandMap(metric, profile.metric_names, scale, scale * busy, busy, mode="declared")
    example = profile.example_demand
    ref = np.array([example.peak[m] for m in profile.metric_names]) if example else np.ones(len(profile.metrics))
    ref = ref * (1.0 if peak_scale is None else peak_scale)
    return DemandMap(metric, profile.metric_names, ref / busy, ref, busy)


@dataclass(frozen=True)
class Window:
    """Row indices into the series: history ``[.., replay_start)``, warm-up, scored ``[scored_start, rows)``."""

    rows: int
    replay_start: int
    scored_start: int
    horizon: int  # forecast steps
    step_seconds: int
    notes: list[str] = field(default_factory=list)

    @property
    def warmup(self) -> int:
        return self.scored_start - self.replay_start

    @property
    def origins(self) -> np.ndarray:
        """The forecast origin of every replayed step: the row before it."""
        return np.arange(self.replay_start - 1, self.rows - 1)


def plan_window(
    rows: int, step_seconds: int, *, days: float, max_lead_seconds: float, warmup_minutes: float = 60.0,
    lookahead_minutes: float = 30.0, min_history_rows: int = 1,
) -> Window:
    """Where the scored window, the warm-up and the history lie (see the module docstring)."""
    scored = round(days * 86_400 / step_seconds)
    warm = math.ceil(max(warmup_minutes * 60.0, 2.0 * max_lead_seconds) / step_seconds)
    horizon = max(1, math.ceil((max_lead_seconds + lookahead_minutes * 60.0) / step_seconds))
    if scored < 1:
        raise ReplayError(f"days={days} is shorter than one step of {step_seconds} s")
    replay_start = rows - scored - warm
    if replay_start < min_history_rows:
        have = (rows - warm - min_history_rows) * step_seconds / 86_400
        raise ReplayError(
            f"the series has {rows} rows of {step_seconds} s: too short for a {days:g}-day window after "
            f"{min_history_rows} rows of history and a {warm}-step warm-up; ask for at most {max(have, 0):.2f} days"
        )
    return Window(rows, replay_start, replay_start + warm, horizon, step_seconds)


def make_input(
    app: str,
    index: pd.DatetimeIndex,
    values: np.ndarray,
    window: Window,
    dmap: DemandMap,
    *,
    forecast: np.ndarray | None,
    quantiles: tuple[float, ...],
    source: dict[str, Any] | None = None,
) -> ReplayInput:
    """The replay's input from the whole source series ``values`` ``(rows,)`` and its forecasts.

    ``forecast``: source-unit quantiles ``(steps, H, Q)`` or ``(steps, H, 1, Q)`` made at each replayed step's
    origin (``window.origins``), or None (no predictive policy).
    """
    values = np.asarray(values, dtype=float)
    if len(values) != window.rows or len(index) != window.rows:
        raise ReplayError(
            f"the series has {len(values)} values and {len(index)} stamps; the window expects {window.rows}"
        )
    s0 = window.replay_start
    demand = dmap.apply(values[s0:])
    history = values[:s0]
    peak = dmap.apply(np.nanmax(history) if np.isfinite(history).any() else 0.0)
    fc = None
    if forecast is not None:
        fc = np.asarray(forecast, dtype=float)
        if fc.ndim == 4:
            fc = fc[:, :, 0, :]
        if fc.shape[0] != window.rows - s0 or fc.shape[2] != len(quantiles):
            raise ReplayError(
                f"forecast must be shaped ({window.rows - s0}, H, {len(quantiles)}) (one per replayed step), "
                f"got {fc.shape}"
            )
        fc = fc[:, :, None, :] * dmap.scale[None, None, :, None]
    return ReplayInput(
        app=app,
        index=pd.DatetimeIndex(index[s0:]),
        demand=demand,
        metrics=dmap.metrics,
        step_seconds=window.step_seconds,
        start=window.warmup,
        forecast=fc,
        quantiles=tuple(quantiles),
        history_peak=peak,
        source={"demand": dmap.to_dict(), **(source or {})},
    )
