"""Historical forecasts for a replay: the window placed on the app's series, a forecaster fitted on the
history before it, and one forecast per replayed step from its own origin.

How data moves (``tasks/backtest.py`` wraps each step in a task; ``benchmarks/replay.py`` calls them
directly)::

    stored rows of one app -> prepare: the metric that drives demand (``prescale.replay.inputs``), its
      series on a regular grid (``models.series``), the window, the unit mapping  -> Prepared
    Prepared + TrainConfig (``forecast_config``: the production preset, horizon = slowest lead + lookahead)
      -> historical_forecasts: fit on the rows before the window only (``history_panel``: never on the
         window), then every replayed step at once from its origin (the baselines in one pass over the
         series, the LSTM through darts' dataset path)  -> ForecastBatch
    Prepared + ForecastBatch -> build_input -> ``prescale.replay.ReplayInput``

Pure compute: no Prefect, no I/O (the LSTM keeps checkpoints in ``scratch`` while it fits).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.baselines import BASELINES
from models.series import Panel, panel_from_long
from models.train import TrainConfig, train_panels
from prescale.catalog import AppProfile, Catalog
from prescale.replay import Fleet, ReplayError, ReplayInput, build_fleet
from prescale.replay.inputs import DemandMap, Window, choose_metric, demand_map, make_input, plan_window


@dataclass
class Prepared:
    """One app's series, the metric that drives it, the window and the unit mapping."""

    app: str
    profile: AppProfile
    fleet: Fleet
    panel: Panel
    window: Window
    dmap: DemandMap


@dataclass(frozen=True)
class ForecastBatch:
    """Source-unit quantiles ``(steps, H, Q)`` for every replayed step, and how they were made."""

    values: np.ndarray
    quantiles: tuple[float, ...]
    candidate: str
    train_seconds: float
    predict_seconds: float
    scores: dict[str, Any]

    def info(self) -> dict[str, Any]:
        return {
            "forecaster": self.candidate,
            "train_seconds": round(self.train_seconds, 2),
            "forecast_seconds": round(self.predict_seconds, 2),
            "scores": self.scores,
        }


def prepare(
    app: str, rows: pd.DataFrame, profile: AppProfile, catalog: Catalog, *, days: float, metric: str | None = None,
    peak_scale: float | None = None, warmup_minutes: float = 60.0, lookahead_minutes: float = 30.0,
    min_history_days: float = 1.0,
) -> Prepared:
    """Choose the metric, put it on its grid, place the window and map units (see ``prescale.replay.inputs``)."""
    if rows.empty:
        raise ReplayError(f"app {app!r} has no metrics in the store: ingest some first (prescale ingest)")
    source = choose_metric(sorted(rows["metric"].unique()), profile, metric)
    panel = panel_from_long(rows[rows["metric"] == source], metrics=[source])
    fleet = build_fleet(catalog, profile, step_seconds=panel.step_seconds)
    window = plan_window(
        len(panel), panel.step_seconds, days=days, max_lead_seconds=float(fleet.lead_seconds.max()),
        warmup_minutes=warmup_minutes, lookahead_minutes=lookahead_minutes,
        min_history_rows=round(min_history_days * 86_400 / panel.step_seconds),
    )
    dmap = demand_map(panel.values[: window.replay_start, 0], profile, source, peak_scale=peak_scale)
    return Prepared(app, profile, fleet, panel, window, dmap)


def history_panel(panel: Panel, stop: int, days: float | None) -> Panel:
    """Rows before ``stop`` (the replay's start), at most ``days`` of them."""
    first = 0 if days is None else max(0, stop - round(days * 86_400 / panel.step_seconds))
    return replace(panel, index=panel.index[first:stop], values=panel.values[first:stop])


def historical_forecasts(
    panel: Panel, window: Window, *, candidate: str = "best", config: TrainConfig, history_days: float | None = None,
    scratch: Path | None = None,
) -> ForecastBatch:
    """Fit on the history only, then one forecast per replayed step from its origin (see the module docstring).

    ``candidate``: ``best`` (train every candidate, keep the lowest MASE) or one baseline's name.
    ``scratch``: where the LSTM keeps its checkpoints while it fits (``tasks.train.checkpoints_folder``).
    """
    train = history_panel(panel, window.replay_start, history_days)
    started = time.perf_counter()
    if candidate == "best":
        result = train_panels([(f"{panel.metrics[0]}", train)], config, scratch=scratch)[0]
        if result.skipped or result.best is None:
            raise ReplayError(f"cannot train a forecaster on the {len(train)} rows before the window: {result.skipped}")
        forecaster = result.candidates[result.best].forecaster
        trained = time.perf_counter()
        values = forecaster.calibrated(forecaster.raw(panel, window.origins))
        name, scores = result.best, {k: v.get("mase") for k, v in result.scores().items()}
    else:
        if candidate not in BASELINES:
            raise ReplayError(f"unknown forecaster {candidate!r}; use 'best' or one of {sorted(BASELINES)}")
        model = BASELINES[candidate](season=panel.season, horizon=config.steps(panel.step_seconds)[1],
                                     quantiles=config.quantiles)
        model.fit(train.values, fit_steps=int(config.baseline_fit_days * panel.season))
        trained = time.perf_counter()
        values = model.predict(panel.values, window.origins)
        name, scores = candidate, {}
    predicted = time.perf_counter()
    return ForecastBatch(values[:, :, 0, :], tuple(config.quantiles), name, trained - started, predicted - trained,
                         scores)


def forecast_config(forecast_settings: Any, window: Window, *, preset: str) -> TrainConfig:
    """The production training config, with the horizon the replay needs (slowest lead + lookahead)."""
    horizon_minutes = window.horizon * window.step_seconds / 60.0
    return replace(TrainConfig.from_settings(forecast_settings, preset=preset), horizon_minutes=horizon_minutes)


def build_input(prepared: Prepared, batch: ForecastBatch | None) -> ReplayInput:
    """The replay's input: the window's demand in the profile's units, and the batch's forecasts (if any)."""
    return make_input(
        prepared.app, prepared.panel.index, prepared.panel.values[:, 0], prepared.window, prepared.dmap,
        forecast=None if batch is None else batch.values,
        quantiles=batch.quantiles if batch else (0.5,),
        source={} if batch is None else batch.info(),
    )
