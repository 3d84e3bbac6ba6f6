r"""The slow path, for measuring the fast one: ``allocate`` itself decides every step (not a registered policy).

The benchmark (``benchmarks/replay.py``) runs :class:`Allocating` beside the predictive rule on the same
input to measure what the cover cache and the tiered rule give up against the allocation's exact MILP.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from prescale.allocation import SolverSettings, allocate
from prescale.decision import retarget, with_min_nodes
from prescale.forecast import Forecast
from prescale.replay.policies.base import Context, Rule
from prescale.replay.simulate import Executor


@dataclass(eq=False)
class Allocating(Rule):
    """``allocate`` at every step, on the step's forecast.

    At step ``t`` it hands ``allocate`` the step's forecast (quantiles times ``1 + h``), what the app holds
    (booting nodes included, as a cluster reports them) and solver settings covering quantile ``q``; the
    allocation's target counts go to the executor, which keeps ``max(D[t, 0], F[t])`` serving while it
    releases. ``allocate`` plans one target over its horizon, so a type whose lead time exceeds the horizon
    is not added (its explanation says so). ``solver`` defaults to the exact MILP.
    """

    ctx: Context
    forecast: np.ndarray  # (T, H, M, Q) quantiles, NaN where missing
    quantiles: tuple[float, ...]
    floor: np.ndarray  # (T, M) F[t]
    start: pd.Timestamp  # step 0
    quantile: float
    headroom: float
    solver: SolverSettings | None = None
    policy: str = "allocate"
    seconds: float = 0.0
    _fallbacks: int = 0

    @property
    def setting(self) -> str:
        return f"q={self.quantile:g},headroom={self.headroom:g}"

    @property
    def fallback_steps(self) -> int:
        return self._fallbacks

    def step(self, t: int, ex: Executor) -> None:
        fleet = self.ctx.fleet
        values = self.forecast[t] * (1.0 + self.headroom)
        floor = np.nan_to_num(self.floor[t])
        if not np.isfinite(values).all():
            self._fallbacks += 1
            need = floor
            ex.apply(with_min_nodes(fleet, retarget(self.ctx, ex.held, need, fleet.fast.idx)), keep=need)
            return
        step = pd.Timedelta(seconds=fleet.step_seconds)
        now = pd.Timestamp(self.start) + t * step
        solver = self.solver or SolverSettings(solver="milp", runner_ups=0, time_budget_ms=None)
        solver = replace(solver, covered_quantile=self.quantile)
        forecast = Forecast(now, fleet.step_seconds, list(fleet.metrics), list(self.quantiles), values)
        started = time.perf_counter()
        result = allocate(forecast, fleet.catalog, fleet.profile, fleet.as_dict(ex.held), solver, now=now)
        self.seconds += time.perf_counter() - started
        target = with_min_nodes(fleet, fleet.counts(result.nodes))
        keep = np.maximum(np.maximum(np.nan_to_num(forecast.quantile(self.quantile)[0]), 0.0), floor)
        ex.apply(target, keep=keep)
