"""Calibrating the intervals: online conformalized quantile regression, per horizon step.

Quantile regression is not calibrated by itself (measured on these traces: 77-95%
coverage for a nominal 90%). Conformal prediction fixes that without touching the
point forecast.

**The score.** For a central interval of nominal level ``1 - a`` with raw bounds
``lo = F_{a/2}``, ``hi = F_{1-a/2}``, the CQR conformity score (Romano et al., 2019)
of an outcome ``y`` is ``E = max(lo - y, y - hi)``: negative inside the interval,
positive outside. The calibrated interval is ``[lo - q, hi + q]``; split CQR
takes ``q`` as the ``(1 - a)(1 + 1/n)`` empirical quantile of ``E`` over ``n``
calibration windows.

**Online.** Demand is not exchangeable (levels drift, days differ), so a split
quantile fitted once goes stale. We track ``q`` instead (quantile tracking,
Angelopoulos, Candes & Tibshirani 2023, "Conformal PID control")::

    q <- q + eta * (1{E > q} - a)          after each outcome becomes known

which holds the long-run miss rate within ``(B + eta) / (eta T)`` of ``a`` over
``T`` outcomes for scores bounded by ``B``, whatever the data do. ``q`` starts at
the split-CQR quantile of the validation windows (which the model never trained
on); ``eta = lr * w`` with ``w`` the median raw width of that interval on
validation, so ``lr`` is unit-free.

**Per step, no peeking.** Each horizon step ``h``, metric and interval has its own
``q``. The outcome of the window with origin ``t`` at step ``h`` is known at
``t + h``, so the correction applied to a window uses only outcomes known at its
origin: exactly what a live forecaster could have done.

After calibration the quantiles are made monotone again (outer bounds never
inside inner ones, the median inside every interval). The final ``q`` of each
series is what the deployed forecaster adds (:func:`apply_offsets`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Calibration:
    """Calibrated test quantiles and the final offsets ``(H, M, K)`` for the K central intervals."""

    quantiles: np.ndarray  # (W, H, M, Q)
    offsets: np.ndarray  # (H, M, K)
    pairs: tuple[tuple[int, int], ...]  # (lower index, upper index) of each interval in the quantile axis


def interval_pairs(quantiles: tuple[float, ...]) -> tuple[tuple[int, int], ...]:
    """Index pairs ``(k_lo, k_hi)`` with ``tau_lo + tau_hi = 1`` and ``tau_lo < 0.5``."""
    pairs = []
    for k, tau in enumerate(quantiles):
        partner = [j for j, other in enumerate(quantiles) if abs(tau + other - 1.0) < 1e-9]
        if tau < 0.5 and partner:
            pairs.append((k, partner[0]))
    return tuple(pairs)


def cqr_scores(raw: np.ndarray, actual: np.ndarray, pairs: tuple[tuple[int, int], ...]) -> np.ndarray:
    """``E`` per window, step, metric and interval: ``(W, H, M, K)``."""
    lo = raw[..., [p[0] for p in pairs]]
    hi = raw[..., [p[1] for p in pairs]]
    return np.maximum(lo - actual[..., None], actual[..., None] - hi)


def split_quantile(scores: np.ndarray, miss: np.ndarray) -> np.ndarray:
    """Split-CQR ``q`` over axis 0 at level ``(1 - a)(1 + 1/n)``, clipped to 1: ``(H, M, K)``."""
    n = len(scores)
    if n == 0:
        return np.zeros(scores.shape[1:])
    levels = np.minimum(1.0, (1.0 - miss) * (1.0 + 1.0 / n))
    out = np.empty(scores.shape[1:])
    for k, level in enumerate(levels):
        out[..., k] = np.quantile(scores[..., k], level, axis=0, method="higher")
    return out


def calibrate(
    *,
    raw_val: np.ndarray,
    actual_val: np.ndarray,
    raw_test: np.ndarray,
    actual_test: np.ndarray,
    origins_test: np.ndarray,
    quantiles: tuple[float, ...],
    lr: float = 0.1,
) -> Calibration:
    """Start from split CQR on the validation windows, then track through the test windows in time order."""
    pairs = interval_pairs(quantiles)
    if not pairs:
        return Calibration(raw_test.copy(), np.zeros(raw_test.shape[1:3] + (0,)), pairs)
    miss = np.array([2.0 * quantiles[lo] for lo, _ in pairs])  # a of each interval
    q = split_quantile(cqr_scores(raw_val, actual_val, pairs), miss)
    width = _median_width(raw_val if len(raw_val) else raw_test, pairs)
    eta = lr * width
    scores = cqr_scores(raw_test, actual_test, pairs)
    applied = np.empty_like(scores)
    horizon = raw_test.shape[1]
    for h in range(horizon):
        applied[:, h], q[h] = _track(scores[:, h], origins_test, delay=h + 1, start=q[h], eta=eta[h], miss=miss)
    calibrated = apply_offsets(raw_test, applied, pairs, median=quantiles.index(0.5))
    return Calibration(calibrated, q, pairs)


def _track(
    scores: np.ndarray, origins: np.ndarray, *, delay: int, start: np.ndarray, eta: np.ndarray, miss: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Quantile tracking over windows in origin order; feedback of window j arrives at ``origins[j] + delay``.

    ``scores`` is ``(W, M, K)``; returns the ``q`` applied to each window and the final ``q``.
    """
    known = np.searchsorted(origins, origins - delay, side="right").tolist()  # outcomes known per window
    applied = np.empty_like(scores)
    final = np.empty_like(start)
    for m, k in np.ndindex(*start.shape):
        column, last = _track_one(scores[:, m, k].tolist(), known, float(start[m, k]), float(eta[m, k]),
                                  float(miss[k]))
        applied[:, m, k] = column
        final[m, k] = last
    return applied, final


