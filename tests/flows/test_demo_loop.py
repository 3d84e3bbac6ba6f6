"""The demo loop's summary (prescale.demo_loop): what each app's decisions ordered, booted and released, and the
kinds they left, from ledger rows and the simulated cluster's node lifetimes. Pure: no Prefect, no cluster."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from prescale.catalog import load_catalog
from prescale.cluster.plan import PlanStep
from prescale.demo_loop import summarise_loop
from prescale.ledger import LedgerRow

CATALOG = load_catalog(Path(__file__).resolve().parents[2] / "infra" / "catalog.yaml")
T0 = pd.Timestamp("2026-12-05T08:00:00Z")
CPU, GPU, METAL = "c7i.2xlarge", "g6e.xlarge", "c7i.metal-24xl"  # leads 90 s, 360 s, 1320 s


def step(action: str, rtype: str, before: int, after: int) -> dict:
    return PlanStep(index=0, action=action, rtype=rtype, pool=f"prescale-{rtype}", before=before, after=after,
                    deadline_seconds=600.0).to_dict()  # fmt: skip


def row(minute: int, plan: list[dict], allocation: dict[str, int], *, outcome: str = "applied", app: str = "web",
        cost: float = 1.0, demand: float = 100.0) -> dict:  # fmt: skip
    """A ledger row as the orchestrate flow returns it (nested fields as JSON text)."""
    return LedgerRow(decided_at=T0 + pd.Timedelta(minutes=minute), app=app, phase="default", mode="predictive",
                     why="", champion_version="1", covered_quantile=0.9, cost_per_hour=cost, outcome=outcome,
                     observed={"requests_per_second": demand}, allocation=allocation,
                     plan=plan).to_record()  # fmt: skip


def life(rtype: str, start: float, end: float, how: str = "running", app: str = "web") -> dict:
    return {"id": f"{rtype}-{start}", "type": rtype, "app": app, "spot": False, "start": start, "end": end, "how": how}


S = T0.timestamp()  # the cluster's virtual clock starts at the first decision's instant

FRESH = [row(0, [step("provision", CPU, 0, 10), step("provision", CPU, 10, 12), step("start", CPU, 0, 24)],
             {CPU: 12}, cost=4.3, demand=900.0),
         row(3, [], {CPU: 12}, outcome="noop", cost=4.3, demand=950.0)]  # fmt: skip
MIGRATION = [row(0, [step("provision", CPU, 0, 4)], {CPU: 4}, cost=1.4),
             row(3, [step("provision", GPU, 0, 2), step("start", GPU, 0, 2), step("drain", CPU, 8, 0),
                     step("release", CPU, 4, 0)], {GPU: 2}, cost=3.7, demand=2400.0)]  # fmt: skip
MIGRATION_LIVES = [*(life(CPU, S, S + 600, "released") for _ in range(4)),
                   *(life(GPU, S + 200, S + 2000) for _ in range(2))]  # GPU ready at S + 560, CPU released at S + 600
ROLLED_BACK = [row(0, [step("provision", METAL, 0, 2)], {METAL: 2}, outcome="rolled-back")]


@pytest.mark.parametrize(
    ("rows", "lifetimes", "expect"),
    [
        pytest.param(FRESH, [life(CPU, S, S + 300) for _ in range(12)],
                     {"ordered": {CPU: 12}, "booted": 12, "released": {}, "kinds": ((), ("cpu-vm",)),
                      "cost": (4.3, 4.3), "demand": (900.0, 950.0), "changes": 1, "migrated": False},
                     id="fresh-cluster-provisions-split-steps-summed"),
        pytest.param(FRESH, [], {"booted": None}, id="no-lifetimes-booted-unknown"),
        pytest.param(FRESH, [life(CPU, S, S + 60, "released") for _ in range(12)], {"booted": 0},
                     id="released-before-its-lead-time-never-booted"),
        pytest.param(MIGRATION, MIGRATION_LIVES,
                     {"ordered": {CPU: 4, GPU: 2}, "released": {CPU: 4}, "kinds": ((), ("gpu-vm",)),
                      "booted": 6, "migrated": True, "cost": (1.4, 3.7)},
                     id="cpu-to-gpu-make-before-break"),
        pytest.param(ROLLED_BACK, [], {"ordered": {}, "changes": 1, "migrated": False, "cost": (None, None)},
                     id="rolled-back-plan-shown-not-counted"),
    ],
)
def test_summary_per_app(rows, lifetimes, expect):
    (web,) = summarise_loop(rows, CATALOG, lifetimes=lifetimes, since=S)
    got = {"ordered": web.ordered, "booted": web.booted, "released": web.released,
           "kinds": (web.kinds_first, web.kinds_last), "cost": (web.cost_first, web.cost_last),
           "demand": (web.demand_first, web.demand_last), "changes": len(web.changes),
           "migrated": bool(web.migrations)}  # fmt: skip
    assert {k: got[k] for k in expect} == expect
    assert web.decisions == len(rows)


def test_a_migration_says_which_kinds_it_left_and_how_long_the_new_served_first():
    (web,) = summarise_loop(MIGRATION, CATALOG, lifetimes=MIGRATION_LIVES, since=S)
    (move,) = web.migrations
    assert move.at == T0 + pd.Timedelta(minutes=3)
    assert (move.ordered, move.released, move.boot_s) == ({GPU: 2}, {CPU: 4}, 360.0)
    assert (move.migration.left, move.migration.to) == (("cpu-vm",), ("gpu-vm",))
    assert move.migration.ready_before_s == pytest.approx(600 - 560)


def test_a_type_swap_within_a_kind_is_no_migration():
    rows = [row(0, [step("provision", CPU, 0, 4)], {CPU: 4}),
            row(3, [step("provision", "c7i.4xlarge", 0, 2), step("release", CPU, 4, 0)], {"c7i.4xlarge": 2})]
    (web,) = summarise_loop(rows, CATALOG)
    assert web.released == {CPU: 4} and not web.migrations
    assert web.kinds_last == ("cpu-vm",)


def test_nodes_of_an_earlier_loop_are_not_this_loops():
    earlier = [life(CPU, S - 3600, S + 300) for _ in range(5)]  # booted an hour before the loop began
    (web,) = summarise_loop(FRESH, CATALOG, lifetimes=earlier + [life(CPU, S, S + 300)], since=S)
    assert web.booted == 1


def test_apps_are_kept_apart_and_decoded_rows_are_accepted():
    decoded = [{**r, "plan": json.loads(r["plan"])} for r in FRESH]
    other = row(0, [step("provision", GPU, 0, 1)], {GPU: 1}, app="inference")
    loops = {a.app: a for a in summarise_loop([*decoded, other], CATALOG)}
    assert loops["web"].ordered == {CPU: 12} and loops["inference"].ordered == {GPU: 1}
    assert loops["inference"].provisioned and loops["inference"].to_dict()["changes"][0]["at"].startswith("2026")


def test_an_app_that_held_its_target_from_the_start_reports_its_kinds_and_no_change():
    (web,) = summarise_loop([row(0, [], {GPU: 3}, outcome="noop")], CATALOG)
    assert (web.kinds_first, web.kinds_last, web.changes, web.provisioned) == (("gpu-vm",), ("gpu-vm",), [], False)
