"""The demo's every-minute loop told per app: a pure summary of its ledger rows and the cluster's node lifetimes.

`prescale demo` runs the real ``orchestrate`` flow at a stretch of replayed instants on the simulated
cluster (``flows/demo.py``). This module turns what those runs left into what a newcomer reads:

* :class:`Change`, one per decision that changed an app's nodes: the nodes it **ordered** per type (the
  plan's ``provision`` steps, ``after - before`` summed over the steps of a type: ``max_step_nodes`` splits
  them), the nodes it **released** per type (``release`` steps; their replicas were drained first), the
  plan's outcome, how long the ordered nodes took to boot (their type's lead time, the slowest of them),
  and, when the decision left a kind of resource for another, the **migration**;
* :class:`Migration`: the kinds the app held before the decision and no longer holds (``left``), the kinds
  it holds after (``to``), and, from the node lifetimes, how long the new kind's nodes had been ready when
  the first node of the old kind was released (``ready_before_s``: zero or more is make-before-break
  across kinds, the executor's promise, seen in the cluster's own record);
* :class:`AppLoop`, per app: decisions, nodes ordered, booted (a node of the loop that lived at least its
  type's lead time became ready; None when the backend keeps no lifetimes), released, the kinds held at
  the first and the last decision, the cost per hour and the demand (the profile's first metric, as
  observed) at both ends, and its changes.

Inputs are plain data, fetched by the caller: the rows as the orchestrate flow returns them
(``LedgerRow.to_record``: nested fields as JSON text; decoded dicts are accepted too), the simulated
cluster's ``lifetimes()`` with the clock at which the loop began (``since``: older nodes are not the loop's),
the catalog (kind and lead time per type). Virtual time: the simulated cluster's clock is the decision's
instant, then runs ahead by the waits of each plan (a bare-metal node's 20 minutes pass in milliseconds),
so this module reports durations (booted after, ready before), never the cluster's absolute times.

No I/O, no clock, no settings.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from prescale.catalog import Catalog

NESTED = ("plan", "allocation", "observed")


@dataclass(frozen=True)
class Migration:
    """A decision that left ``left`` kinds for ``to`` kinds; ``ready_before_s``: how long the new kind's nodes
    had served when the first node of a left kind was released (None: no lifetimes to tell)."""

    left: tuple[str, ...]
    to: tuple[str, ...]
    ready_before_s: float | None = None


@dataclass(frozen=True)
class Change:
    """One decision that changed an app's nodes (see the module docstring)."""

    at: pd.Timestamp
    app: str
    outcome: str
    ordered: dict[str, int] = field(default_factory=dict)
    released: dict[str, int] = field(default_factory=dict)
    boot_s: float | None = None  # the slowest ordered type's lead time
    migration: Migration | None = None


@dataclass
class AppLoop:
    """One app over the loop (see the module docstring)."""

    app: str
    decisions: int = 0
    ordered: dict[str, int] = field(default_factory=dict)
    booted: int | None = None
    released: dict[str, int] = field(default_factory=dict)
    kinds_first: tuple[str, ...] = ()
    kinds_last: tuple[str, ...] = ()
    cost_first: float | None = None
    cost_last: float | None = None
    metric: str | None = None
    demand_first: float | None = None
    demand_last: float | None = None
    outcomes: dict[str, int] = field(default_factory=dict)
    changes: list[Change] = field(default_factory=list)

    @property
    def provisioned(self) -> bool:
        """The loop ordered nodes for this app (its plans provisioned capacity)."""
        return sum(self.ordered.values()) > 0

    @property
    def migrations(self) -> list[Change]:
        return [c for c in self.changes if c.migration is not None]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["changes"] = [{**asdict(c), "at": c.at.isoformat()} for c in self.changes]
        out["provisioned"], out["migrated"] = self.provisioned, bool(self.migrations)
        return out


def summarise_loop(
    rows: Iterable[Mapping[str, Any]],
    catalog: Catalog,
    *,
    lifetimes: Sequence[Mapping[str, Any]] = (),
    since: float | None = None,
) -> list[AppLoop]:
    """Per app (in order of first decision), what the loop's decisions did; see the module docstring."""
    decoded = sorted((_decoded(r) for r in rows), key=lambda r: (r["decided_at"], r["app"]))
    mine = [life for life in lifetimes if since is None or float(life["start"]) >= since]
    apps: dict[str, AppLoop] = {}
    held: dict[str, dict[str, int] | None] = {}  # per app: its nodes per type after its last carried-out decision
    for row in decoded:
        loop = apps.setdefault(row["app"], AppLoop(row["app"]))
        lives = [life for life in mine if life["app"] == loop.app]
        held[loop.app] = _add(loop, row, catalog, lives, held.get(loop.app))
    for loop in apps.values():
        nodes = [life for life in mine if life["app"] == loop.app]
        loop.booted = sum(_booted(life, catalog) for life in nodes) if lifetimes else None
    return list(apps.values())


