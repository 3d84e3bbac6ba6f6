"""The deployable forecaster: one candidate, its calibration, and the `Forecast` it returns.

A :class:`Forecaster` is what the registry stores and the orchestrator loads. It
holds one or more *components* (an :class:`~models.lstm.LstmCandidate` or a
:class:`~models.baselines.Baseline`) and per-step combination weights
``w[c, h]`` (one component: all ones; an ensemble: weights chosen on the
validation windows), so its raw quantiles are::

    F_raw[h, m, k] = sum_c w[c, h] * F_c[h, m, k]

(averaging quantiles, not samples: the result is again a set of quantiles). The
conformal offsets ``q[h, m, j]`` of the last calibration widen the central
intervals (``conformal.apply_offsets``), so the deployed intervals are the ones
whose coverage the scores report.

:meth:`Forecaster.forecast` takes recent history (a wide frame indexed by UTC
time, or the store's long rows) and returns a :class:`prescale.forecast.Forecast`
for the ``H`` steps after the last row. It needs :attr:`history_steps` rows of
every one of its :attr:`inputs` (all the metrics it was trained on); the LSTM
needs its last ``L`` rows observed, the daily baselines a day or more.

On disk (``save``/``load``): ``forecaster.json`` (metadata, weights, offsets)
plus one folder per component (darts files for the LSTM, JSON for a baseline).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.baselines import Baseline
from models.conformal import apply_offsets, interval_pairs
from models.lstm import LstmCandidate
from models.series import Panel, panel_from_long, panel_from_wide
from prescale.forecast import Forecast

META_FILE = "forecaster.json"
BASELINE_FILE = "baseline.json"

Component = LstmCandidate | Baseline


class ForecasterInputError(ValueError):
    """The history handed to a forecaster cannot be forecast from (too short, gaps, wrong metrics)."""


def component_name(component: Component) -> str:
    return component.name


def predict_component(component: Component, panel: Panel, origins: np.ndarray, *, part: int = 0) -> np.ndarray:
    """Raw quantiles ``(W, H, M, Q)`` of one component from each origin of ``panel``."""
    if isinstance(component, Baseline):
        return component.predict(panel.values, origins)
    return component.predict(panel, origins, part=part)


def forecast_component(component: Component, panel: Panel, *, part: int = 0) -> np.ndarray:
    """Raw quantiles ``(H, M, Q)`` of one component after the panel's last row."""
    if isinstance(component, Baseline):
        return component.predict(panel.values, np.array([len(panel) - 1]))[0]
    return component.forecast(panel, part=part)


def history_needed(component: Component, season: int) -> int:
    if isinstance(component, Baseline):
        return component.min_history() + 1 if component.name != "holt_winters" else 7 * season
    return component.config.input_steps + max(component.lags(), default=0)


