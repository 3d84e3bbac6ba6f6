"""Prefect tasks for the backtest: thin I/O steps around ``models.history`` and ``prescale.replay``.

- ``load-backtest-history`` (retried): every stored row of the app;
- ``load-backtest-profile`` (retried): the catalog and the app's profile;
- ``prepare-backtest``: the metric, its grid, the window and the unit mapping (``models.history.prepare``);
- ``forecast-window``: the forecaster fitted on the history before the window (before the SLO's tuning
  stretch, when there is one) and one forecast per replayed step (``models.history.historical_forecasts``),
  as the window's :class:`~prescale.replay.ReplayInput` and the stretch's; pure compute, no retries;
- ``replay-policy``: one registered policy's whole sweep (``prescale.replay.replay_policy``);
- ``ex-ante``: the SLO policy tuned on the stretch, run once over the window with its controller, against
  reactive's sweep at the same realised violations and at the HPA default (``prescale.slo.exante``), and
  against the published references' sweeps (AWS predictive scaling, Crane's EHPA) at the same violations;
- ``write-backtest-report`` (retried): the PNGs and ``report.json`` under the output folder;
- ``publish-backtest-artifact`` (retried): the results table (``prescale.replay.report``) as a markdown
  artifact, with the four plots embedded as small PNGs (``models.plots.shrink_png``: at most
  :data:`EMBED_MAX_BYTES` each: 10-43 KB for the bundled demo's apps, 100-135 KB of Markdown per artifact
  after base64); the full-size files stay under the output folder, named in the artifact.

  Why embedded rather than linked: Prefect's UI (v1 and v2 of Prefect 3) renders a Markdown image from a
  ``data:`` URI, and a plot on the worker's disk has no URL a browser can reach. An image artifact
  (``create_image_artifact``) needs such a URL (an MLflow server's ``get-artifact``, say), which an
  embedded run without servers does not have; a backtest is run on demand, so one artifact of a few hundred
  KB per run costs Prefect's database little.

Progress: every finished run calls the functions in :data:`progress_listeners` (``prescale backtest``
adds its progress bar there) and is logged. Large objects travel between tasks in memory
(``cache_policy=NONE``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE

from models.history import Prepared, build_input, build_stretch, forecast_config, historical_forecasts, prepare
from models.plots import data_uri, shrink_png
from prescale.catalog import AppProfile, Catalog, load_catalog, resolve_profile
from prescale.metrics.store import MetricsStore
from prescale.replay import BacktestResult, Fleet, PolicyResult, ReplayConfig, ReplayInput, replay_policy
from prescale.replay.covers import CoverCache
from prescale.replay.engine import context
from prescale.replay.frontier import savings
from prescale.replay.plots import write_plots
from prescale.replay.report import markdown
from prescale.slo.exante import ex_ante, frontier_cost
from prescale.slo.tuning import share

IO_RETRIES = 3
IO_RETRY_DELAYS = [1, 5, 15]
EMBED_MAX_BYTES = 45_000  # per embedded plot (before base64, which adds a third)
PLOTS = ("demand", "capacity", "frontier", "cumulative_cost")  # embedded in this order
progress_listeners: list[Callable[[int, int, str], None]] = []


def notify(done: int, total: int, message: str) -> None:
    for listener in list(progress_listeners):
        listener(done, total, message)


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
                       warmup_minutes=rs.warmup_minutes, lookahead_minutes=rs.lookahead_minutes,
                       tune_days=rs.tune_days)
    w = prepared.window
    get_run_logger().info(
        "%s: metric %s at %d s, %d history rows, %d warm-up and %d scored steps, horizon %d", app,
        prepared.dmap.source, w.step_seconds, w.replay_start, w.warmup, w.rows - w.scored_start, w.horizon,
    )
    return prepared


@task(name="forecast-window", cache_policy=NONE)
def forecast_task(prepared: Prepared, forecast_settings: Any, rs: Any, with_forecast: bool, *,
                  scratch: Path | None = None) -> tuple[ReplayInput, ReplayInput | None]:
    """The window's input and the tuning stretch's (None without forecasts or without a stretch)."""
    if not with_forecast:
        return with_history(build_input(prepared, None), prepared), None
    window = prepared.forecast_window
    config = forecast_config(forecast_settings, window, preset=rs.preset)
    batch = historical_forecasts(prepared.panel, window, candidate=rs.forecaster, config=config,
                                 history_days=forecast_settings.history_days, scratch=scratch)
    get_run_logger().info("%s: %s trained in %.1f s, %d forecasts in %.1f s", prepared.app, batch.candidate,
                          batch.train_seconds, len(batch.values), batch.predict_seconds)
    if prepared.stretch_note:
        get_run_logger().info("%s: %s", prepared.app, prepared.stretch_note)
    return with_history(build_input(prepared, batch), prepared), build_stretch(prepared, batch)


def with_history(inp: ReplayInput, prepared: Prepared) -> ReplayInput:
    """The window's input with the demand before it (the last 14 days), which the published references (AWS
    predictive scaling, Crane's DSP) learn from."""
    history = prepared.panel.values[: prepared.window.replay_start, 0]
    return inp.with_history(prepared.dmap.apply(history))


