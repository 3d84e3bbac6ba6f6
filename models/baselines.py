"""The simple forecasters every model must beat, run as real competitors.

Each baseline produces, from every origin ``t`` at once, the point forecast of
rows ``t+1 .. t+H`` (:meth:`Baseline.paths`, shape ``(T, H, M)``), each metric on
its own. ``m`` is the daily season in steps, ``y`` the observations:

- persistence: ``f(t, h) = y(t)`` (the last observed value);
- seasonal naive: ``f(t, h) = y(t + h - m)`` (the same time yesterday; the
  last value where that is missing);
- simple exponential smoothing (SES): ``l(t) = a y(t) + (1 - a) l(t-1)``,
  ``f(t, h) = l(t)``;
- damped-trend additive Holt-Winters with a daily season::

      l(t) = a (y(t) - s(t-m)) + (1 - a)(l(t-1) + phi b(t-1))
      b(t) = b* (l(t) - l(t-1)) + (1 - b*) phi b(t-1)
      s(t) = g (y(t) - l(t)) + (1 - g) s(t-m)
      f(t, h) = l(t) + (phi + ... + phi^h) b(t) + s(t + h - m)

  initialised from the first two days, parameters by least squares of the
  one-step errors (L-BFGS-B) on the last ``fit_steps`` training rows.

Missing observations are not updates: level and trend run on as forecast,
the season keeps its last value. The parameters are fitted on the training part
only; backtests then run the recursion over the whole panel, so the forecast
from origin ``t`` uses data up to ``t`` and nothing after (as the LSTM does,
without refitting).

Raw intervals: the empirical quantiles of each step's forecast errors on the
training part, added to the point forecast; the median is the point forecast
itself, so a baseline's MAE is exactly the classic method's (lower offsets are
clipped at 0 from above, upper ones from below, so the median stays inside). The conformal
step (``conformal.py``) then calibrates them like any other candidate's.

Each baseline is a forecaster component (``component.py``): ``train`` fits one per
panel on its training rows (the newest ``baseline_fit_days`` of them, at least what
the method needs), or says why the panel is too short; ``save``/``load`` keep the
parameters and offsets as JSON (``baseline.json``).

Why not statsmodels' ``ExponentialSmoothing``: it refuses missing values and
estimates ``m`` initial seasonal states (1,440 at a one-minute step); this
recursion handles gaps and gives every origin's forecast in one pass.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from scipy.optimize import minimize, minimize_scalar

from models.component import Trained, TrainPart
from models.series import Panel

if TYPE_CHECKING:
    from models.train import TrainConfig

BASELINE_FILE = "baseline.json"


class BaselineError(ValueError):
    """The data cannot support this baseline (too short for its season, say)."""


@dataclass
class Baseline:
    """Shared machinery: residual quantiles, backtest slicing, (de)serialisation."""

    name: ClassVar[str] = "baseline"
    learned: ClassVar[bool] = False
    season: int = 1
    horizon: int = 1
    quantiles: tuple[float, ...] = (0.1, 0.5, 0.9)
    params: list[dict[str, float]] = field(default_factory=list)  # one dict per metric
    offsets: np.ndarray | None = None  # (H, M, Q) error quantiles

    # -- subclasses implement -------------------------------------------------
    def fit_params(self, column: np.ndarray) -> dict[str, float]:
        return {}

    def column_paths(self, column: np.ndarray, params: dict[str, float]) -> np.ndarray:
        raise NotImplementedError

    def min_history(self) -> int:
        return 1

    def history_needed(self) -> int:
        """Rows of history a forecast wants: what the recursion needs before its first forecast, plus one."""
        return self.min_history() + 1

    # -- the component protocol (component.py) ------------------------------------
    @classmethod
    def train(cls, parts: Sequence[TrainPart], config: TrainConfig, *,
              scratch: Path | None = None) -> list[Trained | str]:
        """One model per part, fitted on its training rows; why not where they are too few."""
        return [cls._train_part(part, config) for part in parts]

    @classmethod
    def _train_part(cls, part: TrainPart, config: TrainConfig) -> Trained | str:
        panel = part.panel
        horizon = config.steps(panel.step_seconds)[1]
        model = cls(season=panel.season, horizon=horizon, quantiles=config.quantiles)
        need, rows = model.min_history() + horizon, int(panel.observed[: part.train_stop].sum())
        if rows < need:
            return f"needs {need} training rows (its season is {panel.season} steps), got {rows}"
        started = time.perf_counter()
        try:
            model.fit(panel.values[: part.train_stop],
                      fit_steps=max(int(config.baseline_fit_days * panel.season), need))
        except BaselineError as exc:
            return str(exc)
        return Trained([model], {"params": model.params}, time.perf_counter() - started)

    def predict_at(self, panel: Panel, origins: np.ndarray, *, part: int = 0) -> np.ndarray:
        return self.predict(panel.values, origins)

    def forecast(self, panel: Panel, *, part: int = 0) -> np.ndarray:
        return self.predict(panel.values, np.array([len(panel) - 1]))[0]

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / BASELINE_FILE).write_text(json.dumps(self.state()))

    @classmethod
    def load(cls, folder: Path) -> Baseline:
        return Baseline.from_state(json.loads((folder / BASELINE_FILE).read_text()))

    # -- shared ---------------------------------------------------------------
    def fit(self, train: np.ndarray, *, fit_steps: int | None = None) -> Baseline:
        """Fit on ``train`` ``(T, M)``: parameters per metric, then the raw error quantiles."""
        if np.isnan(train).all(axis=0).any():
            raise BaselineError(f"{self.name}: a metric has no observed training value")
        tail = train[-fit_steps:] if fit_steps else train
        if len(tail) < self.min_history() + self.horizon:
            raise BaselineError(
                f"{self.name} needs at least {self.min_history() + self.horizon} training rows, got {len(tail)}"
            )
        self.params = [self.fit_params(tail[:, m]) for m in range(train.shape[1])]
        self.offsets = self._error_quantiles(tail)
        return self

    def paths(self, values: np.ndarray) -> np.ndarray:
        """Point forecasts ``(T, H, M)`` from every origin of ``values``."""
        return np.stack([self.column_paths(values[:, m], p) for m, p in enumerate(self.params)], axis=-1)

    def predict(self, values: np.ndarray, origins: np.ndarray) -> np.ndarray:
        """Quantile forecasts ``(W, H, M, Q)`` from the given origins."""
        if self.offsets is None:
            raise RuntimeError(f"{self.name}: call fit() before predict()")
        point = self.paths(values)[origins]
        return point[..., None] + self.offsets[None]

    def _error_quantiles(self, train: np.ndarray) -> np.ndarray:
        point = self.paths(train)
        burn = self.min_history()
        errors = np.full_like(point, np.nan)
        for h in range(1, self.horizon + 1):
            errors[burn : len(train) - h, h - 1] = train[burn + h :] - point[burn : len(train) - h, h - 1]
        offsets = np.nanquantile(errors, self.quantiles, axis=0)  # (Q, H, M)
        offsets = np.nan_to_num(np.moveaxis(offsets, 0, -1))
        mid = list(self.quantiles).index(0.5)
        offsets[..., mid] = 0.0
        # a biased method's error quantiles may all sit on one side of zero: keep the median inside
        offsets[..., : mid + 1] = np.minimum.accumulate(np.minimum(offsets[..., mid::-1], 0.0), axis=-1)[..., ::-1]
        offsets[..., mid:] = np.maximum.accumulate(np.maximum(offsets[..., mid:], 0.0), axis=-1)
        return offsets

    def state(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "season": self.season,
            "horizon": self.horizon,
            "quantiles": list(self.quantiles),
            "params": self.params,
            "offsets": None if self.offsets is None else self.offsets.tolist(),
        }

    @staticmethod
    def from_state(state: dict[str, Any]) -> Baseline:
        cls = BASELINES[state["name"]]
        model = cls(season=state["season"], horizon=state["horizon"], quantiles=tuple(state["quantiles"]))
        model.params = state["params"]
        model.offsets = None if state["offsets"] is None else np.asarray(state["offsets"], dtype=np.float64)
        return model


def last_observed(column: np.ndarray) -> np.ndarray:
    """Forward-filled copy (NaN before the first observation)."""
    idx = np.where(~np.isnan(column), np.arange(len(column)), -1)
    idx = np.maximum.accumulate(idx)
    out = np.where(idx >= 0, column[np.maximum(idx, 0)], np.nan)
    return out


@dataclass
class Persistence(Baseline):
    name: ClassVar[str] = "persistence"

    def column_paths(self, column: np.ndarray, params: dict[str, float]) -> np.ndarray:
        return np.repeat(last_observed(column)[:, None], self.horizon, axis=1)


@dataclass
class SeasonalNaive(Baseline):
    name: ClassVar[str] = "seasonal_naive"

    def min_history(self) -> int:
        return self.season

    def column_paths(self, column: np.ndarray, params: dict[str, float]) -> np.ndarray:
        n, m = len(column), self.season
        last = last_observed(column)
        out = np.repeat(last[:, None], self.horizon, axis=1)
        for h in range(1, self.horizon + 1):
            lag = m * math.ceil(h / m)
            src = np.arange(n) + h - lag
            ok = src >= 0
            seasonal = np.full(n, np.nan)
            seasonal[ok] = column[src[ok]]
            out[:, h - 1] = np.where(np.isnan(seasonal), last, seasonal)
        return out


@dataclass
class SimpleExponentialSmoothing(Baseline):
    name: ClassVar[str] = "ses"

    def fit_params(self, column: np.ndarray) -> dict[str, float]:
        def sse(alpha: float) -> float:
            level = ses_levels(column, alpha)
            return float(np.nansum((column[1:] - level[:-1]) ** 2))

        best = minimize_scalar(sse, bounds=(0.01, 1.0), method="bounded", options={"xatol": 1e-3})
        return {"alpha": float(best.x)}

    def column_paths(self, column: np.ndarray, params: dict[str, float]) -> np.ndarray:
        return np.repeat(ses_levels(column, params["alpha"])[:, None], self.horizon, axis=1)


def ses_levels(column: np.ndarray, alpha: float) -> np.ndarray:
    out = np.empty(len(column))
    level = math.nan
    for t, y in enumerate(column.tolist()):
        if y == y:  # observed
            level = y if level != level else alpha * y + (1.0 - alpha) * level
        out[t] = level
    return out


@dataclass
class DampedHoltWinters(Baseline):
    name: ClassVar[str] = "holt_winters"
    bounds: ClassVar[tuple[tuple[float, float], ...]] = ((0.01, 1.0), (0.0, 0.5), (0.0, 0.99), (0.8, 0.995))

    def min_history(self) -> int:
        return 2 * self.season

    def history_needed(self) -> int:
        """A week: the seasonal indices start from the history's first week (``hw_initial_state``)."""
        return 7 * self.season

    def fit_params(self, column: np.ndarray) -> dict[str, float]:
        init = hw_initial_state(column, self.season)

        def sse(x: np.ndarray) -> float:
            _, _, _, errors = hw_run(column, *x, season=self.season, init=init)
            return float(np.nansum(np.asarray(errors[2 * self.season :]) ** 2))

        best = minimize(sse, x0=np.array([0.3, 0.01, 0.1, 0.95]), method="L-BFGS-B", bounds=self.bounds,
                        options={"maxiter": 60})
        alpha, beta, gamma, phi = (float(v) for v in best.x)
        return {"alpha": alpha, "beta": beta, "gamma": gamma, "phi": phi}

    def column_paths(self, column: np.ndarray, params: dict[str, float]) -> np.ndarray:
        m = self.season
        init = hw_initial_state(column, m)
        p = params
        level, trend, season, _ = hw_run(column, p["alpha"], p["beta"], p["gamma"], p["phi"], season=m, init=init)
        level, trend, season = np.asarray(level), np.asarray(trend), np.asarray(season)
        n = len(column)
        damp = np.cumsum(p["phi"] ** np.arange(1, self.horizon + 1))
        out = np.empty((n, self.horizon))
        t = np.arange(n)
        for h in range(1, self.horizon + 1):
            src = t + h - m * math.ceil(h / m)
            seasonal = np.where(src >= 0, season[np.maximum(src, 0)], init[2][(t + h) % m])
            out[:, h - 1] = level + damp[h - 1] * trend + seasonal
        return out


