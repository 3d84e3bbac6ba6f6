"""Issue 16's reactive rule: the loop runs what the ex-ante replay scores, and it lets slow nodes go.

An app whose tuned SLO policy chose the reactive rule, on a two-tier world (CPU VMs, and bare metal that is
cheaper per unit of demand, so the rule buys it for a peak), over a demand that rises to a peak and falls
back (requests per minute as the app's ``load``):

* **the loop**: at each instant, the orchestrate task ``tasks.orchestrate.plan_app`` (its real SLO step,
  assembly, rule and ``make_plan``) on what a real :class:`SimulatedCluster` observes for the app, the rule's
  state read back from the ledger as ``gather`` reads it; the cluster carries each plan out before the next
  instant (lead times of 20 s and 30 s: one step on both sides, as ``test_identity.py`` explains);
* **the replay**: :class:`prescale.replay.policies.adaptive.Adaptive` under the same policy on the replay's
  executor, step after step, from the same observations.

The controller stands still at a scale other than 1 (gain 0, ``θ = 0.2`` on both sides: the loop judges a
miss against the ready nodes now, the replay against the capacity that served the step, so a moving
controller would steer them apart for a reason that is not the rule's); the scale still enters the floor
``o · max(s / u, 1)`` on both sides. The targets must be equal at every step. Then, on the same run: the
bare-metal nodes the peak bought are released, and not before the HPA's five-minute stabilisation window
(six decisions at one-minute steps) has passed since demand fell.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import yaml

from prescale.cluster import SimulatedCluster
from prescale.cycle import ClusterView, Gathered
from prescale.decide_inputs import SloState, state_from_json, state_to_json
from prescale.decision import RuleState, stabilisation_steps
from prescale.fleet import build_fleet
from prescale.ledger import Ledger
from prescale.replay import ReplayInput
from prescale.replay.engine import ReplayConfig, context
from prescale.replay.policies.adaptive import Adaptive
from prescale.replay.simulate import Executor
from prescale.settings import load_settings
from prescale.slo import SloPolicy, TrackerState
from tests.orchestrate.test_identity import APP, PROFILE, STEP, _type, settings_catalog

LOW, PEAK, RISE, FALL, STEPS = 12.0, 400.0, 8, 16, 32  # demand LOW, up to PEAK from step RISE, LOW from FALL
THETA = 0.2
POLICY = SloPolicy(violation_budget=0.005, rule="reactive", reactive_target=0.8, gain=0.0, tuned=True,
                   reasons=("reactive: the forecast has no skill over persistence",))  # fmt: skip


def _demand() -> tuple[pd.DatetimeIndex, np.ndarray]:
    """``STEPS + 1`` minutes: the value at ``ts[t]`` is what the decision at ``ts[t + 1]`` observes."""
    ts = pd.date_range("2026-03-02T10:00:00Z", periods=STEPS + 1, freq="60s")
    values = np.full(STEPS + 1, LOW)
    values[RISE:FALL] = PEAK
    values[RISE : RISE + 2] = (150.0, 300.0)  # a ramp
    values[RISE + 4] = PEAK * 0.9  # a dip inside the peak, within the tolerance: the recommendation holds
    return ts, values


def _loop(ts, values, settings) -> list[dict[str, int]]:
    """The loop's plan-app task at each instant on a simulated cluster; each ledger row's allocation."""
    from tasks.orchestrate import plan_app, previous_state

    cluster = SimulatedCluster(settings_catalog(settings), pod_start_seconds=0.0, start=ts[1].timestamp())
    ledger, out = Ledger(settings.orchestrate.ledger), []
    stored = pd.DataFrame({"app": APP, "ts": ts, "metric": "app.load", "value": values, "phase": None})
    for t in range(STEPS):
        now = ts[t + 1]
        cluster.advance_to(now.timestamp())
        rule_state, slo_state = previous_state(APP, now, settings)
        gathered = Gathered(app=APP, now=now, profile=PROFILE, rows=stored[stored["ts"] < now], phase="default",
                            forecast=None, why="", rule_state=rule_state, slo_policy=POLICY,
                            slo_state=slo_state or SloState(TrackerState(THETA)))  # fmt: skip
        decided = plan_app.fn(gathered, ClusterView.of(cluster.observe(), APP), settings)
        assert decided.row.mode == "reactive" and not decided.plan.blocked, decided.row.why
        assert decided.row.slo["scale"] == pytest.approx(np.exp(THETA)), "the controller stood still"
        ledger.append([decided.row])
        out.append(decided.row.allocation)
        report = cluster.apply(decided.plan)
        assert report.ok, report.detail
    return out


def _replay(ts, values, settings) -> list[dict[str, int]]:
    """``Adaptive`` under the same policy on the replay's executor; each step's target per type."""
    fleet = build_fleet(settings_catalog(settings), PROFILE, step_seconds=STEP)
    inp = ReplayInput(app=APP, index=ts[1:], demand=values[1:, None], metrics=("load",), step_seconds=STEP,
                      start=0, forecast=None, quantiles=(0.5,), history_peak=np.array([values.max()]))  # fmt: skip
    config = ReplayConfig(hold_minutes=settings.replay.hold_minutes,
                          consolidation_margin=settings.replay.consolidation_margin,
                          cover_resolution=settings.replay.cover_resolution)  # fmt: skip
    ctx = replace(context(inp, fleet, config), observed=values[:STEPS, None])  # o[t]: the minute before step t
    rule = Adaptive(ctx, demand=inp.demand, slo=POLICY, hold=config.hold_steps(STEP), step_seconds=STEP,
                    state=TrackerState(THETA))  # fmt: skip
    ex, out = Executor(fleet, STEPS), []
    for t in range(STEPS):
        ex.begin(t)
        rule.step(t, ex)
        out.append(fleet.as_dict(ex.held))
        ex.end()
    return out


@pytest.fixture
def two_tiers(prescale_home, monkeypatch):
    catalog = prescale_home.parent / "catalog.yaml"
    catalog.write_text(yaml.safe_dump({"types": [_type("vm", "cpu-vm", price=1.0, lead=20),
                                                 _type("metal", "bare-metal", price=3.0, lead=30)]}))
    monkeypatch.setenv("PRESCALE_SEARCH__CATALOG", str(catalog))
    monkeypatch.setenv("PRESCALE_CLUSTER__MAX_STEP_NODES", "1000")
    return load_settings()


def test_the_loop_and_the_ex_ante_replay_take_the_same_reactive_decisions_and_let_the_peaks_metal_go(two_tiers):
    ts, values = _demand()
    loop = _loop(ts, values, two_tiers)
    replay = _replay(ts, values, two_tiers)

    mismatches = [(t, a, b) for t, (a, b) in enumerate(zip(loop, replay, strict=True)) if a != b]
    assert not mismatches, f"{len(mismatches)} of {STEPS} steps differ, first: {mismatches[:3]}"
    assert len({tuple(sorted(a.items())) for a in loop}) >= 4, f"several targets take part: {loop}"

    # the decision at ts[t + 1] observes values[t]: demand is seen falling at decision FALL
    metal = [a.get("metal", 0) for a in loop]
    window = stabilisation_steps(STEP)
    assert metal[RISE] > 0 and max(metal) >= 10, \
        f"the peak (~611 at u / s) is served by bare metal, the cheaper per unit: {metal}"
    assert metal[FALL + window - 2] == max(metal), f"held through the stabilisation window: {metal}"
    assert metal[FALL + window - 1 :] == [0] * (STEPS - FALL - window + 1), \
        f"released once the window has passed, and not bought back for the low demand: {metal}"
    assert all(a.get("vm", 0) >= 1 for a in loop[FALL + window - 1 :]), "the low demand runs on VMs"


def test_the_reactive_rules_recommendations_go_through_the_ledgers_json_beside_the_tiers():
    state = RuleState({"bare-metal": np.array([[1.0, np.nan]])}, np.array([[2.0, 3.0], [4.0, np.nan]]))
    back = state_from_json(json.loads(json.dumps(state_to_json(state, SloState()))))
    np.testing.assert_array_equal(back.recent_recs, state.recent_recs)
    assert set(back.recent_keep) == {"bare-metal"}, "the recommendations are not read as a tier"
    assert state_to_json(RuleState()) == {}, "no recommendations yet: nothing written"