@dataclass
class Forecaster:
    """A trained candidate, ready to forecast (see the module docstring)."""

    candidate: str
    metrics: tuple[str, ...]
    step_seconds: int
    horizon: int
    quantiles: tuple[float, ...]
    components: list[Component]
    weights: np.ndarray  # (C, H)
    offsets: np.ndarray  # (H, M, K)
    lstm_part: int = 0  # which series' scaling of a global LSTM this forecaster uses
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def inputs(self) -> tuple[str, ...]:
        """The stored metrics :meth:`forecast` reads (the ones it was trained on and forecasts): a caller must
        read all of them, not only the ones it needs forecast."""
        return self.metrics

    @property
    def season(self) -> int:
        return max(1, round(86_400 / self.step_seconds))

    @property
    def history_steps(self) -> int:
        """Rows of history :meth:`forecast` wants (the most any component needs)."""
        return max(history_needed(c, self.season) for c in self.components)

    def raw(self, panel: Panel, origins: np.ndarray) -> np.ndarray:
        """Uncalibrated quantiles ``(W, H, M, Q)`` from each origin (for backtests and re-scoring)."""
        parts = [predict_component(c, panel, origins, part=self.lstm_part) for c in self.components]
        return _combine(parts, self.weights)

    def calibrated(self, raw: np.ndarray) -> np.ndarray:
        """Apply the stored conformal offsets to raw quantiles ``(..., H, M, Q)``."""
        return apply_offsets(raw, self.offsets, interval_pairs(self.quantiles), median=self.quantiles.index(0.5))

    def forecast(self, history: pd.DataFrame) -> Forecast:
        """The calibrated forecast for the ``horizon`` steps after the last row of ``history``."""
        panel = self._panel(history)
        parts = [forecast_component(c, panel, part=self.lstm_part)[None] for c in self.components]
        values = self.calibrated(_combine(parts, self.weights))[0]
        if not np.isfinite(values).all():
            raise ForecasterInputError(
                f"{self.candidate}: the history ending {panel.index[-1]} yields no finite forecast; "
                f"give {self.history_steps} rows with the newest ones observed"
            )
        start = panel.index[-1] + pd.Timedelta(seconds=self.step_seconds)
        return Forecast(start=start, step_seconds=self.step_seconds, metrics=list(self.metrics),
                        quantiles=list(self.quantiles), values=values)

    def _panel(self, history: pd.DataFrame) -> Panel:
        if {"ts", "metric", "value"} <= set(history.columns):
            panel = panel_from_long(history, metrics=list(self.metrics))
        else:
            missing = [m for m in self.metrics if m not in history.columns]
            if missing:
                raise ForecasterInputError(f"history lacks metrics {missing}; it has {list(history.columns)}")
            panel = panel_from_wide(history[list(self.metrics)], step_seconds=self.step_seconds)
        if panel.step_seconds != self.step_seconds:
            raise ForecasterInputError(
                f"history step is {panel.step_seconds} s but the model was trained at {self.step_seconds} s"
            )
        return panel

    # -- persistence ---------------------------------------------------------------
    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        names = []
        for i, component in enumerate(self.components):
            sub = folder / f"component-{i}-{component.name}"
            sub.mkdir(parents=True, exist_ok=True)
            if isinstance(component, Baseline):
                (sub / BASELINE_FILE).write_text(json.dumps(component.state()))
            else:
                component.save(sub)
            names.append(sub.name)
        meta = {
            "candidate": self.candidate, "metrics": list(self.metrics), "step_seconds": self.step_seconds,
            "horizon": self.horizon, "quantiles": list(self.quantiles), "components": names,
            "weights": self.weights.tolist(), "offsets": self.offsets.tolist(), "lstm_part": self.lstm_part,
            "info": self.info,
        }
        (folder / META_FILE).write_text(json.dumps(meta, indent=1, default=str))
        return folder

    @staticmethod
    def load(folder: Path) -> Forecaster:
        meta = json.loads((folder / META_FILE).read_text())
        components: list[Component] = []
        for name in meta["components"]:
            sub = folder / name
            if (sub / BASELINE_FILE).exists():
                components.append(Baseline.from_state(json.loads((sub / BASELINE_FILE).read_text())))
            else:
                components.append(LstmCandidate.load(sub))
        return Forecaster(
            candidate=meta["candidate"], metrics=tuple(meta["metrics"]), step_seconds=meta["step_seconds"],
            horizon=meta["horizon"], quantiles=tuple(meta["quantiles"]), components=components,
            weights=np.asarray(meta["weights"], dtype=np.float64), offsets=np.asarray(meta["offsets"]),
            lstm_part=meta.get("lstm_part", 0), info=meta.get("info", {}),
        )


def _combine(parts: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """``sum_c w[c, h] * F_c[:, h]`` over components; each part is ``(W, H, M, Q)``."""
    stacked = np.stack(parts)  # (C, W, H, M, Q)
    return np.einsum("ch,cwhmq->whmq", weights, stacked)
