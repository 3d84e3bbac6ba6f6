"""The app's compatible resource types as arrays on the decision's time step, grouped into lead-time tiers.

The decision (``prescale.decision``) and the replay (``prescale.replay``) decide every ``step_seconds`` (the
metric's own step: one minute for NASA, five for the cluster traces). A node of type ``i`` ordered at the
decision of step ``t`` serves from step ``t + r[i]`` with ``r[i] = ceil(L[i] / step)`` (the same rounding as
``allocation.problem``: a node ready half-way through a step serves from the next one) and is billed from the
order to the release, ``price[i] * step / 3600`` USD per step held.

Types are the catalog's types the app can run on (``AppProfile.incompatibility`` is ``None``) with a quota
above zero. They are grouped into *tiers* by kind (CPU VMs, GPU VMs, FPGAs, bare metal), ordered by lead
time; a tier's lead is the longest of its types (conservative: the tier plans as if all of its types were
that slow). The fastest tier carries bursts; the slower tiers carry the base (``prescale.decision``).

``unit_cost[i]`` ranks types "per unit of demand": the USD/h of covering the reference demand vector ``v``
(by default the profile's example peak, else ones) with type ``i`` alone, ``price[i] * max_m v[m] / a[i,m]``,
divided by ``max_m v[m]``. Only its order matters: removals take the dearest per unit first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from prescale.catalog import KINDS, AppProfile, Catalog


class FleetError(ValueError):
    """The app cannot buy from the catalog as asked (no compatible type, a bad step or reference demand)."""


@dataclass(frozen=True)
class Tier:
    """Types of one kind; ``ready`` is the slowest type's ready offset in steps."""

    kind: str
    idx: tuple[int, ...]
    ready: int


@dataclass(frozen=True, eq=False)
class Fleet:
    """Everything the replay needs about the types one app can buy (see the module docstring)."""

    app: str
    catalog: Catalog  # the compatible types only, in catalog order
    profile: AppProfile
    metrics: tuple[str, ...]
    step_seconds: int
    names: tuple[str, ...]
    kinds: tuple[str, ...]
    served: np.ndarray  # (n, M) demand one node serves
    price: np.ndarray  # (n,) USD/h on demand
    lead_seconds: np.ndarray  # (n,)
    ready: np.ndarray  # (n,) steps from order to serving
    quota: np.ndarray  # (n,)
    unit_cost: np.ndarray  # (n,) USD/h per unit of the reference demand vector
    tiers: tuple[Tier, ...]  # fastest first

    @property
    def n(self) -> int:
        return len(self.names)

    @property
    def step_price(self) -> np.ndarray:
        """USD per node per step held."""
        return self.price * self.step_seconds / 3600.0

    @property
    def max_ready(self) -> int:
        return int(self.ready.max())

    @cached_property
    def removal_order(self) -> np.ndarray:
        """Type indices, the dearest per unit of demand first (ties in fleet order): who is released first."""
        return np.argsort(-self.unit_cost, kind="stable")

    @property
    def fast(self) -> Tier:
        return self.tiers[0]

    def capacity(self, counts: np.ndarray) -> np.ndarray:
        """Demand served by ``counts`` nodes, shaped like ``counts[..., n] @ served`` -> ``(..., M)``."""
        return np.asarray(counts, dtype=float) @ self.served

    def cost_per_hour(self, counts: np.ndarray) -> float:
        return float(np.asarray(counts, dtype=float) @ self.price)

    def kind_mask(self, kinds: tuple[str, ...]) -> np.ndarray:
        return np.array([k in kinds for k in self.kinds])

    def tier_mask(self, tier: Tier) -> np.ndarray:
        mask = np.zeros(self.n, dtype=bool)
        mask[list(tier.idx)] = True
        return mask

    def counts(self, mapping: dict[str, int]) -> np.ndarray:
        unknown = sorted(set(mapping) - set(self.names))
        if unknown:
            raise FleetError(f"app {self.app!r} cannot use type(s) {unknown}; it can use {', '.join(self.names)}")
        return np.array([int(mapping.get(name, 0)) for name in self.names], dtype=int)

    def as_dict(self, counts: np.ndarray) -> dict[str, int]:
        return {self.names[i]: int(counts[i]) for i in np.flatnonzero(counts)}


def build_fleet(
    catalog: Catalog, profile: AppProfile, *, step_seconds: int, reference: np.ndarray | None = None
) -> Fleet:
    """The app's compatible types with a quota (see the module docstring); raises when there is none."""
    if step_seconds <= 0:
        raise FleetError(f"step_seconds must be > 0, got {step_seconds}")
    types = [t for t in catalog if profile.incompatibility(t) is None and t.quota > 0]
    if not types:
        raise FleetError(f"no type in the catalog can run app {profile.name!r} (kinds {list(profile.kinds)})")
    served = np.array([profile.served(t) for t in types], dtype=float).reshape(len(types), len(profile.metrics))
    price = np.array([t.price.on_demand for t in types], dtype=float)
    lead = np.array([t.lead_time_seconds for t in types], dtype=float)
    ready = np.array([math.ceil(v / step_seconds - 1e-9) for v in lead], dtype=int)
    ref = _reference(profile, reference)
    with np.errstate(divide="ignore"):
        need = np.where(served > 0, ref[None, :] / served, np.where(ref[None, :] > 0, np.inf, 0.0)).max(axis=1)
    unit_cost = price * need / max(float(ref.max()), 1e-12)
    kinds = tuple(t.kind for t in types)
    tiers = []
    for kind in KINDS:
        idx = tuple(i for i, k in enumerate(kinds) if k == kind)
        if idx:
            tiers.append(Tier(kind=kind, idx=idx, ready=int(ready[list(idx)].max())))
    tiers.sort(key=lambda tier: (tier.ready, KINDS.index(tier.kind)))
    return Fleet(
        app=profile.name,
        catalog=Catalog(types=tuple(types), source=catalog.source),
        profile=profile,
        metrics=profile.metric_names,
        step_seconds=int(step_seconds),
        names=tuple(t.name for t in types),
        kinds=kinds,
        served=served,
        price=price,
        lead_seconds=lead,
        ready=ready,
        quota=np.array([t.quota for t in types], dtype=int),
        unit_cost=unit_cost,
        tiers=tuple(tiers),
    )


def _reference(profile: AppProfile, reference: np.ndarray | None) -> np.ndarray:
    if reference is not None:
        ref = np.asarray(reference, dtype=float)
        if ref.shape != (len(profile.metrics),) or not np.isfinite(ref).all() or (ref < 0).any() or ref.max() <= 0:
            raise FleetError(f"reference demand must be {len(profile.metrics)} values >= 0, not all 0; got {ref}")
        return ref
    if profile.example_demand is not None:
        return np.array([profile.example_demand.peak[m] for m in profile.metric_names], dtype=float)
    return np.ones(len(profile.metrics))
