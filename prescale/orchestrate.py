"""The pure parts of one orchestrate decision: demand in the profile's terms, the fallback, the floor.

The orchestrate flow (``flows/orchestrate.py``) does, per app: read recent rows ->
current phase -> champion forecast (or the reactive fallback) -> **demand to
cover** -> allocation -> plan -> apply -> ledger. This module holds the steps in
between that are plain arithmetic, so they are unit-tested and replayable:

**Binding.** Forecasters speak the store's metric names (``app.requests_per_s``);
profiles speak demand (``requests_per_second``). A profile metric with
``source: app.requests_per_s`` and ``source_scale: s`` is fed by that stored
metric times ``s`` (:func:`bind_forecast`, :func:`observed_demand`). A profile
metric with no source has no data to forecast, and one whose source the
champion was not trained on has no forecast: both are ``unbound``, covered at
zero (the reactive floor raises the second kind to its observed demand), and the
decision says which and why.

**Reactive fallback** (:func:`reactive_forecast`): when the champion is missing,
fails, or is outside its error budget, demand is the last observed value held
flat over the horizon, divided by the target utilisation (the same headroom rule
an HPA applies), with a narrow band.

**Reactive floor** (:func:`apply_floor`): when observed demand is above the
forecast's upper band now, the forecast was wrong at the worst moment: every
quantile at every step is raised to at least the observed value over the target
utilisation, so capacity rises at once rather than after the model catches up.

With ``n`` the last observed demand of metric ``m``, ``u`` the target utilisation
and ``F[t, m, k]`` the forecast quantiles::

    fallback:  F[t, m, k] = n / u                        (all t, k; +-spread around it)
    floor:     F[t, m, k] = max(F[t, m, k], n / u)       when n > F[0, m, top quantile]
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from prescale.catalog import AppProfile
from prescale.decide_inputs import Knobs
from prescale.forecast import Forecast
from prescale.settings import Settings


def knobs_from(settings: Settings) -> Knobs:
    """The predictive rule's knobs, the same for every caller (the loop, ``prescale plan`` and ``apply``):
    the covered quantile ``search.covered_quantile``, the headroom ``1 / u - 1`` of
    ``orchestrate.target_utilisation`` (the floor's and the fallback's ``u``; ``prescale.decide_inputs``),
    and the replay's hold window and consolidation margin (``replay.hold_minutes``,
    ``replay.consolidation_margin``), so the loop runs the rule the backtest scores."""
    return Knobs.from_utilisation(settings.search.covered_quantile, settings.orchestrate.target_utilisation,
                                  hold_minutes=settings.replay.hold_minutes,
                                  margin=settings.replay.consolidation_margin)  # fmt: skip


def sources(profile: AppProfile) -> dict[str, tuple[str, float]]:
    """Profile metric -> (stored metric, scale), for the metrics that have a source."""
    return {m.name: (m.source, m.source_scale) for m in profile.metrics if m.source}


def observed_demand(rows: pd.DataFrame, profile: AppProfile) -> dict[str, float]:
    """The newest observed value of each bound profile metric (from the store's long rows)."""
    latest = rows.dropna(subset=["value"]).sort_values("ts").groupby("metric")["value"].last()
    out = {}
    for name, (source, scale) in sources(profile).items():
        if source in latest.index:
            out[name] = float(latest[source]) * scale
    return out


def bind_forecast(forecast: Forecast, profile: AppProfile) -> tuple[Forecast, tuple[str, ...]]:
    """A forecast of stored metrics -> the same forecast in the profile's demand metrics."""
    horizon, quantiles = forecast.horizon, len(forecast.quantiles)
    values = np.zeros((horizon, len(profile.metric_names), quantiles))
    unbound = []
    bound = sources(profile)
    for j, name in enumerate(profile.metric_names):
        if name in bound and bound[name][0] in forecast.metrics:
            values[:, j, :] = forecast.values[:, forecast.metric_index(bound[name][0]), :] * bound[name][1]
        else:
            unbound.append(name)
    bound_forecast = Forecast(
        start=forecast.start,
        step_seconds=forecast.step_seconds,
        metrics=list(profile.metric_names),
        quantiles=list(forecast.quantiles),
        values=np.maximum(values, 0.0),
    )
    return bound_forecast, tuple(unbound)


def reactive_forecast(
    observed: dict[str, float],
    profile: AppProfile,
    *,
    start: pd.Timestamp,
    step_seconds: int,
    horizon: int,
    target_utilisation: float,
    spread: float = 0.05,
) -> Forecast:
    """Last observed demand over the target utilisation, flat over the horizon."""
    level = np.array([observed.get(name, 0.0) / target_utilisation for name in profile.metric_names])
    median = np.tile(level, (horizon, 1))
    return Forecast.from_median(
        median, start=start, step_seconds=step_seconds, metrics=list(profile.metric_names), spread=spread
    )


def apply_floor(forecast: Forecast, observed: dict[str, float], *, target_utilisation: float) -> tuple[Forecast, bool]:
    """Raise every quantile to observed / target where observed demand broke above the band now."""
    values = forecast.values.copy()
    raised = False
    for j, name in enumerate(forecast.metrics):
        if name not in observed:
            continue
        need = observed[name] / target_utilisation
        if observed[name] > forecast.values[0, j, -1]:
            values[:, j, :] = np.maximum(values[:, j, :], need)
            raised = True
    if not raised:
        return forecast, False
    floored = Forecast(
        start=forecast.start,
        step_seconds=forecast.step_seconds,
        metrics=list(forecast.metrics),
        quantiles=list(forecast.quantiles),
        values=values,
    )
    return floored, True


def summarise_forecast(forecast: Forecast, metric: str) -> dict:
    """The bands of one metric for the ledger (what monitoring later compares with what happened)."""
    j = forecast.metric_index(metric)
    bands = forecast.quantiles_at([0.1, 0.5, 0.9])[:, j, :]
    return {
        "metric": metric,
        "start": forecast.start.isoformat(),
        "step_seconds": forecast.step_seconds,
        "q10": [round(float(v), 6) for v in bands[:, 0]],
        "q50": [round(float(v), 6) for v in bands[:, 1]],
        "q90": [round(float(v), 6) for v in bands[:, 2]],
    }


def search_budget_ms(per_decision_ms: int | None, *, apps: int, parallel: int, share: float,
                     cadence_seconds: float = 60.0, floor_ms: int = 20) -> int | None:
    """Each app's allocation search budget so that the cycle's searches fit ``share`` of the cadence.

    The search always runs its warm starts (exact MILP covers) whatever the budget, so a tight budget
    degrades to those rather than to nothing; ``floor_ms`` keeps the budget positive. An unset budget
    (``search.time_budget_ms``: trials only, reproducible) stays unset.
    """
    if per_decision_ms is None:
        return None
    fair = int(share * cadence_seconds * 1000 * parallel / max(apps, 1))
    return max(floor_ms, min(per_decision_ms, fair))
