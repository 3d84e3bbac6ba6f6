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
    Prepared + ForecastBatch -> build_input -> ``prescale.replay.ReplayInput`` (the window); build_stretch ->
      the tuning stretch's (ex ante: the SLO policy is tuned on it, ``prescale.slo``)

Pure compute: no Prefect, no I/O (the LSTM keeps checkpoints in ``scratch`` while it fits).
"""

from __future__ import annotations

import math
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
    stretch: Window | None = None  # the SLO tuning stretch just before the window (ex ante), or None
    stretch_note: str = ""  # why there is none

    @property
    def forecast_window(self) -> Window:
        """The rows the forecaster forecasts: from the stretch's start when there is one (it trains before it)."""
        s, w = self.stretch, self.window
        return w if s is None else Window(w.rows, s.replay_start, s.scored_start, w.horizon, w.step_seconds)

    @property
    def stretch_offset(self) -> int:
        """Forecast rows before the window's first (the stretch's length; 0 without one)."""
        return self.window.replay_start - self.forecast_window.replay_start


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
    min_history_days: float = 1.0, tune_days: float = 0.0, min_stretch_hours: float = 6.0,
    min_train_days: float = 1.5,
) -> Prepared:
    """Choose the metric, put it on its grid, place the window and map units (see ``prescale.replay.inputs``).

    ``tune_days`` > 0: also a tuning stretch of that many days just before the window (fewer when the history
    is short, keeping ``min_train_days`` to train on), with the window's warm-up and at least
    ``min_stretch_hours`` scored; the forecaster then trains before the stretch and forecasts both, out of
    sample (the ex-ante comparison, ``prescale.slo.exante``).
    """
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
    stretch, note = None, ""
    if tune_days > 0:
        step = panel.step_seconds
        train = round(max(min_history_days, min_train_days) * 86_400 / step)
        steps = min(round(tune_days * 86_400 / step), window.replay_start - train)
        need = window.warmup + math.ceil(min_stretch_hours * 3600 / step)
        if steps >= need:
            start = window.replay_start - steps
            stretch = Window(window.replay_start, start, start + window.warmup, window.horizon, step)
        else:
            note = (f"no tuning stretch: {window.replay_start} history rows leave {max(steps, 0)} before the window "
                    f"after {train} to train on; the stretch needs {need} (warm-up "
                    f"{window.warmup} + {min_stretch_hours:g} h)")
    return Prepared(app, profile, fleet, panel, window, dmap, stretch, note)


def history_panel(panel: Panel, stop: int, days: float | None) -> Panel:
    """Rows before ``stop`` (the replay's start), at most ``days`` of them."""
    first = 0 if days is None else max(0, stop - round(days * 86_400 / panel.step_seconds))
    return panel.rows(first, stop)


def historical_forecasts(
    panel: Panel, window: Window, *, candidate: str = "best", config: TrainConfig, history_days: float | None = None,
    scratch: Path | None = None,
) -> ForecastBatch:
    """Fit on the history only, then one forecast per replayed step from its origin (see the module docstring).

    ``candidate``: ``best`` (train every candidate, keep the lowest decision score, ``models.train.rank``) or one
    baseline's name (its raw quantiles, uncalibrated).
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
        raw = forecaster.raw(panel, window.origins)
        values = forecaster.calibrated(raw, hours=forecaster.target_hours(panel, window.origins))
        name, scores = result.best, {k: _rank_numbers(v) for k, v in result.scores().items()}
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


def _rank_numbers(scores: dict[str, Any]) -> dict[str, Any]:
    """What a replay report shows of a candidate: its decision score and MASE."""
    return {"decision": scores.get("decision"), "mase": scores.get("mase")}


def forecast_config(forecast_settings: Any, window: Window, *, preset: str) -> TrainConfig:
    """The production training config, with the horizon the replay needs (slowest lead + lookahead)."""
    horizon_minutes = window.horizon * window.step_seconds / 60.0
    return replace(TrainConfig.from_settings(forecast_settings, preset=preset), horizon_minutes=horizon_minutes)


def build_input(prepared: Prepared, batch: ForecastBatch | None) -> ReplayInput:
    """The replay's input: the window's demand in the profile's units, and the batch's forecasts (if any).

    ``batch`` forecasts ``prepared.forecast_window`` (the stretch's rows first, when there is a stretch).
    """
    return make_input(
        prepared.app, prepared.panel.index, prepared.panel.values[:, 0], prepared.window, prepared.dmap,
        forecast=None if batch is None else batch.values[prepared.stretch_offset :],
        quantiles=batch.quantiles if batch else (0.5,),
        source={} if batch is None else batch.info(),
    )


def build_stretch(prepared: Prepared, batch: ForecastBatch | None) -> ReplayInput | None:
    """The tuning stretch's input (demand and the batch's out-of-sample forecasts), or None without one."""
    stretch = prepared.stretch
    if stretch is None or batch is None:
        return None
    rows = stretch.rows
    return make_input(
        prepared.app, prepared.panel.index[:rows], prepared.panel.values[:rows, 0], stretch, prepared.dmap,
        forecast=batch.values[: prepared.stretch_offset], quantiles=batch.quantiles, source=batch.info(),
    )
