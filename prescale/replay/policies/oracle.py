r"""**Oracle**: the exact cheapest zero-violation schedule given the lead times, solved on the scored window.

Not simulated: ``prescale.replay.oracle`` solves it with hindsight (the floor no policy can beat at zero
violations), on the types the cheapest covers of the window's demand levels use plus those its LP uses;
the schedule is then scored like every other policy's series (padded with the warm-up, so it lines up with
the input). Its one point is ``exact``; the :class:`~prescale.replay.oracle.OracleResult` (status, gap to
the LP bound) travels as the result's ``detail``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import Field

from prescale.fleet import Fleet
from prescale.replay.covers import CoverCache
from prescale.replay.frontier import PolicyResult, score_series
from prescale.replay.oracle import solve_oracle
from prescale.replay.policies.base import Context, PolicySettings, Tick
from prescale.replay.simulate import Series

if TYPE_CHECKING:
    from prescale.replay.engine import ReplayConfig, ReplayInput


class OracleSettings(PolicySettings):
    gap: float = Field(default=1e-3, ge=0, description="Relative MIP gap of each chunk.")
    time_limit_seconds: float = Field(default=120.0, gt=0, description="Time budget of the MILP.")
    chunk_steps: int = Field(default=360, ge=1, description="Steps per chunk of the MILP (plus an overlap).")
    cache: Path | None = Field(default=None, description="Folder of kept solves (keyed by a hash of every input "
                               "and of the oracle's code); None: solve every time.")


class OraclePolicy:
    name = "oracle"
    description = "Hindsight: the exact cheapest zero-violation schedule (a MILP on the whole window)."
    settings_type = OracleSettings
    needs_forecast = False

    def runs(self, settings: OracleSettings, inp: ReplayInput, fleet: Fleet) -> int:
        return 1

    def replay(self, settings: OracleSettings, inp: ReplayInput, ctx: Context, config: ReplayConfig, *,
               tick: Tick) -> PolicyResult:
        fleet, window = ctx.fleet, inp.demand[inp.start :]
        solved = solve_oracle(fleet, window, gap=settings.gap, time_limit=settings.time_limit_seconds,
                              chunk_steps=settings.chunk_steps, candidates=cover_types(fleet, ctx.covers, window),
                              cache=settings.cache)
        gap = "?" if solved.gap is None else f"{solved.gap:.2%}"
        result = PolicyResult(self.name, note=f"MILP, {solved.status}, within {gap} of the LP bound", detail=solved)
        if solved.series is None:
            result.note = f"no schedule: {solved.status} ({solved.message})"
        else:
            full = _pad(solved.series, inp.start)
            result.add("exact", score_series(fleet, full, inp.demand, start=inp.start))
            result.series = {"exact": full}
        tick(f"oracle: {solved.status} in {solved.seconds:.1f} s ({solved.message})")
        return result


def cover_types(fleet: Fleet, covers: CoverCache, demand: np.ndarray, levels: int = 25) -> np.ndarray:
    """Types used by the cheapest covers of the window's demand at ``levels`` quantiles (the oracle's candidates)."""
    used = np.zeros(fleet.n, dtype=bool)
    observed = demand[np.isfinite(demand).all(axis=1)]
    if not len(observed):
        return used
    for q in np.linspace(0.0, 1.0, levels):
        used |= covers.cover(np.quantile(observed, q, axis=0), tuple(range(fleet.n))) > 0
    return used


def _pad(series: Series, start: int) -> Series:
    def pad(a: np.ndarray) -> np.ndarray:
        return np.concatenate([np.zeros((start, a.shape[1]), dtype=a.dtype), a])

    return Series(pad(series.held), pad(series.ready), pad(series.orders), pad(series.removals))
