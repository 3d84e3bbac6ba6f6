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

**What the decision uses.** The policy buys a high quantile at each tier's lead
time, so the scores also judge the upper tail there. Lead ``l`` minutes maps to
the horizon step ``h_l = clip(ceil(l * 60 / step), 1, H)`` (1-based; leads
``score_leads_minutes``, default 1, 5, 15). Per lead, averaged over metrics
(``tail``): the pinball loss at ``TAIL_TAUS = (0.9, 0.99, 0.995)``, the calibrated
coverage ``share(y <= F_tau)`` and the mean excess ``mean(F_tau - y)`` (what the
bound buys above demand, in the series' units) at that step, and the *matched*
excess ``mean(F_tau + c - y)`` with ``c`` the tau-quantile of ``y - F_tau`` over the
windows: the bound shifted with hindsight to cover exactly ``tau``, so two
candidates' sharpness compares at equal coverage (a bound covering less than its
level has a lower plain excess; the benchmark judges the matched one). The **decision
score** (lower is better) is::

    decision = mean over metrics m, tau in TAIL_TAUS, distinct lead steps h_l of  pinball_tau(h_l) / S_m

scale-free like MASE (None when a tail level is missing from the quantiles).
``hourly``: the calibrated coverage at 0.9 and 0.99 of the outcomes whose target
row falls in each UTC hour (all steps), given the target rows' hours.

A candidate's headline scores average the metrics (MAE and pinball in each
metric's own unit, which is only meaningful for one metric; MASE and the decision
score are the cross-metric yardsticks). Candidates are ranked, and champions
promoted, by the decision score (MASE when it is None); MAE and MASE stay reported.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

INTERVALS: dict[str, tuple[float, float]] = {"80": (0.1, 0.9), "90": (0.05, 0.95)}
TAIL_TAUS: tuple[float, ...] = (0.9, 0.99, 0.995)
EXCESS_TAUS: tuple[float, ...] = (0.99, 0.995)
HOURLY_TAUS: tuple[float, ...] = (0.9, 0.99)
LEADS_MINUTES: tuple[float, ...] = (1.0, 5.0, 15.0)


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
    decision: float | None = None
    tail: dict[str, dict[str, float]] = field(default_factory=dict)
    hourly: dict[str, list[float | None]] = field(default_factory=dict)

    @property
    def rank_score(self) -> float:
        """What ranking and promotion compare: the decision score, or MASE without one (lower is better)."""
        return self.mase if self.decision is None else self.decision

    @property
    def rank_label(self) -> str:
        return "MASE" if self.decision is None else "decision score"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def headline(self) -> dict[str, float | None]:
        """The keys of the CLI contract plus the rest (the per-metric detail left out), rounded for display."""
        return {k: _round(v) for k, v in self.to_dict().items() if k != "per_metric"}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Scores:
        return Scores(**data)


def _round(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_round(v) for v in value]
    return round(float(value), 6) if isinstance(value, float | np.floating) else value


def rank_key(headline: dict[str, Any]) -> tuple[float, float]:
    """Display order of candidates' headline scores: the decision score (candidates without one last), then MASE."""
    decision = headline.get("decision")
    return (float("inf") if decision is None else decision, headline.get("mase") or 0.0)


def lead_steps(leads_minutes: tuple[float, ...], step_seconds: int, horizon: int) -> dict[str, int]:
    """Lead label (``"1m"``, ``"5m"``, ``"15m"``) -> its 1-based horizon step ``clip(ceil(l * 60 / step), 1, H)``."""
    return {f"{lead:g}m": int(min(max(math.ceil(lead * 60.0 / step_seconds - 1e-9), 1), horizon))
            for lead in leads_minutes}


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
    step_seconds: int | None = None,
    leads_minutes: tuple[float, ...] = LEADS_MINUTES,
    hours: np.ndarray | None = None,
) -> Scores:
    """Score calibrated quantiles ``forecast`` (and the ``raw`` ones, for raw coverage) against ``actual``.

    ``step_seconds`` maps the leads to steps (without it ``tail`` is empty and the decision score averages every
    step); ``hours`` ``(W, H)``: the target rows' hours of day, for ``hourly`` (without them it is empty).
    """
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
    horizon = actual.shape[1]
    leads = {} if step_seconds is None else lead_steps(leads_minutes, step_seconds, horizon)
    steps = sorted(set(leads.values())) or list(range(1, horizon + 1))
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
        decision=decision_score(forecast, actual, quantiles=quantiles, scale=scale, steps=steps),
        tail={label: _tail_at(forecast, actual, quantiles, step) for label, step in leads.items()},
        hourly={} if hours is None else hourly_coverage(forecast, actual, quantiles, hours),
    )


def decision_score(forecast: np.ndarray, actual: np.ndarray, *, quantiles: tuple[float, ...], scale: np.ndarray,
                   steps: list[int]) -> float | None:
    """Mean over metrics, ``TAIL_TAUS`` and the 1-based ``steps`` of ``pinball_tau / S_m``; None without a level."""
    if any(tau not in quantiles for tau in TAIL_TAUS):
        return None
    cols = [quantiles.index(tau) for tau in TAIL_TAUS]
    at = [h - 1 for h in steps]
    loss = pinball(forecast[:, at][..., cols], actual[:, at], TAIL_TAUS) / scale  # (M,)
    return float(loss.mean())


def _tail_at(forecast: np.ndarray, actual: np.ndarray, quantiles: tuple[float, ...], step: int) -> dict[str, float]:
    """One lead's step: pinball, coverage and (for ``EXCESS_TAUS``) mean excess of the tail levels present."""
    y = actual[:, step - 1]  # (W, M)
    out: dict[str, float] = {"step": step}
    for tau in TAIL_TAUS:
        if tau not in quantiles:
            continue
        f = forecast[:, step - 1, :, quantiles.index(tau)]
        diff = y - f
        out[f"pinball_{tau:g}"] = float(np.maximum(tau * diff, (tau - 1.0) * diff).mean())
        out[f"coverage_{tau:g}"] = float((y <= f).mean())
        if tau in EXCESS_TAUS:
            out[f"excess_{tau:g}"] = float((f - y).mean())
            # the same bound shifted (with hindsight) to cover exactly tau: sharpness at equal coverage
            shift = np.quantile(diff, tau, axis=0, method="higher")  # (M,)
            out[f"excess_matched_{tau:g}"] = float((f + shift - y).mean())
    return out


def hourly_coverage(forecast: np.ndarray, actual: np.ndarray, quantiles: tuple[float, ...],
                    hours: np.ndarray) -> dict[str, list[float | None]]:
    """Per UTC hour of the target row, the share of outcomes ``y <= F_tau`` (None for an hour without one)."""
    hours = np.asarray(hours)
    if hours.shape != actual.shape[:2]:
        raise ValueError(f"hours have shape {hours.shape}, the outcomes' windows and steps are {actual.shape[:2]}")
    out: dict[str, list[float | None]] = {}
    for tau in HOURLY_TAUS:
        if tau not in quantiles:
            continue
        hit = actual <= forecast[..., quantiles.index(tau)]  # (W, H, M)
        out[f"{tau:g}"] = [float(hit[hours == hour].mean()) if (hours == hour).any() else None
                           for hour in range(24)]
    return out
