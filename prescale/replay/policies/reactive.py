r"""**Reactive (HPA + Karpenter, made fair)**, swept over its target utilisation and the types it may buy.

Knobs: the target utilisation ``u`` and the types it may buy (all compatible ones, as Karpenter would, or
only the fastest tier). Like the HPA it reacts to observed demand only: the recommendation is ``o[t] / u``,
unless the utilisation of what it holds is within ``tolerance`` of the target (then it keeps the binding
metric where it is); scale-down is stabilised over ``stabilisation_seconds`` (the highest recommendation of
the window wins; scale-up is immediate); then :func:`~prescale.decision.retarget` with the cheapest cover of
what is missing, which is Karpenter's cheapest compatible type per unit of demand, bin-packed.

The rule itself is the reactive branch of the one decision function (:func:`prescale.decision.decide` with a
:class:`~prescale.decision.ReactiveRule`, stated there), the same the orchestrate loop runs for an app whose
SLO policy chose the reactive rule, and the ex-ante ``Adaptive`` runs under such a policy. :class:`Reactive`
only adapts it to the replay, as ``Predictive`` does the predictive rule: at each step it hands ``decide`` a
snapshot of the executor's holding, ``F[t] = o[t] / u`` and the state the previous decision returned (the
recent recommendations), then has the executor carry the actions out. The sweep runs it uncapped by the profile's
``max_nodes``, as the baseline was recorded (``tests/replay/real_cases.json``); ``Adaptive`` runs it capped,
as the loop must. A step whose demand was not observed
(``o[t]`` not finite: before the data starts, or a gap) keeps what runs and leaves the window as it was.

``retarget`` (shared, defined in ``prescale.decision``): if what the subset holds covers ``need``, drop the
dearest-per-unit nodes that are not needed; else add ``cover(need - held)``; if the result costs more than
``1 + margin`` times ``cover(need)``, take ``cover(need)`` instead (Karpenter's consolidation: a cheaper mix,
swapped in make-before-break).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field

from prescale.decision import Decision, DecisionInput, ReactiveRule, RuleState, decide, stabilisation_steps
from prescale.fleet import Fleet
from prescale.replay.errors import ReplayError
from prescale.replay.policies.base import Context, PolicySettings, Rule, Swept
from prescale.replay.simulate import Executor

if TYPE_CHECKING:
    from prescale.replay.engine import ReplayConfig, ReplayInput

__all__ = ["Reactive", "ReactivePolicy", "ReactiveSettings", "stabilisation_steps"]


@dataclass(eq=False)
class Reactive(Rule):
    """HPA-like on observed demand, Karpenter-like node choice: :func:`prescale.decision.decide`'s reactive
    rule at every step, then its actions (see the module docstring)."""

    ctx: Context
    target: float
    types: str = "all"  # "all" compatible types, or "fast": the fastest tier only
    tolerance: float = 0.1
    window: int = 6  # recommendations kept for the scale-down stabilisation (incl. the current one)
    policy: str = "reactive"
    capped: bool = False  # the profile's max_nodes caps the target (Adaptive: as the loop); the sweep: not
    _state: RuleState = field(default_factory=RuleState.initial)

    def __post_init__(self) -> None:
        if not 0 < self.target <= 1:
            raise ReplayError(f"reactive target utilisation must be in (0, 1], got {self.target}")
        if self.types not in ("all", "fast"):
            raise ReplayError(f"reactive types must be 'all' or 'fast', got {self.types!r}")
        self._rule = ReactiveRule(self.window, self.tolerance, self.types, capped=self.capped)

    @property
    def setting(self) -> str:
        return f"target={self.target:g},types={self.types}"

    def decision_input(self, t: int, ex: Executor, floor: np.ndarray | None = None) -> DecisionInput | None:
        """What the decision of step ``t`` knows: the executor's holding, ``F[t]`` (``o[t] / u`` unless
        ``floor`` is given: ``Adaptive`` passes the loop's ``o[t] (1 + h)``), the recent recommendations.
        None when ``o[t]`` was not observed (nothing to decide on: keep what runs)."""
        observed = self.ctx.observed[t]
        if not np.isfinite(observed).all():
            return None
        ctx = self.ctx
        floor = observed / self.target if floor is None else floor
        return DecisionInput(ctx.fleet, ctx.covers, ex.holding, covered=None, floor=floor, hold=0,
                             margin=ctx.margin, state=self._state, reactive=self._rule)

    def step(self, t: int, ex: Executor) -> None:
        inp = self.decision_input(t, ex)
        if inp is not None:
            self.act(decide(inp), ex)

    def act(self, decision: Decision, ex: Executor) -> None:
        """Carry the decision's actions out in order; keep its state for the next step."""
        for action in decision.actions:
            ex.apply(action.target, keep=action.keep, mask=action.mask)
        self._state = decision.state


class ReactiveSettings(PolicySettings):
    targets: tuple[float, ...] = Field(default=(0.5, 0.6, 0.7, 0.8, 0.9), description="Target utilisations swept.")
    types: tuple[Literal["all", "fast"], ...] = Field(
        default=("all", "fast"), description="Type sets swept: all compatible types, or the fastest tier only."
    )
    tolerance: float = Field(default=0.1, ge=0, description="No change within this of the target.")
    stabilisation_seconds: float = Field(default=300.0, ge=0, description="Scale-down stabilisation window.")


class ReactivePolicy(Swept):
    name = "reactive"
    description = "HPA-like on observed demand, Karpenter-like node choice; every type set x target."
    settings_type = ReactiveSettings

    def rules(self, settings: ReactiveSettings, inp: ReplayInput, ctx: Context,
              config: ReplayConfig) -> Iterator[Reactive]:
        window = stabilisation_steps(inp.step_seconds, settings.stabilisation_seconds)
        for types in self._kinds(settings, ctx.fleet):
            for u in settings.targets:
                yield Reactive(ctx, target=u, types=types, tolerance=settings.tolerance, window=window)

    def runs(self, settings: ReactiveSettings, inp: ReplayInput, fleet: Fleet) -> int:
        return len(self._kinds(settings, fleet)) * len(settings.targets)

    @staticmethod
    def _kinds(settings: ReactiveSettings, fleet: Fleet) -> list[str]:
        """The type sets that differ on this fleet ("fast" is "all" when there is one tier)."""
        return [k for k in settings.types if k == "all" or len(fleet.tiers) > 1]
