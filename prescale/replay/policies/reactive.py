r"""**Reactive (HPA + Karpenter, made fair)**, swept over its target utilisation and the types it may buy.

Knobs: the target utilisation ``u`` and the types it may buy (all compatible ones, as Karpenter would, or
only the fastest tier). Like the HPA it reacts to observed demand only: the recommendation is ``o[t] / u``,
unless the utilisation of what it holds is within ``tolerance`` of the target (then it keeps the binding
metric where it is); scale-down is stabilised over ``stabilisation_seconds`` (the highest recommendation of
the window wins; scale-up is immediate); then :func:`~prescale.decision.retarget` with the cheapest cover of
what is missing, which is Karpenter's cheapest compatible type per unit of demand, bin-packed.

``retarget`` (shared, defined in ``prescale.decision``): if what the subset holds covers ``need``, drop the
dearest-per-unit nodes that are not needed; else add ``cover(need - held)``; if the result costs more than
``1 + margin`` times ``cover(need)``, take ``cover(need)`` instead (Karpenter's consolidation: a cheaper mix,
swapped in make-before-break).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field

from prescale.decision import retarget, with_min_nodes
from prescale.fleet import Fleet
from prescale.replay.errors import ReplayError
from prescale.replay.policies.base import Context, PolicySettings, Rule, Swept
from prescale.replay.simulate import Executor

if TYPE_CHECKING:
    from prescale.replay.engine import ReplayConfig, ReplayInput


@dataclass(eq=False)
class Reactive(Rule):
    """HPA-like on observed demand, Karpenter-like node choice (see the module docstring)."""

    ctx: Context
    target: float
    types: str = "all"  # "all" compatible types, or "fast": the fastest tier only
    tolerance: float = 0.1
    window: int = 6  # recommendations kept for the scale-down stabilisation (incl. the current one)
    policy: str = "reactive"
    _recs: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not 0 < self.target <= 1:
            raise ReplayError(f"reactive target utilisation must be in (0, 1], got {self.target}")
        fleet = self.ctx.fleet
        if self.types not in ("all", "fast"):
            raise ReplayError(f"reactive types must be 'all' or 'fast', got {self.types!r}")
        self._subset = self.ctx.all_types if self.types == "all" else fleet.fast.idx
        self._mask = np.zeros(fleet.n, dtype=bool)
        self._mask[list(self._subset)] = True

    @property
    def setting(self) -> str:
        return f"target={self.target:g},types={self.types}"

    def step(self, t: int, ex: Executor) -> None:
        observed = self.ctx.observed[t]
        if not np.isfinite(observed).all():
            return  # nothing observed yet: keep what runs
        rec = self._recommend(observed / self.target, ex.held_capacity(self._mask))
        self._recs.append(rec)
        if len(self._recs) > self.window:
            del self._recs[0]
        need = rec if len(self._recs) == 1 else np.maximum.reduce(self._recs)
        held = ex.held
        target = with_min_nodes(self.ctx.fleet, retarget(self.ctx, held, need, self._subset))
        ex.apply(target, keep=need, mask=self._mask)

    def _recommend(self, desired: np.ndarray, held: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = np.where(desired > 0, desired / held, 0.0)
        ratio = float(np.max(ratios)) if ratios.size else 0.0
        if math.isfinite(ratio) and ratio > 0 and abs(ratio - 1.0) <= self.tolerance:
            return desired / ratio  # within tolerance: the binding metric stays where it is
        return desired


def stabilisation_steps(step_seconds: int, seconds: float = 300.0) -> int:
    """Recommendations within the HPA's scale-down window, the current one included."""
    return max(1, math.ceil(seconds / step_seconds)) + 1


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
