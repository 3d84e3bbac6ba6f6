"""Replays of the shared real traces whose figures pin the simulated policies down, to the bit.

Recorded on the code before issue 14 split the predictive rule into a pure decision (``prescale.decision``)
and the executor's act; ``test_decision_identity.py`` replays the same cases and asserts every figure is
unchanged: cost (as a float, not rounded), violation minutes, migrations, fallback steps, and a digest of the
whole simulated series (nodes held, serving, ordered and removed per step and type).

Cases: slices of NASA HTTP at one minute and of the Google and Azure cluster aggregates at five, each mapped
onto shipped profiles that exercise every branch of the tiered rule: bare metal as a slow tier (analytics),
GPU VMs ready inside the fast tier's window (inference: the fill buys slow nodes), FPGAs as both (transcoder
at five minutes), one tier only (web). Forecasts are a seasonal-naive path (the demand a day before) with
fixed relative quantile bands and a run of missing forecasts, so no model is trained and every step is
deterministic; what matters here is that the rule sees the same inputs before and after, not their skill.

Record (only when the rule is meant to change, and say why in the commit):
``python -m tests.replay.real_cases --record``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from prescale.catalog import load_catalog, resolve_profile
from prescale.replay import ReplayConfig, ReplayInput, build_fleet, run_rule
from prescale.replay.engine import context, rules_for
from prescale.replay.frontier import score_series
from prescale.replay.inputs import demand_map, make_input, plan_window

REPO = Path(__file__).resolve().parents[2]
TRACES = REPO.parent / "shared" / "traces"
RECORDED = Path(__file__).with_name("real_cases.json")
QUANTILES = (0.1, 0.5, 0.9)
BAND = (0.8, 1.0, 1.25)  # each quantile as a multiple of the seasonal-naive value
CONFIG = ReplayConfig(settings={"predictive": {"quantiles": (0.5, 0.9), "headrooms": (0.0, 0.2)},
                                "reactive": {"targets": (0.5, 0.8)}, "static": {"factors": (0.8,)}},
                      policies=("predictive", "reactive", "static"))
POLICIES = ("predictive", "reactive", "static")


@dataclass(frozen=True)
class Case:
    trace: str
    profile: str
    days: float

    @property
    def name(self) -> str:
        return f"{self.trace}/{self.profile}/{self.days:g}d"


CASES = (
    Case("nasa-1min", "analytics", 1.0),
    Case("nasa-1min", "inference", 1.0),
    Case("google2019-cpu", "transcoder", 3.0),
    Case("google2019-cpu", "web", 2.0),
    Case("azure2019-cpu", "analytics", 3.0),
)


def series(trace: str, traces: Path = TRACES) -> tuple[pd.DatetimeIndex, np.ndarray]:
    """The trace's timestamps (UTC) and values, as ``benchmarks/replay.py`` reads them."""
    if trace == "nasa-1min":
        df = pd.read_csv(traces / "nasa_http" / "nasa_requests_1min_reconstructed.csv")
        ts = pd.to_datetime(df.iloc[:, 0]).dt.tz_localize("-04:00").dt.tz_convert("UTC")
        return pd.DatetimeIndex(ts), df["requests"].to_numpy(float) / 60.0
    path, column = {
        "google2019-cpu": ("google2019_instance_usage_300s.csv", "avg_cpu"),
        "azure2019-cpu": ("azure2019_vm_cpu_mem_300s.csv", "cpu_usage"),
    }[trace]
    df = pd.read_csv(traces / "cluster_aggregates" / path)
    return pd.date_range("2019-01-01", periods=len(df), freq="300s", tz="UTC"), df[column].to_numpy(float)


def seasonal_forecast(values: np.ndarray, origins: np.ndarray, horizon: int, step_seconds: int) -> np.ndarray:
    """``(steps, H, Q)``: made at each origin for rows ``o+1 .. o+H``, the value a day before, times ``BAND``.

    Every 97th forecast and a run of 30 are missing (NaN), as gaps in the history leave them.
    """
    season = round(86_400 / step_seconds)
    known = pd.Series(values).ffill().bfill().to_numpy()
    rows = origins[:, None] + 1 + np.arange(horizon)[None, :] - season
    path = known[np.clip(rows, 0, origins[:, None])]  # never later than the origin
    out = path[:, :, None] * np.array(BAND)[None, None, :]
    out[::97] = np.nan
    out[len(out) // 2 : len(out) // 2 + 30] = np.nan
    return out


def build(case: Case, traces: Path = TRACES):
    """``(fleet, input)`` of one case, on the shipped catalog and profile."""
    catalog = load_catalog(REPO / "infra" / "catalog.yaml")
    profile = resolve_profile(case.profile, REPO / "infra" / "apps")
    index, values = series(case.trace, traces)
    step = int((index[1] - index[0]).total_seconds())
    fleet = build_fleet(catalog, profile, step_seconds=step)
    window = plan_window(len(values), step, days=case.days, max_lead_seconds=float(fleet.lead_seconds.max()),
                         lookahead_minutes=30.0)
    fc = seasonal_forecast(values, window.origins, window.horizon, step)
    dmap = demand_map(values[: window.replay_start], profile, "x", peak_scale=1.0)
    inp: ReplayInput = make_input(case.trace, index, values, window, dmap, forecast=fc, quantiles=QUANTILES)
    return fleet, inp


def digest(series) -> str:
    h = hashlib.sha256()
    for a in (series.held, series.ready, series.orders, series.removals):
        h.update(np.ascontiguousarray(a, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


def figures(case: Case, traces: Path = TRACES, *, policies: tuple[str, ...] = POLICIES) -> dict[str, dict]:
    """``"policy setting" -> {cost, violation_minutes, migrations, fallback_steps, series}`` of one case."""
    fleet, inp = build(case, traces)
    ctx = context(inp, fleet, CONFIG)
    out = {}
    for policy in policies:
        for rule in rules_for(policy, inp, ctx, CONFIG):
            run = run_rule(fleet, rule, len(inp.index))
            score = score_series(fleet, run, inp.demand, start=inp.start, fallback_steps=rule.fallback_steps)
            out[f"{policy} {rule.setting}"] = {
                "cost": score.cost,
                "violation_minutes": score.slo_violation_minutes,
                "migrations": score.migrations,
                "fallback_steps": score.fallback_steps,
                "series": digest(run),
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", action="store_true", help=f"write {RECORDED.name} (else print)")
    args = parser.parse_args()
    data = {case.name: figures(case) for case in CASES}
    text = json.dumps(data, indent=1, sort_keys=True) + "\n"
    if args.record:
        RECORDED.write_text(text)
        print(f"wrote {RECORDED}")
    else:
        print(text)


if __name__ == "__main__":
    main()
