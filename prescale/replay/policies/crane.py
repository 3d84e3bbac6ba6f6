r"""**Crane's Effective HPA (EHPA) with its DSP predictor**, a published reference, swept over its target
utilisation.

What Crane documents and implements (gocrane/crane: "Effective HorizontalPodAutoscaler",
https://gocrane.io/docs/tutorials/using-effective-hpa-to-scaling-with-effectiveness/; "Time Series Forecast
Algorithm-DSP", https://gocrane.io/docs/core-concept/timeseries-forecasting-by-dsp/; the predictor's code,
``pkg/prediction/dsp``):

* EHPA converts each metric into two for the HPA it manages: the *origin* metric (observed) and a
  *prediction* metric, the **largest predicted value over the next** ``predictionWindowSeconds`` (3600 in the
  documented example); "HorizontalPodAutoscaler will calculate on each metric ... The largest one will be
  picked": the HPA's 10% tolerance and 5-minute scale-down stabilisation apply as usual;
* the DSP predictor samples the history (``sampleInterval`` 60 s; the predictor's default history 7 days),
  fills gaps linearly, drops samples before a gap over an hour, replaces outliers beyond the P0.1 and P99.9
  with the previous value, keeps whole days, and tests for a daily, then a weekly, period (the signal must
  span two cycles and, ranked by amplitude, the first component whose period is not shorter than the cycle
  must be the cycle itself); a series with neither gets no prediction;
* the FFT estimator: FFT, drop every component that is both above ``highFrequencyThreshold`` (1/3600 Hz)
  and below the amplitude floor (the ``maxNumOfSpectrumItems``-th (100) largest amplitude, at least
  ``lowAmplitudeThreshold``, lowered to the ``minNumOfSpectrumItems``-th largest), inverse FFT, and take its
  last cycle, times ``1 + marginFraction``, as the next cycle; the predictor's default estimators are FFT
  with (3 items, amplitude 1.0) and (50 items, amplitude 0.05), each at margins 0.01, 0.10, 0.15 and 0.20,
  and it keeps the one whose estimate of the last cycle from the ones before has the lowest error (its
  ``PredictionError``: the MAPE, an under-prediction's share amplified to ``-ln(1 - x) / ln 1.25``; the MAE
  when an actual value is below 1e-3);
* the predictor refreshes its model every 12 hours (``queryInterval``) from the latest history.

How the replay models it, at step ``t`` (``u`` the target utilisation, ``o[t]`` the last observed demand):

* a refit at every 12-hour UTC boundary ``τ`` from the demand before ``τ`` (``ReplayInput.history``, then
  the window's), sampled at the replay's step (60 s, Crane's default; the 5-minute traces at 300 s), per
  metric; the predicted cycle starts at ``τ``. FFTs run once per refit, not per step;
* ``P[t]`` = the largest prediction over ``[s, s + window]`` (``s`` the step's start), NaN when the last
  refit found no period;
* the HPA on both metrics: :func:`prescale.decision.decide`'s reactive rule (the reactive reference's, with
  its 10% tolerance and 5-minute stabilisation) on ``F[t] = max(o[t], P[t]) / u``. That is the HPA's "largest
  of the per-metric recommendations": the tolerance keeps what runs when the larger metric's ratio is within
  it, and the smaller metric's recommendation can then only be lower;
* nodes as the reactive reference chooses them (cheapest compatible types, bin-packed), so the comparison
  isolates the scaling signal.

Deviations, where the replay cannot follow Crane literally: Crane's amplitude thresholds (1.0, 0.05) and its
0.01 floor for non-positive predictions are in its metric's units (cores of CPU); the replay's demand is in
the profile's units, so the thresholds are taken as shares of the history's mean (5% and 0.25%: 1.0 and
0.05 cores of a workload averaging 20 cores) and predictions are floored at 0.

No hindsight: a refit at ``τ`` reads only demand of steps that ended by ``τ``, and ``τ <= s``.
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
from prescale.replay.policies.aws import type_sets
from prescale.replay.policies.base import Context, PolicySettings, Rule, Swept
from prescale.replay.policies.reactive import Reactive
from prescale.replay.simulate import Executor

if TYPE_CHECKING:
    from prescale.replay.engine import ReplayConfig, ReplayInput

__all__ = ["CraneEhpa", "CraneEhpaPolicy", "CraneSettings", "dsp_cycle", "predicted_peaks", "prediction_error"]

DAY, WEEK = 86_400, 7 * 86_400
HIGH_FREQUENCY_HZ = 1.0 / 3600.0  # Crane's defaultHighFrequencyThreshold
MAX_ITEMS = 100  # defaultMaxNumOfSpectrumItems
# Crane's default estimators: (minNumOfSpectrumItems, lowAmplitudeThreshold as a share of the mean), margins
ESTIMATORS: tuple[tuple[int, float], ...] = ((3, 0.05), (50, 0.0025))
MARGINS: tuple[float, ...] = (0.01, 0.10, 0.15, 0.20)


class CraneSettings(PolicySettings):
    targets: tuple[float, ...] = Field(default=(0.5, 0.6, 0.7, 0.8, 0.9), description="Target utilisations swept.")
    types: tuple[Literal["all", "fast"], ...] = Field(
        default=("all", "fast"), description="Type sets swept, as the reactive reference's."
    )
    prediction_window_seconds: float = Field(default=3600.0, gt=0,
                                             description="EHPA's predictionWindowSeconds: the max over this ahead.")
    history_days: float = Field(default=7.0, ge=2, description="DSP history length (Crane's default: 7 days).")
    refit_hours: int = Field(default=12, ge=1, description="The predictor refits every this many hours (12).")
    tolerance: float = Field(default=0.1, ge=0, description="The HPA's tolerance.")
    stabilisation_seconds: float = Field(default=300.0, ge=0, description="The HPA's scale-down stabilisation.")


# ------------------------------------------------------------------------------------------- the predictor


def prediction_error(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Crane's ``accuracy.PredictionError``: the MAPE with under-predictions amplified, or the MAE."""
    if (actual < 1e-3).any():
        return float(np.mean(np.abs(actual - predicted)))
    x = (actual - predicted) / actual
    with np.errstate(divide="ignore"):
        under = -np.log(np.maximum(1.0 - x, 0.0)) / np.log(1.25)
    return float(np.mean(np.where(predicted < actual, under, -x)))


