"""``make_plan``: make-before-break order, chunking, scale-in marking, resumption, guardrails (pure)."""

from __future__ import annotations

import pytest

from prescale.cluster import Guardrails, Holding, PlanError, Target, make_plan
from prescale.cluster.plan import restore_plan

APP = "inference"
CPU, GPU, GPU2 = "c7g.2xlarge", "g6.xlarge", "g4dn.xlarge"


def steps(plan):
    return [(s.action, s.rtype, s.before, s.after) for s in plan.steps]


@pytest.mark.parametrize(
    ("holdings", "target", "max_step", "expected"),
    [
        pytest.param(
            {CPU: Holding(4, 4, 4)},
            {GPU: 1},
            10,
            [("provision", GPU, 0, 1), ("start", GPU, 0, 1), ("drain", CPU, 4, 0), ("release", CPU, 4, 0)],
            id="cpu-to-gpu-migration",
        ),
        pytest.param(
            {CPU: Holding(2, 2, 2)},
            {CPU: 25},
            10,
            [
                ("provision", CPU, 2, 12),
                ("start", CPU, 2, 12),
                ("provision", CPU, 12, 22),
                ("start", CPU, 12, 22),
                ("provision", CPU, 22, 25),
                ("start", CPU, 22, 25),
            ],
            id="scale-out-in-chunks-of-max-step",
        ),
        pytest.param(
            {CPU: Holding(30, 30, 30)},
            {CPU: 5},
            10,
            [
                ("drain", CPU, 30, 20),
                ("release", CPU, 30, 20),
                ("drain", CPU, 20, 10),
                ("release", CPU, 20, 10),
                ("drain", CPU, 10, 5),
                ("release", CPU, 10, 5),
            ],
            id="scale-in-in-chunks",
        ),
        pytest.param(
            {CPU: Holding(4, 4, 4), GPU: Holding(1, 0, 0)},
            {GPU: 1},
            10,
            [("start", GPU, 0, 1), ("drain", CPU, 4, 0), ("release", CPU, 4, 0)],
            id="resume-after-an-interrupted-start",
        ),
        pytest.param(
            {GPU: Holding(1, 0, 0, pool_ready=False)},
            {GPU: 1},
            10,
            [("provision", GPU, 1, 1), ("start", GPU, 0, 1)],
            id="wait-for-a-claimed-pool-that-is-not-ready",
        ),
        pytest.param(
            {CPU: Holding(0, 0, 0, exists=True), GPU: Holding(1, 1, 1)},
            {GPU: 1},
            10,
            [("drain", CPU, 0, 0)],
            id="remove-a-drained-workload-left-behind",
        ),
        pytest.param({GPU: Holding(1, 1, 1)}, {GPU: 1}, 10, [], id="nothing-to-change"),
        pytest.param(
            {CPU: Holding(4, 4, 4)},
            {GPU: 2, GPU2: 1},
            10,
            [
                ("provision", GPU, 0, 2),
                ("start", GPU, 0, 2),
                ("provision", GPU2, 0, 1),
                ("start", GPU2, 0, 1),
                ("drain", CPU, 4, 0),
                ("release", CPU, 4, 0),
            ],
            id="longest-lead-time-first",
        ),
    ],
)
def test_steps(catalog, profile, holdings, target, max_step, expected):
    plan = make_plan(
        APP, holdings, target, catalog=catalog, profile=profile, guardrails=Guardrails(max_step_nodes=max_step)
    )
    assert steps(plan) == expected
    assert not plan.blocked
    phases = [s.phase for s in plan.steps]
    assert phases == sorted(phases, key=lambda p: p != "make"), "every make step comes before every break step"
    assert all(abs(s.after - s.before) <= max_step * 1 for s in plan.steps if s.unit == "nodes")


def test_a_plan_that_serves_less_marks_its_drains_as_scale_in(catalog, profile):
    down = make_plan(APP, {CPU: Holding(8, 8, 8)}, {CPU: 3}, catalog=catalog, profile=profile, guardrails=Guardrails())
    across = make_plan(
        APP, {CPU: Holding(4, 4, 4)}, {GPU: 1}, catalog=catalog, profile=profile, guardrails=Guardrails()
    )
    assert [s.scale_in for s in down.steps if s.action == "drain"] == [True]
    assert down.serving_after < down.serving_before
    assert not across.scale_in and across.serving_after > across.serving_before


