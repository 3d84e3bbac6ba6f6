"""One decision of the app's SLO policy for `prescale plan` and `prescale apply`: the loop's rule, once.

Both commands decide exactly as the orchestrate loop does (``tasks/orchestrate.py``): the knobs come from
the app's SLO (``prescale.orchestrate.knobs_from``: the policy's quantile and headroom, or its reactive
target; the replay's hold window and margin), then the assembly of ``prescale.decide_inputs`` with the
shared cover solver, then ``prescale.decision.decide``. What differs is what they know:

* the policy: a tuned one only when given (``--slo-policy FILE``, the JSON logged with the champion, read
  by :func:`read_policy`), at the app's budget (profile, then settings); otherwise the untuned start for
  that budget (``SloPolicy.untuned``), and the reasons say so;
* no controller: a one-off decision runs the policy at scale ``s = 1`` (the loop steers ``s`` online);

* the demand is a forecast the user gives (``--demand``) or the profile's example ramp, and the decision
  is taken at its first step (the step being decided is the demand's first);
* nothing is observed, so the predictive rule's reactive floor is 0 (the forecast alone decides); the
  reactive rule, which decides on observed demand, takes the demand's first step (its median) as observed;
* what is held: ``plan`` takes ``--current`` (serving, nothing booting), ``apply`` what the cluster
  reports (booting nodes with their expected arrival);
* no state from earlier decisions: a one-off decision starts the slow tiers' stabilisation afresh (the
  loop keeps it in its ledger).

``covered`` says whether the plan meets the app's SLO: the target, once its nodes serve, covers the SLO's
covered demand ``(1 + h) Q_q`` (the policy's quantile and headroom) of the steps the rule decides for now,
``j`` up to the fast tier's lead plus the hold window (later steps are bought later, on a fresher
forecast: the rule's design, ``prescale.decision``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from prescale.catalog import AppProfile, Catalog
from prescale.decide_inputs import Assembled, Held, assemble, rejected, target_nodes
from prescale.decision import Decision, decide
from prescale.forecast import Forecast
from prescale.holding import TOL
from prescale.orchestrate import knobs_from
from prescale.replay.covers import shared_covers
from prescale.settings import Settings
from prescale.slo.policy import SloPolicy

SLO_POLICY_HELP = ("The SLO policy to decide with: a JSON file as `prescale train` logs it with the champion "
                   "(slo_policy.json). Default: the untuned start for the app's violation budget.")


class SloPolicyError(ValueError):
    """An ``--slo-policy`` file that cannot be read or is not a policy."""


def read_policy(path: Path | None) -> SloPolicy | None:
    """The policy in ``path`` (``SloPolicy.from_json``); None without a path. Errors name the file."""
    if path is None:
        return None
    try:
        return SloPolicy.from_json(Path(path).read_text())
    except OSError as exc:
        raise SloPolicyError(f"--slo-policy {path}: cannot read it ({exc.strerror or exc})") from exc
    except (ValueError, ValidationError) as exc:
        first = str(exc).splitlines()[:3]
        raise SloPolicyError(f"--slo-policy {path}: not an SLO policy's JSON ({' '.join(first)})") from exc


def policy_for(profile: AppProfile, settings: Settings, given: SloPolicy | None) -> SloPolicy:
    """The policy at the app's budget (``Settings.slo.budget_for`` over the profile's): ``given`` there
    (``for_budget``), else the untuned start."""
    budget = settings.slo.budget_for(profile.name, profile.slo.violation_budget)
    return given.for_budget(budget) if given is not None else SloPolicy.untuned(budget)


@dataclass(frozen=True, eq=False)
class Ruled:
    """One decision and what the commands show of it."""

    assembled: Assembled
    decision: Decision
    policy: SloPolicy
    nodes: dict[str, int]
    cost_per_hour: float
    covered: bool
    rejected: dict[str, str]

    @property
    def reasons(self) -> list[str]:
        return [f"{self.policy.rule} rule, {self.policy.setting}", *self.policy.reasons, *self.assembled.notes,
                *self.decision.reasons]  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """DESIGN.md's ``prescale plan --json`` keys (``allocation``, ``cost_per_hour``, ``covered``,
        ``rejected``), the SLO the decision ran under (``slo``) and the rule's own (``reasons``, ``fallback``,
        the knobs)."""
        inp, policy = self.assembled.inp, self.policy
        return {
            "app": inp.fleet.app,
            "rule": policy.rule,
            "slo": {"violation_budget": policy.violation_budget, "rule": policy.rule, "setting": policy.setting,
                    "tuned": policy.tuned},
            "allocation": self.nodes,
            "cost_per_hour": round(self.cost_per_hour, 4),
            "covered": self.covered,
            "rejected": self.rejected,
            "reasons": self.reasons,
            "fallback": self.decision.fallback,
            "step_seconds": inp.fleet.step_seconds,
            "hold_steps": inp.hold,
        }


def decide_once(catalog: Catalog, profile: AppProfile, forecast: Forecast, held: Held, settings: Settings,
                policy: SloPolicy | None = None) -> Ruled:  # fmt: skip
    """The policy's rule at the forecast's first step (see the module docstring); ``policy``: a tuned one
    (``--slo-policy``), else the untuned start for the app's budget."""
    policy = policy_for(profile, settings, policy)
    knobs = knobs_from(settings, policy)
    reactive = policy.rule == "reactive"
    observed = _first_step_median(forecast) if reactive else {}
    assembled = assemble(catalog, profile, forecast=None if reactive else forecast, observed=observed, held=held,
                         knobs=knobs, state=None, now=forecast.start,
                         covers=shared_covers(settings.replay.cover_resolution),
                         fallback_step_seconds=forecast.step_seconds)  # fmt: skip
    decision = decide(assembled.inp)
    fleet, covered = assembled.fleet, assembled.inp.covered
    horizon = None if covered is None else len(covered)
    return Ruled(
        assembled=assembled,
        decision=decision,
        policy=policy,
        nodes=target_nodes(fleet, decision),
        cost_per_hour=fleet.cost_per_hour(decision.target),
        covered=_covers(assembled, decision, forecast, policy),
        rejected=rejected(catalog, profile, fleet, decision, horizon=horizon),
    )


def _first_step_median(forecast: Forecast) -> dict[str, float]:
    """The demand's first step, its median per metric: what the reactive rule takes as observed."""
    return {m: float(v) for m, v in zip(forecast.metrics, forecast.quantile(0.5)[0], strict=True)}


def _covers(assembled: Assembled, decision: Decision, forecast: Forecast, policy: SloPolicy) -> bool:
    """The SLO's covered demand ``(1 + h) Q_q`` over the steps decided now, against the target's capacity."""
    fleet, inp = assembled.fleet, assembled.inp
    demand = forecast.select(list(fleet.metrics))
    need_path = np.maximum(demand.quantile(policy.quantile), 0.0) * (1.0 + policy.headroom)
    window = fleet.fast.ready + inp.hold + 1
    need = need_path[:window].max(axis=0)
    return bool((fleet.capacity(decision.target) >= need - TOL * (1 + np.abs(need))).all())