@task(name="replay-policy", cache_policy=NONE)
def replay_task(policy: str, inp: ReplayInput, fleet: Fleet, config: ReplayConfig, covers: CoverCache,
                offset: int, total: int) -> tuple[PolicyResult, float]:
    """One registered policy's sweep: its result and the seconds it took."""
    logger = get_run_logger()
    started = time.perf_counter()

    def progress(done: int, total_: int, message: str) -> None:
        logger.info("[%d/%d] %s", done, total_, message)
        notify(done, total_, message)

    ctx = context(inp, fleet, config, covers)
    result = replay_policy(policy, inp, ctx, config, progress=progress, done=offset, total=total)
    return result, time.perf_counter() - started


@task(name="ex-ante", cache_policy=NONE)
def ex_ante_task(stretch: ReplayInput, inp: ReplayInput, fleet: Fleet, budget: float, reactive: PolicyResult,
                 config: ReplayConfig, covers: CoverCache,
                 references: dict[str, PolicyResult] | None = None) -> dict[str, Any]:
    """The SLO policy tuned on ``stretch``, run over ``inp``, against ``reactive`` (``prescale.slo.exante``) and
    the published references' sweeps ``references`` read the same way (:func:`at_same_violations`)."""
    logger = get_run_logger()

    def progress(done: int, total: int, message: str) -> None:
        logger.info("tuning [%d/%d] %s", done, total, message)
        notify(done, total, f"tuning {message}")

    result = ex_ante(stretch, inp, fleet, budget, reactive=reactive, config=config, covers=covers,
                     progress=progress)
    out = {**result.to_dict(), **at_same_violations(references or {}, result.run.violation_share,
                                                    result.run.score.cost)}
    logger.info("ex ante at a %.2g%% budget: %s (%s), %.3f%% violations, cost %.2f; reactive at the same "
                "violations %s", 100 * budget, out["policy"]["rule"], out["policy"]["setting"],
                100 * out["predictive"]["violation_share"], out["predictive"]["cost"],
                out["reactive_at_same_violations"])
    return out


def at_same_violations(references: dict[str, PolicyResult], level: float, cost: float) -> dict[str, Any]:
    """Each reference's cost at violation share ``level`` on its swept frontier (as reactive's,
    ``prescale.slo.exante.frontier_cost``) and prescale's saving against it: ``<name>_at_same_violations``,
    ``vs_<name>_same``."""
    out: dict[str, Any] = {}
    for name, result in references.items():
        same, _ = frontier_cost([(share(p.score), p.score.cost) for p in result.points], level)
        out[f"{name}_at_same_violations"] = None if same is None else round(same, 4)
        out[f"vs_{name}_same"] = savings(same, cost)
    return out


@task(name="write-backtest-report", retries=IO_RETRIES, retry_delay_seconds=IO_RETRY_DELAYS, cache_policy=NONE)
def write_report(result: BacktestResult, folder: str) -> dict[str, str]:
    out = Path(folder)
    plots = write_plots(result, out)
    report = out / "report.json"
    report.write_text(json.dumps(result.to_dict(), indent=1, default=str))
    return {**plots, "report": str(report)}


@task(name="publish-backtest-artifact", retries=IO_RETRIES, retry_delay_seconds=IO_RETRY_DELAYS, cache_policy=NONE)
def publish_artifact(summary: dict[str, Any], files: dict[str, str]) -> None:
    """The results table with the plots of ``files`` embedded (see the module docstring)."""
    images = embedded_plots(files)
    text = markdown(summary, files, images)
    get_run_logger().info("backtest artifact: %s KB of Markdown, %d plots embedded", f"{len(text) / 1000:.0f}",
                          len(images))
    create_markdown_artifact(key="backtest-results", markdown=text,
                             description="Policies compared at equal violation budgets, with the plots "
                                         "(prescale backtest).")


def embedded_plots(files: dict[str, str], *, max_bytes: int = EMBED_MAX_BYTES) -> dict[str, str]:
    """name -> ``data:`` URI of each plot of :data:`PLOTS` in ``files`` (shrunk to ``max_bytes``)."""
    return {name: data_uri(shrink_png(Path(files[name]).read_bytes(), max_bytes=max_bytes))
            for name in PLOTS if name in files}
