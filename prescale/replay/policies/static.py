r"""**Static peak**, swept over its multiple of the history's peak.

One cover, bought once: ``cover(f * p, all)`` with ``p`` the peak demand of the history before the window
and the knob ``f`` a multiple of it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from pydantic import Field

from prescale.decision import with_min_nodes
from prescale.fleet import Fleet
from prescale.replay.policies.base import Context, PolicySettings, Rule, Swept
from prescale.replay.simulate import Executor

if TYPE_CHECKING:
    from prescale.replay.engine import ReplayConfig, ReplayInput


@dataclass(eq=False)
class StaticPeak(Rule):
    """One cover of ``factor`` times the history's peak, held all along."""

    ctx: Context
    peak: np.ndarray  # (M,)
    factor: float
    policy: str = "static"

    def __post_init__(self) -> None:
        fleet = self.ctx.fleet
        counts = self.ctx.covers.cover(np.maximum(self.peak, 0.0) * self.factor, self.ctx.all_types)
        self._target = with_min_nodes(fleet, counts.copy())

    @property
    def setting(self) -> str:
        return f"peak_x={self.factor:g}"

    def step(self, t: int, ex: Executor) -> None:
        ex.apply(self._target, keep=np.zeros(len(self.ctx.fleet.metrics)))


class StaticSettings(PolicySettings):
    factors: tuple[float, ...] = Field(
        default=(0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.25), description="Multiples of the history's peak swept."
    )


class StaticPolicy(Swept):
    name = "static"
    description = "One cover of a multiple of the history's peak, held all along."
    settings_type = StaticSettings

    def rules(self, settings: StaticSettings, inp: ReplayInput, ctx: Context,
              config: ReplayConfig) -> Iterator[StaticPeak]:
        for f in settings.factors:
            yield StaticPeak(ctx, peak=inp.history_peak, factor=f)

    def runs(self, settings: StaticSettings, inp: ReplayInput, fleet: Fleet) -> int:
        return len(settings.factors)