def _track_one(scores: list[float], known: list[int], q: float, eta: float, miss: float) -> tuple[list[float], float]:
    """One scalar tracker (plain floats: a per-window loop over small arrays was 20x slower)."""
    applied = []
    done = 0
    for count in known:
        while done < count:
            q += eta * ((1.0 if scores[done] > q else 0.0) - miss)
            done += 1
        applied.append(q)
    for score in scores[done:]:
        q += eta * ((1.0 if score > q else 0.0) - miss)
    return applied, q


def _median_width(raw: np.ndarray, pairs: tuple[tuple[int, int], ...]) -> np.ndarray:
    """Median raw width of each interval per step and metric: ``(H, M, K)``, floored above 0."""
    widths = np.stack([raw[..., hi] - raw[..., lo] for lo, hi in pairs], axis=-1)
    width = np.median(widths, axis=0) if len(widths) else np.ones(raw.shape[1:3] + (len(pairs),))
    fallback = np.maximum(np.abs(np.median(raw, axis=(0, 3))) * 0.1, 1e-9) if len(raw) else 1e-9
    return np.where(width > 1e-12, width, fallback[..., None] if np.ndim(fallback) else fallback)


def apply_offsets(
    raw: np.ndarray, offsets: np.ndarray, pairs: tuple[tuple[int, int], ...], *, median: int
) -> np.ndarray:
    """Widen (or narrow) each interval by its offset and restore monotone quantiles.

    ``raw`` is ``(..., M, Q)``; ``offsets`` broadcasts against ``(..., M, K)``; ``median`` indexes tau = 0.5.
    """
    out = raw.copy()
    for k, (lo, hi) in enumerate(pairs):
        out[..., lo] = raw[..., lo] - offsets[..., k]
        out[..., hi] = raw[..., hi] + offsets[..., k]
    return _monotone(out, mid=median)


def _monotone(values: np.ndarray, *, mid: int) -> np.ndarray:
    """Quantiles non-decreasing along the last axis, anchored at index ``mid`` (the median)."""
    out = values.copy()
    out[..., : mid + 1] = np.minimum.accumulate(out[..., mid::-1], axis=-1)[..., ::-1]
    out[..., mid:] = np.maximum.accumulate(out[..., mid:], axis=-1)
    return out
