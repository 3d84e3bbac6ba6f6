"""The policies' rules on hand-made demand: what each one holds, and when (two-type world of builders.py)."""

from __future__ import annotations

import numpy as np
import pytest

from prescale.replay import ReplayConfig, run_rule, score_series
from prescale.replay.engine import context
from prescale.replay.policies import Predictive, Reactive, StaticPeak, retarget, with_min_nodes
from tests.replay.builders import catalog, fleet, profile, replay_input

VM, METAL = 0, 1


def _predictive(demand, *, q=0.5, h=0.0, hold=2, start=0, spread=0.0, with_metal=True):
    f = fleet(with_metal=with_metal)
    inp = replay_input(demand, start=start, spread=spread)
    ctx = context(inp, f, ReplayConfig())
    rule = Predictive(ctx, covered=inp.covered(q) * (1 + h), floor=ctx.observed * (1 + h), quantile=q, headroom=h,
                      hold=hold)
    series = run_rule(f, rule, len(demand))
    return f, inp, series


def _reactive(demand, *, target=1.0, tolerance=0.0, window=6, with_metal=False, types="all"):
    f = fleet(with_metal=with_metal)
    inp = replay_input(demand, forecast=False)
    ctx = context(inp, f, ReplayConfig())
    rule = Reactive(ctx, target=target, types=types, tolerance=tolerance, window=window)
    return f, inp, run_rule(f, rule, len(demand))


@pytest.mark.parametrize(
    ("low", "high"),
    [pytest.param(20.0, 120.0, id="predictive-covers-lead-time"), pytest.param(10.0, 260.0, id="predictive-big-step")],
)
def test_predictive_orders_slow_nodes_a_lead_time_ahead_of_a_forecast_step(low, high):
    demand = np.r_[np.full(30, low), np.full(40, high)]
    f, inp, s = _predictive(demand, start=5)
    score = score_series(f, s, inp.demand, start=inp.start)
    assert score.violation_steps == 0
    assert s.ready[30, METAL] >= 1, "metal should serve from the step-up on"
    first_order = int(np.flatnonzero(s.orders[:, METAL])[0])
    assert first_order <= 30 - f.ready[METAL]


def test_predictive_does_not_boot_slow_nodes_long_before_their_demand_even_on_a_long_horizon():
    # a 40-step forecast sees the step-up from step 20 on; metal (lead 5) is ordered in time, not 19 steps early
    demand = np.r_[np.full(60, 20.0), np.full(40, 120.0)]
    f = fleet()
    inp = replay_input(demand, start=5, horizon=40)
    ctx = context(inp, f, ReplayConfig())
    rule = Predictive(ctx, covered=inp.covered(0.5), floor=ctx.observed, quantile=0.5, headroom=0.0, hold=2)
    s = run_rule(f, rule, len(demand))
    first = int(np.flatnonzero(s.orders[:, METAL])[0])
    assert 60 - 2 * f.ready[METAL] <= first <= 60 - f.ready[METAL]
    assert score_series(f, s, inp.demand, start=inp.start).violation_steps == 0


def test_predictive_keeps_slow_nodes_through_a_dip_shorter_than_their_lead_time():
    demand = np.r_[np.full(20, 100.0), np.full(3, 10.0), np.full(30, 100.0)]
    f, inp, s = _predictive(demand, start=10)
    held = s.held[10:, METAL]
    assert held.min() == held.max() >= 1, f"metal held changed during a 3-step dip: {held.tolist()}"
    assert score_series(f, s, inp.demand, start=inp.start).violation_steps == 0


def test_predictive_releases_slow_nodes_when_the_lull_outlasts_their_lead_time():
    demand = np.r_[np.full(20, 100.0), np.full(40, 10.0)]
    f, inp, s = _predictive(demand, start=10)
    assert s.held[15, METAL] >= 1 and s.held[-1, METAL] == 0


def test_predictive_keeps_slow_nodes_through_a_one_decision_dip_of_a_jumpy_forecast():
    # demand dips for one step and the forecast made right after it follows the dip across the whole horizon,
    # then recovers: releasing metal on that one decision and buying it back would cost five steps of booting
    demand = np.r_[np.full(25, 100.0), [10.0], np.full(30, 100.0)]
    f = fleet()
    inp = replay_input(demand, start=10)
    ctx = context(inp, f, ReplayConfig())
    covered = inp.covered(0.5).copy()
    covered[26] = 10.0  # made at step 26's decision, after observing the dip
    rule = Predictive(ctx, covered=covered, floor=ctx.observed, quantile=0.5, headroom=0.0, hold=2)
    s = run_rule(f, rule, len(demand))
    held = s.held[10:, METAL]
    assert held.min() == held.max() >= 1, f"metal held changed around a one-decision dip: {held.tolist()}"
    assert s.orders[10:, METAL].sum() == 0


