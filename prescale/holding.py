r"""What one app holds, as a value, and what carrying out a target does to it: the act, projected.

A decision is taken at the start of a step. At that moment the app holds ``ready[i]`` serving nodes of type
``i`` and ``booting[k-1, i]`` nodes ordered earlier that serve from ``k`` steps on (``k = 1 .. R``,
``R = max_i r[i]``, ``r`` the ready offsets of ``prescale.fleet``). :class:`Holding` is that snapshot, frozen.

:func:`apply_target` is the one definition of what carrying out a target means; the replay's executor
(``prescale.replay.simulate``) runs it on its own state every time it acts, and the decision function
(``prescale.decision``) runs it on a snapshot to see what its earlier actions of a step imply for the later
ones. Given ``(target, keep, mask)``, for the ``mask`` types (all by default), with ``Δ = target - held``:

* ``Δ[i] > 0``: order ``Δ[i]`` nodes; they serve from ``r[i]`` steps on (at once when ``r[i] = 0``);
* ``Δ[i] < 0``: cancel booting nodes first, the latest to arrive first (they serve nothing yet and stop
  costing at once), then release serving nodes, the dearest per unit of demand first
  (``Fleet.removal_order``), but only while the serving capacity that stays is at least ``keep`` on every
  metric the node serves: make-before-break, so a swap to a cheaper mix never opens a gap while the new
  nodes boot. A release the guard blocks is not remembered: the next decision asks again.

Orders come before cancels and releases, so a node ready at once (``r = 0``) counts toward ``keep``.
:meth:`Holding.arrive` moves to the next step (nodes due serve); :meth:`Holding.serving_profile` is the
capacity that will serve over the next steps as things stand.

Rejected alternative: the decision reading and mutating the executor between its actions (what the replay
did before issue 14). It made the decision impossible to call without a simulated cluster, and a dry run
impossible without side effects; a projection on a value costs a few array copies per action.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from prescale.fleet import Fleet

TOL = 1e-9


@dataclass(frozen=True, eq=False)
class Holding:
    """Nodes serving now and booting by arrival, per type (see the module docstring); arrays are read-only."""

    ready: np.ndarray  # (n,) serving during this step
    booting: np.ndarray  # (R, n) booting[k - 1] serves from k steps on
    total_booting: np.ndarray = field(init=False, repr=False)  # booting.sum(axis=0)

    def __post_init__(self) -> None:
        ready = np.array(self.ready, dtype=int)
        booting = np.array(self.booting, dtype=int).reshape(-1, len(ready))
        total = booting.sum(axis=0)
        for a in (ready, booting, total):
            a.setflags(write=False)
        object.__setattr__(self, "ready", ready)
        object.__setattr__(self, "booting", booting)
        object.__setattr__(self, "total_booting", total)

    @classmethod
    def serving(cls, fleet: Fleet, counts: np.ndarray | None = None) -> Holding:
        """``counts`` nodes serving (none by default), nothing booting."""
        ready = np.zeros(fleet.n, dtype=int) if counts is None else counts
        return cls(ready, np.zeros((fleet.max_ready, fleet.n), dtype=int))

    @property
    def held(self) -> np.ndarray:
        """Nodes billed: serving or booting, ``(n,)``."""
        return self.ready + self.total_booting

    def arrive(self) -> Holding:
        """The next step's holding: the nodes due in one step serve."""
        if not len(self.booting):
            return self
        rest = np.zeros_like(self.booting)
        rest[:-1] = self.booting[1:]
        return Holding(self.ready + self.booting[0], rest)

    def serving_profile(
        self, fleet: Fleet, steps: int, mask: np.ndarray, *, limit: np.ndarray | None = None
    ) -> np.ndarray:
        """Capacity of the ``mask`` types serving at this step and the next ``steps - 1``, ``(steps, M)``.

        ``limit``: per type, count at most this many serving nodes (a target whose releases wait for the
        make-before-break floor: the nodes it lets go do not count, even while they still serve).
        """
        ready = self.ready if limit is None else np.minimum(self.ready, limit)
        now = fleet.capacity(np.where(mask, ready, 0))
        out = np.repeat(now[None, :], steps, axis=0)
        if not self.total_booting[mask].any() or steps <= 1:
            return out
        arriving = np.where(mask[None, :], self.booting, 0).cumsum(axis=0) @ fleet.served  # (R, M)
        k = min(steps - 1, len(self.booting))
        out[1 : k + 1] += arriving[:k]
        out[k + 1 :] += arriving[-1]
        return out


@dataclass(frozen=True, eq=False)
class Applied:
    """The holding after one action, and the nodes it ordered and removed (cancelled or released) per type."""

    holding: Holding
    orders: np.ndarray  # (n,)
    removals: np.ndarray  # (n,)


def apply_target(
    fleet: Fleet, holding: Holding, target: np.ndarray, *, keep: np.ndarray, mask: np.ndarray | None = None
) -> Applied:
    """Move the held counts of the ``mask`` types toward ``target``, releasing only while ``keep`` serves."""
    diff = np.asarray(target, dtype=int) - holding.held
    if mask is not None:
        diff = np.where(mask, diff, 0)
    none = np.zeros(fleet.n, dtype=int)
    if not diff.any():
        return Applied(holding, none, none)
    ready, booting = holding.ready.copy(), holding.booting.copy()
    add = np.maximum(diff, 0)
    if add.any():
        _order(fleet, ready, booting, add)
    removals = none.copy()
    cut = np.maximum(-diff, 0)
    if cut.any():
        cut = _cancel(booting, cut, removals, any_booting=bool((cut * holding.total_booting).any()))
        if cut.any():
            _release(fleet, ready, cut, keep, removals)
    return Applied(Holding(ready, booting), add, removals)


def _order(fleet: Fleet, ready: np.ndarray, booting: np.ndarray, add: np.ndarray) -> None:
    r = fleet.ready
    ready += add * (r == 0)
    for i in np.flatnonzero(add * (r > 0)):
        booting[int(r[i]) - 1, i] += add[i]


def _cancel(booting: np.ndarray, cut: np.ndarray, removals: np.ndarray, *, any_booting: bool) -> np.ndarray:
    """Cancel booting nodes, the latest to arrive first; returns what is left to release."""
    if not any_booting:
        return cut
    cut = cut.copy()
    for k in range(len(booting) - 1, -1, -1):
        take = np.minimum(cut, booting[k])
        if take.any():
            booting[k] -= take
            removals += take
            cut -= take
            if not cut.any():
                break
    return cut


def _release(fleet: Fleet, ready: np.ndarray, cut: np.ndarray, keep: np.ndarray, removals: np.ndarray) -> None:
    served = fleet.served
    spare = fleet.capacity(ready) - np.maximum(np.asarray(keep, dtype=float), 0.0)
    for i in fleet.removal_order:
        if not cut[i]:
            continue
        k = min(int(cut[i]), int(ready[i]), _fits(spare, served[i]))
        if k > 0:
            ready[i] -= k
            removals[i] += k
            spare = spare - k * served[i]


def _fits(spare: np.ndarray, size: np.ndarray) -> int:
    """How many nodes of ``size`` can go while ``spare`` stays >= 0 on every metric they serve."""
    used = size > TOL
    if not used.any():
        return 1 << 30
    if (spare[used] < -TOL).any():
        return 0
    return int(np.floor((spare[used] + TOL * (1 + np.abs(spare[used]))) / size[used]).min())
