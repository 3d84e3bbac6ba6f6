"""``SimulatedCluster``: the same make-before-break scenarios as on Kubernetes, plus its own model.

Lead times from the catalog, quotas, faults (provisioning failures, spot preemption, slow starts, holds),
exact cost per node-second, and state kept on disk between runs. The invariant is checked on the
cluster's own timeline (ready replicas after every change), not on the executor's samples.
"""

from __future__ import annotations

import json

import pytest

from prescale.cluster import ClusterError, FaultEvent, Faults, Guardrails, SimulatedCluster, make_plan
from prescale.cluster.plan import at_least, placement, serving

APP = "inference"
CPU, GPU = "c7g.2xlarge", "g6.xlarge"
START, TARGET = {CPU: 4}, {GPU: 1}


def plan_for(sim, catalog, profile, target, **rails):
    state = sim.observe()
    return make_plan(
        APP,
        state.holdings(APP),
        target,
        catalog=catalog,
        profile=profile,
        guardrails=Guardrails(**rails),
        others=state.others(APP),
    )


def apply(sim, catalog, profile, target, **rails):
    return sim.apply(plan_for(sim, catalog, profile, target, **rails))


def lowest(sim, catalog, profile, since: float) -> tuple[float, ...]:
    """Lowest serving capacity of the app on the simulation's own timeline from ``since`` on."""
    places = {t.name: placement(t, profile) for t in catalog if profile.incompatibility(t) is None}
    rows = [
        serving({t: n for (a, t), n in snap.ready.items() if a == APP}, places, 1)
        for snap in sim.timeline
        if snap.at >= since
    ]
    return tuple(min(col) for col in zip(*rows, strict=True))


@pytest.fixture
def sim(catalog):
    return SimulatedCluster(catalog, record=True, seed=7)


def test_migration_from_cpu_to_gpu_never_drops_serving_capacity(sim, catalog, profile):
    assert apply(sim, catalog, profile, START).status == "applied"
    since, start = sim.now(), sim.observe().serving(APP, plan_for(sim, catalog, profile, TARGET).placements, 1)
    assert start == pytest.approx((52.8,))
    report = apply(sim, catalog, profile, TARGET)
    assert report.status == "applied", report.detail
    assert [(o.step.action, o.step.rtype) for o in report.outcomes] == [
        ("provision", GPU),
        ("start", GPU),
        ("drain", CPU),
        ("release", CPU),
    ]
    assert at_least(lowest(sim, catalog, profile, since), start)
    assert report.outcomes[0].seconds == pytest.approx(catalog[GPU].lead_time_seconds)
    assert plan_for(sim, catalog, profile, TARGET).noop


def test_an_explicit_scale_in_goes_no_lower_than_the_target(sim, catalog, profile):
    apply(sim, catalog, profile, {CPU: 6})
    since = sim.now()
    plan = plan_for(sim, catalog, profile, {CPU: 2})
    report = sim.apply(plan)
    assert plan.scale_in and report.status == "applied"
    assert at_least(lowest(sim, catalog, profile, since), plan.serving_after)
    assert sim.observe().holdings(APP)[CPU].nodes == 2


@pytest.mark.parametrize(
    ("hold", "rtype", "failing"),
    [
        pytest.param("nodes-never-ready", GPU, "provision", id="provision-never-ready"),
        pytest.param("pods-never-ready", GPU, "start", id="start-never-ready"),
        pytest.param("pods-never-removed", CPU, "drain", id="drain-never-ready"),
        pytest.param("nodes-never-removed", CPU, "release", id="release-never-ready"),
    ],
)
def test_a_rollout_that_never_completes_is_rolled_back(sim, catalog, profile, hold, rtype, failing):
    apply(sim, catalog, profile, START)
    since = sim.now()
    sim.hold(hold, rtype, app=APP if hold.startswith("pods") else "")
    report = apply(sim, catalog, profile, TARGET, rollout_deadline_seconds=300)
    assert report.status == "rolled-back", report.detail
    failed = next(o for o in report.outcomes if o.status != "done")
    assert (failed.step.action, failed.status) == (failing, "timeout")
    assert at_least(lowest(sim, catalog, profile, since), (52.8,))
    sim.hold(hold, rtype, app=APP if hold.startswith("pods") else "", on=False)
    assert apply(sim, catalog, profile, TARGET).ok
    assert plan_for(sim, catalog, profile, TARGET).noop
    assert at_least(lowest(sim, catalog, profile, since), (52.8,))


def test_lead_times_come_from_the_catalog_and_slow_starts_stretch_them(catalog, profile):
    slow = SimulatedCluster(catalog, faults=Faults(slow_start_probability=1.0, slow_start_factor=3.0))
    report = apply(slow, catalog, profile, TARGET, rollout_deadline_seconds=1000)
    assert report.outcomes[0].seconds == pytest.approx(3 * catalog[GPU].lead_time_seconds)
    late = SimulatedCluster(catalog, faults=Faults(slow_start_probability=1.0, slow_start_factor=3.0))
    report = apply(late, catalog, profile, TARGET, rollout_deadline_seconds=600)
    assert report.status == "rolled-back" and report.outcomes[0].seconds == pytest.approx(600 + 330)


