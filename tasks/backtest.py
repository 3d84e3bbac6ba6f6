"""Prefect tasks for the backtest: read, forecast the window historically, replay each policy, report.

The replay itself is pure (``prescale.replay``); the forecaster lives in ``models``. This module joins them:

- ``load-backtest-history`` (retried): every stored row of the app;
- ``prepare-backtest``: the demand series on its grid (``models.series``), the metric that drives demand,
  the window and the unit mapping (``prescale.replay.inputs``);
- ``forecast-window``: trains the forecaster on the history *before* the replay (never on the window),
  then forecasts every replayed step at once from its own origin (batched historical forecasts: the
  baselines in one pass over the series, the LSTM through darts' dataset path), and builds the
  :class:`~prescale.replay.ReplayInput`; pure compute, no retries;
- ``replay-policy``: one policy's whole sweep (or the oracle); mapped over the policies;
- ``write-backtest-report`` (retried): the PNGs and ``report.json`` under the output folder;
- ``publish-backtest-artifact``: the results table as a Prefect markdown artifact.

Progress: every finished run calls the functions in :data:`progress_listeners` (``prescale backtest``
adds its progress bar there) and is logged. Large objects travel between tasks in memory
(``cache_policy=NONE``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE

from models.baselines import BASELINES
from models.series import Panel, panel_from_long
from models.train import TrainConfig, train_panels
from prescale.catalog import AppProfile, Catalog, load_catalog, resolve_profile
from prescale.metrics.store import MetricsStore
from prescale.replay import BacktestResult, Fleet, ReplayConfig, ReplayError, ReplayInput, build_fleet
from prescale.replay.covers import CoverCache
from prescale.replay.engine import backtest as run_backtest
from prescale.replay.engine import context, count_runs, oracle_result, sweep
from prescale.replay.inputs import DemandMap, Window, choose_metric, demand_map, make_input, plan_window
from prescale.replay.plots import write_plots

IO_RETRIES = 3
IO_RETRY_DELAYS = [1, 5, 15]
progress_listeners: list[Callable[[int, int, str], None]] = []


def notify(done: int, total: int, message: str) -> None:
    for listener in list(progress_listeners):
        listener(done, total, message)


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


# -- pure helpers (the benchmark uses them too) ------------------------------------------------------


def replay_config(rs: Any, **overrides: Any) -> ReplayConfig:
    """A :class:`ReplayConfig` from a ``ReplaySettings`` group."""
    fields = {
        "quantiles": tuple(rs.quantiles),
        "headrooms": tuple(rs.headrooms),
        "targets": tuple(rs.targets),
        "reactive_types": tuple(rs.reactive_types),
        "static_factors": tuple(rs.static_factors),
        "hold_minutes": rs.hold_minutes,
        "tolerance": rs.tolerance,
        "stabilisation_seconds": rs.stabilisation_seconds,
        "consolidation_margin": rs.consolidation_margin,
        "cover_resolution": rs.cover_resolution,
        "oracle_gap": rs.oracle_gap,
        "oracle_time_limit_seconds": rs.oracle_time_limit_seconds,
    }
    return ReplayConfig(**{**fields, **overrides})


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
    return make_input(
        prepared.app, prepared.panel.index, prepared.panel.values[:, 0], prepared.window, prepared.dmap,
        forecast=None if batch is None else batch.values,
        quantiles=batch.quantiles if batch else (0.5,),
        source={} if batch is None else batch.info(),
    )


# -- tasks ---------------------------------------------------------------------------------------------


@task(name="load-backtest-history", retries=IO_RETRIES, retry_delay_seconds=IO_RETRY_DELAYS, cache_policy=NONE)
def load_history(app: str, store_root: str) -> pd.DataFrame:
    rows = MetricsStore(store_root).read(app)
    get_run_logger().info("%s: %s stored rows", app, f"{len(rows):,}")
    return rows


@task(name="load-backtest-profile", retries=IO_RETRIES, retry_delay_seconds=IO_RETRY_DELAYS, cache_policy=NONE)
def load_profile(app: str, catalog_path: str, profiles_dir: str, profile: str | None) -> tuple[Catalog, AppProfile]:
    return load_catalog(catalog_path), resolve_profile(app, profiles_dir, profile)


@task(name="prepare-backtest", cache_policy=NONE)
def prepare_task(app: str, rows: pd.DataFrame, catalog: Catalog, profile: AppProfile, rs: Any) -> Prepared:
    prepared = prepare(app, rows, profile, catalog, days=rs.days, metric=rs.metric, peak_scale=rs.peak_scale,
                       warmup_minutes=rs.warmup_minutes, lookahead_minutes=rs.lookahead_minutes)
    w = prepared.window
    get_run_logger().info(
        "%s: metric %s at %d s, %d history rows, %d warm-up and %d scored steps, horizon %d", app,
        prepared.dmap.source, w.step_seconds, w.replay_start, w.warmup, w.rows - w.scored_start, w.horizon,
    )
    return prepared


@task(name="forecast-window", cache_policy=NONE)
def forecast_task(prepared: Prepared, forecast_settings: Any, rs: Any, with_forecast: bool, *,
                  scratch: Path | None = None) -> ReplayInput:
    if not with_forecast:
        return build_input(prepared, None)
    config = forecast_config(forecast_settings, prepared.window, preset=rs.preset)
    batch = historical_forecasts(prepared.panel, prepared.window, candidate=rs.forecaster, config=config,
                                 history_days=forecast_settings.history_days, scratch=scratch)
    get_run_logger().info("%s: %s trained in %.1f s, %d forecasts in %.1f s", prepared.app, batch.candidate,
                          batch.train_seconds, len(batch.values), batch.predict_seconds)
    return build_input(prepared, batch)


@task(name="replay-policy", cache_policy=NONE)
def replay_task(policy: str, inp: ReplayInput, fleet: Fleet, config: ReplayConfig, covers: CoverCache,
                offset: int, total: int):
    """One policy's sweep (or the oracle): returns ``(PolicyResult, OracleResult | None, seconds)``."""
    logger = get_run_logger()
    started = time.perf_counter()

    def progress(done: int, total_: int, message: str) -> None:
        logger.info("[%d/%d] %s", done, total_, message)
        notify(done, total_, message)

    if policy == "oracle":
        result, solved = oracle_result(inp, fleet, config, covers)
        progress(offset + 1, total, f"oracle: {solved.status} in {solved.seconds:.1f} s ({solved.message})")
        return result, solved, time.perf_counter() - started
    ctx = context(inp, fleet, config, covers)
    result = sweep(policy, inp, ctx, config, progress=progress, done=offset, total=total)
    return result, None, time.perf_counter() - started


