"""Scores of one candidate on the held-out windows, the same windows for every candidate.

Inputs: quantile forecasts ``F[w, h, m, k]`` (window, step, metric, quantile level
``tau_k``) and the outcomes ``y[w, h, m]``. The point forecast is the median
``f = F[..., tau = 0.5]``. Per metric ``m``, over all windows ``w`` and steps ``h``:

- MAE = mean |y - f|; *last-step* MAE the same at ``h = H`` only;
- MASE = MAE / S_m, with ``S_m`` the in-sample MAE of one-step persistence on the
  training rows, mean |y(t) - y(t-1)|: below 1 beats what a naive one-step
  forecast achieved in training; scale-free, so it averages across metrics;
- sMAPE = 100 * mean 2|y - f| / (|y| + |f|) (terms with y = f = 0 count 0), in [0, 200];
- pinball = mean over tau of mean max(tau (y - F_tau), (tau - 1)(y - F_tau));
- coverage of the central 80% (90%) interval: the share of outcomes inside
  ``[F_0.1, F_0.9]`` (``[F_0.05, F_0.95]``), for the raw and calibrated quantiles.

A candidate's headline scores average the metrics (MAE and pinball in each
metric's own unit, which is only meaningful for one metric; MASE is the
cross-metric yardstick and the one candidates are ranked by: for one metric it
ranks exactly like MAE).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

INTERVALS: dict[str, tuple[float, float]] = {"80": (0.1, 0.9), "90": (0.05, 0.95)}


@dataclass(frozen=True)
class Scores:
    """Headline scores (averaged over metrics) plus per-metric detail."""

    mae: float
    mae_last: float
    mase: float
    smape: float
    pinball: float
    coverage_80: float | None
    coverage_90: float | None
    coverage_80_raw: float | None
    coverage_90_raw: float | None
    windows: int
    per_metric: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def headline(self) -> dict[str, float | None]:
        """The keys of the CLI contract plus the rest, rounded for display."""
        return {k: _round(v) for k, v in self.to_dict().items() if k != "per_metric"}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Scores:
        return Scores(**data)


def _round(value: Any) -> Any:
    return round(float(value), 6) if isinstance(value, float | np.floating) else value


def persistence_scale(train: np.ndarray) -> np.ndarray:
    """``S_m``: in-sample MAE of one-step persistence per metric (gaps skipped), floored above 0."""
    diffs = np.abs(np.diff(train, axis=0))
    with np.errstate(all="ignore"):
        scale = np.nanmean(diffs, axis=0)
    return np.where(np.isfinite(scale) & (scale > 1e-12), scale, 1e-12)


def pinball(forecast: np.ndarray, actual: np.ndarray, quantiles: tuple[float, ...]) -> np.ndarray:
    """Mean pinball loss per metric: ``forecast`` (W, H, M, Q), ``actual`` (W, H, M) -> (M,)."""
    taus = np.asarray(quantiles)
    diff = actual[..., None] - forecast
    loss = np.maximum(taus * diff, (taus - 1.0) * diff)
    return loss.mean(axis=(0, 1, 3))


def coverage(forecast: np.ndarray, actual: np.ndarray, quantiles: tuple[float, ...], level: str) -> float | None:
    """Share of outcomes inside the central interval ``level`` ("80" or "90"); None if its quantiles are absent."""
    low, high = INTERVALS[level]
    if low not in quantiles or high not in quantiles:
        return None
    lo, hi = forecast[..., quantiles.index(low)], forecast[..., quantiles.index(high)]
    return float(((actual >= lo) & (actual <= hi)).mean())


def score(
    forecast: np.ndarray,
    actual: np.ndarray,
    *,
    quantiles: tuple[float, ...],
    scale: np.ndarray,
    metrics: tuple[str, ...],
    raw: np.ndarray | None = None,
) -> Scores:
    """Score calibrated quantiles ``forecast`` (and the ``raw`` ones, for raw coverage) against ``actual``."""
    if forecast.shape[:3] != actual.shape:
        raise ValueError(f"forecast windows {forecast.shape[:3]} do not match the outcomes {actual.shape}")
    if len(actual) == 0:
        raise ValueError("no held-out windows to score: the held-out tail has no complete window")
    raw = forecast if raw is None else raw
    median = forecast[..., quantiles.index(0.5)]
    error = np.abs(actual - median)
    mae = error.mean(axis=(0, 1))
    mae_last = error[:, -1].mean(axis=0)
    denom = np.abs(actual) + np.abs(median)
    with np.errstate(all="ignore"):
        smape_terms = np.where(denom > 0, 2.0 * error / denom, 0.0)
    smape = 100.0 * smape_terms.mean(axis=(0, 1))
    loss = pinball(forecast, actual, quantiles)
    per_metric = {
        name: {"mae": float(mae[m]), "mae_last": float(mae_last[m]), "mase": float(mae[m] / scale[m]),
               "smape": float(smape[m]), "pinball": float(loss[m])}
        for m, name in enumerate(metrics)
    }
    return Scores(
        mae=float(mae.mean()),
        mae_last=float(mae_last.mean()),
        mase=float((mae / scale).mean()),
        smape=float(smape.mean()),
        pinball=float(loss.mean()),
        coverage_80=coverage(forecast, actual, quantiles, "80"),
        coverage_90=coverage(forecast, actual, quantiles, "90"),
        coverage_80_raw=coverage(raw, actual, quantiles, "80"),
        coverage_90_raw=coverage(raw, actual, quantiles, "90"),
        windows=int(len(actual)),
        per_metric=per_metric,
    )
