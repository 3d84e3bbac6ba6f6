r"""**AWS EC2 Auto Scaling: predictive scaling with dynamic scaling**, a published reference, swept over its
target utilisation.

What AWS documents (Amazon EC2 Auto Scaling User Guide, "How predictive scaling works",
https://docs.aws.amazon.com/autoscaling/ec2/userguide/predictive-scaling-policy-overview.html, and the API's
``PredictiveScalingConfiguration``,
https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_PredictiveScalingConfiguration.html):

* the policy needs at least 24 hours of the load metric before it forecasts; it analyses up to the past
  14 days to find daily and weekly patterns and makes an **hourly** forecast of the load for the next
  48 hours, **updated every 6 hours** with the latest data;
* the capacity forecast is the load forecast at the policy's target utilisation; in *forecast and scale*
  mode the group is scaled at the start of each hour to that hour's capacity forecast, launched
  ``SchedulingBufferTime`` earlier (default 300 s) so the instances are ready;
* predictive scaling **never scales in**: a lower forecast removes nothing; removing capacity is left to a
  dynamic scaling policy, and used together the group runs the larger of the two (the forecast's
  capacity acts as the group's minimum, target tracking scales above it and back down to it).

How the replay models it, at step ``t`` (time ``s = index[t]``, ``u`` the target utilisation, ``o[t]`` the last
observed demand):

* forecast issue times ``τ`` every 6 h (UTC multiples); the forecast made at ``τ`` sees the hourly means of
  the complete hours before ``τ`` within the last 14 days, none when fewer than 24 of them were observed;
* AWS's model is not published; the replay's stand-in uses only the documented inputs and patterns: the
  hour-of-day profile ``D[h]`` (the mean at hour of day ``h`` over the history) times the day-of-week factor
  ``W[w]`` (the mean on weekday ``w`` over the overall mean, once the history spans a week; else 1)::

      L_τ(H) = D[hour(H)] · W[weekday(H)]          for the hours H of the 48 h after τ

* the capacity scheduled at ``s`` is that of hour ``H = floor_hour(s + buffer)`` (the action for hour ``H``
  fires ``buffer`` before it) from the latest forecast, ``τ = floor_6h(s)``: ``P[t] = L_τ(H)``;
* the fleet's capacity is the larger of the forecast's and target tracking's:
  :func:`prescale.decision.decide`'s reactive rule on ``F[t] = max(o[t], P[t]) / u``, so the forecast is a
  floor that never releases anything on its own, and target tracking (on observed demand) scales above it
  and, once observed demand allows, back down to it. Target tracking keeps its metric at the target
  through CloudWatch alarms and has no tolerance band of its own: ``tolerance`` is 0 by default; its
  scale-in is gradual: the rule's 5-minute scale-down stabilisation, the same as the reactive reference;
* nodes are chosen as the reactive reference chooses them (cheapest compatible types, bin-packed,
  :func:`~prescale.decision.retarget`), uncapped like the reactive sweep, so the comparison isolates the
  scaling signal.

No hindsight: ``P[t]`` reads only demand of steps before the forecast's issue time ``τ <= s``, and
``o[t]`` is step ``t - 1``'s; the history before the window comes from ``ReplayInput.history``. Forecasts
are computed once per replay (a handful of 6-hourly issues, each an average over at most 336 hours), and
shared by every setting of the sweep.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from prescale.decision import decide, stabilisation_steps
from prescale.fleet import Fleet
from prescale.replay.errors import ReplayError
from prescale.replay.policies.base import Context, PolicySettings, Rule, Swept
from prescale.replay.policies.reactive import Reactive
from prescale.replay.simulate import Executor

if TYPE_CHECKING:
    from prescale.replay.engine import ReplayConfig, ReplayInput

__all__ = ["AwsPredictive", "AwsPredictivePolicy", "AwsSettings", "hourly_forecast", "scheduled_load", "type_sets"]


class AwsSettings(PolicySettings):
    targets: tuple[float, ...] = Field(default=(0.5, 0.6, 0.7, 0.8, 0.9), description="Target utilisations swept.")
    types: tuple[Literal["all", "fast"], ...] = Field(
        default=("all", "fast"), description="Type sets swept, as the reactive reference's."
    )
    buffer_seconds: float = Field(default=300.0, ge=0, lt=3600,
                                  description="SchedulingBufferTime: each hour's capacity is launched this early.")
    history_days: float = Field(default=14.0, gt=0, description="History the forecast reads (AWS: up to 14 days).")
    min_history_hours: int = Field(default=24, ge=1, description="Observed hours needed before the first forecast.")
    refresh_hours: int = Field(default=6, ge=1, description="A new forecast every this many hours (AWS: 6).")
    tolerance: float = Field(default=0.0, ge=0, description="Target tracking's band around the target (none).")
    stabilisation_seconds: float = Field(default=300.0, ge=0, description="Target tracking's scale-in delay.")


def hourly_forecast(hourly: pd.DataFrame, issued: pd.Timestamp, hours: pd.DatetimeIndex, *,
                    history_days: float = 14.0, min_hours: int = 24) -> np.ndarray | None:
    """The load forecast made at ``issued`` for ``hours`` (see the module docstring), ``(len(hours), M)``.

    ``hourly``: the mean demand of every hour (index: the hour's start, UTC), NaN where nothing was observed.
    Only hours that ended by ``issued`` and began within ``history_days`` of it are read; None when fewer than
    ``min_hours`` of them were observed.
    """
    start = issued - pd.Timedelta(days=history_days)
    past = hourly[(hourly.index >= start) & (hourly.index + pd.Timedelta(hours=1) <= issued)].dropna(how="all")
    if len(past) < min_hours:
        return None
    values = past.to_numpy(dtype=float)
    level = np.nanmean(values, axis=0)
    daily = past.groupby(past.index.hour).mean().reindex(range(24))
    profile = daily.to_numpy(dtype=float)
    profile = np.where(np.isfinite(profile), profile, level)
    weekly = np.ones((7, values.shape[1]))
    if past.index[-1] - past.index[0] >= pd.Timedelta(days=7) - pd.Timedelta(hours=1):
        by_day = past.groupby(past.index.day_of_week).mean().reindex(range(7)).to_numpy(dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            factor = by_day / level
        weekly = np.where(np.isfinite(factor), factor, 1.0)
    return profile[hours.hour] * weekly[hours.day_of_week]


def scheduled_load(inp: ReplayInput, settings: AwsSettings) -> np.ndarray:
    """``P[t]``, ``(T, M)``: the forecast load scheduled for each step of ``inp`` (NaN: no forecast yet)."""
    stamps, demand = inp.timeline()
    hourly = pd.DataFrame(demand, index=stamps).resample("1h").mean()
    due = inp.index + pd.Timedelta(seconds=settings.buffer_seconds)
    hour = due.floor("1h")
    issued = inp.index.floor(f"{settings.refresh_hours}h")
    out = np.full(inp.demand.shape, np.nan)
    for tau in issued.unique():
        rows = np.flatnonzero(issued == tau)
        wanted = hour[rows]
        forecast = hourly_forecast(hourly, tau, wanted, history_days=settings.history_days,
                                   min_hours=settings.min_history_hours)
        if forecast is not None:
            out[rows] = forecast
    return out


@dataclass(eq=False)
class AwsPredictive(Rule):
    """Predictive scaling's hourly capacity floor with target tracking above it (see the module docstring)."""

    ctx: Context
    scheduled: np.ndarray  # (T, M) P[t]: the forecast load scheduled for step t; NaN: no forecast
    target: float
    types: str = "all"
    tolerance: float = 0.0
    window: int = 6
    policy: str = "aws"

    def __post_init__(self) -> None:
        if self.scheduled.shape != self.ctx.observed.shape:
            raise ReplayError(f"the scheduled load must be shaped {self.ctx.observed.shape} like the observed "
                              f"demand, got {self.scheduled.shape}")
        self._tracking = Reactive(self.ctx, target=self.target, types=self.types, tolerance=self.tolerance,
                                  window=self.window, policy=self.policy)

    @property
    def setting(self) -> str:
        return f"target={self.target:g},types={self.types}"

    def floor(self, t: int) -> np.ndarray:
        """``F[t] = max(o[t], P[t]) / u`` (``o[t]`` alone before the first forecast)."""
        return np.fmax(self.ctx.observed[t], self.scheduled[t]) / self.target

    def step(self, t: int, ex: Executor) -> None:
        inp = self._tracking.decision_input(t, ex, floor=self.floor(t))
        if inp is not None:
            self._tracking.act(decide(inp), ex)


class AwsPredictivePolicy(Swept):
    name = "aws"
    description = ("AWS EC2 predictive scaling (hourly forecast from 14 days, scheduled 300 s ahead, never "
                   "scales in) with target tracking; reactive's node choice; every type set x target.")
    settings_type = AwsSettings

    def rules(self, settings: AwsSettings, inp: ReplayInput, ctx: Context,
              config: ReplayConfig) -> Iterator[AwsPredictive]:
        scheduled = scheduled_load(inp, settings)  # once: the forecast does not depend on the target
        window = stabilisation_steps(inp.step_seconds, settings.stabilisation_seconds)
        for types in type_sets(settings.types, ctx.fleet):
            for u in settings.targets:
                yield AwsPredictive(ctx, scheduled, target=u, types=types, tolerance=settings.tolerance,
                                    window=window)

    def runs(self, settings: AwsSettings, inp: ReplayInput, fleet: Fleet) -> int:
        return len(type_sets(settings.types, fleet)) * len(settings.targets)


def type_sets(types: tuple[str, ...], fleet: Fleet) -> list[str]:
    """The type sets that differ on this fleet ("fast" is "all" when there is one tier), as reactive's."""
    return [k for k in types if k == "all" or len(fleet.tiers) > 1]
