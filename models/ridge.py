"""An online ridge regression on lags: direct multi-step, refitted at every row by forgetting least squares.

Per panel and per metric, the series is scaled by its training rows (``z = (y - mu) / sd``). From an origin
``t`` the features ``x_t`` (length ``d``) use rows up to ``t`` only:

- the last ``k`` values ``z(t-k+1) .. z(t)``;
- a day and a week before a few anchor target steps ``a`` (at most four, spread over ``1..H``): the mean of
  the observed ``z`` within ``w`` rows of ``t + a - lag`` (``w`` = ``lag_window_minutes``, capped so that
  ``a + w <= lag``: known at ``t``, as ``models/lstm.py``'s lags). A missing week lag falls back to the day
  lag, a missing day lag to ``z(t)``. The day lag is a feature when the training rows hold two days, the
  week lag when they hold two weeks;
- ``sin``/``cos`` of the hour of day (two harmonics) and of the day of week (one) at the origin, and 1.

The targets are ``Y_t = z(t+1) .. z(t+H)``; one weight column per step, the features shared, so the
``d x d`` moment matrix is shared by all columns. The pair ``(x_s, Y_s)`` becomes known at origin ``s + H``;
at origin ``t`` the model holds the forgetting-weighted moments of every known pair
(``j = t - H``, ``lambda = 1 - 1 / (memory_days * rows per day)``)::

    S(j) = lambda^(j - j0) S0 + sum_{s <= j} lambda^(j - s) x_s x_s'
    B(j) = lambda^(j - j0) B0 + sum_{s <= j} lambda^(j - s) x_s Y_s'
    W(t) = (delta I + S(t - H))^-1 B(t - H),   forecast  z^(t + h) = x_t' W(t)[:, h]

which is recursive least squares with forgetting started from a ridge prior, except that the prior
``delta I`` does not decay (plain RLS forgets its prior after ``1 / (1 - lambda)`` rows and the collinear lags
then make ``S`` ill-conditioned). Pairs with a missing input or target are skipped (the moments only decay); to forecast
across a gap, the last-``k`` features carry the last observed value on (as persistence does).
``(S0, B0)`` at row ``j0`` are the moments the model was saved with: training runs the recursion over its
training rows from zero; ``predict_at`` (validation, held-out tail, replays) and ``forecast`` (serving) start
from the saved moments and learn every later pair known at each origin, exactly what a live online model
does. Rows are matched to the saved moments by timestamp, so an origin inside the training rows uses the
saved moments (in-sample, as the baselines' fitted parameters are).

Why not the rank-1 (Sherman-Morrison) update row by row: a Python loop of ~10 small numpy calls per row costs
seconds per metric at 90,000 rows. Instead the moments of a chunk of rows are one scaled cumulative sum
(``lambda^-i`` stays below ``e^(chunk / memory)``) and the forecasts of the chunk one batched ``d x d`` solve,
on one BLAS thread (``threadpoolctl``: these small products ran 2-3x slower with OpenBLAS's threads spinning on
the shared 2-core host).

Raw quantiles: per step ``h``, ``z^ + r_h(t) c_{tau,h}`` where ``r_h(t)`` is the root mean square of the
model's own out-of-sample errors at step ``h`` over the last ``residual_days`` of known pairs (the saved
training residuals first), and ``c_{tau,h}`` are the empirical ``tau``-quantiles of the training errors
divided by their ``r_h``, sorted so the quantiles are monotone. Why not the empirical quantiles of the
window at every origin: ``origins x H x window`` values to sort (18,000 x 15 x 2,880 on a one-minute tail);
the location-scale form follows the recent volatility and keeps the training errors' shape, and the
conformal step (``conformal.py``) calibrates each level afterwards.

``train`` fits one model per part (no global fit: ``part`` is ignored). ``save``/``load``: ``ridge.json``
(configuration, scaling, feature flags) and ``ridge.npz`` (moments, residual buffer, ``c``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd
from threadpoolctl import ThreadpoolController

from models.baselines import last_observed
from models.component import Trained, TrainPart
from models.series import Panel

if TYPE_CHECKING:
    from models.train import TrainConfig

STATE_FILE = "ridge.json"
ARRAYS_FILE = "ridge.npz"
CHUNK = 512  # rows per batched solve: (CHUNK, d, d) moments and a (CHUNK, CHUNK) mixing matrix in memory
MIN_RESIDUALS = 10  # fewer known errors in the window: the training errors' scale instead


@dataclass
class MetricState:
    """One metric's online model: scaling, moments through grid row ``j0``, recent errors."""

    mu: float
    sd: float
    S: np.ndarray  # (d, d)
    B: np.ndarray  # (d, H)
    j0: int  # grid row (timestamp // step) of the last pair in S, B
    residuals: np.ndarray  # (N, H) out-of-sample errors of the last N pairs up to j0 (NaN: unknown)
    rms: np.ndarray  # (H,) training errors' root mean square (fallback scale)
    shape: np.ndarray  # (H, Q) quantiles of the training errors over their rolling scale


