r"""Online control of the realised violation rate: adaptive conformal inference on under-provisioned steps.

The tuned knobs (``prescale.slo.tuning``) are right for the history they were tuned on; demand drifts, and a
budget of 0.5% is a handful of minutes a day, too few to tune exactly. So every decision scales the policy's
covered demand by ``s[t] = exp(θ[t])``, and ``θ`` follows the realised rate (Gibbs and Candès 2021,
*Adaptive conformal inference under distribution shift*, in its log-scale form)::

    θ[t+1] = clip( θ[t] + γ (e[t] - α),  lo, hi )

with ``e[t] = 1`` when the step just observed was under-provisioned (its demand above the capacity that
served it, on any metric) and ``α`` the budget. Each miss raises capacity by about ``γ``; each covered step
lowers it by ``γ α``, so the controller sits where misses come at rate ``α``. ACI's guarantee, for any
demand sequence: over ``T`` steps the realised miss rate is within ``(hi - lo + γ) / (γ T)`` of ``α``
(the bounds keep one freak burst from buying capacity for days).

One tracker per decision stream (an app, or an app's phase): the whole plan is scaled together, because
the fast tier fills whatever the slow tiers leave, so the realised rate is set by the level the plan covers
at the fast tier's lead time, and a miss says nothing about which slow tier's band was short.

Pure values: the state is a frozen :class:`TrackerState` (JSON via :meth:`TrackerState.to_json`), kept by the
caller (the replay's rule between steps; the loop in the ledger's ``rule_state``, so it survives a restart
of the worker).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TrackerState:
    """``θ`` and what it has seen: steps observed and steps under-provisioned."""

    theta: float = 0.0
    steps: int = 0
    misses: int = 0

    @property
    def scale(self) -> float:
        """``s = exp(θ)``: the factor on the covered demand (and on the reactive rule's recommendation)."""
        return math.exp(self.theta)

    @property
    def rate(self) -> float | None:
        """The realised miss rate so far (None before any step)."""
        return self.misses / self.steps if self.steps else None

    def to_json(self) -> dict[str, Any]:
        return {"theta": round(self.theta, 6), "steps": self.steps, "misses": self.misses}

    @classmethod
    def from_json(cls, data: Any) -> TrackerState:
        """The state a caller kept, or the initial one when there is none or it does not parse."""
        if not isinstance(data, dict):
            return cls()
        try:
            theta = float(data.get("theta", 0.0))
            return cls(theta if math.isfinite(theta) else 0.0, int(data.get("steps", 0)), int(data.get("misses", 0)))
        except (TypeError, ValueError):
            return cls()


@dataclass(frozen=True)
class Tracker:
    """ACI on the realised under-provisioned steps (see the module docstring)."""

    budget: float  # α: the SLO's violation budget, a share of steps
    gain: float = 0.05  # γ: log-scale step per miss
    low: float = -0.3  # bounds of θ: capacity at most 26% under, 65% over the tuned level
    high: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.budget < 1:
            raise ValueError(f"the violation budget must be in (0, 1), got {self.budget}")
        if self.gain < 0 or not self.low <= 0 <= self.high:
            raise ValueError(f"tracker gain {self.gain} must be >= 0 and low {self.low} <= 0 <= high {self.high}")

    def update(self, state: TrackerState, missed: bool) -> TrackerState:
        """The state after observing one step (``missed``: it was under-provisioned)."""
        theta = state.theta + self.gain * (float(missed) - self.budget)
        return TrackerState(min(max(theta, self.low), self.high), state.steps + 1, state.misses + int(missed))


def under_provisioned(demand: Any, capacity: Any, tol: float = 1e-9) -> bool | None:
    """Whether ``demand`` (per metric) exceeded ``capacity``; None when the demand was not observed (no update).

    The same test as the replay's scoring (``prescale.replay.frontier.score_series``).
    """
    pairs = list(zip(demand, capacity, strict=True))
    if not pairs or any(d is None or not math.isfinite(float(d)) for d, _ in pairs):
        return None
    return any(float(d) > float(c) * (1 + tol) + tol for d, c in pairs)
