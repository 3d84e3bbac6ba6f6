"""One decision of the predictive rule for `prescale plan` and `prescale apply`: the loop's rule, once.

Both commands decide exactly as the orchestrate loop does (``tasks/orchestrate.py``): the assembly of
``prescale.decide_inputs`` with the knobs of ``prescale.orchestrate.knobs_from`` and the shared cover
solver, then ``prescale.decision.decide``. What differs is what they know:

* the demand is a forecast the user gives (``--demand``) or the profile's example ramp, and the decision
  is taken at its first step (the step being decided is the demand's first);
* nothing is observed, so the reactive floor is 0 (the forecast alone decides);
* what is held: ``plan`` takes ``--current`` (serving, nothing booting), ``apply`` what the cluster
  reports (booting nodes with their expected arrival);
* no state from earlier decisions: a one-off decision starts the slow tiers' stabilisation afresh (the
  loop keeps it in its ledger).

``covered`` says whether the target, once its nodes serve, covers the demand of the steps the rule
decides for now: ``D[j]`` for ``j`` up to the fast tier's lead plus the hold window (later steps are bought
later, on a fresher forecast: the rule's design, ``prescale.decision``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from prescale.catalog import AppProfile, Catalog
from prescale.decide_inputs import Assembled, Held, assemble, rejected, target_nodes
from prescale.decision import Decision, decide
from prescale.forecast import Forecast
from prescale.holding import TOL
from prescale.orchestrate import knobs_from
from prescale.replay.covers import shared_covers
from prescale.settings import Settings


@dataclass(frozen=True, eq=False)
class Ruled:
    """One decision and what the commands show of it."""

    assembled: Assembled
    decision: Decision
    nodes: dict[str, int]
    cost_per_hour: float
    covered: bool
    rejected: dict[str, str]

    @property
    def reasons(self) -> list[str]:
        return [*self.assembled.notes, *self.decision.reasons]

    def to_dict(self) -> dict[str, Any]:
        """DESIGN.md's ``prescale plan --json`` keys (``allocation``, ``cost_per_hour``, ``covered``,
        ``rejected``) and the rule's own (``reasons``, ``fallback``, the knobs)."""
        inp = self.assembled.inp
        return {
            "app": inp.fleet.app,
            "rule": "predictive",
            "allocation": self.nodes,
            "cost_per_hour": round(self.cost_per_hour, 4),
            "covered": self.covered,
            "rejected": self.rejected,
            "reasons": self.reasons,
            "fallback": self.decision.fallback,
            "step_seconds": inp.fleet.step_seconds,
            "hold_steps": inp.hold,
        }


def decide_once(catalog: Catalog, profile: AppProfile, forecast: Forecast, held: Held, settings: Settings) -> Ruled:
    """The rule at the forecast's first step (see the module docstring)."""
    knobs = knobs_from(settings)
    assembled = assemble(catalog, profile, forecast=forecast, observed={}, held=held, knobs=knobs, state=None,
                         now=forecast.start, covers=shared_covers(settings.replay.cover_resolution))  # fmt: skip
    decision = decide(assembled.inp)
    fleet, covered = assembled.fleet, assembled.inp.covered
    horizon = None if covered is None else len(covered)
    return Ruled(
        assembled=assembled,
        decision=decision,
        nodes=target_nodes(fleet, decision),
        cost_per_hour=fleet.cost_per_hour(decision.target),
        covered=_covers(assembled, decision),
        rejected=rejected(catalog, profile, fleet, decision, horizon=horizon),
    )


def _covers(assembled: Assembled, decision: Decision) -> bool:
    inp = assembled.inp
    if inp.covered is None:
        return False
    window = inp.fleet.fast.ready + inp.hold + 1
    need = inp.covered[:window].max(axis=0)
    return bool((inp.fleet.capacity(decision.target) >= need - TOL * (1 + np.abs(need))).all())
