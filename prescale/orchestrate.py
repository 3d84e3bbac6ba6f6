"""The pure parts of one orchestrate decision around the rule: demand in the profile's terms, the knobs.

The orchestrate flow (``flows/orchestrate.py``) does, per app: read recent rows ->
current phase -> champion forecast (or none) -> **the predictive rule**
(``prescale.decide_inputs.assemble`` then ``prescale.decision.decide``, the rule
the replay scores and ``prescale plan`` / ``apply`` run) -> plan -> apply ->
ledger. This module holds the plain arithmetic the task needs around the rule:

**Binding.** Forecasters speak the store's metric names (``app.requests_per_s``);
profiles speak demand (``requests_per_second``). A profile metric with
``source: app.requests_per_s`` and ``source_scale: s`` is fed by that stored
metric times ``s`` (:func:`bind_forecast`, :func:`observed_demand`). A profile
metric with no source has no data to forecast, and one whose source the
champion was not trained on has no forecast: both are ``unbound``, covered at
zero by the forecast (the rule's reactive floor raises the second kind to its
observed demand times the lift ``1 + h``), and the decision says which and why.

**Knobs** (:func:`knobs_for`, :func:`knobs_from`): derived from the app's SLO, never set by hand. The
policy (:class:`~prescale.slo.SloPolicy`: tuned with the champion, or its untuned start for the budget)
gives the rule, the covered quantile ``q`` and headroom ``h`` (or the reactive target ``u``); the online
controller's scale ``s = exp(θ)`` (``prescale.slo.controller``) multiplies the covered level, as the
replay's ``Adaptive`` rule does:

* predictive: ``D = s (1 + h) Q_q`` and ``F = s (1 + h) o``, so the rule's headroom is ``s (1 + h) - 1``;
* reactive: no forecast; the decision's reactive rule (``prescale.decision``: the HPA's recommendation and
  scale-down stabilisation, every compatible type sized at once, so the slow nodes a peak bought are released
  once the window has passed) on ``F = o s / u`` (the target ``u / s``, at most 1), so the headroom is
  ``max(s / u, 1) - 1``. ``Knobs.rule`` carries the choice to ``assemble``. The replay's ``Adaptive`` computes
  the same floor with the same arithmetic (``SloPolicy.lift``), so the benchmark scores what the loop runs.

The hold window and the margin are the replay's settings (``replay.hold_minutes``,
``replay.consolidation_margin``), so the loop, ``prescale plan`` / ``apply`` and the backtest run one rule.

**Reactive floor and fallback** are the rule's own since issue 14 (they were ``apply_floor`` and
``reactive_forecast`` here): ``F = (1 + h) o`` with ``o`` the last observed demand, never served less at the
step decided; under the predictive rule, a decision without a forecast has the fastest tier cover ``F``
alone (a transient answer that keeps the slow bands; the reactive rule is the standing one). How the old
floor maps onto the rule's is in ``prescale/decide_inputs.py``.

:func:`summarise_forecast` keeps the bands of the champion's forecast on the
ledger row, which monitoring later compares with what happened.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from prescale.catalog import AppProfile
from prescale.decide_inputs import Knobs
from prescale.forecast import Forecast
from prescale.settings import Settings
from prescale.slo.policy import SloPolicy


def knobs_for(policy: SloPolicy, scale: float = 1.0, *, hold_minutes: float, margin: float) -> Knobs:
    """The rule's knobs from the SLO ``policy`` and the controller's ``scale`` ``s`` (see the module docstring):
    the policy's quantile, and the headroom ``s (1 + h) - 1`` (predictive) or ``max(s / u, 1) - 1`` (reactive)."""
    return Knobs(quantile=policy.quantile, headroom=policy.lift(scale) - 1.0, hold_minutes=hold_minutes,
                 margin=margin, rule=policy.rule)


def knobs_from(settings: Settings, policy: SloPolicy, scale: float = 1.0) -> Knobs:
    """:func:`knobs_for` with the replay's hold window and consolidation margin (``replay.hold_minutes``,
    ``replay.consolidation_margin``): the same for every caller (the loop, ``prescale plan`` and ``apply``),
    so the loop runs the rule the backtest scores."""
    return knobs_for(policy, scale, hold_minutes=settings.replay.hold_minutes,
                     margin=settings.replay.consolidation_margin)  # fmt: skip


def sources(profile: AppProfile) -> dict[str, tuple[str, float]]:
    """Profile metric -> (stored metric, scale), for the metrics that have a source."""
    return {m.name: (m.source, m.source_scale) for m in profile.metrics if m.source}


def observed_demand(rows: pd.DataFrame, profile: AppProfile) -> dict[str, float]:
    """The newest observed value of each bound profile metric (from the store's long rows; of rows at the same
    newest instant, the last)."""
    if not len(rows):
        return {}
    metric, values = rows["metric"].to_numpy(), rows["value"].to_numpy(dtype=float)
    stamps = pd.DatetimeIndex(rows["ts"]).as_unit("ns").asi8
    seen = ~np.isnan(values)
    out = {}
    for name, (source, scale) in sources(profile).items():
        at = np.flatnonzero(seen & (metric == source))
        if len(at):
            newest = at[len(at) - 1 - int(np.argmax(stamps[at][::-1]))]
            out[name] = float(values[newest]) * scale
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
