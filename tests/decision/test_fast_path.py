"""The cover cache is a speed matter only: decisions with it equal decisions that solve every cover every time.

Over a slice of the decision benchmark's week (NASA at one-minute steps, seasonal-naive forecasts with gaps)
on a profile with two tiers, the rule decides once with a fresh cover cache and once with
``CoverCache(solve_every_time=True)``; every step's actions must be equal. And ``shared_covers`` shares one
cache between apps whose covers are the same problem (profiles copied under other names), never between
apps whose served demand differs.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from prescale.catalog import load_catalog, resolve_profile
from prescale.fleet import build_fleet
from prescale.replay.covers import CoverCache, shared_covers

REPO = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("decision_bench", REPO / "benchmarks" / "decision.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("profile", [pytest.param("analytics", id="cpu-and-bare-metal"),
                                     pytest.param("inference", id="cpu-and-gpu")])
def test_cached_covers_decide_as_solving_every_time(profile):
    bench = _bench()
    if not bench.TRACE.exists():
        pytest.skip(f"the shared NASA trace is not here: {bench.TRACE}")
    fleet, inp = bench.week(profile)
    steps = 240
    answers, solves = {}, {}
    for every in (False, True):
        covers = CoverCache(fleet, resolution=bench.CONFIG.cover_resolution, solve_every_time=every)
        ctx = bench.context(inp, fleet, bench.CONFIG, covers)
        rule = bench.Predictive(ctx, covered=inp.covered(bench.Q) * (1 + bench.H), floor=ctx.observed * (1 + bench.H),
                                quantile=bench.Q, headroom=bench.H, hold=bench.CONFIG.hold_steps(inp.step_seconds))
        _, answers[every] = bench.decide_all(rule, steps)
        solves[every] = covers.solves
    assert solves[True] > solves[False] > 0  # the switch did solve more, and both solved
    changed = [t for t in range(steps) if answers[False][t] != answers[True][t]]
    assert not changed, f"decisions differ at steps {changed[:5]}"


def test_shared_covers_share_one_cache_between_copies_of_a_profile():
    catalog = load_catalog(REPO / "infra" / "catalog.yaml")
    web = resolve_profile("web", REPO / "infra" / "apps")
    copy = web.model_copy(update={"name": "web-copy", "description": "another app, same shape"})
    other = resolve_profile("analytics", REPO / "infra" / "apps")
    covers = shared_covers(0.01)
    a, b = (covers(build_fleet(catalog, p, step_seconds=60)) for p in (web, copy))
    c = covers(build_fleet(catalog, other, step_seconds=60))
    assert a is b
    assert c is not a
    level = np.array([5000.0, 90000.0])
    fresh = CoverCache(build_fleet(catalog, copy, step_seconds=60))
    assert a.cover(level, range(a.fleet.n)).tolist() == fresh.cover(level, range(fresh.fleet.n)).tolist()
