"""A two-type world small enough to reason about by hand, and inputs built from plain arrays.

``vm``: a CPU VM, ready one step (60 s) after the order, 10 units for 1 USD/h (0.10 per unit).
``metal``: bare metal, ready five steps after the order, 50 units for 3 USD/h (0.06 per unit), so
``θ = 0.6``: a unit of capacity is cheaper on metal when it is busy more than 60% of the time.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from prescale.catalog import AppProfile, Catalog
from prescale.replay import Fleet, ReplayInput, build_fleet

START = pd.Timestamp("2026-03-02T00:00:00Z")
STEP = 60
QUANTILES = (0.1, 0.5, 0.9)


def _type(name: str, kind: str, *, price: float, lead: float, quota: int = 100) -> dict:
    return {
        "name": name,
        "kind": kind,
        "capacity": {"vcpu": 8, "memory_gib": 32},
        "price": {"on_demand": price},
        "quota": quota,
        "lead_time_seconds": lead,
        "perf": {"peak_tflops": 1.0, "memory_bandwidth_gbps": 20.0, "network_latency_us": 50.0},
    }


def catalog(*, with_metal: bool = True, vm_lead: float = 60, metal_lead: float = 300) -> Catalog:
    types = [_type("vm", "cpu-vm", price=1.0, lead=vm_lead)]
    if with_metal:
        types.append(_type("metal", "bare-metal", price=3.0, lead=metal_lead))
    return Catalog.model_validate({"types": types})


def profile(*, min_nodes: int = 0) -> AppProfile:
    return AppProfile.model_validate({
        "name": "app",
        "metrics": [{"name": "load"}],
        "kinds": ["cpu-vm", "bare-metal"],
        "workload_class": "compute",
        "serves": {"vm": {"load": 10.0}, "metal": {"load": 50.0}},
        "min_nodes": min_nodes,
    })


def fleet(*, with_metal: bool = True, **kwargs) -> Fleet:
    return build_fleet(catalog(with_metal=with_metal, **kwargs), profile(), step_seconds=STEP)


def perfect_forecast(demand: np.ndarray, horizon: int, *, spread: float = 0.0) -> np.ndarray:
    """At step t, quantiles of steps t .. t+H-1 equal to the demand (times 1 -/+ spread for q0.1/q0.9)."""
    T = len(demand)
    padded = np.concatenate([demand, np.repeat(demand[-1:], horizon)])
    paths = np.stack([padded[t : t + horizon] for t in range(T)])  # (T, H)
    factors = np.array([1 - spread, 1.0, 1 + spread])
    return paths[:, :, None, None] * factors[None, None, None, :]


def replay_input(demand, *, start: int = 0, horizon: int = 12, forecast=True, peak=None, spread=0.0) -> ReplayInput:
    demand = np.asarray(demand, dtype=float)
    index = pd.date_range(START, periods=len(demand), freq=f"{STEP}s")
    return ReplayInput(
        app="app",
        index=index,
        demand=demand[:, None],
        metrics=("load",),
        step_seconds=STEP,
        start=start,
        forecast=perfect_forecast(demand, horizon, spread=spread) if forecast else None,
        quantiles=QUANTILES,
        history_peak=np.array([np.nanmax(demand) if peak is None else peak]),
    )
