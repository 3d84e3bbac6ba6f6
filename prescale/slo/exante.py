"""Ex ante: prescale's policy tuned on the stretch before a window, run once over it, against reactive.

What ``prescale backtest`` reports as ``ex_ante`` and the replay benchmark's ``--ex-ante`` mode measures on
every case: the before-use search (:func:`~prescale.slo.tuning.tune`) on the tuning stretch only, then the
chosen policy over the window with its online controller (starting from the state the tuning replay ended
in), so nothing of prescale's is chosen with hindsight. The yardsticks, on the same window:

* ``reactive_at_same_violations``: reactive's cost at prescale's realised violation share, linear on the
  Pareto frontier of reactive's sweep (:func:`frontier_cost`): reactive's best setting for that level, found
  with hindsight, the strongest fair baseline;
* ``reactive_default``: reactive at the HPA default (target 0.8, every compatible type).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prescale.fleet import Fleet
from prescale.replay.covers import CoverCache
from prescale.replay.engine import ReplayConfig, ReplayInput, context
from prescale.replay.frontier import PolicyResult, savings
from prescale.replay.policies.base import Context
from prescale.slo.tuning import Run, Tuned, run_policy, share, tune

REACTIVE_DEFAULT = "target=0.8,types=all"


def frontier_cost(points: list[tuple[float, float]], level: float) -> tuple[float | None, str]:
    """The cost at violation share ``level`` on the Pareto frontier of ``(share, cost)`` points, linearly.

    Below the frontier's lowest share: its point there (no extrapolation, and the second value says so);
    above the highest: its cheapest point.
    """
    pareto: list[tuple[float, float]] = []
    for v, c in sorted(points):
        if not pareto or c < pareto[-1][1] - 1e-12:
            pareto.append((v, c))
    if not pareto:
        return None, "no points"
    if level <= pareto[0][0]:
        return pareto[0][1], "at reactive's fewest violations" if level < pareto[0][0] else "on a point"
    for (v0, c0), (v1, c1) in zip(pareto, pareto[1:], strict=False):
        if v0 <= level <= v1:
            return c0 + (c1 - c0) * (level - v0) / (v1 - v0), "interpolated"
    return pareto[-1][1], "at reactive's cheapest point"


@dataclass(frozen=True)
class ExAnte:
    """One ex-ante comparison (see the module docstring)."""

    tuned: Tuned
    run: Run
    reactive_same: float | None
    reactive_how: str
    reactive_default: tuple[float, float] | None  # (cost, violation share)

    def to_dict(self) -> dict[str, Any]:
        """The ``ex_ante`` object of ``prescale backtest --json``."""
        default = None if self.reactive_default is None else {
            "cost": round(self.reactive_default[0], 4), "violation_share": round(self.reactive_default[1], 6)}
        return {
            "predictive": {"cost": round(self.run.score.cost, 4), "violation_share": round(self.run.violation_share, 6),
                           "violation_minutes": self.run.score.slo_violation_minutes},
            "reactive_at_same_violations": None if self.reactive_same is None else round(self.reactive_same, 4),
            "reactive_how": self.reactive_how,
            "reactive_default": default,
            "vs_reactive_same": savings(self.reactive_same, self.run.score.cost),
            "vs_reactive_default": None if self.reactive_default is None
            else savings(self.reactive_default[0], self.run.score.cost),
            "policy": self.tuned.policy.summary(),
            "tuning": self.tuned.policy.tuning,
        }


def compare(tuned: Tuned, window: ReplayInput, ctx: Context, config: ReplayConfig, reactive: PolicyResult) -> ExAnte:
    """Run ``tuned`` over ``window`` and read reactive's sweep ``reactive`` (same window) at its violations."""
    run = run_policy(tuned.policy, window, ctx, config, state=tuned.state)
    points = [(share(p.score), p.score.cost) for p in reactive.points]
    same, how = frontier_cost(points, run.violation_share)
    default = next((p for p in reactive.points if p.setting == REACTIVE_DEFAULT), None)
    return ExAnte(tuned, run, same, how, None if default is None else (default.score.cost, share(default.score)))


def ex_ante(stretch: ReplayInput, window: ReplayInput, fleet: Fleet, budget: float, *, reactive: PolicyResult,
            config: ReplayConfig | None = None, covers: CoverCache | None = None, **tuning: Any) -> ExAnte:
    """Tune on ``stretch``, run over ``window``, compare with ``reactive`` (its sweep over ``window``)."""
    config = config or ReplayConfig()
    covers = covers or CoverCache(fleet, resolution=config.cover_resolution)
    tuned = tune(stretch, fleet, budget, config=config, covers=covers, **tuning)
    return compare(tuned, window, context(window, fleet, config, covers), config, reactive)