def test_quota_caps_the_nodes_of_a_type(sim, catalog, profile):
    quota = catalog[GPU].quota
    sim.set_nodes(APP, placement(catalog[GPU], profile), quota + 3)
    sim.advance(1000)
    pool = sim.observe().pools[GPU]
    assert (pool.desired, pool.current, pool.ready) == (quota + 3, quota, quota)


def test_failed_nodes_are_billed_shown_and_replaced(catalog, profile):
    flaky = SimulatedCluster(catalog, faults=Faults(provision_failure_rate=1.0), seed=1)
    flaky.set_nodes(APP, placement(catalog[GPU], profile), 1)
    flaky.advance(catalog[GPU].lead_time_seconds)
    pool = flaky.observe().pools[GPU]
    assert (pool.failed, pool.current, pool.ready) == (1, 1, 0)  # one failed, its replacement booting
    report = apply(flaky, catalog, profile, TARGET, rollout_deadline_seconds=60)
    assert report.status == "rolled-back"
    assert flaky.costs()["by_type"][GPU] > 0


def test_spot_nodes_are_preempted_and_replaced(catalog, profile):
    spotty = SimulatedCluster(catalog, faults=Faults(spot_preemption_per_hour=6.0), seed=3)
    spotty.set_nodes(APP, placement(catalog[GPU], profile), 2, spot=2)
    spotty.advance(4 * 3600)
    lives = spotty.lifetimes()
    assert any(life["how"] == "preempted" for life in lives)
    assert spotty.observe().pools[GPU].desired == 2 and len([n for n in lives if n["how"] == "running"]) == 2
    assert set(spotty.costs()["node_seconds"]) == {f"{APP}/{GPU}/spot"}


def test_scheduled_preemption_is_repaired_without_the_plan_removing_capacity(sim, catalog, profile):
    apply(sim, catalog, profile, START)
    sim.schedule([FaultEvent(at=sim.now() + 100, kind="preempt", rtype=CPU, count=2)])
    report = apply(sim, catalog, profile, TARGET)
    assert report.status == "applied"
    assert sum(1 for life in sim.lifetimes() if life["how"] == "preempted") == 2
    writes = [(a, b) for a, b in zip(sim.timeline, sim.timeline[1:], strict=False) if b.cause == "write"]
    drops = [b for a, b in writes if sum(b.ready.values()) < sum(a.ready.values())]
    places = plan_for(sim, catalog, profile, TARGET).placements
    for snap in drops:  # every decrease the plan made left the app at or above the floor
        assert at_least(serving({t: n for (_, t), n in snap.ready.items()}, places, 1), (52.8,))


def test_cost_is_exact_per_node_second(sim, catalog, profile):
    apply(sim, catalog, profile, START)
    apply(sim, catalog, profile, TARGET)
    sim.advance(3600)
    lives = sim.lifetimes()
    by_lives = sum(
        (life["end"] - life["start"]) * catalog[life["type"]].hourly_price(spot=life["spot"]) / 3600 for life in lives
    )
    assert sim.costs()["total"] == pytest.approx(by_lives, rel=1e-12)
    assert sum(life["end"] - life["start"] for life in lives) == pytest.approx(
        sum(sim.costs()["node_seconds"].values()), rel=1e-12
    )
    # the GPU node has run since it was requested: lead time + the rest of the plan + the hour
    gpu_seconds = sim.costs()["node_seconds"][f"{APP}/{GPU}/on-demand"]
    assert gpu_seconds > 3600 + catalog[GPU].lead_time_seconds


def test_state_is_kept_on_disk_between_runs(tmp_path, catalog, profile):
    path = tmp_path / "cluster" / "state.json"
    faults = Faults(provision_failure_rate=0.3)
    first = SimulatedCluster.open(path, catalog, faults=faults, seed=5)
    apply(first, catalog, profile, START)
    first.save()
    copy = tmp_path / "copy.json"  # a second cluster on the same file would be a concurrent writer of it
    copy.write_bytes(path.read_bytes())
    again = SimulatedCluster.open(copy, catalog, faults=faults, seed=99)  # the saved random state wins
    assert again.observe() == first.observe() and again.now() == first.now()
    continuous = first
    for cluster in (again, continuous):
        apply(cluster, catalog, profile, TARGET)
    assert again.observe() == continuous.observe()
    assert again.costs() == continuous.costs()


def test_opening_advances_to_the_callers_clock(tmp_path, catalog, profile):
    path = tmp_path / "state.json"
    sim = SimulatedCluster.open(path, catalog, now=1000.0)
    sim.set_nodes(APP, placement(catalog[GPU], profile), 1)
    sim.save()
    later = SimulatedCluster.open(path, catalog, now=1000.0 + catalog[GPU].lead_time_seconds)
    assert later.observe().pools[GPU].ready == 1


def test_a_bad_state_file_says_what_to_do(tmp_path, catalog):
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"version": 0}))
    with pytest.raises(ClusterError, match="delete it to start afresh"):
        SimulatedCluster.open(path, catalog)


def test_observe_tells_when_each_booting_node_is_expected_ready(sim, catalog, profile):
    place = placement(catalog[GPU], profile)
    sim.set_nodes(APP, place, 2)
    sim.advance(100)
    lead = catalog[GPU].lead_time_seconds
    held = sim.observe().holdings(APP)[GPU]
    assert held.nodes == 2 and held.booting == (lead - 100, lead - 100)
    sim.advance(lead)
    assert sim.observe().holdings(APP)[GPU].booting == ()
