r"""Scores of one run, and each policy's cost-versus-violations frontier read at equal violation budgets.

Scores over the scored window (after the warm-up), ``Δ`` the step in minutes:

* ``cost``: USD billed, ``Σ_t Σ_i held[t, i] * price[i] * Δ / 60`` (booting nodes included);
* ``slo_violation_minutes``: ``Δ`` times the observed steps where demand exceeds the serving capacity on
  any metric (steps with no observation count neither way);
* ``slack``: the mean idle share of serving capacity on the binding metric, ``mean_t (1 - min(1, max_m
  d[t,m] / cap[t,m]))`` over observed steps (0 when nothing serves and nothing is asked);
* ``migrations``: nodes moved between types (``simulate.count_migrations``).

**Compare at equal violations, never at one setting.** A policy's knob (covered quantile and headroom,
target utilisation, peak multiple) trades cost for violations, so one setting of each says little. Each
policy is swept into a set of points ``(setting, cost, violation minutes)``; its *frontier* marks the
Pareto-efficient ones (no other point is both cheaper and violates less), and its cost at a violation
budget ``B`` (a share of the scored minutes: ``"0.5%"`` and ``"0"``) is the cheapest point with at most
``B`` violation minutes, ``None`` when no setting reaches it. A policy's headline scores are those of the
point chosen at the first budget (else its fewest-violations point), and say which setting that was.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from prescale.fleet import Fleet
from prescale.replay.simulate import Series

BUDGETS: dict[str, float] = {"0.5%": 0.005, "0": 0.0}
VIOLATION_TOL = 1e-9


@dataclass(frozen=True)
class Score:
    """One run's scores (see the module docstring)."""

    cost: float
    slo_violation_minutes: float
    violation_steps: int
    scored_minutes: float
    slack: float
    migrations: int
    node_hours: float
    fallback_steps: int = 0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["cost"] = round(self.cost, 4)
        out["slack"] = round(self.slack, 4)
        out["node_hours"] = round(self.node_hours, 3)
        return out


def score_series(
    fleet: Fleet, series: Series, demand: np.ndarray, *, start: int = 0, fallback_steps: int = 0
) -> Score:
    """Scores of ``series`` against ``demand`` ``(T, M)`` from step ``start`` on."""
    minutes = fleet.step_seconds / 60.0
    d = np.asarray(demand, dtype=float)[start:]
    cap = series.capacity(fleet)[start:]
    observed = np.isfinite(d).all(axis=1)
    d0 = np.where(observed[:, None], d, 0.0)
    short = (d0 > cap * (1 + VIOLATION_TOL) + VIOLATION_TOL).any(axis=1) & observed
    held = series.held[start:]
    return Score(
        cost=float((held @ fleet.step_price).sum()),
        slo_violation_minutes=float(short.sum() * minutes),
        violation_steps=int(short.sum()),
        scored_minutes=float(observed.sum() * minutes),
        slack=slack(d0[observed], cap[observed]),
        migrations=series.migrations(fleet, start=start),
        node_hours=float(held.sum() * fleet.step_seconds / 3600.0),
        fallback_steps=int(fallback_steps),
    )


def slack(demand: np.ndarray, capacity: np.ndarray) -> float:
    """Mean idle share of the binding metric's serving capacity (see the module docstring)."""
    if not len(demand):
        return 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        util = np.where(capacity > 0, demand / capacity, np.where(demand > 0, np.inf, 0.0)).max(axis=1)
    busy = np.minimum(util, 1.0)
    idle = np.where(capacity.max(axis=1) > 0, 1.0 - busy, 0.0)
    return float(idle.mean())


@dataclass(frozen=True)
class Point:
    setting: str
    score: Score


@dataclass
class PolicyResult:
    """All swept points of one policy (see the module docstring)."""

    policy: str
    points: list[Point] = field(default_factory=list)
    series: dict[str, Series] = field(default_factory=dict)  # kept for plots: the headline's (and others')
    note: str = ""
    detail: Any = None  # what the policy reports beyond its points (the oracle: its OracleResult)

    def add(self, setting: str, score: Score) -> None:
        self.points.append(Point(setting, score))

    def pareto(self) -> set[str]:
        """Settings no other point beats on both cost and violations."""
        out = set()
        for p in self.points:
            beaten = any(
                q.score.cost <= p.score.cost
                and q.score.slo_violation_minutes <= p.score.slo_violation_minutes
                and (q.score.cost < p.score.cost or q.score.slo_violation_minutes < p.score.slo_violation_minutes)
                for q in self.points
            )
            if not beaten:
                out.add(p.setting)
        return out

    def at_budget(self, share: float) -> Point | None:
        """The cheapest point with at most ``share`` of the scored minutes in violation."""
        ok = [p for p in self.points if p.score.slo_violation_minutes <= share * p.score.scored_minutes + 1e-9]
        return min(ok, key=lambda p: (p.score.cost, p.score.slo_violation_minutes), default=None)

    def headline(self, budgets: dict[str, float] = BUDGETS) -> Point | None:
        if not self.points:
            return None
        first = self.at_budget(next(iter(budgets.values())))
        return first or min(self.points, key=lambda p: (p.score.slo_violation_minutes, p.score.cost))

    def frontier(self) -> list[dict[str, Any]]:
        efficient = self.pareto()
        ordered = sorted(self.points, key=lambda p: (p.score.slo_violation_minutes, p.score.cost))
        return [
            {
                "setting": p.setting,
                "cost": round(p.score.cost, 4),
                "slo_violation_minutes": p.score.slo_violation_minutes,
                "slack": round(p.score.slack, 4),
                "pareto": p.setting in efficient,
            }
            for p in ordered
        ]

    def budget_costs(self, budgets: dict[str, float] = BUDGETS) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for name, share in budgets.items():
            point = self.at_budget(share)
            out[name] = None if point is None else round(point.score.cost, 4)
        return out

    def summary(self, budgets: dict[str, float] = BUDGETS) -> dict[str, Any]:
        """The ``--json`` contract's entry: headline scores, setting and frontier."""
        best = self.headline(budgets)
        head = best.score.to_dict() if best else {}
        return {
            "cost": head.get("cost"),
            "slo_violation_minutes": head.get("slo_violation_minutes"),
            "slack": head.get("slack"),
            "migrations": head.get("migrations"),
            "setting": best.setting if best else None,
            "scores": head,
            "frontier": self.frontier(),
            "note": self.note,
        }


def savings(base: float | None, other: float | None) -> float | None:
    """``(base - other) / base``: how much cheaper ``other`` is than ``base`` (None when either is missing)."""
    if base is None or other is None or base <= 0:
        return None
    return round((base - other) / base, 4)


def excess(base: float | None, other: float | None) -> float | None:
    """``other / base - 1``: how much dearer ``other`` is than ``base`` (None when either is missing)."""
    if base is None or other is None or not base:
        return None
    return round(other / base - 1.0, 4)
