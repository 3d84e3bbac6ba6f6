"""The replay's capacity simulation: orders, lead times, make-before-break releases and exact billing.

Why not ``prescale.cluster``'s ``SimulatedCluster``: it carries out a ``Plan`` step by step through the
executor's waits and polls (provision, start, drain, release, each observed), which is the right fidelity
for one decision and far too slow for 10,080 decisions per setting and dozens of settings per backtest. This
module keeps the same semantics at the granularity of the replay's step, vectorised over types. What acting
does is defined once, in ``prescale.holding`` (``Holding``, ``apply_target``): the executor keeps a
``Holding`` and runs ``apply_target`` on it, the same function the pure decision (``prescale.decision``)
projects its own actions with, so a plan and its act cannot disagree. In short:

* a node of type ``i`` ordered at the decision of step ``t`` serves from step ``t + r[i]`` (``Fleet.ready``)
  and is billed from its order to its release: ``price[i] * step / 3600`` USD for every step it is *held*
  (booting or serving), so cost is exact per node-second at the step's resolution;
* lowering a type cancels its booting nodes first, the latest to arrive first (they serve nothing yet and
  stop costing at once), then releases serving nodes, the dearest per unit of demand first, but only while
  the serving capacity that stays is at least ``keep`` (per metric): make-before-break, so swapping a mix
  for a cheaper one never opens a gap while the new nodes boot; a release the guard blocks is retried at the
  next decision;
* a node released at a decision does not serve during that step; nodes arriving at a step serve in it.

Per step the simulation records the nodes held and serving per type and the nodes ordered and removed;
``migrations`` counts nodes moved between types (a removal of one type matched, first come first served,
with orders of another type placed within the removal's lead-time window: the make-before-break swaps).

Deliberately not modelled: provisioning failures, slow starts and spot reclaims (``SimulatedCluster``'s
faults; every policy here buys on demand), pod scheduling inside a node (a node serves ``served(type)``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from prescale.fleet import Fleet
from prescale.holding import TOL, Holding, apply_target

__all__ = ["TOL", "Executor", "Series", "count_migrations"]


@dataclass(frozen=True, eq=False)
class Series:
    """What one run did, step by step (``T`` steps, ``n`` types)."""

    held: np.ndarray  # (T, n) nodes billed during the step (booting or serving)
    ready: np.ndarray  # (T, n) nodes serving during the step
    orders: np.ndarray  # (T, n) nodes ordered at the step's decision
    removals: np.ndarray  # (T, n) nodes cancelled or released at the step's decision

    def cost_per_step(self, fleet: Fleet) -> np.ndarray:
        return self.held @ fleet.step_price

    def capacity(self, fleet: Fleet) -> np.ndarray:
        """Serving capacity per step and metric, ``(T, M)``."""
        return fleet.capacity(self.ready)

    def migrations(self, fleet: Fleet, *, start: int = 0) -> int:
        return count_migrations(self.orders, self.removals, window=fleet.max_ready + 1, start=start)


class Executor:
    """Holds the nodes of one run and carries out each decision's actions (see the module docstring).

    Its state is a :class:`~prescale.holding.Holding` value; :meth:`apply` is
    :func:`~prescale.holding.apply_target` on it (the same function the decision projects its own actions
    with), and records what was ordered and removed.
    """

    def __init__(self, fleet: Fleet, steps: int) -> None:
        self.fleet = fleet
        self.holding = Holding.serving(fleet)
        self.t = 0
        n = fleet.n
        self._held = np.zeros((steps, n), dtype=int)
        self._ready = np.zeros((steps, n), dtype=int)
        self._orders = np.zeros((steps, n), dtype=int)
        self._removals = np.zeros((steps, n), dtype=int)

    # -- state --------------------------------------------------------------------------------------
    @property
    def held(self) -> np.ndarray:
        return self.holding.held

    @property
    def ready(self) -> np.ndarray:
        return self.holding.ready

    def held_capacity(self, mask: np.ndarray | None = None) -> np.ndarray:
        held = self.held if mask is None else np.where(mask, self.held, 0)
        return self.fleet.capacity(held)

    def ready_capacity(self) -> np.ndarray:
        return self.fleet.capacity(self.holding.ready)

    def served(self, t: int) -> np.ndarray:
        """The capacity that served step ``t`` (recorded; ``t`` before the current step), per metric."""
        if not 0 <= t < self.t:
            raise ValueError(f"step {t} has not been recorded yet (the executor is at step {self.t})")
        return self.fleet.capacity(self._ready[t])

    def serving_profile(self, steps: int, mask: np.ndarray, *, limit: np.ndarray | None = None) -> np.ndarray:
        """Capacity of the ``mask`` types serving at steps ``t .. t + steps - 1`` (``Holding.serving_profile``)."""
        return self.holding.serving_profile(self.fleet, steps, mask, limit=limit)

    # -- time ---------------------------------------------------------------------------------------
    def begin(self, t: int) -> None:
        """Start step ``t`` (steps are taken in order): nodes due by now start serving."""
        for _ in range(t - self.t):
            self.holding = self.holding.arrive()
        self.t = t

    def warm_start(self, counts: np.ndarray) -> None:
        """The initial state: ``counts`` nodes already serving (no boot, nothing billed before step 0)."""
        self.holding = Holding.serving(self.fleet, np.asarray(counts, dtype=int))

    def end(self) -> None:
        """Record the step (after its decision)."""
        self._held[self.t] = self.holding.held
        self._ready[self.t] = self.holding.ready

    def series(self) -> Series:
        return Series(self._held, self._ready, self._orders, self._removals)

    # -- decisions ----------------------------------------------------------------------------------
    def apply(self, target: np.ndarray, *, keep: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Move the held counts of the ``mask`` types (default all) toward ``target``; ``keep``: serving floor."""
        applied = apply_target(self.fleet, self.holding, target, keep=keep, mask=mask)
        if applied.holding is self.holding:
            return
        self.holding = applied.holding
        self._orders[self.t] += applied.orders
        self._removals[self.t] += applied.removals


def count_migrations(orders: np.ndarray, removals: np.ndarray, *, window: int, start: int = 0) -> int:
    """Removals matched with orders of *another* type placed within ``window`` steps before (FIFO), from ``start``."""
    n = orders.shape[1]
    open_orders: list[list[int]] = [[] for _ in range(n)]  # per type: [step, count] still unmatched
    moved = 0
    for t in np.flatnonzero(orders.any(axis=1) | removals.any(axis=1)):
        for i in np.flatnonzero(orders[t]):
            open_orders[i].append([int(t), int(orders[t, i])])
        for i in np.flatnonzero(removals[t]):
            left = int(removals[t, i])
            for j in range(n):
                if j == i or left == 0:
                    continue
                queue = open_orders[j]
                while queue and queue[0][0] < t - window:
                    queue.pop(0)
                for entry in queue:
                    take = min(left, entry[1])
                    entry[1] -= take
                    left -= take
                    if t >= start:
                        moved += take
                    if left == 0:
                        break
                open_orders[j] = [e for e in queue if e[1] > 0]
    return moved
