"""The pure decision (``prescale.decision``): stepped on its own projected holding it is the replay, to the bit.

Two-type world of ``builders.py`` (``vm`` ready in 1 step, ``metal`` in 5, cheaper per unit) and one real case.
"""

from __future__ import annotations

import numpy as np
import pytest

from prescale.decision import DecisionError, DecisionInput, ReactiveRule, RuleState, decide
from prescale.holding import Holding, apply_target
from prescale.replay import ReplayConfig, run_rule
from prescale.replay.engine import context
from prescale.replay.policies import Predictive
from tests.replay.builders import fleet, replay_input
from tests.replay.real_cases import CONFIG, Case, build

VM, METAL = 0, 1


def _rule(f, inp, *, q=0.5, h=0.0, hold=2, config=None):
    ctx = context(inp, f, config or ReplayConfig())
    return Predictive(ctx, covered=inp.covered(q) * (1 + h), floor=ctx.observed * (1 + h), quantile=q, headroom=h,
                      hold=hold)


def _step_pure(rule: Predictive, steps: int):
    """The decision alone, stepped on the holding it projects (no executor): ``(held, ready, decisions)``."""
    f, ctx = rule.ctx.fleet, rule.ctx
    holding, state = Holding.serving(f), RuleState.initial()
    held, ready, decisions = np.zeros((steps, f.n), int), np.zeros((steps, f.n), int), []
    for t in range(steps):
        if t:
            holding = holding.arrive()
        inp = DecisionInput(f, ctx.covers, holding, covered=rule.covered[t], floor=rule.floor[t], hold=rule.hold,
                            margin=ctx.margin, state=state)
        d = decide(inp)
        holding, state = d.after, d.state
        if t == 0:  # the replay's warm start: the first decision already serves
            holding = Holding.serving(f, holding.held)
        held[t], ready[t] = holding.held, holding.ready
        decisions.append(d)
    return held, ready, decisions


def _dip_demand():
    return np.r_[np.full(20, 100.0), np.full(3, 10.0), np.full(30, 100.0), np.full(40, 10.0)]


@pytest.mark.parametrize(
    "build_rule",
    [
        pytest.param(lambda: _rule(fleet(), replay_input(_dip_demand(), start=5, spread=0.1), h=0.1),
                     id="vm-and-metal-dips-and-lulls"),
        pytest.param(lambda: (lambda f, i: _rule(f, i, q=0.9, h=0.2, hold=CONFIG.hold_steps(i.step_seconds),
                                                 config=CONFIG))(*build(Case("google2019-cpu", "transcoder", 1.0))),
                     id="google-transcoder-fpga-fill-and-gaps"),
    ],
)
def test_stepping_the_pure_decision_reproduces_the_executor_driven_replay(build_rule):
    rule = build_rule()
    steps = len(rule.covered)
    held, ready, decisions = _step_pure(rule, steps)
    series = run_rule(rule.ctx.fleet, build_rule(), steps)
    np.testing.assert_array_equal(held, series.held)
    np.testing.assert_array_equal(ready, series.ready)
    assert held.any()


def test_a_missing_forecast_leaves_the_slow_tier_alone_and_the_fast_tier_covers_the_floor():
    f = fleet()
    holding = Holding(np.array([2, 1]), np.zeros((f.max_ready, f.n), int))
    inp = DecisionInput(f, context(replay_input(np.full(5, 10.0)), f, ReplayConfig()).covers, holding,
                        covered=None, floor=np.array([75.0]), hold=2)
    d = decide(inp)
    assert d.fallback and "forecast missing" in d.reasons[0]
    assert len(d.actions) == 1 and d.actions[0].mask.tolist() == [True, False]
    assert d.target.tolist() == [3, 1]  # 50 on metal + 3 VMs serve the floor of 75
    assert d.after.booting[0].tolist() == [1, 0]


