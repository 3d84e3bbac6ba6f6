r"""**Predictive (ours)**: the pure decision of ``prescale.decision`` at every step, swept over its knobs.

Knobs: the covered quantile ``q`` and a headroom ``h`` (its utilisation target is ``1 / (1 + h)``), folded into
``D[t, j] = (1 + h) * Q_q[t, j]`` (from the forecast made at ``t``, origin ``t-1``, steps ``t .. t+H-1``) and
``F[t] = (1 + h) * o[t]``. The rule itself (slow tiers hold bands sized by their break-even, the fast tier
fills what the slow nodes will not by readiness, releases keep ``max(max_{j <= r_f} D[t, j], F[t])``
serving, a missing forecast falls back to the floor) is the pure :func:`prescale.decision.decide`, stated
there. :class:`Predictive` only adapts it to the replay: at each step it hands ``decide`` a snapshot of the
executor's holding, ``D[t]``, ``F[t]`` and the state the previous decision returned, then has the executor
carry the decision's actions out in order (decide, then act; the decision never touches the executor). The
hold window ``b`` is the replay's ``hold_minutes``, shared with the every-minute loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from pydantic import Field

from prescale.decision import Decision, DecisionInput, RuleState, decide
from prescale.fleet import Fleet
from prescale.replay.errors import ReplayError
from prescale.replay.policies.base import Context, PolicySettings, Rule, Swept
from prescale.replay.simulate import Executor

if TYPE_CHECKING:
    from prescale.replay.engine import ReplayConfig, ReplayInput


@dataclass(eq=False)
class Predictive(Rule):
    """Forecast-driven, tiered by lead time: :func:`prescale.decision.decide` at every step, then its actions.

    Each step it hands the pure decision a snapshot of the executor's holding, ``D[t]`` and ``F[t]`` and the
    state the previous decision returned, then carries the decision's actions out in order. It keeps nothing
    else between steps but that state and the count of fallback steps (read from the decisions).
    """

    ctx: Context
    covered: np.ndarray  # (T, H, M) D[t, j]; NaN where the forecast is missing
    floor: np.ndarray  # (T, M) F[t]
    quantile: float
    headroom: float
    hold: int  # b, steps
    policy: str = "predictive"
    _fallbacks: int = 0
    _state: RuleState = field(default_factory=RuleState.initial)

    def __post_init__(self) -> None:
        metrics = len(self.ctx.fleet.metrics)
        if self.covered.ndim != 3 or self.covered.shape[2] != metrics:
            raise ReplayError(f"covered demand must be shaped (T, H, {metrics}), got {self.covered.shape}")

    @property
    def setting(self) -> str:
        return f"q={self.quantile:g},headroom={self.headroom:g}"

    @property
    def fallback_steps(self) -> int:
        return self._fallbacks

    def decision_input(self, t: int, ex: Executor, scale: float = 1.0) -> DecisionInput:
        """What the decision of step ``t`` knows: the executor's holding, ``D[t]``, ``F[t]``, the rule's state.

        ``scale``: a factor on both ``D[t]`` and ``F[t]`` (the SLO controller's ``s[t]``, ``policies.adaptive``).
        """
        ctx = self.ctx
        covered, floor = self.covered[t], self.floor[t]
        if scale != 1.0:
            covered, floor = covered * scale, floor * scale
        return DecisionInput(ctx.fleet, ctx.covers, ex.holding, covered=covered, floor=floor,
                             hold=self.hold, margin=ctx.margin, state=self._state)

    def step(self, t: int, ex: Executor) -> None:
        self.act(decide(self.decision_input(t, ex)), ex)

    def act(self, decision: Decision, ex: Executor) -> None:
        """Carry the decision's actions out in order; keep its state for the next step."""
        for action in decision.actions:
            ex.apply(action.target, keep=action.keep, mask=action.mask)
        self._state = decision.state
        self._fallbacks += int(decision.fallback)


class PredictiveSettings(PolicySettings):
    quantiles: tuple[float, ...] = Field(default=(0.5, 0.8, 0.9, 0.95), description="Covered quantiles swept.")
    headrooms: tuple[float, ...] = Field(default=(0.0, 0.05, 0.1, 0.2, 0.35), description="Headrooms swept.")


class PredictivePolicy(Swept):
    name = "predictive"
    description = "Ours: the decision on the forecast's quantiles; every quantile x headroom."
    settings_type = PredictiveSettings
    needs_forecast = True

    def rules(self, settings: PredictiveSettings, inp: ReplayInput, ctx: Context,
              config: ReplayConfig) -> Iterator[Predictive]:
        hold = config.hold_steps(inp.step_seconds)
        for q in settings.quantiles:
            base = inp.covered(q)  # once per quantile, shared by its headrooms
            for h in settings.headrooms:
                yield Predictive(ctx, covered=base * (1 + h), floor=ctx.observed * (1 + h), quantile=q, headroom=h,
                                 hold=hold)

    def runs(self, settings: PredictiveSettings, inp: ReplayInput, fleet: Fleet) -> int:
        return len(settings.quantiles) * len(settings.headrooms)