def _gpu_world():
    """A CPU VM (1 step, 0.10 USD per unit) and two GPU VMs: one ready in a step like the VM, one in five,
    both 0.03 USD per unit, so the GPU tier is slow (five steps) but one of its types is not."""
    from prescale.catalog import AppProfile, Catalog
    from prescale.replay import build_fleet
    from tests.replay.builders import STEP, _type

    gpus = {"capacity": {"vcpu": 8, "memory_gib": 32, "gpus": 1}}
    cat = Catalog.model_validate({"types": [
        _type("vm", "cpu-vm", price=1.0, lead=60),
        _type("gpu-quick", "gpu-vm", price=1.5, lead=60) | gpus,
        _type("gpu-slow", "gpu-vm", price=1.5, lead=300) | gpus,
    ]})
    prof = AppProfile.model_validate({
        "name": "app", "metrics": [{"name": "load"}], "kinds": ["cpu-vm", "gpu-vm"], "workload_class": "compute",
        "serves": {"vm": {"load": 10.0}, "gpu-quick": {"load": 50.0}, "gpu-slow": {"load": 50.0}},
    })
    return build_fleet(cat, prof, step_seconds=STEP)


def test_predictive_fills_a_late_seen_rise_with_the_cheapest_type_ready_in_time_of_any_kind():
    # the forecast sees a rise only two steps ahead, too late for the five-step GPU: the fast tier's fill may
    # use any type ready by the step it covers, so it buys the one-step GPU, not five CPU VMs
    f = _gpu_world()
    demand = np.r_[np.full(30, 40.0), np.full(20, 90.0)]
    inp = replay_input(demand, start=10)
    ctx = context(inp, f, ReplayConfig())
    T, H = inp.covered(0.5).shape[:2]
    seen = np.minimum(np.arange(T)[:, None] + np.arange(H)[None, :], T - 1)
    late = np.where(np.arange(H)[None, :] <= 2, demand[seen], demand[np.arange(T)][:, None])
    rule = Predictive(ctx, covered=late[:, :, None], floor=ctx.observed, quantile=0.5, headroom=0.0, hold=0)
    s = run_rule(f, rule, len(demand))
    vm, quick = f.names.index("vm"), f.names.index("gpu-quick")
    assert score_series(f, s, inp.demand, start=inp.start).violation_steps == 0
    assert s.orders[25:35, vm].sum() == 0, f"CPU VMs bought for the rise: {s.orders[25:35].tolist()}"
    # bought once and kept: the GPU tier does not cancel a node of a type its own cheapest mix would not pick
    assert s.orders[25:, quick].sum() == 1 and s.removals[25:, quick].sum() == 0


@pytest.mark.parametrize("seed", [2, 4])
def test_predictive_with_a_perfect_forecast_never_opens_a_gap_while_swapping_nodes(seed):
    # small nodes are consolidated into a cheaper big one as demand wanders; what is let go cannot be
    # replaced for two steps, so the make-before-break floor must cover those steps, not just the current one
    from prescale.catalog import AppProfile, Catalog
    from prescale.replay import build_fleet
    from tests.replay.builders import STEP, _type

    cat = Catalog.model_validate({"types": [_type("small", "cpu-vm", price=1.2, lead=120),
                                            _type("big", "cpu-vm", price=4.0, lead=120)]})
    prof = AppProfile.model_validate({"name": "app", "metrics": [{"name": "load"}], "kinds": ["cpu-vm"],
                                      "workload_class": "compute",
                                      "serves": {"small": {"load": 10.0}, "big": {"load": 50.0}}})
    f = build_fleet(cat, prof, step_seconds=STEP)
    demand = np.clip(60 + np.cumsum(np.random.default_rng(seed).normal(0, 6, 400)), 5, 300)
    inp = replay_input(demand, start=10, horizon=12)
    ctx = context(inp, f, ReplayConfig())
    rule = Predictive(ctx, covered=inp.covered(0.5), floor=ctx.observed, quantile=0.5, headroom=0.0, hold=2)
    s = run_rule(f, rule, len(demand))
    assert s.removals[inp.start :].sum() > 0  # it does swap and release
    assert score_series(f, s, inp.demand, start=inp.start).violation_steps == 0


