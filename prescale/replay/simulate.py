"""The replay's capacity simulation: orders, lead times, make-before-break releases and exact billing.

Why not ``prescale.cluster``'s ``SimulatedCluster``: it carries out a ``Plan`` step by step through the
executor's waits and polls (provision, start, drain, release, each observed), which is the right fidelity
for one decision and far too slow for 10,080 decisions per setting and dozens of settings per backtest. This
module keeps the same semantics at the granularity of the replay's step, vectorised over types:

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

from prescale.replay.fleet import Fleet

TOL = 1e-9


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
    """Holds the nodes of one run and applies each decision's target counts (see the module docstring)."""

    def __init__(self, fleet: Fleet, steps: int) -> None:
        self.fleet = fleet
        n = fleet.n
        self.slots = fleet.max_ready + 1
        self.ready = np.zeros(n, dtype=int)
        self.pending = np.zeros((self.slots, n), dtype=int)  # pending[(t + k) % slots] arrives at step t + k
        self._booting = np.zeros(n, dtype=int)  # pending.sum(axis=0), kept up to date
        self.t = 0
        self._held = np.zeros((steps, n), dtype=int)
        self._ready = np.zeros((steps, n), dtype=int)
        self._orders = np.zeros((steps, n), dtype=int)
        self._removals = np.zeros((steps, n), dtype=int)
        self._removal_order = np.argsort(-fleet.unit_cost, kind="stable")

    # -- state --------------------------------------------------------------------------------------
    @property
    def held(self) -> np.ndarray:
        return self.ready + self._booting

    def held_capacity(self, mask: np.ndarray | None = None) -> np.ndarray:
        held = self.held if mask is None else np.where(mask, self.held, 0)
        return self.fleet.capacity(held)

    def ready_capacity(self) -> np.ndarray:
        return self.fleet.capacity(self.ready)

    def serving_profile(self, steps: int, mask: np.ndarray, *, limit: np.ndarray | None = None) -> np.ndarray:
        """Capacity of the ``mask`` types serving at steps ``t .. t + steps - 1`` as things stand, ``(steps, M)``.

        ``limit``: per type, count at most this many serving nodes (a target whose releases wait for the
        make-before-break floor: the nodes it lets go do not count, even while they still serve).
        """
        ready = self.ready if limit is None else np.minimum(self.ready, limit)
        now = self.fleet.capacity(np.where(mask, ready, 0))
        out = np.repeat(now[None, :], steps, axis=0)
        if not self._booting[mask].any() or steps <= 1:
            return out
        order = (self.t + np.arange(1, self.slots)) % self.slots
        arriving = np.where(mask[None, :], self.pending[order], 0).cumsum(axis=0) @ self.fleet.served  # (slots-1, M)
        k = min(steps, self.slots) - 1
        out[1 : k + 1] += arriving[:k]
        out[k + 1 :] += arriving[-1]
        return out

    # -- time ---------------------------------------------------------------------------------------
    def begin(self, t: int) -> None:
        """Start step ``t``: nodes due now start serving."""
        self.t = t
        slot = t % self.slots
        arriving = self.pending[slot]
        if arriving.any():
            self.ready += arriving
            self._booting -= arriving
            self.pending[slot] = 0

    def warm_start(self, counts: np.ndarray) -> None:
        """The initial state: ``counts`` nodes already serving (no boot, nothing billed before step 0)."""
        self.ready = np.asarray(counts, dtype=int).copy()
        self.pending[:] = 0
        self._booting[:] = 0

    def end(self) -> None:
        """Record the step (after its decision)."""
        self._held[self.t] = self.held
        self._ready[self.t] = self.ready

    def series(self) -> Series:
        return Series(self._held, self._ready, self._orders, self._removals)

    # -- decisions ----------------------------------------------------------------------------------
    def apply(self, target: np.ndarray, *, keep: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Move the held counts of the ``mask`` types (default all) toward ``target``; ``keep``: serving floor."""
        target = np.asarray(target, dtype=int)
        held = self.held
        diff = target - held
        if mask is not None:
            diff = np.where(mask, diff, 0)
        if not diff.any():
            return
        add = np.maximum(diff, 0)
        if add.any():
            self._order(add)
        cut = np.maximum(-diff, 0)
        if cut.any():
            cut = self._cancel(cut)
            if cut.any():
                self._release(cut, keep)

    def _order(self, add: np.ndarray) -> None:
        ready = self.fleet.ready
        now = add * (ready == 0)
        self.ready += now
        for i in np.flatnonzero(add * (ready > 0)):
            self.pending[(self.t + int(ready[i])) % self.slots, i] += add[i]
            self._booting[i] += add[i]
        self._orders[self.t] += add

    def _cancel(self, cut: np.ndarray) -> np.ndarray:
        """Cancel booting nodes, the latest to arrive first; returns what is left to release."""
        cut = cut.copy()
        if not (cut * self._booting).any():
            return cut
        for k in range(self.slots - 1, 0, -1):
            slot = (self.t + k) % self.slots
            take = np.minimum(cut, self.pending[slot])
            if take.any():
                self.pending[slot] -= take
                self._booting -= take
                self._removals[self.t] += take
                cut -= take
                if not cut.any():
                    break
        return cut

    def _release(self, cut: np.ndarray, keep: np.ndarray) -> None:
        served = self.fleet.served
        spare = self.ready_capacity() - np.maximum(np.asarray(keep, dtype=float), 0.0)
        for i in self._removal_order:
            if not cut[i]:
                continue
            k = min(int(cut[i]), int(self.ready[i]), _fits(spare, served[i]))
            if k > 0:
                self.ready[i] -= k
                self._removals[self.t, i] += k
                spare = spare - k * served[i]


def _fits(spare: np.ndarray, size: np.ndarray) -> int:
    """How many nodes of ``size`` can go while ``spare`` stays >= 0 on every metric they serve."""
    used = size > TOL
    if not used.any():
        return 1 << 30
    if (spare[used] < -TOL).any():
        return 0
    return int(np.floor((spare[used] + TOL * (1 + np.abs(spare[used]))) / size[used]).min())


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
