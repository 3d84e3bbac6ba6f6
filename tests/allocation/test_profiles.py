"""The four shipped apps land on the hardware their profiles are written for (shipped catalog, exact solver)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prescale.allocation import SolverSettings, allocate
from prescale.catalog import load_catalog, resolve_profile
from prescale.forecast import Forecast

REPO = Path(__file__).resolve().parents[2]
START = pd.Timestamp("2026-03-02T10:00:00Z")
PLANNED_AHEAD = START - pd.Timedelta(hours=1)  # every lead time has passed: a pure price comparison
ON_DEMAND = SolverSettings(solver="milp", time_budget_ms=None, max_spot_share=0.0, runner_ups=0)


def steady(profile, demand: dict[str, float]) -> Forecast:
    median = np.tile([demand[m] for m in profile.metric_names], (30, 1))
    return Forecast.from_median(median, start=START, step_seconds=60, metrics=profile.metric_names, spread=0.05)


CASES = [
    pytest.param("web", {"requests_per_second": 12000, "connections": 200000}, "cpu-vm", id="web-on-cpu"),
    pytest.param("inference", {"requests_per_second": 3000}, "gpu-vm", id="inference-on-gpu"),
    pytest.param("transcoder", {"streams": 120}, "fpga", id="transcoder-on-fpga"),
    pytest.param(
        "analytics",
        {"scan_gbps": 1000, "working_set_gib": 500},
        "bare-metal",
        id="analytics-on-bare-metal-at-high-load",
    ),
    pytest.param("analytics", {"scan_gbps": 40, "working_set_gib": 30}, "cpu-vm", id="analytics-on-vm-at-low-load"),
]


@pytest.mark.parametrize(("app", "demand", "kind"), CASES)
def test_shipped_app_spends_most_on_its_best_hardware(app, demand, kind):
    catalog = load_catalog(REPO / "infra" / "catalog.yaml")
    profile = resolve_profile(app, REPO / "infra" / "apps")
    decision = allocate(steady(profile, demand), catalog, profile, {}, ON_DEMAND, now=PLANNED_AHEAD)
    assert decision.covered, decision.explanation
    spend: dict[str, float] = {}
    for name, nodes in decision.nodes.items():
        spend[catalog[name].kind] = spend.get(catalog[name].kind, 0.0) + nodes * catalog[name].price.on_demand
    assert max(spend, key=spend.get) == kind, decision.nodes
    assert spend[kind] > 0.75 * sum(spend.values()), decision.nodes
