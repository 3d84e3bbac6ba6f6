"""Properties over random plans and fault schedules (hypothesis, derandomized: the same examples every run).

1. Pure: on a cluster where every step completes, every prefix of a plan keeps the app's serving
   capacity at or above ``min(before, after)``, no node step exceeds ``max_step_nodes``, and the last step
   leaves exactly the target.
2. Simulated: from a random starting allocation to a random target, under random provisioning failures,
   slow starts and a random schedule of preemptions and never-completing rollouts, every decrease of the
   app's ready replicas that a plan write caused leaves it at or above the floor (and, without
   preemption, the app never goes below the floor at all); a rerun without faults converges; and the cost
   account agrees with the nodes' lifetimes.

Derandomized: hypothesis derives its seed from the test, so every run draws the same examples.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from prescale.cluster import FaultEvent, Faults, Guardrails, Holding, SimulatedCluster, make_plan
from prescale.cluster.plan import at_least, placement, serving
from prescale.cluster.simulated import HOLDS

APP = "inference"
TYPES = ("c7g.2xlarge", "c7i.4xlarge", "g6.xlarge", "g4dn.xlarge")
SEEDED = {"deadline": None, "derandomize": True, "database": None, "suppress_health_check": [HealthCheck.too_slow]}
# More examples for a deeper search (e.g. 2000 before a release): PRESCALE_PROPERTY_EXAMPLES=2000
SCALE = int(os.environ.get("PRESCALE_PROPERTY_EXAMPLES", "0")) or None

allocations = st.dictionaries(st.sampled_from(TYPES), st.integers(0, 12), max_size=3)
nonempty = allocations.filter(lambda a: sum(a.values()) >= 1)


@settings(max_examples=SCALE or 300, **SEEDED)
@given(current=allocations, target=allocations, max_step=st.integers(1, 6))
def test_every_prefix_of_a_plan_keeps_serving_capacity(catalog, profile, current, target, max_step):
    places = {t: placement(catalog[t], profile) for t in TYPES}
    rpn = {t: p.replicas_per_node for t, p in places.items()}
    holdings = {t: Holding(n, n * rpn[t], n * rpn[t]) for t, n in current.items() if n}
    plan = make_plan(
        APP,
        holdings,
        target,
        catalog=catalog,
        profile=profile,
        guardrails=Guardrails(max_step_nodes=max_step, min_nodes=0),
    )
    assume(not plan.blocked)
    event("scale-in" if plan.scale_in else "no scale-in")
    nodes = {t: h.nodes for t, h in holdings.items()}
    replicas = {t: h.replicas for t, h in holdings.items()}
    floor = tuple(min(a, b) for a, b in zip(plan.serving_before, plan.serving_after, strict=True))
    for step in plan.steps:
        (nodes if step.unit == "nodes" else replicas)[step.rtype] = step.after
        if step.unit == "nodes":
            assert abs(step.after - step.before) <= max_step
        ready = {t: min(replicas.get(t, 0), nodes.get(t, 0) * rpn[t]) for t in TYPES}
        assert at_least(serving(ready, places, 1), floor), (step.describe(), ready)
    assert {t: n for t, n in nodes.items() if n} == {t: n for t, n in target.items() if n}
    assert all(replicas.get(t, 0) == n * rpn[t] for t, n in target.items())


fault_events = st.lists(
    st.tuples(
        st.floats(0, 2500),
        st.sampled_from(["preempt", "hold", "lift"]),
        st.sampled_from(TYPES),
        st.sampled_from(HOLDS),
        st.integers(1, 3),
    ),
    max_size=4,
)


@settings(max_examples=SCALE or 80, **SEEDED)
@given(
    current=nonempty,
    target=nonempty,
    max_step=st.integers(1, 6),
    events=fault_events,
    failure_rate=st.sampled_from([0.0, 0.2, 0.5]),
    slow=st.sampled_from([0.0, 0.5]),
    seed=st.integers(0, 999),
)
def test_simulated_plans_keep_the_invariant_under_faults(
    catalog, profile, current, target, max_step, events, failure_rate, slow, seed
):
    sim = SimulatedCluster(catalog, record=True, seed=seed)
    rails = Guardrails(max_step_nodes=max_step, rollout_deadline_seconds=600)
    assert _apply(sim, catalog, profile, current, rails).ok
    sim.faults = Faults(provision_failure_rate=failure_rate, slow_start_probability=slow)
    start = sim.now()
    sim.schedule(
        FaultEvent(at=start + at, kind=kind, rtype=rtype, app=APP, count=count, hold=hold)
        for at, kind, rtype, hold, count in events
    )

    report = _apply(sim, catalog, profile, target, rails)
    event(f"status={report.status}")

    places = {t: placement(catalog[t], profile) for t in TYPES}
    timeline = [s for s in sim.timeline if s.at >= start]
    capacity = [serving({t: n for (a, t), n in s.ready.items() if a == APP}, places, 1) for s in timeline]
    preempted = any(kind == "preempt" and start + at <= report.finished_at for at, kind, *_ in events)
    for before, after, snap in zip(capacity, capacity[1:], timeline[1:], strict=False):
        if snap.cause == "write" and after < before or not preempted:
            assert at_least(after, report.floor), (report.status, report.detail, snap)

    sim.clear_faults()
    sim.advance(3 * 1500)  # nodes already booting slowly, or failed and awaiting remediation, finish first
    rerun = _apply(sim, catalog, profile, target, rails)
    assert rerun.ok, rerun.detail
    state = sim.observe()
    assert {t: h.nodes for t, h in state.holdings(APP).items() if h.nodes} == {t: n for t, n in target.items() if n}
    lives = sim.lifetimes()
    assert sum(life["end"] - life["start"] for life in lives) == pytest.approx(
        sum(sim.costs()["node_seconds"].values()), rel=1e-9
    )


def _apply(sim, catalog, profile, target, rails):
    state = sim.observe()
    plan = make_plan(
        APP, state.holdings(APP), target, catalog=catalog, profile=profile, guardrails=rails, others=state.others(APP)
    )
    return sim.apply(plan)