def _add(loop: AppLoop, row: dict[str, Any], catalog: Catalog, lives: list[Mapping[str, Any]],
         held: dict[str, int] | None) -> dict[str, int] | None:  # fmt: skip
    """One decision into its app's summary; returns the app's nodes per type after it (None: not known yet)."""
    loop.decisions += 1
    loop.outcomes[row["outcome"]] = loop.outcomes.get(row["outcome"], 0) + 1
    carried = row["outcome"] in ("applied", "noop", "dry-run")
    before = {**(held or {}), **_holdings_before(row["plan"])} if held is not None or row["plan"] else None
    if before is None and carried:
        before = dict(row["allocation"])  # a no-op: it held its target already
    metric, value = _demand(row["observed"])
    if carried:
        if loop.cost_first is None:
            loop.kinds_first = _kinds(before or {}, catalog)
            loop.cost_first, loop.demand_first = row["cost_per_hour"], value
        loop.kinds_last = _kinds(row["allocation"], catalog)
        loop.cost_last, loop.demand_last = row["cost_per_hour"], value
        loop.metric = loop.metric or metric
    ordered, released = _steps(row["plan"], "provision"), _steps(row["plan"], "release")
    if ordered or released:
        loop.changes.append(Change(
            at=pd.Timestamp(row["decided_at"]), app=loop.app, outcome=row["outcome"], ordered=ordered,
            released=released, boot_s=max((catalog[t].lead_time_seconds for t in ordered), default=None),
            migration=_migration(row, _kinds(before or {}, catalog), catalog, lives)))  # fmt: skip
    if row["outcome"] == "applied":
        for target, counts in ((loop.ordered, ordered), (loop.released, released)):
            for rtype, n in counts.items():
                target[rtype] = target.get(rtype, 0) + n
    return dict(row["allocation"]) if carried else before


def _migration(row: dict[str, Any], held_before: tuple[str, ...] | None, catalog: Catalog,
               lives: list[Mapping[str, Any]]) -> Migration | None:  # fmt: skip
    """The kinds a decision left for others (None: it left none, or it did not apply)."""
    if row["outcome"] != "applied" or not held_before:
        return None
    after = _kinds(row["allocation"], catalog)
    left = tuple(k for k in held_before if k not in after)
    to = tuple(k for k in after if k not in held_before) or after
    if not left or not to:
        return None
    return Migration(left=left, to=to, ready_before_s=_ready_before(lives, left, to, catalog))


def _ready_before(lives: list[Mapping[str, Any]], left: tuple[str, ...], to: tuple[str, ...],
                  catalog: Catalog) -> float | None:  # fmt: skip
    """Seconds between the newest new-kind node becoming ready and the first old-kind node released after it.

    The old-kind nodes looked at are those released (``how == "released"``); the new-kind nodes those that
    became ready before that release. None when the lifetimes hold no such pair."""
    released = sorted(float(life["end"]) for life in lives
                      if life.get("how") == "released" and catalog[life["type"]].kind in left)  # fmt: skip
    ready = [_ready_at(life, catalog) for life in lives if catalog[life["type"]].kind in to and _booted(life, catalog)]
    for end in released:
        before = [t for t in ready if t <= end]
        if before:
            return end - max(before)
    return None


def _ready_at(life: Mapping[str, Any], catalog: Catalog) -> float:
    return float(life["start"]) + catalog[life["type"]].lead_time_seconds


def _booted(life: Mapping[str, Any], catalog: Catalog) -> bool:
    """The node lived its type's lead time, so it became ready (a failed node never did)."""
    return life.get("how") != "failed" and float(life["end"]) >= _ready_at(life, catalog)


def _steps(plan: list[dict[str, Any]], action: str) -> dict[str, int]:
    """Nodes per type moved by the plan's steps of ``action`` (provision: added; release: removed)."""
    out: dict[str, int] = {}
    for step in plan:
        if step["action"] == action:
            out[step["rtype"]] = out.get(step["rtype"], 0) + abs(int(step["after"]) - int(step["before"]))
    return out


def _holdings_before(plan: list[dict[str, Any]]) -> dict[str, int]:
    """Nodes per type before the plan: the ``before`` of each type's first node step."""
    before: dict[str, int] = {}
    for step in plan:
        if step["action"] in ("provision", "release"):
            before.setdefault(step["rtype"], int(step["before"]))
    return before


def _kinds(nodes: Mapping[str, int], catalog: Catalog) -> tuple[str, ...]:
    """The kinds of the types holding at least one node, sorted."""
    return tuple(sorted({catalog[t].kind for t, n in nodes.items() if n > 0 and catalog.get(t) is not None}))


def _demand(observed: Mapping[str, float]) -> tuple[str | None, float | None]:
    """The first observed metric (the profile's first: its ``source`` is the app's demand) and its value."""
    for metric, value in observed.items():
        return metric, float(value)
    return None, None


def _decoded(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row with its nested fields as Python values (the flow returns them as JSON text)."""
    out = dict(row)
    for name in NESTED:
        value = out.get(name)
        out[name] = json.loads(value) if isinstance(value, str) else (value or ({} if name != "plan" else []))
    out["decided_at"] = pd.Timestamp(out["decided_at"])
    out["cost_per_hour"] = float(out.get("cost_per_hour") or 0.0)
    return out