@dataclass
class Ridge:
    name: ClassVar[str] = "ridge"
    learned: ClassVar[bool] = False
    horizon: int
    quantiles: tuple[float, ...]
    step_seconds: int
    lags: int = 12
    lag_window: int = 0  # rows each side of a day/week lag
    day_lag: bool = False
    week_lag: bool = False
    memory_days: float = 3.0
    residual_days: float = 2.0
    delta: float = 1.0
    metrics: list[MetricState] = field(default_factory=list)

    # -- the component protocol ------------------------------------------------------------------------------
    @classmethod
    def train(cls, parts: Sequence[TrainPart], config: TrainConfig, *,
              scratch: Path | None = None) -> list[Trained | str]:
        return [cls._train_part(part, config) for part in parts]

    @classmethod
    def _train_part(cls, part: TrainPart, config: TrainConfig) -> Trained | str:
        panel, stop = part.panel, part.train_stop
        horizon = config.steps(panel.step_seconds)[1]
        m = panel.season
        model = cls(horizon=horizon, quantiles=tuple(config.quantiles), step_seconds=panel.step_seconds,
                    lag_window=max(0, round(config.lag_window_minutes * 60 / panel.step_seconds)),
                    day_lag=stop >= 2 * m, week_lag=stop >= 14 * m)
        need = max(model.lags + horizon + 4 * model.dim(), m // 2)
        observed = int(panel.observed[:stop].sum())
        if observed < need:
            return f"needs {need} observed training rows (lags {model.lags}, horizon {horizon}), got {observed}"
        started = time.perf_counter()
        values = panel.values[:stop]
        with _one_blas_thread():
            for col in range(values.shape[1]):
                model.metrics.append(model._fit_metric(values[:, col], panel.index[:stop]))
        params = {"lags": model.lags, "day_lag": model.day_lag, "week_lag": model.week_lag,
                  "memory_days": model.memory_days, "delta": model.delta, "features": model.dim()}
        return Trained([model], params, time.perf_counter() - started)

    def predict_at(self, panel: Panel, origins: np.ndarray, *, part: int = 0) -> np.ndarray:
        origins = np.asarray(origins, dtype=np.int64)
        out = np.empty((len(origins), self.horizon, len(self.metrics), len(self.quantiles)))
        if not len(origins):
            return out
        with _one_blas_thread():
            for col, state in enumerate(self.metrics):
                out[:, :, col] = self._predict_metric(state, panel.values[:, col], panel.index, origins)
        return out

    def forecast(self, panel: Panel, *, part: int = 0) -> np.ndarray:
        return self.predict_at(panel, np.array([len(panel) - 1]))[0]

    def history_needed(self) -> int:
        """The week lag's rows (or the day lag's), and at least a day to keep learning on."""
        season = max(1, round(86_400 / self.step_seconds))
        lag = 7 * season if self.week_lag else season
        return lag + self.lag_window + self.lags + self.horizon

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        config = {k: getattr(self, k) for k in ("horizon", "step_seconds", "lags", "lag_window", "day_lag",
                                                  "week_lag", "memory_days", "residual_days", "delta")}
        config["quantiles"] = list(self.quantiles)
        config["scaling"] = [[s.mu, s.sd, s.j0] for s in self.metrics]
        (folder / STATE_FILE).write_text(json.dumps(config))
        arrays = {f"{key}{i}": getattr(s, key) for i, s in enumerate(self.metrics)
                  for key in ("S", "B", "residuals", "rms", "shape")}
        np.savez(folder / ARRAYS_FILE, **arrays)

    @classmethod
    def load(cls, folder: Path) -> Ridge:
        config = json.loads((folder / STATE_FILE).read_text())
        scaling = config.pop("scaling")
        model = cls(**{**config, "quantiles": tuple(config["quantiles"])})
        with np.load(folder / ARRAYS_FILE) as arrays:
            model.metrics = [MetricState(mu, sd, arrays[f"S{i}"], arrays[f"B{i}"], int(j0), arrays[f"residuals{i}"],
                                         arrays[f"rms{i}"], arrays[f"shape{i}"])
                             for i, (mu, sd, j0) in enumerate(scaling)]
        return model

    # -- features -----------------------------------------------------------------------------------------------
    @property
    def season(self) -> int:
        return max(1, round(86_400 / self.step_seconds))

    @property
    def forgetting(self) -> float:
        return 1.0 - 1.0 / max(2.0, self.memory_days * self.season)

    def anchors(self) -> np.ndarray:
        """The target steps (1-based) whose day/week lags are features: at most four, spread over the horizon."""
        return np.unique(np.round(np.linspace(1, self.horizon, min(self.horizon, 4))).astype(np.int64))

    def dim(self) -> int:
        return self.lags + len(self.anchors()) * (int(self.day_lag) + int(self.week_lag)) + 4 + 2 + 1

    def features(self, z: np.ndarray, index: pd.DatetimeIndex) -> np.ndarray:
        """``(T, d)`` features at every origin, the last values carried over gaps (NaN before the first one)."""
        n = len(z)
        last = last_observed(z)
        cols = [_shift(last, lag) for lag in range(self.lags)]
        if self.day_lag or self.week_lag:
            mean = _window_mean(z, min(self.lag_window, max(0, self.season - self.horizon)))
            day = [_fill(_shift(mean, self.season - a), last) for a in self.anchors()]
            if self.day_lag:
                cols += day
            if self.week_lag:
                cols += [_fill(_shift(mean, 7 * self.season - a), d) for a, d in zip(self.anchors(), day,
                                                                                     strict=True)]
        seconds = index.as_unit("s").asi8.astype(np.float64)
        day_phase = 2 * np.pi * (seconds % 86_400) / 86_400
        week_phase = 2 * np.pi * (seconds % 604_800) / 604_800
        cols += [np.sin(day_phase), np.cos(day_phase), np.sin(2 * day_phase), np.cos(2 * day_phase),
                 np.sin(week_phase), np.cos(week_phase), np.ones(n)]
        return np.stack(cols, axis=1)

    def targets(self, z: np.ndarray) -> np.ndarray:
        """``(T, H)``: ``z(t+1) .. z(t+H)`` (NaN past the end)."""
        return np.stack([_shift(z, -h) for h in range(1, self.horizon + 1)], axis=1)

    # -- the recursion ----------------------------------------------------------------------------------------
    def _fit_metric(self, column: np.ndarray, index: pd.DatetimeIndex) -> MetricState:
        mu, sd = float(np.nanmean(column)), float(np.nanstd(column))
        sd = sd if sd > 1e-9 * max(1.0, abs(mu)) else max(1.0, abs(mu))
        d, horizon = self.dim(), self.horizon
        state = MetricState(mu, sd, np.zeros((d, d)), np.zeros((d, horizon)), j0=-(2**62),
                            residuals=np.full((0, horizon), np.nan), rms=np.ones(horizon),
                            shape=np.zeros((horizon, len(self.quantiles))))
        z = (column - mu) / sd
        stop = len(z) - 1 - horizon  # the last pair whose targets are training rows
        _, errors, S, B, j0 = self._run(state, z, index, last_origin=len(z) - 1)
        errors[stop + 1:] = np.nan
        rms = np.sqrt(np.nanmean(errors**2, axis=0)) if np.isfinite(errors).any() else np.ones(horizon)
        state.rms = np.where(np.isfinite(rms) & (rms > 0), rms, 1.0)
        scale = self._rolling_scale(state, errors, np.arange(len(z)), start=0)
        # the shape from the pairs after one memory of warm-up (the moments start from zero)
        warm = np.arange(len(z)) >= min(len(z) // 2, round(self.memory_days * self.season))
        standard = np.where(warm[:, None], errors / scale, np.nan)
        if np.isfinite(standard).any():
            state.shape = np.sort(np.nan_to_num(np.nanquantile(standard, self.quantiles, axis=0).T), axis=-1)
        state.S, state.B, state.j0 = S, B, j0
        state.residuals = errors[max(0, stop + 1 - self._window()): stop + 1]
        return state

    def _predict_metric(self, state: MetricState, column: np.ndarray, index: pd.DatetimeIndex,
                        origins: np.ndarray) -> np.ndarray:
        """``(W, H, Q)`` in the metric's units."""
        z = (column - state.mu) / state.sd
        point, errors, *_ = self._run(state, z, index, last_origin=int(origins.max()), wanted=origins)
        start = int(np.searchsorted(_grid(index, self.step_seconds), state.j0, side="right"))
        scale = self._rolling_scale(state, errors, origins, start=start)
        q = point[origins][:, :, None] + scale[:, :, None] * state.shape[None]
        return state.mu + state.sd * q

    def _window(self) -> int:
        return max(MIN_RESIDUALS, round(self.residual_days * self.season))

    def _rolling_scale(self, state: MetricState, errors: np.ndarray, origins: np.ndarray, *, start: int
                       ) -> np.ndarray:
        """``(W, H)``: per origin, the RMS of the errors of the last ``window`` pairs known there: the saved
        errors, then this panel's pairs from row ``start`` (the first newer than the saved moments)."""
        horizon, window = self.horizon, self._window()
        known = np.concatenate([state.residuals, errors[start:]])
        sq = np.concatenate([np.zeros((1, horizon)), np.cumsum(np.nan_to_num(known**2), axis=0)])
        count = np.concatenate([np.zeros((1, horizon)), np.cumsum(~np.isnan(known), axis=0)])
        end = np.clip(len(state.residuals) + origins - horizon - start + 1, 0, len(known))  # exclusive
        begin = np.maximum(end - window, 0)
        n = count[end] - count[begin]
        with np.errstate(invalid="ignore", divide="ignore"):
            rms = np.sqrt((sq[end] - sq[begin]) / n)
        return np.where(n >= MIN_RESIDUALS, rms, state.rms[None])

    def _run(self, state: MetricState, z: np.ndarray, index: pd.DatetimeIndex, *, last_origin: int,
             wanted: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
        """Forecasts ``(T, H)`` (z units) at the ``wanted`` origins and at every origin from the first row newer
        than the saved moments through ``last_origin``; the errors of the new pairs; the moments after learning
        every new pair known at ``last_origin``, and the grid row they are at."""
        n, horizon, lam = len(z), self.horizon, self.forgetting
        grid = _grid(index, self.step_seconds)
        X, Y = self.features(z, index), self.targets(z)
        # a pair is learned when its last k values and its targets were all observed (not carried over a gap)
        seen = np.convolve(np.isnan(z).astype(np.float64), np.ones(self.lags))[: n] == 0
        ok = seen & ~np.isnan(X).any(axis=1) & ~np.isnan(Y).any(axis=1) & (grid > state.j0)
        Xn, Yn = np.nan_to_num(X), np.nan_to_num(Y)
        start = int(np.searchsorted(grid, state.j0, side="right"))  # the first pair the saved moments lack
        point = np.full((n, horizon), np.nan)
        ridge = self.delta * np.eye(X.shape[1])
        # origins whose known pairs all precede this panel's new rows: the saved moments, decayed
        early = np.arange(0, min(start + horizon, last_origin + 1))
        if wanted is not None:  # and the origins of new pairs, whose errors the quantiles' scale reads
            early = early[(early >= start) | np.isin(early, wanted)]
        decay = lam ** np.maximum(0, grid[early] - horizon - state.j0).astype(np.float64)
        v, good = self._solve(X[early], decay[:, None, None] * state.S[None], ridge)
        point[early[good]] = decay[good, None] * (v[good] @ state.B)
        S, B, at = state.S, state.B, state.j0  # the moments and the grid row they are at
        for first in range(start, last_origin - horizon + 1, CHUNK):
            rows = np.arange(first, min(first + CHUNK, last_origin - horizon + 1))  # pair rows j, origins j + H
            g = grid[rows].astype(np.float64)
            inside = lam ** -(g - g[0])  # lam^-(g - g0) stays below e^(CHUNK / memory)
            w = np.where(ok[rows], inside, 0.0)
            carry = lam ** np.maximum(0.0, g - at)
            # S(j) = carry_j S + sum_{s <= j} lam^(g_j - g_s) x_s x_s', one cumulative sum (along the last axis:
            # numpy's cumsum along axis 0 of a (n, d, d) array is several times slower)
            outer = (w[:, None] * Xn[rows])[:, :, None] * Xn[rows][:, None, :]
            cum_S = np.cumsum(outer.reshape(len(rows), -1).T, axis=1).T.reshape(outer.shape)
            S_rows = carry[:, None, None] * S[None] + cum_S / inside[:, None, None]
            v, good = self._solve(X[rows + horizon], S_rows, ridge)
            # x_t' W(t) = v' B(j) = carry_j v'B + sum_{s <= j} lam^(g_j - g_s) (v . x_s) y_s': no (n, d, H) stack
            mix = np.tril(v @ Xn[rows].T) * w[None, :] / inside[:, None]
            pred = carry[:, None] * (v @ B) + mix @ Yn[rows]
            point[rows[good] + horizon] = pred[good]
            S = S_rows[-1]
            B = carry[-1] * B + (Xn[rows].T * w) @ Yn[rows] / inside[-1]
            at = max(at, int(grid[rows[-1]]))
        errors = np.where(ok[:, None], Y - point, np.nan)
        return point, errors, S, B, at

    @staticmethod
    def _solve(x: np.ndarray, S: np.ndarray, ridge: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``v = (delta I + S_t)^-1 x_t`` per row (S symmetric, so ``x' A^-1 B = v' B``); zero where ``x`` is
        not fully observed, and the mask of the rows that are."""
        good = ~np.isnan(x).any(axis=1)
        v = np.zeros(x.shape)
        if good.any():
            v[good] = np.linalg.solve(ridge[None] + S[good] if len(S) == len(x) else ridge[None] + S,
                                      x[good][:, :, None])[:, :, 0]
        return v, good


def _grid(index: pd.DatetimeIndex, step_seconds: int) -> np.ndarray:
    """Row numbers on the absolute grid (epoch seconds // step), so saved moments meet later panels by time."""
    return index.as_unit("s").asi8 // step_seconds


def _shift(values: np.ndarray, lag: int) -> np.ndarray:
    """``out[t] = values[t - lag]`` (NaN off the ends); a negative lag looks ahead (targets only)."""
    out = np.full(len(values), np.nan)
    if lag >= 0:
        out[lag:] = values[: len(values) - lag] if lag else values
    else:
        out[:lag] = values[-lag:]
    return out


def _fill(values: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(values), fallback, values)


def _window_mean(z: np.ndarray, width: int) -> np.ndarray:
    """The mean of the observed values within ``width`` rows each side (NaN where none)."""
    if width <= 0:
        return z.copy()
    observed = ~np.isnan(z)
    total = np.concatenate([[0.0], np.cumsum(np.where(observed, z, 0.0))])
    count = np.concatenate([[0], np.cumsum(observed)])
    t = np.arange(len(z))
    lo, hi = np.maximum(t - width, 0), np.minimum(t + width + 1, len(z))
    n = count[hi] - count[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (total[hi] - total[lo]) / n, np.nan)


__all__ = ["Ridge"]


_CONTROLLER: list[ThreadpoolController] = []


def _one_blas_thread():
    """``threadpool_limits(1, user_api="blas")`` through one controller made once: ``threadpool_limits`` scans the
    process's loaded libraries on every call (3 ms, a third of a ridge forecast)."""
    if not _CONTROLLER:
        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0].limit(limits=1, user_api="blas")