@task(name="write-backtest-report", retries=IO_RETRIES, retry_delay_seconds=IO_RETRY_DELAYS, cache_policy=NONE)
def write_report(result: BacktestResult, folder: str) -> dict[str, str]:
    out = Path(folder)
    plots = write_plots(result, out)
    report = out / "report.json"
    report.write_text(json.dumps(result.to_dict(), indent=1, default=str))
    return {**plots, "report": str(report)}


@task(name="publish-backtest-artifact", retries=IO_RETRIES, retry_delay_seconds=IO_RETRY_DELAYS, cache_policy=NONE)
def publish_artifact(summary: dict[str, Any], files: dict[str, str]) -> None:
    create_markdown_artifact(key="backtest-results", markdown=markdown(summary, files),
                             description="Policies compared at equal violation budgets (prescale backtest).")


def markdown(summary: dict[str, Any], files: dict[str, str] | None = None) -> str:
    """The results table: headline scores and the cost at each violation budget, per policy."""
    window = summary["window"]
    budgets = list(next(iter(summary["budget_costs"].values()), {}).keys())
    lines = [
        f"# Backtest: {summary['app']} (profile {summary['profile']})", "",
        f"Window {window['start']} .. {window['end']}, {window['scored_steps']} steps of {window['step_seconds']} s; "
        f"demand from `{summary['source'].get('demand', {}).get('metric')}`, forecaster "
        f"`{summary['source'].get('forecaster', '-')}`.", "",
        "| policy | setting | cost USD | violation min | slack | migrations | "
        + " | ".join(f"cost at {b}" for b in budgets) + " |",
        "|---|---|---:|---:|---:|---:|" + "---:|" * len(budgets),
    ]
    for name, p in summary["policies"].items():
        costs = summary["budget_costs"].get(name, {})
        cells = " | ".join(_fmt(costs.get(b)) for b in budgets)
        lines.append(f"| {name} | {p.get('setting')} | {_fmt(p.get('cost'))} | {_fmt(p.get('slo_violation_minutes'))} "
                     f"| {_fmt(p.get('slack'))} | {p.get('migrations')} | {cells} |")
    lines += ["", "Predictive against the others at equal violation budgets:", ""]
    for budget, c in summary["comparison"].items():
        lines.append(f"- budget {budget}: {_pct(c.get('vs_reactive'))} cheaper than reactive, "
                     f"{_pct(c.get('vs_static'))} cheaper than static, {_pct(c.get('over_oracle'))} above the oracle")
    if files:
        lines += ["", "Files: " + ", ".join(f"`{path}`" for path in files.values())]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:,.2f}" if isinstance(value, float) else str(value)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1%}"


__all__ = ["ForecastBatch", "Prepared", "build_input", "historical_forecasts", "prepare", "progress_listeners",
           "replay_config", "run_backtest", "count_runs"]
