"""The stretch the before-use SLO tuning replays: a training's held-out tail with its champion's forecasts.

``prescale.slo.tuning.tune`` needs history the forecaster did not see, and the forecasts the forecaster made
there. A training (``models.train``) already has both: its held-out tail (rows from ``split.val_stop``) and,
for the best candidate, calibrated quantiles ``test_quantiles`` ``(W, H, M, Q)`` at every test origin, out of
sample (fitted on rows before ``split.train_stop``, calibrated online with outcomes known at each origin).
:func:`stretch_input` turns them into a :class:`~prescale.replay.ReplayInput`; nothing is re-fitted.

**Rows.** The stretch is the panel's rows ``[o_0 + 1, T)``, ``o_0`` the first test origin. Replayed row ``r``
is decided with the forecast made at origin ``r - 1`` (for rows ``r .. r + H - 1``: the replay's convention,
``ReplayInput.forecast[t]`` made at step ``t``'s decision); rows whose previous row is no test origin (a gap,
or the last ``H`` rows, whose targets lie past the panel) have a NaN forecast, where the decision falls back
to its reactive floor, as the loop does when a forecast is missing. The first ``warm`` steps are a warm-up,
``warm = ceil(max(warmup_minutes, 2 x the fleet's slowest lead) / step)`` (``prescale.replay.inputs``'s
rule), and the rest is scored; fewer than ``min_scored_minutes`` scored is too short to tune on.

**Units** (the orchestrator's, ``prescale.orchestrate.sources``, and the replay's *declared* mode): profile
metric ``m`` with a ``source`` among the panel's metrics has demand ``x_source[t] * source_scale[m]``; the
others are 0 (the loop cannot forecast them and covers them at zero). Forecast quantiles map the same way (a
positive factor commutes with quantiles). ``history_peak`` is the highest demand before the stretch.

Pure compute: no settings, no I/O. Every reason the stretch cannot be built comes back as a string, so a
training carries on without a tuned policy.
"""

from __future__ import annotations

import math

import numpy as np

from models.train import PanelResult
from prescale.catalog import AppProfile, Catalog
from prescale.fleet import Fleet, FleetError, build_fleet
from prescale.replay.engine import ReplayInput


def stretch_input(
    result: PanelResult, profile: AppProfile, catalog: Catalog, *, warmup_minutes: float = 60.0,
    min_scored_minutes: float = 1440.0,
) -> tuple[ReplayInput, Fleet] | str:
    """The tuning stretch of ``result`` in ``profile``'s units and the app's fleet, or why there is none."""
    if result.skipped or result.best is None or result.split is None:
        return f"no trained candidate ({result.skipped or 'nothing trained'})"
    panel, split = result.panel, result.split
    best = result.candidates[result.best]
    bound = bindings(profile, panel.metrics)
    if not bound:
        declared = {m.name: m.source for m in profile.metrics if m.source}
        return (f"no metric of profile {profile.name!r} has a source among the trained metrics "
                f"{list(panel.metrics)} (declared sources: {declared or 'none'}); the loop could not forecast it")
    try:
        fleet = build_fleet(catalog, profile, step_seconds=panel.step_seconds)
    except FleetError as exc:
        return f"no fleet: {exc}"
    origins = np.asarray(split.test_origins, dtype=int)
    first = int(origins[0]) + 1
    rows = len(panel) - first
    step = panel.step_seconds
    warm = math.ceil(max(warmup_minutes * 60.0, 2.0 * float(fleet.lead_seconds.max())) / step)
    need = math.ceil(min_scored_minutes * 60.0 / step)
    if rows - warm < need:
        return (f"the held-out tail is too short to tune on: {rows} rows of {step} s after the first test origin, "
                f"{warm} of them warm-up, leaves {max(rows - warm, 0)} scored steps; need {need} "
                f"({min_scored_minutes:g} minutes): train on more history (forecast.history_days)")
    demand = to_profile_units(panel.values[first:], bound, len(profile.metrics))
    demand[~np.isfinite(demand).all(axis=1)] = np.nan  # a row missing a source is not observed at all
    before = to_profile_units(panel.values[:first], bound, len(profile.metrics))
    peak = np.nanmax(before, axis=0) if np.isfinite(before).all(axis=1).any() else np.zeros(len(profile.metrics))
    forecast = _forecasts(best.test_quantiles, origins, first=first, rows=rows, bound=bound,
                          width=len(profile.metrics))
    inp = ReplayInput(
        app=profile.name, index=panel.index[first:], demand=demand, metrics=profile.metric_names,
        step_seconds=step, start=warm, forecast=forecast, quantiles=tuple(best.forecaster.quantiles),
        history_peak=np.nan_to_num(peak, nan=0.0),
        source={"stretch": "held-out tail", "forecaster": best.name, "mase": round(best.scores.mase, 6),
                "decision": None if best.scores.decision is None else round(best.scores.decision, 6),
                "origins": len(origins),
                "demand": {profile.metric_names[j]: {"metric": panel.metrics[column], "scale": scale}
                           for j, (column, scale) in bound.items()}},
    )
    return inp, fleet


def bindings(profile: AppProfile, metrics: tuple[str, ...]) -> dict[int, tuple[int, float]]:
    """Position of each bound profile metric -> (its source's column in ``metrics``, ``source_scale``)."""
    return {j: (metrics.index(m.source), m.source_scale)
            for j, m in enumerate(profile.metrics) if m.source and m.source in metrics}


def to_profile_units(values: np.ndarray, bound: dict[int, tuple[int, float]], width: int) -> np.ndarray:
    """Panel values ``(..., M_panel)`` -> demand ``(..., width)``: bound metrics scaled, the others 0."""
    out = np.zeros((*values.shape[:-1], width))
    for j, (column, scale) in bound.items():
        out[..., j] = values[..., column] * scale
    return out


def _forecasts(quantiles: np.ndarray, origins: np.ndarray, *, first: int, rows: int,
               bound: dict[int, tuple[int, float]], width: int) -> np.ndarray:
    """``(rows, H, width, Q)``: row ``first + i`` gets the forecast made at origin ``first + i - 1``, else NaN."""
    W, H, _, Q = quantiles.shape
    if len(origins) != W:
        raise ValueError(f"the best candidate has {W} held-out forecasts for {len(origins)} test origins")
    mapped = np.moveaxis(to_profile_units(np.moveaxis(quantiles, 2, -1), bound, width), -1, 2)  # (W, H, width, Q)
    out = np.full((rows, H, width, Q), np.nan)
    out[origins + 1 - first] = mapped
    return out