def test_predictive_floor_reacts_when_the_forecast_is_missing():
    demand = np.r_[np.full(10, 20.0), np.full(10, 60.0)]
    f = fleet(with_metal=False)
    inp = replay_input(demand)
    ctx = context(inp, f, ReplayConfig())
    covered = np.full_like(inp.covered(0.5), np.nan)
    rule = Predictive(ctx, covered=covered, floor=ctx.observed, quantile=0.5, headroom=0.0, hold=0)
    s = run_rule(f, rule, len(demand))
    assert rule.fallback_steps == len(demand)
    assert s.ready[-1, VM] == 6  # the floor follows observed demand, one lead time late


def test_reactive_lags_a_step_up_by_one_observation_plus_the_lead_time():
    demand = np.r_[np.full(20, 20.0), np.full(10, 60.0)]
    f, inp, s = _reactive(demand)
    short = score_series(f, s, inp.demand, start=1)
    assert short.violation_steps == 2  # step 20 (not yet observed) and 21 (ordered, booting one step)
    assert s.ready[22, VM] == 6


@pytest.mark.parametrize(
    ("window", "released_at"),
    [pytest.param(6, 26, id="reactive-stabilises-scale-down"), pytest.param(1, 21, id="reactive-unstabilised")],
)
def test_reactive_scales_down_only_after_the_stabilisation_window(window, released_at):
    demand = np.r_[np.full(20, 60.0), np.full(15, 20.0)]
    _, _, s = _reactive(demand, window=window)
    held = s.held[:, VM]
    assert held[released_at - 1] == 6 and held[released_at] == 2


def test_reactive_ignores_changes_within_its_tolerance():
    demand = np.r_[np.full(10, 20.0), np.full(10, 21.0)]
    _, _, s = _reactive(demand, tolerance=0.1)
    assert set(s.held[1:, VM].tolist()) == {2}


def test_reactive_on_all_types_buys_the_cheapest_per_unit_like_karpenter():
    demand = np.full(20, 100.0)
    _, _, s = _reactive(demand, with_metal=True)
    assert s.held[-1].tolist() == [0, 2]


def test_static_peak_holds_one_cover_all_along():
    demand = np.r_[np.full(10, 20.0), np.full(10, 90.0), np.full(10, 30.0)]
    f = fleet()
    inp = replay_input(demand, forecast=False, peak=90.0)
    ctx = context(inp, f, ReplayConfig())
    s = run_rule(f, StaticPeak(ctx, peak=inp.history_peak, factor=1.0), len(demand))
    assert (s.held == s.held[0]).all() and f.capacity(s.held[0])[0] >= 90.0


@pytest.mark.parametrize(
    ("held", "need", "expected"),
    [
        pytest.param([5, 0], 50.0, [0, 1], id="consolidates-to-a-cheaper-mix"),
        pytest.param([0, 1], 58.0, [1, 1], id="adds-the-cheapest-cover-of-the-deficit"),
        pytest.param([2, 1], 55.0, [1, 1], id="trims-the-dearest-unneeded-node"),
    ],
)
def test_retarget(held, need, expected):
    f = fleet()
    ctx = context(replay_input(np.ones(3), forecast=False), f, ReplayConfig())
    out = retarget(ctx, np.array(held), np.array([need]), (VM, METAL))
    assert out.tolist() == expected


def test_min_nodes_are_topped_up_with_the_fastest_tiers_cheapest_node():
    from prescale.replay import build_fleet

    f = build_fleet(catalog(), profile(min_nodes=3), step_seconds=60)
    assert with_min_nodes(f, np.array([0, 1])).tolist() == [2, 1]


def test_the_slow_path_through_allocate_holds_the_same_mix_on_steady_demand():
    from prescale.replay.policies import Allocating

    demand = np.full(30, 120.0)
    f = fleet()
    inp = replay_input(demand, horizon=8)
    ctx = context(inp, f, ReplayConfig())
    slow = Allocating(ctx, forecast=inp.forecast, quantiles=inp.quantiles, floor=ctx.observed, start=inp.index[0],
                      quantile=0.5, headroom=0.0)
    fast = Predictive(ctx, covered=inp.covered(0.5), floor=ctx.observed, quantile=0.5, headroom=0.0, hold=2)
    held = [run_rule(f, rule, len(demand)).held[-1] for rule in (slow, fast)]
    assert f.cost_per_hour(held[0]) == pytest.approx(f.cost_per_hour(held[1]))
    assert f.capacity(held[0])[0] >= 120.0