def hw_initial_state(column: np.ndarray, season: int, *, days: int = 7) -> tuple[float, float, np.ndarray]:
    """Level, trend and seasonal indices from the first (up to) ``days`` seasons, missing values ignored.

    A week rather than the classic two seasons: two days that happen to be a
    weekend would otherwise set the shape of every later weekday.
    """
    m = season
    k = max(1, min(days, len(column) // m))
    block = column[: k * m].reshape(k, m)
    means = np.array([np.nanmean(day) if not np.isnan(day).all() else np.nan for day in block])
    if np.isnan(means).all():
        observed = column[~np.isnan(column)]
        return (float(observed[0]) if len(observed) else 0.0), 0.0, np.zeros(m)
    known = np.flatnonzero(~np.isnan(means))
    trend = 0.0 if len(known) < 2 else float((means[known[-1]] - means[known[0]]) / ((known[-1] - known[0]) * m))
    with np.errstate(all="ignore"):
        seasonal = np.nan_to_num(np.nanmedian(block - means[:, None], axis=0)) if k > 1 else np.zeros(m)
    return float(means[known[0]]), trend, seasonal


def hw_run(
    column: np.ndarray, alpha: float, beta: float, gamma: float, phi: float, *, season: int,
    init: tuple[float, float, np.ndarray],
) -> tuple[list[float], list[float], list[float], list[float]]:
    """One pass of the damped additive recursion: states after each row, and one-step errors."""
    m = season
    level, trend = init[0], init[1]
    first_season = init[2].tolist()
    levels: list[float] = []
    trends: list[float] = []
    seasons: list[float] = []
    errors: list[float] = []
    for t, y in enumerate(column.tolist()):
        s_prev = seasons[t - m] if t >= m else first_season[t % m]
        damped = phi * trend
        if y != y:  # missing: run on as forecast
            level, trend = level + damped, damped
            errors.append(math.nan)
            seasons.append(s_prev)
        else:
            errors.append(y - (level + damped + s_prev))
            new_level = alpha * (y - s_prev) + (1.0 - alpha) * (level + damped)
            trend = beta * (new_level - level) + (1.0 - beta) * damped
            level = new_level
            seasons.append(gamma * (y - level) + (1.0 - gamma) * s_prev)
        levels.append(level)
        trends.append(trend)
    return levels, trends, seasons, errors


BASELINES: dict[str, type[Baseline]] = {
    cls.name: cls for cls in (Persistence, SeasonalNaive, SimpleExponentialSmoothing, DampedHoltWinters)
}


__all__ = ["BASELINE_FILE", "BASELINES", "Baseline", "BaselineError"]
