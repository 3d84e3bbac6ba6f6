"""The deployable forecaster: one candidate, its calibration, and the `Forecast` it returns.

A :class:`Forecaster` is what the registry stores and the orchestrator loads. It
holds one or more *components* (``component.py``: the LSTM's networks, a baseline,
any registered component) and per-step combination weights ``w[c, h]`` (one
component: all ones; the LSTM's networks: their mean; a blend: weights chosen on the
validation windows), so its raw quantiles are::

    F_raw[h, m, k] = sum_c w[c, h] * F_c[h, m, k]

(averaging quantiles, not samples: the result is again a set of quantiles). The
conformal offsets ``q[b, h, m, k]`` of the last calibration (hour-of-day bin ``b`` of
the target row, step, metric, level) are added to each level
(``conformal.apply_offsets``), so the deployed quantiles are the ones whose coverage
the scores report. :meth:`Forecaster.calibrated` therefore needs the hours of day
(UTC) of the rows it calibrates (``conformal.target_hours``); a forecaster saved
before the per-level calibration holds central-interval offsets ``(H, M, K)`` and
still applies them (``conformal.apply_central_offsets``).

:meth:`Forecaster.forecast` takes recent history (a wide frame indexed by UTC
time, or the store's long rows) and returns a :class:`prescale.forecast.Forecast`
for the ``H`` steps after the last row. It needs :attr:`history_steps` rows of
every one of its :attr:`inputs` (all the metrics it was trained on): the most any
component's ``history_needed`` says (the LSTM needs its last ``L`` rows observed,
the daily baselines a day or more).

On disk (``save``/``load``): ``forecaster.json`` (metadata, weights, offsets)
plus one folder per component, ``component-<i>-<name>``, written by the component
and read back by the class registered under ``<name>`` (``components.py``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.component import Component
from models.components import component_folder, load_component
from models.conformal import apply_central_offsets, apply_offsets, target_hours
from models.series import Panel, panel_from_long, panel_from_wide
from models.torch_inference import Request, run_requests
from prescale.forecast import Forecast

META_FILE = "forecaster.json"


class ForecasterInputError(ValueError):
    """The history handed to a forecaster cannot be forecast from (too short, gaps, wrong metrics)."""


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
    offsets: np.ndarray  # (B, H, M, Q) per hour bin and level; (H, M, K) in a forecaster saved before them
    part: int = 0  # which series' scaling of a global component (the LSTM) this forecaster uses
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def inputs(self) -> tuple[str, ...]:
        """The stored metrics :meth:`forecast` reads (the ones it was trained on and forecasts): a caller must
        read all of them, not only the ones it needs forecast."""
        return self.metrics

    @property
    def history_steps(self) -> int:
        """Rows of history :meth:`forecast` wants (the most any component needs)."""
        return max(c.history_needed() for c in self.components)

    def raw(self, panel: Panel, origins: np.ndarray) -> np.ndarray:
        """Uncalibrated quantiles ``(W, H, M, Q)`` from each origin (for backtests and re-scoring)."""
        parts = [c.predict_at(panel, origins, part=self.part) for c in self.components]
        return _combine(parts, self.weights)

    @property
    def calibration_bins(self) -> int:
        """Hour-of-day bins of the offsets (1 for an old forecaster's central-interval offsets)."""
        return int(self.offsets.shape[0]) if self.offsets.ndim == 4 else 1

    def calibrated(self, raw: np.ndarray, *, hours: np.ndarray | None = None) -> np.ndarray:
        """Apply the stored conformal offsets to raw quantiles ``(W, H, M, Q)``.

        ``hours``: the hour of day (UTC) of each target row ``(W, H)``, ``index[origin] + (h + 1) * step``
        (``conformal.target_hours``); required when the offsets have more than one hour bin.
        """
        if self.offsets.ndim == 3:
            return apply_central_offsets(raw, self.offsets, self.quantiles)
        return apply_offsets(raw, self.offsets, hours=hours, median=self.quantiles.index(0.5))

    def target_hours(self, panel: Panel, origins: np.ndarray) -> np.ndarray:
        """The hours of day of the target rows of forecasts from ``origins`` of ``panel`` ``(W, H)``."""
        return target_hours(panel.index, origins, self.horizon, self.step_seconds)

    def forecast(self, history: pd.DataFrame) -> Forecast:
        """The calibrated forecast for the ``horizon`` steps after the last row of ``history``."""
        panel = self._panel(history)
        return self._finish(panel, [c.forecast(panel, part=self.part) for c in self.components])

    def _finish(self, panel: Panel, parts: Sequence[np.ndarray]) -> Forecast:
        """The components' raw quantiles ``(H, M, Q)`` after ``panel`` -> the calibrated :class:`Forecast`."""
        hours = self.target_hours(panel, np.array([len(panel) - 1]))
        values = self.calibrated(_combine([p[None] for p in parts], self.weights), hours=hours)[0]
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
            sub = folder / component_folder(i, component)
            sub.mkdir(parents=True, exist_ok=True)
            component.save(sub)
            names.append(sub.name)
        meta = {
            "candidate": self.candidate, "metrics": list(self.metrics), "step_seconds": self.step_seconds,
            "horizon": self.horizon, "quantiles": list(self.quantiles), "components": names,
            "weights": self.weights.tolist(), "offsets": self.offsets.tolist(),
            "lstm_part": self.part,  # the key predates other global components; kept so every saved model loads
            "info": self.info,
        }
        (folder / META_FILE).write_text(json.dumps(meta, indent=1, default=str))
        return folder

    @staticmethod
    def load(folder: Path) -> Forecaster:
        meta = json.loads((folder / META_FILE).read_text())
        components = [load_component(folder / name) for name in meta["components"]]
        return Forecaster(
            candidate=meta["candidate"], metrics=tuple(meta["metrics"]), step_seconds=meta["step_seconds"],
            horizon=meta["horizon"], quantiles=tuple(meta["quantiles"]), components=components,
            weights=np.asarray(meta["weights"], dtype=np.float64), offsets=np.asarray(meta["offsets"]),
            part=meta.get("lstm_part", 0), info=meta.get("info", {}),
        )


def forecast_many(jobs: Sequence[tuple[Forecaster, pd.DataFrame]]) -> list[Forecast | Exception]:
    """Each job's ``forecaster.forecast(history)``, in order; a job that fails gives its exception (never raised),
    so one app's bad history does not stop the others.

    The torch components (the LSTM's networks, TiDE...) are not run job by job: each gives its input windows
    (``forecast_request``), the windows of one network go through one forward pass
    (``torch_inference.run_requests``), and each job is finished (combined, calibrated) from its outputs. The
    other components (baselines, ridge) forecast as they would alone.
    """
    out: list[Forecast | Exception] = [None] * len(jobs)  # type: ignore[list-item]
    pending: list[tuple[int, Panel, list[Any]]] = []
    requests: list[Request] = []
    for i, (forecaster, history) in enumerate(jobs):
        try:
            panel = forecaster._panel(history)
            parts: list[Any] = []
            for component in forecaster.components:
                make = getattr(component, "forecast_request", None)
                if make is None:
                    parts.append(component.forecast(panel, part=forecaster.part))
                else:
                    parts.append(len(requests))
                    requests.append(make(panel, part=forecaster.part))
            pending.append((i, panel, parts))
        except Exception as exc:  # noqa: BLE001 - returned to the caller, who records it per app
            out[i] = exc
    ran = run_requests(requests)
    for i, panel, parts in pending:
        try:
            arrays = [ran[p] if isinstance(p, int) else p for p in parts]
            failed = next((a for a in arrays if isinstance(a, Exception)), None)
            if failed is not None:
                raise failed
            out[i] = jobs[i][0]._finish(panel, arrays)
        except Exception as exc:  # noqa: BLE001 - as above
            out[i] = exc
    return out


def _combine(parts: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """``sum_c w[c, h] * F_c[:, h]`` over components; each part is ``(W, H, M, Q)``."""
    stacked = np.stack(parts)  # (C, W, H, M, Q)
    return np.einsum("ch,cwhmq->whmq", weights, stacked)