def _filtered_cycle(x: np.ndarray, per_cycle: int, step_seconds: int, min_items: int, low: float) -> np.ndarray:
    """Crane's ``fftEstimator.GetEstimation`` without the margin: the filtered signal's last cycle."""
    n = len(x)
    spectrum = np.fft.fft(x)
    amplitude = np.abs(spectrum) / n
    frequency = np.arange(n) / (n * step_seconds)
    ranked = np.sort(amplitude[1 : n // 2])[::-1]
    if not len(ranked):
        return np.maximum(x[-per_cycle:], 0.0)
    floor = max(ranked[min(MAX_ITEMS, len(ranked)) - 1], low)
    if len(ranked) >= min_items and ranked[min_items - 1] < floor:
        floor = ranked[min_items - 1]
    spectrum[(amplitude < floor) & (frequency > HIGH_FREQUENCY_HZ)] = 0
    return np.maximum(np.fft.ifft(spectrum).real[-per_cycle:], 0.0)


def _is_periodic(x: np.ndarray, per_cycle: int) -> bool:
    """Crane's ``Signal.IsPeriodic``: over whole cycles (at least two), ranked by amplitude, the first component
    whose period is not shorter than the cycle is the cycle itself."""
    cycles = len(x) // per_cycle
    if cycles < 2:
        return False
    amplitude = np.abs(np.fft.rfft(x[len(x) - cycles * per_cycle :]))
    return bool(amplitude[cycles] > amplitude[1:cycles].max(initial=-1.0))


def _clean(x: np.ndarray, step_seconds: int) -> np.ndarray:
    """Crane's pre-processing: drop what precedes a gap over an hour, fill the rest linearly, outliers beyond
    P0.1 / P99.9 to the previous value, whole days kept (the newest)."""
    missing = ~np.isfinite(x)
    if missing.all():
        return x[:0]
    run = np.zeros(len(x), dtype=int)  # length of the gap ending at each step
    for i in np.flatnonzero(missing):
        run[i] = run[i - 1] + 1 if i else 1
    long = np.flatnonzero(run * step_seconds > 3600)
    if len(long):
        x, missing = x[long[-1] + 1 :], missing[long[-1] + 1 :]
    first = np.flatnonzero(~missing)
    x = x[first[0] :] if len(first) else x[:0]
    if not len(x):
        return x
    ok = np.isfinite(x)
    x = np.interp(np.arange(len(x)), np.flatnonzero(ok), x[ok])
    lo, hi = np.quantile(x, [0.001, 0.999])
    for i in np.flatnonzero((x < lo) | (x > hi)):
        if i:
            x[i] = x[i - 1]
    per_day = DAY // step_seconds
    return x[len(x) % per_day :]


def dsp_cycle(history: np.ndarray, step_seconds: int) -> np.ndarray | None:
    """Crane's DSP prediction from ``history`` (one metric, oldest first, ending just before the prediction
    starts): the next cycle (a day or a week of steps), or None when the series has neither period."""
    x = _clean(np.asarray(history, dtype=float), step_seconds)
    for cycle in (DAY, WEEK):
        per_cycle = cycle // step_seconds
        if _is_periodic(x, per_cycle):
            break
    else:
        return None
    cycles = len(x) // per_cycle
    x = x[len(x) - cycles * per_cycle :]
    scale = float(np.mean(x)) if np.mean(x) > 0 else 1.0
    past, actual = x[:-per_cycle], x[-per_cycle:]
    best, best_error = None, np.inf
    for items, share in ESTIMATORS:
        held_out = _filtered_cycle(past, per_cycle, step_seconds, items, share * scale)
        for margin in MARGINS:
            error = prediction_error(actual, held_out * (1 + margin))
            if error < best_error:
                best, best_error = (items, share, margin), error
    if best is None:
        best = (*ESTIMATORS[0], MARGINS[0])
    items, share, margin = best
    return _filtered_cycle(x, per_cycle, step_seconds, items, share * scale) * (1 + margin)


def predicted_peaks(inp: ReplayInput, settings: CraneSettings) -> np.ndarray:
    """``P[t]``, ``(T, M)``: the largest DSP prediction over each step's window ahead (NaN: no prediction)."""
    stamps, demand = inp.timeline()
    step = inp.step_seconds
    ahead = int(settings.prediction_window_seconds // step) + 1  # samples in [s, s + window]
    keep = round(settings.history_days * DAY / step)
    refits = inp.index.floor(f"{settings.refit_hours}h")
    out = np.full(inp.demand.shape, np.nan)
    for tau in refits.unique():
        rows = np.flatnonzero(refits == tau)
        end = int(stamps.searchsorted(tau))  # rows before tau ended by tau
        since = ((inp.index[rows] - tau) // pd.Timedelta(seconds=step)).to_numpy()
        for m in range(demand.shape[1]):
            cycle = dsp_cycle(demand[max(0, end - keep) : end, m], step)
            if cycle is None or since.max() + ahead > len(cycle):
                continue
            peaks = np.lib.stride_tricks.sliding_window_view(cycle, ahead).max(axis=1)
            out[rows, m] = peaks[since]
    return out


# ---------------------------------------------------------------------------------------------- the rule


@dataclass(eq=False)
class CraneEhpa(Rule):
    """The HPA on the origin and the prediction metric (see the module docstring)."""

    ctx: Context
    predicted: np.ndarray  # (T, M) P[t]: the largest prediction over the window ahead; NaN: none
    target: float
    types: str = "all"
    tolerance: float = 0.1
    window: int = 6
    policy: str = "crane"

    def __post_init__(self) -> None:
        if self.predicted.shape != self.ctx.observed.shape:
            raise ReplayError(f"the predicted peaks must be shaped {self.ctx.observed.shape} like the observed "
                              f"demand, got {self.predicted.shape}")
        self._hpa = Reactive(self.ctx, target=self.target, types=self.types, tolerance=self.tolerance,
                             window=self.window, policy=self.policy)

    @property
    def setting(self) -> str:
        return f"target={self.target:g},types={self.types}"

    def floor(self, t: int) -> np.ndarray:
        """``F[t] = max(o[t], P[t]) / u`` (``o[t]`` alone without a prediction)."""
        return np.fmax(self.ctx.observed[t], self.predicted[t]) / self.target

    def step(self, t: int, ex: Executor) -> None:
        inp = self._hpa.decision_input(t, ex, floor=self.floor(t))
        if inp is not None:
            self._hpa.act(decide(inp), ex)


class CraneEhpaPolicy(Swept):
    name = "crane"
    description = ("Crane EHPA: the HPA on observed demand and on the DSP (FFT) prediction's max over the next "
                   "hour; reactive's node choice; every type set x target.")
    settings_type = CraneSettings

    def rules(self, settings: CraneSettings, inp: ReplayInput, ctx: Context,
              config: ReplayConfig) -> Iterator[CraneEhpa]:
        predicted = predicted_peaks(inp, settings)  # once: the prediction does not depend on the target
        window = stabilisation_steps(inp.step_seconds, settings.stabilisation_seconds)
        for types in type_sets(settings.types, ctx.fleet):
            for u in settings.targets:
                yield CraneEhpa(ctx, predicted, target=u, types=types, tolerance=settings.tolerance,
                                window=window)

    def runs(self, settings: CraneSettings, inp: ReplayInput, fleet: Fleet) -> int:
        return len(type_sets(settings.types, fleet)) * len(settings.targets)
