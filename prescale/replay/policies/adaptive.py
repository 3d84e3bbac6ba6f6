r"""**prescale, ex ante**: the policy a user gets, one run at the knobs its SLO tuned, steered online.

Where ``Predictive`` and ``Reactive`` sweep their knobs over the window (and the report picks each one's best
point with hindsight), :class:`Adaptive` runs once, at the :class:`~prescale.slo.SloPolicy` the before-use
search found on data *before* the window (``prescale.slo.tuning``): the rule the skill gate chose
(``predictive``: :func:`prescale.decision.decide` on ``D[t, j] = s[t] (1 + h) Q_q[t, j]`` and
``F[t] = s[t] (1 + h) o[t]``; ``reactive``: :func:`prescale.decision.decide`'s reactive rule, the HPA's
defaults at every compatible type, on ``F[t] = o[t] max(s[t] / u, 1)``, the target ``u / s[t]`` at most 1),
with ``s[t] = exp(θ[t])`` the online controller's scale (``prescale.slo.controller``): before deciding step
``t`` it observes whether step ``t - 1`` was under-provisioned (its demand, now known, above the capacity that
served it) and updates ``θ``. Nothing is chosen with hindsight; the controller starts from the state the
tuning replay ended in (the loop keeps it in its ledger, so it survives a restart).

Under a reactive policy the floor is computed exactly as the orchestrate loop computes it
(``SloPolicy.lift``, then ``prescale.orchestrate.knobs_for``'s headroom ``lift - 1``, then
``prescale.decide_inputs.assemble``'s ``(1 + h) o``), so the loop and this rule take the same decisions on
the same demand, to the bit (``tests/orchestrate/test_reactive_identity.py``).

Not registered in ``POLICIES``: it needs a tuned policy, which the sweep's settings cannot hold; the
ex-ante run (``prescale.slo.tuning.ex_ante``) builds it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from prescale.decision import ReactiveRule, decide
from prescale.replay.errors import ReplayError
from prescale.replay.policies.base import Context, Rule
from prescale.replay.policies.predictive import Predictive
from prescale.replay.policies.reactive import Reactive
from prescale.replay.simulate import Executor
from prescale.slo.controller import Tracker, TrackerState, under_provisioned
from prescale.slo.policy import SloPolicy


@dataclass(eq=False)
class Adaptive(Rule):
    """The tuned rule with its controller (see the module docstring)."""

    ctx: Context
    demand: np.ndarray  # (T, M) realised demand: step t - 1's is read at step t, once it is observed
    slo: SloPolicy
    hold: int  # b, steps
    step_seconds: int
    base: np.ndarray | None = None  # (T, H, M) Q_q: the forecast's quantile q (predictive only)
    state: TrackerState = field(default_factory=TrackerState)
    policy: str = "prescale"
    scales: list[float] = field(default_factory=list)  # s[t] per step, for reports

    def __post_init__(self) -> None:
        self._tracker = Tracker(self.slo.violation_budget, gain=self.slo.gain)
        ctx, slo = self.ctx, self.slo
        if slo.rule == "predictive":
            if self.base is None:
                raise ReplayError("the predictive rule needs the forecast's quantile path (base)")
            lift = 1.0 + slo.headroom
            self._inner: Rule = Predictive(ctx, covered=self.base * lift, floor=ctx.observed * lift,
                                           quantile=slo.quantile, headroom=slo.headroom, hold=self.hold,
                                           policy=self.policy)
        else:
            rule = ReactiveRule.hpa(self.step_seconds)
            self._inner = Reactive(ctx, target=slo.reactive_target, types=rule.types, tolerance=rule.tolerance,
                                   window=rule.window, capped=rule.capped, policy=self.policy)

    @property
    def setting(self) -> str:
        return self.slo.setting

    @property
    def fallback_steps(self) -> int:
        return self._inner.fallback_steps

    def step(self, t: int, ex: Executor) -> None:
        if t > 0:
            missed = under_provisioned(self.demand[t - 1], ex.served(t - 1))
            if missed is not None:
                self.state = self._tracker.update(self.state, missed)
        s = self.state.scale
        self.scales.append(s)
        inner = self._inner
        if isinstance(inner, Predictive):
            inner.act(decide(inner.decision_input(t, ex, scale=s)), ex)
            return
        headroom = self.slo.lift(s) - 1.0  # the loop's knobs (knobs_for) and floor (assemble), same arithmetic
        inp = inner.decision_input(t, ex, floor=self.ctx.observed[t] * (1.0 + headroom))
        if inp is not None:
            inner.act(decide(inp), ex)
