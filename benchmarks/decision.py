"""Benchmark: the latency of one predictive decision (``prescale.decision.decide``), step by step over a week.

A week of NASA HTTP at one-minute steps (10,080 scored decisions plus the warm-up) on each shipped profile, at
one setting (covered quantile 0.9, headroom 0.2), with seasonal-naive forecasts (the value a day before, fixed
quantile bands, some missing: the week and forecasts of the NASA cases of ``tests/replay/real_cases.py``, built
here from the package's public replay inputs): the rule's work per decision does not depend on the forecast's
skill, only on the levels it asks covers for. Per decision it times ``decide`` alone (the plan: bands,
projections, covers) and the act (the executor applying the actions), through the replay's own loop
(``run_rule``'s steps).

Two passes over the same week: *cold*, a new cover cache (every level the week asks for is solved once by the
allocation's exact MILP: the tail of the distribution), then *warm*, the same cache (what a long-running loop
sees once its levels are known). The issue's target is p95 < 100 ms per app on 2 cores.

Writes ``benchmarks/results/decision.json`` and ``.md``. Run: ``.venv/bin/python benchmarks/decision.py``
(about a minute per profile); ``--profiles web`` for one.

``--fast-path DAYS`` measures instead what the cover cache saves (issue 19): the first ``DAYS`` of the same
week decided twice from a fresh cache, once as the rule runs (a cover solved once per grid level, then
looked up) and once with ``CoverCache(solve_every_time=True)`` (every cover asked of the exact MILP again),
checking at every step that both give the same actions, and reports decide's p50/p95 per call for each.
Writes ``benchmarks/results/decision-fastpath.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from prescale.catalog import load_catalog, resolve_profile
from prescale.decision import decide
from prescale.replay import ReplayConfig, ReplayInput, build_fleet
from prescale.replay.engine import context
from prescale.replay.inputs import demand_map, make_input, plan_window
from prescale.replay.policies import Predictive
from prescale.replay.simulate import Executor

ROOT = Path(__file__).resolve().parents[1]  # the checkout: its shipped catalog and profiles, the shared traces
TRACE = ROOT.parent / "shared" / "traces" / "nasa_http" / "nasa_requests_1min_reconstructed.csv"
OUT = ROOT / "benchmarks" / "results"
PROFILES = ("web", "analytics", "inference", "transcoder")
Q, H = 0.9, 0.2
QUANTILES = (0.1, 0.5, 0.9)
BAND = (0.8, 1.0, 1.25)  # each quantile as a multiple of the seasonal-naive value
CONFIG = ReplayConfig()  # the replay's defaults: cover resolution, consolidation margin, hold window


def week(profile: str, days: float = 7.0):
    """``(fleet, input)``: ``days`` of NASA HTTP (requests per second, UTC) on the shipped catalog and profile."""
    df = pd.read_csv(TRACE)
    index = pd.DatetimeIndex(pd.to_datetime(df.iloc[:, 0]).dt.tz_localize("-04:00").dt.tz_convert("UTC"))
    values = df["requests"].to_numpy(float) / 60.0
    prof = resolve_profile(profile, ROOT / "infra" / "apps")
    step = int((index[1] - index[0]).total_seconds())
    fleet = build_fleet(load_catalog(ROOT / "infra" / "catalog.yaml"), prof, step_seconds=step)
    window = plan_window(len(values), step, days=days, max_lead_seconds=float(fleet.lead_seconds.max()),
                         lookahead_minutes=30.0)
    forecast = seasonal_forecast(values, window.origins, window.horizon, step)
    dmap = demand_map(values[: window.replay_start], prof, "x", peak_scale=1.0)
    inp: ReplayInput = make_input("nasa-1min", index, values, window, dmap, forecast=forecast, quantiles=QUANTILES)
    return fleet, inp


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


def run(rule: Predictive, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """``run_rule``'s loop with ``decide`` and the act timed apart: seconds per decision, ``(steps,)`` each."""
    ex = Executor(rule.ctx.fleet, steps)
    plan, act = np.zeros(steps), np.zeros(steps)
    for t in range(steps):
        ex.begin(t)
        inp = rule.decision_input(t, ex)
        began = time.perf_counter()
        decision = decide(inp)
        mid = time.perf_counter()
        rule.act(decision, ex)
        plan[t], act[t] = mid - began, time.perf_counter() - mid
        if t == 0:
            ex.warm_start(ex.held)
        ex.end()
    return plan, act


def stats(seconds: np.ndarray) -> dict[str, float]:
    ms = seconds * 1e3
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p95_ms": round(float(np.percentile(ms, 95)), 3),
            "p99_ms": round(float(np.percentile(ms, 99)), 3), "max_ms": round(float(ms.max()), 1),
            "total_s": round(float(seconds.sum()), 2)}


def measure(profile: str) -> dict:
    fleet, inp = week(profile)
    ctx = context(inp, fleet, CONFIG)
    steps = len(inp.index)
    out = {"profile": profile, "types": fleet.n, "tiers": [t.kind for t in fleet.tiers], "decisions": steps}
    for name in ("cold", "warm"):
        rule = Predictive(ctx, covered=inp.covered(Q) * (1 + H), floor=ctx.observed * (1 + H), quantile=Q,
                          headroom=H, hold=CONFIG.hold_steps(inp.step_seconds))
        plan, act = run(rule, steps)
        out[name] = {"decide": stats(plan), "act": stats(act), "cover_solves": ctx.covers.solves}
        print(f"{profile} {name}: decide {out[name]['decide']}  act {out[name]['act']}", flush=True)
    return out