def test_the_fast_tier_is_capped_at_the_profiles_max_nodes_and_says_so():
    """A target above ``max_nodes`` would be blocked by the cluster's guardrail: the rule stays under it."""
    from prescale.fleet import build_fleet
    from tests.replay.builders import STEP, catalog, profile

    f = build_fleet(catalog(), profile().model_copy(update={"max_nodes": 5}), step_seconds=STEP)
    holding = Holding(np.array([0, 1]), np.zeros((f.max_ready, f.n), int))
    inp = DecisionInput(f, context(replay_input(np.full(5, 10.0)), f, ReplayConfig()).covers, holding,
                        covered=None, floor=np.array([150.0]), hold=2)
    d = decide(inp)
    assert d.target.tolist() == [4, 1]  # metal serves 50, VMs the other 100: only 4 fit under the cap of 5
    assert any("capped at the profile's max_nodes 5 (" in r for r in d.reasons)


def _limited(**limits):
    from prescale.fleet import build_fleet
    from tests.replay.builders import STEP, catalog, profile

    return build_fleet(catalog(), profile().model_copy(update=limits), step_seconds=STEP)


@pytest.mark.parametrize(
    ("limits", "demand", "held_metal", "expected"),
    [
        pytest.param({"min_nodes": 3}, 15.0, 2, [3, 0], id="min-nodes-counts-the-slow-target-not-held-metal"),
        pytest.param({"max_nodes": 2}, 15.0, 2, [2, 0], id="max-nodes-counts-the-slow-target-not-held-metal"),
        pytest.param({"max_nodes": 2}, 200.0, 0, [0, 2], id="a-slow-band-above-max-nodes-is-capped-too"),
    ],
)
def test_the_whole_target_keeps_to_the_profiles_node_limits(limits, demand, held_metal, expected):
    """The cluster's guardrail counts the target of every tier: metal being released make-before-break still
    counted as held let a plan fall under ``min_nodes`` (blocked every minute), and a slow band above
    ``max_nodes`` stayed above it whatever the fast tier did."""
    f = _limited(**limits)
    holding = Holding(np.array([0, held_metal]), np.zeros((f.max_ready, f.n), int))
    covers = context(replay_input(np.full(5, 10.0)), f, ReplayConfig()).covers
    inp = DecisionInput(f, covers, holding, covered=np.full((8, 1), demand), floor=np.array([demand]), hold=2)
    d = decide(inp)
    assert d.target.tolist() == expected, d.reasons
    total = int(d.target.sum())
    assert limits.get("min_nodes", 0) <= total <= limits.get("max_nodes", total)


def test_the_decision_is_pure_same_input_same_plan_and_nothing_given_is_changed():
    f = fleet()
    inp_replay = replay_input(_dip_demand(), start=5)
    rule = _rule(f, inp_replay)
    holding = Holding(np.array([3, 0]), np.zeros((f.max_ready, f.n), int))
    inp = DecisionInput(f, rule.ctx.covers, holding, covered=rule.covered[10], floor=rule.floor[10], hold=2)
    before = (inp.covered.copy(), inp.floor.copy(), holding.held.copy())
    a, b = decide(inp), decide(inp)
    assert [x.target.tolist() for x in a.actions] == [x.target.tolist() for x in b.actions]
    assert a.target.tolist() == b.target.tolist() and a.reasons == b.reasons
    np.testing.assert_array_equal(inp.covered, before[0])
    np.testing.assert_array_equal(inp.floor, before[1])
    np.testing.assert_array_equal(inp.holding.held, before[2])
    projected = holding
    for act in a.actions:
        projected = apply_target(f, projected, act.target, keep=act.keep, mask=act.mask).holding
    np.testing.assert_array_equal(projected.held, a.after.held)


