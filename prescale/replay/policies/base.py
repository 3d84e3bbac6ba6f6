r"""What a replay policy is: a protocol, the rules a simulated policy runs, and the context they share.

A **policy** (:class:`ReplayPolicy`) is one scaling strategy the replay compares. It has a name, a settings
model (its knobs and sweep, with the shipped defaults; the settings tree and :class:`~prescale.replay.engine.
ReplayConfig` read it from the registry), how many runs its sweep makes, and ``replay``: every setting over
the window, scored into a :class:`~prescale.replay.frontier.PolicyResult`. Most policies are simulated
(:class:`Swept`): a sweep of :class:`Rule`\ s, one per setting, each deciding every step on the simulated
cluster; the oracle is solved instead.

Notation: decision at the start of step ``t``; ``d[t]`` the demand vector of step ``t`` (not yet observed at
the decision); ``o[t] = d[t-1]`` the last observed demand (the latest observed before it, across gaps);
``r[i]`` steps from order to serving for type ``i``; tiers by kind, fastest first (``prescale.fleet``);
``cover(l, S)`` the cheapest nodes of the types ``S`` serving ``l`` (``covers.py``, the allocation's MILP).
Every rule ends in :func:`~prescale.decision.retarget` or a tier's band, and the
:class:`~prescale.replay.simulate.Executor` carries the counts out make-before-break
(``prescale.holding.apply_target``).

A rule's ``step(t, ex)`` acts at step ``t``: it reads what is known then and has the executor carry out its
target. It is not :func:`prescale.decision.decide` (the pure decision, which acts on nothing); the
predictive rule's step is that decision followed by its actions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict

from prescale.fleet import Fleet
from prescale.replay.covers import CoverCache
from prescale.replay.frontier import PolicyResult, score_series
from prescale.replay.simulate import Executor, Series

if TYPE_CHECKING:  # the engine imports the registry; these are for annotations only
    from prescale.replay.engine import ReplayConfig, ReplayInput

Tick = Callable[[str], None]  # called once after every run, with what ran


class PolicySettings(BaseModel):
    """A policy's knobs and sweep; every field has a default and a description. Frozen; unknown keys fail."""

    model_config = ConfigDict(frozen=True, extra="forbid")


@dataclass(frozen=True, eq=False)
class Context:
    """Arrays every rule of one replay shares (``T`` steps, ``M`` metrics)."""

    fleet: Fleet
    covers: CoverCache
    observed: np.ndarray  # (T, M) o[t]: the last demand observed before step t (NaN before any)
    margin: float = 0.1  # consolidation margin of retarget

    @property
    def all_types(self) -> tuple[int, ...]:
        return tuple(range(self.fleet.n))


class Rule:
    """A policy at one setting: ``step`` once per step, in order."""

    policy: str = "rule"

    @property
    def setting(self) -> str:
        raise NotImplementedError

    def step(self, t: int, ex: Executor) -> None:
        """Act at step ``t``: decide from what is known then, and have ``ex`` carry it out."""
        raise NotImplementedError

    @property
    def fallback_steps(self) -> int:
        return 0


def run_rule(fleet: Fleet, rule: Rule, steps: int) -> Series:
    """Simulate ``rule`` over ``steps`` steps from a warm start (``prescale.replay.engine``'s timeline)."""
    ex = Executor(fleet, steps)
    for t in range(steps):
        ex.begin(t)
        rule.step(t, ex)
        if t == 0:
            ex.warm_start(ex.held)
        ex.end()
    series = ex.series()
    series.orders[0] = 0
    series.removals[0] = 0
    return series


class ReplayPolicy(Protocol):
    """One scaling strategy a replay compares (registered in ``prescale.replay.policies``)."""

    name: str  # the key in reports, the registry and the settings tree
    description: str  # one line, for the settings tree
    settings_type: type[PolicySettings]  # its knobs and sweep; the defaults are the shipped settings
    needs_forecast: bool  # left out of a replay whose input has no forecasts

    def runs(self, settings: Any, inp: ReplayInput, fleet: Fleet) -> int:
        """How many runs ``replay`` makes (``tick`` calls), for a progress bar."""
        ...

    def replay(self, settings: Any, inp: ReplayInput, ctx: Context, config: ReplayConfig, *,
               tick: Tick) -> PolicyResult:
        """Every setting of the sweep over ``inp``, scored; ``tick`` after each run."""
        ...


class Swept:
    """A simulated policy: one :class:`Rule` per setting of its sweep, each run and scored over the window.

    Subclasses set the protocol's attributes and write ``rules``; the sweep keeps the series of the headline
    point (for plots).
    """

    name: ClassVar[str]
    description: ClassVar[str]
    settings_type: ClassVar[type[PolicySettings]]
    needs_forecast: ClassVar[bool] = False

    def rules(self, settings: Any, inp: ReplayInput, ctx: Context, config: ReplayConfig) -> Iterable[Rule]:
        """Every setting's rule, lazily (a rule may share precomputed paths with the next)."""
        raise NotImplementedError

    def runs(self, settings: Any, inp: ReplayInput, fleet: Fleet) -> int:
        raise NotImplementedError

    def replay(self, settings: Any, inp: ReplayInput, ctx: Context, config: ReplayConfig, *,
               tick: Tick) -> PolicyResult:
        result = PolicyResult(self.name)
        budgets = dict(config.budgets)
        for rule in self.rules(settings, inp, ctx, config):
            series = run_rule(ctx.fleet, rule, len(inp.index))
            result.add(rule.setting, score_series(ctx.fleet, series, inp.demand, start=inp.start,
                                                  fallback_steps=rule.fallback_steps))
            best = result.headline(budgets)
            if best is not None and best.setting == rule.setting:
                result.series = {rule.setting: series}
            tick(f"{self.name} {rule.setting}")
        return result
