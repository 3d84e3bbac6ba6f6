"""Covers: the allocation's exact answer, rounded up to a grid, cached."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from prescale.allocation import allocate
from prescale.catalog import load_catalog, resolve_profile
from prescale.forecast import Forecast
from prescale.replay import CoverCache, build_fleet
from prescale.replay.covers import COVER_SOLVER
from tests.conftest import REPO


@pytest.mark.parametrize("app", ["web", "analytics", "inference", "transcoder"])
def test_a_cover_is_allocates_exact_answer_for_the_rounded_level(app):
    catalog = load_catalog(REPO / "infra" / "catalog.yaml")
    prof = resolve_profile(app, REPO / "infra" / "apps")
    fleet = build_fleet(catalog, prof, step_seconds=60)
    cache = CoverCache(fleet)
    level = np.array([prof.example_demand.peak[m] for m in prof.metric_names]) * 0.37
    counts = cache.cover(level, tuple(range(fleet.n)))
    rounded = cache.quantised(level)
    assert (rounded >= level).all() and (rounded <= level * 1.01 + cache.delta).all()
    assert (fleet.capacity(counts) >= rounded - 1e-9).all()
    start = pd.Timestamp("2026-01-01T00:00:00Z")
    direct = allocate(Forecast(start, 60, list(fleet.metrics), [0.5], rounded[None, :, None]), fleet.catalog,
                      prof.model_copy(update={"min_nodes": 0, "max_nodes": None}), {}, COVER_SOLVER,
                      now=start - pd.Timedelta(days=1))
    assert fleet.cost_per_hour(counts) == pytest.approx(direct.cost_per_hour)


def test_levels_on_the_same_grid_point_share_one_solve():
    from tests.replay.builders import fleet

    f = fleet()
    cache = CoverCache(f, resolution=0.01)
    a = cache.cover(np.array([1000.0]), (0, 1))
    b = cache.cover(np.array([1000.0 * 1.001]), (0, 1))
    assert a is b and cache.solves == 1 and cache.hits == 1
    assert cache.cover(np.array([0.0]), (0, 1)).sum() == 0