def test_the_state_carries_the_last_lead_time_of_keep_levels_so_one_low_forecast_keeps_the_metal():
    f = fleet()
    rule = _rule(f, replay_input(np.full(20, 100.0)))
    covers = rule.ctx.covers
    holding = Holding(np.array([1, 2]), np.zeros((f.max_ready, f.n), int))
    low = np.full((12, 1), 10.0)

    def step(state):
        return decide(DecisionInput(f, covers, holding, covered=low, floor=np.array([10.0]), hold=2, state=state))

    remembered = RuleState({"bare-metal": np.full((f.ready[METAL], 1), 100.0)})
    assert step(remembered).target[METAL] == 2  # a high keep level within the last r_k decisions holds
    assert step(RuleState.initial()).target[METAL] == 0  # with no memory the low forecast lets the metal go
    assert step(remembered).state.recent_keep["bare-metal"].shape == (f.ready[METAL], 1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param(dict(covered=np.zeros((4, 2))), r"covered demand must be shaped \(H, 1\)", id="covered-shape"),
        pytest.param(dict(floor=np.zeros(2)), "the floor must hold 1 values", id="floor-shape"),
        pytest.param(dict(hold=-1), "hold and margin must be >= 0", id="negative-hold"),
    ],
)
def test_inputs_that_do_not_fit_are_refused_with_the_value(kwargs, message):
    f = fleet()
    base = dict(covered=np.zeros((4, 1)), floor=np.zeros(1), hold=2)
    with pytest.raises(DecisionError, match=message):
        DecisionInput(f, None, Holding.serving(f), **{**base, **kwargs})


# ------------------------------------------------------------------------------------------- the reactive rule


def _held(vm: int = 0, metal: int = 0) -> Holding:
    return Holding.serving(fleet(), np.array([vm, metal]))


@pytest.mark.parametrize(
    ("holding", "floor", "recent", "rule", "target"),
    [
        pytest.param(_held(), 190.0, None, ReactiveRule(6), {"metal": 4}, id="every-tier-at-its-cheapest-per-unit"),
        pytest.param(_held(metal=4), 20.0, None, ReactiveRule(6, types="fast"), {"vm": 2, "metal": 4},
                     id="fast-only-leaves-the-slow-tier-alone"),
        pytest.param(_held(metal=4), 20.0, [[200.0]], ReactiveRule(6), {"metal": 4},
                     id="held-while-a-peak-is-in-the-window"),
        pytest.param(_held(metal=4), 20.0, [[20.0]] * 5, ReactiveRule(6), {"vm": 2},
                     id="released-once-the-window-has-passed"),
        pytest.param(_held(metal=4), 20.0, [[200.0]] * 5, ReactiveRule(1), {"vm": 2},
                     id="no-window-no-stabilisation"),
        pytest.param(_held(vm=10), 105.0, None, ReactiveRule(6, types="fast"), {"vm": 10},
                     id="within-the-tolerance-the-binding-metric-stays"),
        pytest.param(_held(vm=10), 125.0, None, ReactiveRule(6, types="fast"), {"vm": 13},
                     id="beyond-the-tolerance-scale-up-at-once"),
    ],
)  # fmt: skip
def test_the_reactive_rule(holding, floor, recent, rule, target):
    f = fleet()
    state = RuleState(recent_recs=None if recent is None else np.array(recent))
    inp = DecisionInput(f, context(replay_input(np.ones(3)), f, ReplayConfig()).covers, holding, covered=None,
                        floor=np.array([floor]), hold=0, state=state, reactive=rule)
    d = decide(inp)
    assert f.as_dict(d.target) == target, d.reasons
    assert not d.fallback and d.state.recent_keep == {}
    assert len(d.state.recent_recs) == min(rule.window - 1, (0 if recent is None else len(recent)) + 1)


def test_the_reactive_rule_takes_no_forecast():
    f = fleet()
    with pytest.raises(DecisionError, match="covered must be None"):
        DecisionInput(f, context(replay_input(np.ones(3)), f, ReplayConfig()).covers, _held(),
                      covered=np.ones((3, 1)), floor=np.array([1.0]), hold=0, reactive=ReactiveRule(6))


def test_the_reactive_rule_keeps_what_runs_when_no_demand_was_observed():
    """An outage of every metric (the loop's floor is NaN): nothing to decide on, what runs is kept and the
    window's recommendations carry on, as the replay's Reactive skips an unobserved step."""
    f = fleet()
    state = RuleState(recent_recs=np.array([[200.0]]))
    inp = DecisionInput(f, context(replay_input(np.ones(3)), f, ReplayConfig()).covers, _held(metal=4),
                        covered=None, floor=np.array([np.nan]), hold=0, state=state, reactive=ReactiveRule(6))
    d = decide(inp)
    assert f.as_dict(d.target) == {"metal": 4} and d.actions == ()
    assert np.array_equal(d.state.recent_recs, state.recent_recs) and "no demand observed" in d.reasons[0]