def test_checkpoints_end_every_chunk(catalog, profile):
    plan = make_plan(APP, {CPU: Holding(4, 4, 4)}, {GPU: 1}, catalog=catalog, profile=profile, guardrails=Guardrails())
    assert [s.checkpoint for s in plan.steps] == [False, True, False, True]


def test_provisioning_gets_the_lead_time_on_top_of_the_deadline(catalog, profile):
    plan = make_plan(
        APP, {}, {GPU: 1}, catalog=catalog, profile=profile, guardrails=Guardrails(rollout_deadline_seconds=100)
    )
    assert [s.deadline_seconds for s in plan.steps] == [100 + catalog[GPU].lead_time_seconds, 100]


@pytest.mark.parametrize(
    ("holdings", "target", "rails", "others", "reason"),
    [
        pytest.param(
            {CPU: Holding(1, 1, 1)}, {}, Guardrails(min_nodes=1), {}, "below the minimum 1", id="below-min-nodes"
        ),
        pytest.param({}, {GPU: 17}, Guardrails(), {}, "exceed its quota", id="over-quota"),
        pytest.param({}, {GPU: 7}, Guardrails(), {GPU: 10}, "10 held by other apps", id="quota-shared-with-apps"),
        pytest.param({}, {CPU: 65}, Guardrails(), {}, "max_nodes 64", id="above-max-nodes"),
        pytest.param(
            {CPU: Holding(4, 4, 4)},
            {GPU: 1},
            Guardrails(budget_per_hour=1.5),
            {},
            "peak cost 1.96 USD/h",
            id="overlap-over-budget",
        ),
    ],
)
def test_guardrails_block_with_a_reason(catalog, profile, holdings, target, rails, others, reason):
    plan = make_plan(APP, holdings, target, catalog=catalog, profile=profile, guardrails=rails, others=others)
    assert plan.steps == ()
    assert any(reason in r for r in plan.blocked), plan.blocked


def test_budget_counts_spot_prices(catalog, profile):
    spot = make_plan(APP, {}, {GPU: 2}, catalog=catalog, profile=profile, guardrails=Guardrails(), spot={GPU: 1})
    assert spot.cost_after == pytest.approx(catalog[GPU].price.on_demand + catalog[GPU].price.spot)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        pytest.param({"z9.huge": 1}, "'z9.huge' is not in the catalog", id="unknown-type"),
        pytest.param({"vt1.3xlarge": 1}, "cannot run on 'vt1.3xlarge'", id="incompatible-type"),
        pytest.param({GPU: -1}, r"must be >= 0, got \{'g6.xlarge': -1\}", id="negative-count"),
    ],
)
def test_bad_targets_raise(catalog, profile, target, message):
    with pytest.raises(PlanError, match=message):
        make_plan(APP, {}, target, catalog=catalog, profile=profile, guardrails=Guardrails())


def test_guardrails_reject_bad_values():
    with pytest.raises(PlanError, match=r"max_step_nodes must be >= 1, got 0"):
        Guardrails(max_step_nodes=0)


def test_a_rollback_plan_returns_to_the_checkpoint_make_before_break(catalog, profile):
    plan = make_plan(APP, {CPU: Holding(4, 4, 4)}, {GPU: 1}, catalog=catalog, profile=profile, guardrails=Guardrails())
    half_way = {CPU: Holding(4, 1, 1), GPU: Holding(1, 1, 1)}  # a drain that stopped at 1 replica
    back = restore_plan(plan, half_way, {CPU: Target(4, 4), GPU: Target(1, 1)})
    assert steps(back) == [("start", CPU, 1, 4)]
    undo = restore_plan(plan, {CPU: Holding(4, 4, 4), GPU: Holding(1, 0, 0)}, {CPU: Target(4, 4)})
    assert steps(undo) == [("release", GPU, 1, 0)]
    assert back.notes == ("rollback",)


def test_to_dict_is_json_ready(catalog, profile):
    import json

    plan = make_plan(APP, {CPU: Holding(4, 4, 4)}, {GPU: 1}, catalog=catalog, profile=profile, guardrails=Guardrails())
    data = json.loads(json.dumps(plan.to_dict()))
    assert data["steps"][0]["description"] == "provision g6.xlarge: nodes 0 -> 1 on pool prescale-g6-xlarge"
    assert data["serving_before"] == {"requests_per_second": pytest.approx(52.8)}
