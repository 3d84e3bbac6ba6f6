"""The policy state derived from an app's SLO: which rule decides, and its knobs, with how they were found.

:class:`SloPolicy` is what the before-use tuning (``prescale.slo.tuning``) writes and every decision reads:

* ``rule``: ``predictive`` (the tiered rule of ``prescale.decision`` on the forecast's quantiles) where the
  forecast has skill, else ``reactive`` (the HPA-like rule on observed demand, same cheapest-type choice);
  ``reasons`` says why;
* ``quantile`` and ``headroom``: the predictive rule's covered level ``D = (1 + h) Q_q`` and its reactive floor
  ``F = (1 + h) o``; ``reactive_target``: the reactive rule's target utilisation ``u``;
* ``gain``: the online controller's step (``prescale.slo.controller``);
* ``tuning``: the search's summary (trials, seconds, the stretch replayed, the chosen point's cost and
  violations) and ``frontier``: every trial's (cost, violation share), the app's cost-of-SLO curve.

Without a tuning (a new app, or before the first train), :meth:`SloPolicy.untuned` gives a conservative
starting point for the budget; the online controller moves it from the first decision on.
"""

from __future__ import annotations

import json
import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class FrontierPoint(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    rule: Literal["predictive", "reactive"]
    setting: str
    cost: float
    violation_share: float
    feasible: bool


class SloPolicy(BaseModel):
    """The policy state for one app (or phase) at one violation budget (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    violation_budget: float = Field(gt=0, le=0.2, description="The SLO: share of minutes capacity may fall short.")
    rule: Literal["predictive", "reactive"] = "predictive"
    quantile: float = Field(default=0.9, gt=0, lt=1, description="Covered forecast quantile q.")
    headroom: float = Field(default=0.2, ge=0, description="h: covered demand (1 + h) Q_q, floor (1 + h) o.")
    reactive_target: float = Field(default=0.7, gt=0, le=1, description="The reactive rule's target utilisation.")
    gain: float = Field(default=0.05, ge=0, description="The online controller's log-scale step per miss.")
    tuned: bool = Field(default=False, description="Found by the before-use search (False: the untuned start).")
    reasons: tuple[str, ...] = ()
    skill: dict[str, float] = Field(default_factory=dict, description="Forecast skill over persistence by lead.")
    tuning: dict[str, Any] = Field(default_factory=dict)
    frontier: tuple[FrontierPoint, ...] = ()

    @classmethod
    def untuned(cls, budget: float) -> SloPolicy:
        """A conservative start before any tuning: a high quantile and a 20% headroom (the controller adapts)."""
        return cls(violation_budget=budget, quantile=0.95 if budget < 0.02 else 0.9, headroom=0.2,
                   reactive_target=0.7, reasons=("untuned: no before-use search yet (prescale train runs it)",))

    @property
    def setting(self) -> str:
        if self.rule == "reactive":
            return f"reactive target={self.reactive_target:g}"
        return f"q={self.quantile:g},headroom={self.headroom:.3g}"

    def lift(self, scale: float = 1.0) -> float:
        """The factor on demand the rule covers at the online controller's scale ``s``: ``s (1 + h)`` under
        the predictive rule (on the forecast's quantile and the observed demand), ``max(s / u, 1)`` under the
        reactive rule (on the observed demand: the target ``u / s``, at most 1)."""
        if not math.isfinite(scale) or scale <= 0:
            raise ValueError(f"the controller's scale must be a positive number, got {scale}")
        return max(scale / self.reactive_target, 1.0) if self.rule == "reactive" else scale * (1.0 + self.headroom)

    def for_budget(self, budget: float) -> SloPolicy:
        """This policy at another budget (settings override the profile's): untuned unless the budget matches."""
        if abs(budget - self.violation_budget) < 1e-12:
            return self
        start = SloPolicy.untuned(budget)
        return start.model_copy(update={"reasons": (f"tuned for budget {self.violation_budget:g}, asked "
                                                    f"{budget:g}: untuned start until the next train",)})

    def to_json(self) -> str:
        return self.model_dump_json(indent=1)

    @classmethod
    def from_json(cls, text: str | bytes | dict[str, Any]) -> SloPolicy:
        data = json.loads(text) if isinstance(text, (str, bytes)) else text
        return cls.model_validate(data)

    def summary(self) -> dict[str, Any]:
        """The short form reports and the ledger carry (no frontier)."""
        return {"violation_budget": self.violation_budget, "rule": self.rule, "setting": self.setting,
                "tuned": self.tuned, "reasons": list(self.reasons),
                "skill": {k: round(v, 4) for k, v in self.skill.items()}}