def decide_all(rule: Predictive, steps: int) -> tuple[np.ndarray, list]:
    """``run``'s loop, returning decide's seconds per call and each decision's actions as plain tuples."""
    ex = Executor(rule.ctx.fleet, steps)
    plan, actions = np.zeros(steps), []
    for t in range(steps):
        ex.begin(t)
        inp = rule.decision_input(t, ex)
        began = time.perf_counter()
        decision = decide(inp)
        plan[t] = time.perf_counter() - began
        actions.append(tuple((a.target.tolist(), a.keep.tolist(), a.mask.tolist()) for a in decision.actions))
        rule.act(decision, ex)
        if t == 0:
            ex.warm_start(ex.held)
        ex.end()
    return plan, actions


def fast_path(profile: str, days: float) -> dict:
    """The same ``days`` decided with the cover cache and solving every cover every time (see the docstring)."""
    from prescale.replay.covers import CoverCache

    fleet, inp = week(profile)
    steps = min(len(inp.index), round(days * 86_400 / inp.step_seconds))
    out = {"profile": profile, "tiers": [t.kind for t in fleet.tiers], "decisions": steps}
    answers = {}
    for name, every in (("cached", False), ("solve every time", True)):
        covers = CoverCache(fleet, resolution=CONFIG.cover_resolution, solve_every_time=every)
        ctx = context(inp, fleet, CONFIG, covers)
        rule = Predictive(ctx, covered=inp.covered(Q) * (1 + H), floor=ctx.observed * (1 + H), quantile=Q,
                          headroom=H, hold=CONFIG.hold_steps(inp.step_seconds))
        plan, answers[name] = decide_all(rule, steps)
        out[name] = {"decide": stats(plan), "milp_solves": covers.solves, "cover_hits": covers.hits}
        print(f"{profile} {name}: {out[name]}", flush=True)
    out["same_actions"] = answers["cached"] == answers["solve every time"]
    return out


def fast_markdown(payload: dict) -> str:
    lines = ["# Decide's cost per call: the cover cache against solving every cover every time", "",
             f"`{payload['command']}`; q={Q}, headroom={H}; NASA at one-minute steps from a fresh cache; issue 19's "
             "target: decide p50 <= 10 ms per app (2 cores).", "",
             "| profile | tiers | decisions | covers | decide p50 | p95 | p99 | MILP solves | same actions |",
             "|---|---|---:|---|---:|---:|---:|---:|---|"]
    for row in payload["rows"]:
        for name in ("cached", "solve every time"):
            d = row[name]["decide"]
            lines.append(f"| {row['profile']} | {', '.join(row['tiers'])} | {row['decisions']} | {name} | "
                         f"{d['p50_ms']} ms | {d['p95_ms']} ms | {d['p99_ms']} ms | {row[name]['milp_solves']} | "
                         f"{'yes' if row['same_actions'] else 'NO'} |")
    lines += ["", "Same actions: every decision's actions (target, keep, mask) equal at every step."]
    return "\n".join(lines) + "\n"


def markdown(payload: dict) -> str:
    lines = ["# Decision latency: `prescale.decision.decide`, one week of NASA at one-minute steps", "",
             f"`{payload['command']}`; q={Q}, headroom={H}; target p95 < 100 ms per app (2 cores).", "",
             "| profile | tiers | decisions | pass | decide p50 | p95 | p99 | max | act p50 | act p95 | MILP solves |",
             "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in payload["rows"]:
        for name in ("cold", "warm"):
            d, a = row[name]["decide"], row[name]["act"]
            lines.append(f"| {row['profile']} | {', '.join(row['tiers'])} | {row['decisions']} | {name} | "
                         f"{d['p50_ms']} ms | {d['p95_ms']} ms | {d['p99_ms']} ms | {d['max_ms']} ms | "
                         f"{a['p50_ms']} ms | {a['p95_ms']} ms | {row[name]['cover_solves']} |")
    lines += ["", "Cold: a new cover cache, every level solved once by the exact MILP (the tail); warm: the same "
              "week again on the filled cache. MILP solves are cumulative over both passes."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", default=",".join(PROFILES))
    parser.add_argument("--fast-path", type=float, default=None, metavar="DAYS",
                        help="Measure the cover cache against solving every time over the first DAYS.")
    args = parser.parse_args()
    if args.fast_path is not None:
        rows = [fast_path(p, args.fast_path) for p in args.profiles.split(",") if p]
        payload = {"command": "python benchmarks/decision.py " + " ".join(sys.argv[1:]), "rows": rows}
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "decision-fastpath.json").write_text(json.dumps(payload, indent=1))
        text = fast_markdown(payload)
        (OUT / "decision-fastpath.md").write_text(text)
        print(text)
        return
    rows = [measure(p) for p in args.profiles.split(",") if p]
    payload = {"command": "python benchmarks/decision.py " + " ".join(sys.argv[1:]), "rows": rows}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "decision.json").write_text(json.dumps(payload, indent=1))
    text = markdown(payload)
    (OUT / "decision.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
