"""Small hand-made catalogs, profiles and forecasts for the allocation tests (numbers chosen to be read)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from prescale.catalog import AppProfile, Catalog
from prescale.forecast import Forecast

START = pd.Timestamp("2026-03-02T10:00:00Z")
LEAD = {"cpu-vm": 60, "gpu-vm": 360, "fpga": 720, "bare-metal": 1500}


def rtype(
    name: str,
    kind: str,
    *,
    price: float,
    quota: int = 50,
    spot: float | None = None,
    lead: float | None = None,
    family: str | None = None,
) -> dict[str, Any]:
    return {
        "name": name,
        "kind": kind,
        "capacity": {
            "vcpu": 8,
            "memory_gib": 32,
            "gpus": 1 if kind == "gpu-vm" else 0,
            "fpgas": 1 if kind == "fpga" else 0,
        },
        "price": {"on_demand": price, "spot": spot},
        "quota": quota,
        "lead_time_seconds": LEAD[kind] if lead is None else lead,
        "perf": {
            "peak_tflops": 1.0,
            "memory_bandwidth_gbps": 20.0,
            "network_latency_us": 50.0,
            "fpga_family": family or ("fam-a" if kind == "fpga" else None),
        },
    }


def catalog(*types: dict[str, Any]) -> Catalog:
    return Catalog.model_validate({"types": list(types)})


def profile(
    serves: dict[str, float | dict[str, float]],
    *,
    kinds=("cpu-vm", "gpu-vm", "fpga", "bare-metal"),
    metrics=("rps",),
    min_nodes: int = 0,
    max_nodes: int | None = None,
    bitstreams=("fam-a",),
) -> AppProfile:
    rows = {k: (v if isinstance(v, dict) else {metrics[0]: v}) for k, v in serves.items()}
    return AppProfile.model_validate(
        {
            "name": "app",
            "metrics": [{"name": m} for m in metrics],
            "kinds": list(kinds),
            "workload_class": "compute",
            "fpga_bitstreams": list(bitstreams) if "fpga" in kinds else [],
            "serves": rows,
            "min_nodes": min_nodes,
            "max_nodes": max_nodes,
        }
    )


def flat(
    demand: float | list[float], *, steps: int = 10, step_seconds: int = 60, spread: float = 0.0, metrics=("rps",)
) -> Forecast:
    """Constant demand (per metric) over the horizon; spread 0 makes every quantile equal."""
    values = np.atleast_1d(np.asarray(demand, dtype=float))
    median = np.tile(values, (steps, 1))
    return Forecast.from_median(median, start=START, step_seconds=step_seconds, metrics=list(metrics), spread=spread)


def path(medians: list[float], *, step_seconds: int = 60, spread: float = 0.0) -> Forecast:
    return Forecast.from_median(
        np.asarray(medians, dtype=float), start=START, step_seconds=step_seconds, metrics=["rps"], spread=spread
    )
