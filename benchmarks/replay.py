"""Benchmark: scaling policies replayed on the shared real traces, compared at equal violation budgets.

Traces (``../shared/traces``): NASA HTTP at one minute (requests/s), the three cluster aggregates at five
minutes (Alibaba CPU %, Google Borg CPU, Azure V2 CPU), and Azure V1 per-VM CPU % series (the first
``--vms`` VM columns, in file order, whose history is neither flat nor mostly zero). Each trace is mapped
onto every shipped profile: ``web`` (single kind: CPU VMs) and the mixed ``analytics`` (CPU VMs + bare
metal), ``inference`` (CPU + GPU VMs), ``transcoder`` (CPU VMs + FPGAs); the history's p99 becomes the
profile's example peak times ``--peak-scale`` (``prescale.replay.inputs``).

Per trace: the forecaster is trained once on the history before the window (``models.history.
historical_forecasts``, candidate ``best`` on the ``small`` preset unless ``--forecaster`` names a
baseline) with the horizon the slowest profile needs, and forecasts every replayed step in one batch.
Per (trace, profile): every policy's sweep and the oracle (``prescale.replay.backtest``), each policy's
cost at the 0.5% and zero violation budgets, predictive's saving against reactive and static at those
budgets and its distance to the oracle, predictive's and the oracle's slack. A trace is *periodic* when the
autocorrelation of its history's hourly means at a lag of one day is at least 0.6.

Fast path, measured: (1) the cover cache's rounding loss, the cost of the cached cover of a rounded-up
level against the exact cover of the level itself, on every level the NASA replays asked for; (2) the
predictive policy deciding through the cache against the same policy with ``allocate`` (exact MILP) deciding
every step (``policies.Allocating``) on a one-day slice of two traces, both on the mixed profiles: cost and
violations of the whole replay, and the time per decision; (3) speed: one predictive setting over the
7-day one-minute NASA window, and the batched forecasts.

Each policy's knob is swept over 30 settings (predictive: 3 quantiles x 10 headrooms up to 0.8; reactive: 15
target utilisations from 0.25 to 0.95 x 2 type sets), so one step moves a cost by about 5%. Forecasts are
cached in ``.prescale/bench-cache``, keyed by trace, window and a hash of the forecasting code.

The published predictive autoscalers (issue 20) run beside reactive on every case: AWS EC2 predictive scaling
with target tracking (``aws``) and Crane's EHPA with its DSP predictor (``crane``), each over reactive's 15
targets on every compatible type (``REFERENCE_TYPES``), learning from the 14 days before the window
(``ReplayInput.history``); predictive's saving against each is computed as against reactive (equal budgets
here; at the same realised violations in ``--ex-ante``), in their own tables.

Writes ``benchmarks/results/replay.json`` and ``.md``. The cases run ``--jobs`` at a time (default: the CPU
count), one process each; the oracle keeps its solves in ``.prescale/bench-cache/oracle``. Run (about 37
minutes cold on 2 cores, 24 with the oracle's solves kept; in the background):
``.venv/bin/python benchmarks/replay.py [--quick]``. Then, against the reactive and oracle costs of
``replay.json``:

* ``--perfect`` (a few minutes) replays the predictive rule with a perfect forecast: the rule's own loss,
  apart from forecast error (``replay-perfect.json`` and ``.md``);
* ``--error-scale 1,0.75,0.5,0.25`` (about 10 minutes per factor) reruns the predictive sweep with every
  forecast's errors scaled by each factor (``scaled_forecast``): how much better the forecasts must be for
  each target (``replay-error-scale.json`` and ``.md``; ``replay-error-scale-<preset>.*`` with a
  ``--preset`` other than ``small``, e.g. ``default``, the preset ``prescale train`` uses).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path

import ex_ante
import numpy as np
import pandas as pd

from models.history import historical_forecasts
from models.series import Panel, panel_from_wide
from models.train import TrainConfig
from prescale.catalog import load_catalog, resolve_profile
from prescale.replay import ReplayConfig, backtest, build_fleet, replay_policy, run_rule, score_series
from prescale.replay.covers import CoverCache
from prescale.replay.engine import context, rules_for
from prescale.replay.frontier import excess, savings
from prescale.replay.inputs import demand_map, make_input, plan_window
from prescale.replay.policies import REFERENCES, Allocating, Predictive

ROOT = Path(__file__).resolve().parents[1]  # the checkout: traces beside it, profiles and results in it

TRACES = ROOT.parent / "shared" / "traces"
PROFILES = ("web", "analytics", "inference", "transcoder")
OUT = ROOT / "benchmarks" / "results"
CACHE = ROOT / ".prescale" / "bench-cache"
QUANTILES = TrainConfig().quantiles  # the levels `prescale train` emits (up to 0.995, for the tails the policy buys)
# The sweeps: 30 settings each for predictive (quantile x headroom) and reactive (target x types), fine
# enough that one step moves the cost by about 5%, and wide enough to reach zero violations on spiky series.
SWEEP_QUANTILES = (0.5, 0.9, 0.95)
SWEEP_HEADROOMS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.65, 0.8)
SWEEP_TARGETS = tuple(round(0.25 + 0.05 * i, 2) for i in range(15))  # 0.25 .. 0.95
# The published references (issue 20: AWS predictive scaling, Crane's EHPA) sweep reactive's 15 targets on every
# compatible type only: in replay.json the fastest-tier-only set was reactive's headline on 2 of 36 cases, and a
# second type set would double the references' share of the benchmark's time.
REFERENCE_TYPES = ("all",)


@dataclass
class Trace:
    name: str
    index: pd.DatetimeIndex
    values: np.ndarray
    days: float
    source: str


def sweeps(quantiles: tuple[float, ...], headrooms: tuple[float, ...], targets: tuple[float, ...]) -> ReplayConfig:
    """The benchmark's sweeps over the shipped settings, and a longer oracle budget (the week-long windows).

    The oracle keeps its solves in ``.prescale/bench-cache/oracle`` (keyed by a hash of every input and of its
    code), so a rerun on unchanged code and traces reads them instead of solving the same MILPs again.
    """
    return ReplayConfig(settings={"predictive": {"quantiles": quantiles, "headrooms": headrooms},
                                  "reactive": {"targets": targets},
                                  "oracle": {"time_limit_seconds": 180.0, "cache": CACHE / "oracle"},
                                  **reference_sweeps(targets)})


def reference_sweeps(targets: tuple[float, ...]) -> dict[str, dict]:
    """The published references' sweeps: reactive's targets, every compatible type (see ``REFERENCE_TYPES``)."""
    return {name: {"targets": targets, "types": REFERENCE_TYPES} for name in REFERENCES}


def load_traces(vms: int) -> list[Trace]:
    out = [_nasa()]
    agg = TRACES / "cluster_aggregates"
    out.append(_rows("alibaba2018-cpu", agg / "alibaba2018_machine_usage_300s.csv", "cpu_util_percent", days=2.0))
    out.append(_rows("google2019-cpu", agg / "google2019_instance_usage_300s.csv", "avg_cpu", days=7.0))
    out.append(_rows("azure2019-cpu", agg / "azure2019_vm_cpu_mem_300s.csv", "cpu_usage", days=7.0))
    out += _azure_vms(vms)
    return out


def _nasa() -> Trace:
    df = pd.read_csv(TRACES / "nasa_http" / "nasa_requests_1min_reconstructed.csv")
    ts = pd.to_datetime(df.iloc[:, 0]).dt.tz_localize("-04:00").dt.tz_convert("UTC")
    values = df["requests"].to_numpy(float) / 60.0
    return Trace("nasa-1min", pd.DatetimeIndex(ts), values, 7.0, "nasa_http/nasa_requests_1min_reconstructed.csv")


def _rows(name: str, path: Path, column: str, *, days: float) -> Trace:
    df = pd.read_csv(path)
    index = pd.date_range("2019-01-01", periods=len(df), freq="300s", tz="UTC")
    return Trace(name, index, df[column].to_numpy(float), days, f"{path.parent.name}/{path.name}:{column}")


def _azure_vms(count: int) -> list[Trace]:
    df = pd.read_csv(TRACES / "azure_v1_pervm" / "microsoft_avg_100.csv")
    index = pd.date_range("2017-01-01", periods=len(df), freq="300s", tz="UTC")
    out = []
    for col in df.columns[1:]:
        x = df[col].to_numpy(float)
        hist = x[: len(x) - 7 * 288]
        if np.nanmean(hist > 0.5) < 0.9 or np.nanstd(hist) < 0.1 * np.nanmean(hist):
            continue
        out.append(Trace(f"azure-vm-{col}", index, x, 7.0, f"azure_v1_pervm/microsoft_avg_100.csv:{col}"))
        if len(out) == count:
            break
    return out


def daily_acf(values: np.ndarray, step_seconds: int) -> float:
    """Autocorrelation of the hourly means at a lag of one day (minute-level noise does not hide the pattern)."""
    per_hour = max(1, round(3600 / step_seconds))
    usable = len(values) // per_hour * per_hour
    hourly = pd.Series(np.asarray(values[:usable], dtype=float).reshape(-1, per_hour).mean(axis=1))
    return float(hourly.autocorr(24)) if len(hourly) > 48 else float("nan")


def code_fingerprint() -> str:
    """A hash of the forecasting code (``models/``): cached forecasts go stale with it."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "models").rglob("*.py")):
        digest.update(path.relative_to(ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


def forecasts_for(trace: Trace, panel: Panel, window, *, candidate: str, preset: str):
    """The batched forecasts of the window, cached in ``.prescale/bench-cache`` by trace, window and code."""
    key = f"{trace.name}-{candidate}-{preset}-{window.replay_start}-{window.horizon}-{code_fingerprint()}"
    path = CACHE / f"{key}.npz"
    if path.exists():
        data = np.load(path, allow_pickle=True)
        return data["values"], str(data["candidate"]), float(data["train"]), float(data["predict"])
    config = replace(TrainConfig.preset(preset, quantiles=QUANTILES, threads=2),
                     horizon_minutes=window.horizon * window.step_seconds / 60)
    batch = historical_forecasts(panel, window, candidate=candidate, config=config, history_days=30.0)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(path, values=batch.values, candidate=batch.candidate, train=batch.train_seconds,
             predict=batch.predict_seconds)
    return batch.values, batch.candidate, batch.train_seconds, batch.predict_seconds


def trace_panel(trace: Trace, catalog, *, days: float | None = None):
    """The trace as a one-metric panel, and its replay window (the last ``days``, the trace's own by default)."""
    panel = panel_from_wide(pd.DataFrame({"x": trace.values}, index=trace.index).dropna())
    max_lead = max(float(t.lead_time_seconds) for t in catalog)
    window = plan_window(len(panel), panel.step_seconds, days=trace.days if days is None else days,
                         max_lead_seconds=max_lead, lookahead_minutes=30.0)
    return panel, window


def profile_input(trace: Trace, panel: Panel, window, fc: np.ndarray, name: str, catalog, args, *, source=None):
    """The fleet of profile ``name`` and the trace's replay input mapped onto it (forecasts cut to its horizon)."""
    profile = resolve_profile(name, ROOT / "infra" / "apps")
    fleet = build_fleet(catalog, profile, step_seconds=panel.step_seconds)
    horizon = int(np.ceil((fleet.lead_seconds.max() + 30 * 60) / panel.step_seconds))
    dmap = demand_map(panel.values[: window.replay_start, 0], profile, "x", peak_scale=args.peak_scale)
    inp = make_input(trace.name, panel.index, panel.values[:, 0], window, dmap, forecast=fc[:, :horizon],
                     quantiles=QUANTILES, source=source or {})
    return fleet, with_history(inp, panel, window, dmap)


def with_history(inp, panel: Panel, window, dmap):
    """``inp`` with the demand before its window (the last 14 days: what the AWS and Crane references learn from)."""
    return inp.with_history(dmap.apply(panel.values[: window.replay_start, 0]))


def trace_info(trace: Trace, catalog, args) -> dict:
    """The trace's facts for the report, training (or reading the kept) forecasts of its window on the way."""
    panel, window = trace_panel(trace, catalog)
    started = time.perf_counter()
    _, candidate, train_s, predict_s = forecasts_for(trace, panel, window, candidate=args.forecaster,
                                                     preset=args.preset)
    print(f"{trace.name}: forecaster {candidate} ({time.perf_counter() - started:.0f} s)", flush=True)
    return {"trace": trace.name, "source": trace.source, "step_seconds": panel.step_seconds,
            "days": trace.days, "forecaster": candidate, "train_seconds": round(train_s, 1),
            "forecast_seconds": round(predict_s, 1),
            "daily_acf": round(daily_acf(panel.values[: window.replay_start, 0], panel.step_seconds), 3)}


def replay_case(trace: Trace, profile: str, info: dict, catalog, config: ReplayConfig, args) -> list[dict]:
    """One (trace, profile) case: every policy's sweep and the oracle (``backtest``), as one result row."""
    panel, window = trace_panel(trace, catalog)
    fc, candidate, *_ = forecasts_for(trace, panel, window, candidate=args.forecaster, preset=args.preset)
    fleet, inp = profile_input(trace, panel, window, fc, profile, catalog, args, source={"forecaster": candidate})
    began = time.perf_counter()
    result = backtest(inp, fleet, config)
    return [_row(trace, info, profile, result, time.perf_counter() - began)]


def ex_ante_case(trace: Trace, profile: str, info: dict, catalog, config, args) -> list[dict]:
    """One (trace, profile) case of ``--ex-ante``: tuned before the window at each budget, run once over it."""
    return ex_ante.ex_ante_trace(trace, catalog, replace_args(args, profiles=[profile]), forecasts_for=forecasts_for,
                                 trace_panel=trace_panel, daily_acf=daily_acf, hindsight=args.hindsight)


def ex_ante_forecasts(trace: Trace, catalog, args) -> dict:
    """Train (or read the kept) out-of-sample forecasts of ``--ex-ante``'s stretch and window."""
    ex_ante.trace_inputs(trace, catalog, args, forecasts_for, trace_panel)
    return {}


def replace_args(args: argparse.Namespace, **changes) -> argparse.Namespace:
    return argparse.Namespace(**{**vars(args), **changes})


# A case's rough cost, for handing out the longest first: the window's steps times the profile's weight (the
# oracle's MILP on the mixed profiles dominates; measured in replay.json's per-case seconds).
PROFILE_WEIGHT = {"analytics": 4.0, "inference": 3.0, "transcoder": 2.0, "web": 1.0}


def run_cases(case, traces: list[Trace], catalog, config, args, *, prepare) -> tuple[list[dict], list[dict]]:
    """``case(trace, profile, info, ...)`` over every (trace, profile), ``args.jobs`` at a time.

    ``prepare(trace)`` runs first in this process, trace by trace (it trains or reads the kept forecasts, so
    the workers only read them). With ``--jobs`` above 1 the cases run in that many spawned processes (one
    BLAS and torch thread each), longest first; the rows come back in (trace, profile) order either way.
    """
    infos = {t.name: prepare(t) for t in traces}
    cases = [(t, p) for t in traces for p in args.profiles]
    done: dict[tuple[str, str], list[dict]] = {}
    if args.jobs <= 1:
        for trace, profile in cases:
            done[trace.name, profile] = _announce(case(trace, profile, infos[trace.name], catalog, config, args))
    else:
        order = sorted(cases, key=lambda c: -len(c[0].values) * PROFILE_WEIGHT.get(c[1], 1.0))
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_one_thread) as pool:
            futures = {pool.submit(case, t, p, infos[t.name], catalog, config, args): (t.name, p) for t, p in order}
            for future in as_completed(futures):
                done[futures[future]] = _announce(future.result())
    rows = [row for t, p in cases for row in done[t.name, p]]
    return rows, [infos[t.name] for t in traces]


def _announce(rows: list[dict]) -> list[dict]:
    for row in rows:
        if "comparison" in row:
            print(f"  {row['trace']}/{row['profile']}: {json.dumps(row['comparison'])} ({row['seconds']:.0f} s)",
                  flush=True)
    return rows


def _one_thread() -> None:
    """A worker's start: one thread for BLAS and torch, as many workers as cores share the machine."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    threadpool_limits(1)


def _row(trace: Trace, info: dict, profile: str, result, seconds: float) -> dict:
    d = result.to_dict()
    pol = d["policies"]
    return {
        "trace": trace.name, "profile": profile, "periodic": bool(info["daily_acf"] >= 0.6),
        "mixed": profile != "web", "budget_costs": d["budget_costs"], "comparison": d["comparison"],
        "headline": {k: {"setting": v["setting"], "cost": v["cost"], "violations": v["slo_violation_minutes"],
                         "slack": v["slack"], "migrations": v["migrations"]} for k, v in pol.items()},
        "frontiers": {k: v["frontier"] for k, v in pol.items()},
        "oracle": d["oracle"], "covers": d["covers"], "seconds": round(seconds, 1),
        "policy_seconds": d["seconds"], "scored_minutes": d["window"]["scored_steps"] * info["step_seconds"] / 60,
    }


# ----------------------------------------------------------------------------------- fast-path checks


def rounding_loss(catalog, levels_per_profile: int = 200, seed: int = 0) -> dict:
    """Cached cover of a rounded-up level against the exact cover of the level, on random levels."""
    rng = np.random.default_rng(seed)
    losses = []
    for name in PROFILES:
        profile = resolve_profile(name, ROOT / "infra" / "apps")
        fleet = build_fleet(catalog, profile, step_seconds=60)
        cache = CoverCache(fleet)
        peak = np.array([profile.example_demand.peak[m] for m in profile.metric_names])
        for _ in range(levels_per_profile):
            level = peak * rng.uniform(0.02, 1.5)
            everything = tuple(range(fleet.n))
            cached = fleet.cost_per_hour(cache.cover(level, everything))
            exact = fleet.cost_per_hour(cache.exact(level, everything))
            losses.append(cached / exact - 1.0 if exact > 0 else 0.0)
    arr = np.array(losses)
    return {"levels": len(arr), "mean": float(arr.mean()), "p95": float(np.quantile(arr, 0.95)),
            "max": float(arr.max()), "zero_share": float((arr <= 1e-9).mean())}


def allocate_vs_fast(trace: Trace, catalog, profile_name: str, args, *, hours: float = 24.0) -> dict:
    """One replay decided by the cache (``Predictive``) against one decided by ``allocate`` every step."""
    panel, full = trace_panel(trace, catalog)
    fc, *_ = forecasts_for(trace, panel, full, candidate=args.forecaster, preset=args.preset)
    profile = resolve_profile(profile_name, ROOT / "infra" / "apps")
    fleet = build_fleet(catalog, profile, step_seconds=panel.step_seconds)
    horizon = int(np.ceil((fleet.lead_seconds.max() + 30 * 60) / panel.step_seconds))
    steps = full.warmup + round(hours * 3600 / panel.step_seconds)
    window = replace(full, rows=full.replay_start + steps)
    dmap = demand_map(panel.values[: full.replay_start, 0], profile, "x", peak_scale=args.peak_scale)
    inp = make_input(trace.name, panel.index[: window.rows], panel.values[: window.rows, 0], window, dmap,
                     forecast=fc[:steps, :horizon], quantiles=QUANTILES)
    config = ReplayConfig()
    ctx = context(inp, fleet, config)
    out = {"trace": trace.name, "profile": profile_name, "steps": steps - full.warmup, "settings": []}
    for q, h in ((0.9, 0.1), (0.95, 0.2)):
        fast = Predictive(ctx, covered=inp.covered(q) * (1 + h), floor=ctx.observed * (1 + h), quantile=q,
                          headroom=h, hold=config.hold_steps(inp.step_seconds))
        t0 = time.perf_counter()
        fast_score = score_series(fleet, run_rule(fleet, fast, len(inp.index)), inp.demand, start=inp.start)
        fast_s = time.perf_counter() - t0
        slow = Allocating(ctx, forecast=inp.forecast, quantiles=inp.quantiles, floor=ctx.observed * (1 + h),
                          start=inp.index[0], quantile=q, headroom=h)
        slow_score = score_series(fleet, run_rule(fleet, slow, len(inp.index)), inp.demand, start=inp.start)
        out["settings"].append({
            "setting": fast.setting,
            "fast": {"cost": round(fast_score.cost, 2), "violations": fast_score.slo_violation_minutes,
                     "ms_per_decision": round(1000 * fast_s / len(inp.index), 3)},
            "allocate": {"cost": round(slow_score.cost, 2), "violations": slow_score.slo_violation_minutes,
                         "ms_per_decision": round(1000 * slow.seconds / len(inp.index), 1)},
            "cost_difference": round(fast_score.cost / slow_score.cost - 1.0, 4) if slow_score.cost else None,
        })
        print(f"  allocate vs fast {trace.name}/{profile_name} {out['settings'][-1]}", flush=True)
    return out


def speed(trace: Trace, catalog, args) -> dict:
    """One predictive setting over the 7-day one-minute window (cold cover cache), and the batched forecasts."""
    panel, window = trace_panel(trace, catalog, days=7.0)
    fc, candidate, train_s, predict_s = forecasts_for(trace, panel, window, candidate=args.forecaster,
                                                      preset=args.preset)
    out = {"trace": trace.name, "steps": window.rows - window.replay_start, "forecaster": candidate,
           "train_seconds": round(train_s, 1), "forecast_seconds": round(predict_s, 1), "profiles": {}}
    for name in ("web", "analytics"):
        profile = resolve_profile(name, ROOT / "infra" / "apps")
        fleet = build_fleet(catalog, profile, step_seconds=panel.step_seconds)
        dmap = demand_map(panel.values[: window.replay_start, 0], profile, "x")
        inp = make_input(trace.name, panel.index, panel.values[:, 0], window, dmap, forecast=fc,
                         quantiles=QUANTILES)
        config = ReplayConfig(settings={"predictive": {"quantiles": (0.9,), "headrooms": (0.1,)}})
        t0 = time.perf_counter()
        ctx = context(inp, fleet, config)
        rule = next(iter(rules_for("predictive", inp, ctx, config)))
        run_rule(fleet, rule, len(inp.index))
        out["profiles"][name] = {"replay_seconds": round(time.perf_counter() - t0, 2), "covers": ctx.covers.stats}
    return out


def profile_contexts(trace: Trace, catalog, config: ReplayConfig, args):
    """``(profile, fleet, input, context)`` of every profile of ``args``, on the trace's cached forecasts."""
    panel, window = trace_panel(trace, catalog)
    fc, *_ = forecasts_for(trace, panel, window, candidate=args.forecaster, preset=args.preset)
    for name in args.profiles:
        fleet, inp = profile_input(trace, panel, window, fc, name, catalog, args)
        yield name, fleet, inp, context(inp, fleet, config)


def perfect_forecast(trace: Trace, catalog, config: ReplayConfig, args, oracle: dict) -> list[dict]:
    """Predictive with a perfect forecast (every quantile = the demand that happened, q=0.5, no headroom).

    What is left between it and the oracle is the rule's own loss (it decides step by step, looking a bounded
    horizon ahead, in whole nodes through the cover cache), apart from any forecast error.
    """
    rows = []
    for name, fleet, inp, ctx in profile_contexts(trace, catalog, config, args):
        rule = Predictive(ctx, covered=actual_ahead(inp), floor=ctx.observed, quantile=0.5, headroom=0.0,
                          hold=config.hold_steps(inp.step_seconds))
        score = score_series(fleet, run_rule(fleet, rule, len(inp.index)), inp.demand, start=inp.start)
        best = oracle.get((trace.name, name))
        rows.append({"trace": trace.name, "profile": name, "cost": round(score.cost, 2),
                     "violation_minutes": score.slo_violation_minutes, "slack": round(score.slack, 4),
                     "oracle": best, "over_oracle": excess(best, score.cost)})
        print(f"  {trace.name}/{name}: {json.dumps(rows[-1])}", flush=True)
    return rows


def actual_ahead(inp) -> np.ndarray:
    """``(T, H, M)``: the demand that happened at each step a forecast covers (gaps filled from neighbours)."""
    steps, horizon = inp.forecast.shape[:2]
    known = pd.DataFrame(inp.demand).ffill().bfill().to_numpy()
    return known[np.minimum(np.arange(steps)[:, None] + np.arange(horizon)[None, :], steps - 1)]


def scaled_forecast(inp, alpha: float) -> np.ndarray:
    """Every quantile moved toward the demand that happened: ``actual + alpha * (forecast - actual)``.

    ``alpha = 1`` is the forecast as made, ``0`` a perfect one; in between, a forecaster whose every error (and
    band) is ``alpha`` times as large, still as well calibrated.
    """
    actual = actual_ahead(inp)[..., None]
    return actual + alpha * (inp.forecast - actual)


def error_scale(trace: Trace, catalog, config: ReplayConfig, args) -> list[dict]:
    """The predictive sweep with forecast errors scaled by each of ``args.error_scale`` (see ``scaled_forecast``):
    its cost at each budget; ``compare`` sets them against ``replay.json``."""
    rows = []
    for name, _fleet, inp, ctx in profile_contexts(trace, catalog, config, args):
        for alpha in args.error_scale:
            scaled = replace(inp, forecast=scaled_forecast(inp, alpha))
            costs = replay_policy("predictive", scaled, ctx, config).budget_costs(dict(config.budgets))
            rows.append({"trace": trace.name, "profile": name, "alpha": alpha, "predictive": costs})
            print(f"  {trace.name}/{name} alpha={alpha:g}: {json.dumps(costs)}", flush=True)
    return rows


def compare(rows: list[dict], stored: list[dict]) -> list[dict]:
    """Each row with the reactive and oracle costs of its (trace, profile) in ``replay.json``, and the savings."""
    ref = {(r["trace"], r["profile"]): r for r in stored}
    out = []
    for row in rows:
        r = ref.get((row["trace"], row["profile"]))
        if r is None:
            continue
        costs, reactive = row["predictive"], r["budget_costs"]["reactive"]
        oracle = r["budget_costs"].get("oracle", {}).get("0")
        out.append({**row, "periodic": r["periodic"], "mixed": r["mixed"], "reactive": reactive, "oracle": oracle,
                    "vs_reactive": {b: savings(reactive.get(b), v) for b, v in costs.items()},
                    "over_oracle": {b: excess(oracle, v) for b, v in costs.items()}})
    return out


def error_scale_markdown(payload: dict) -> str:
    def pct(v):
        return "-" if v is None else f"{v:+.1%}"

    def mean(values):
        values = [v for v in values if v is not None]
        return None if not values else float(np.mean(values))

    lines = ["# Replay: predictive with smaller forecast errors", "",
             f"Command: `{payload['command']}`. Every quantile of every forecast is moved toward the demand that "
             "happened, `actual + alpha * (forecast - actual)`: `alpha = 1` is the forecast as made (the "
             "`--preset` given, `small` by default), `0` a perfect one. The predictive sweep is rerun at each "
             "alpha; reactive's and the oracle's costs are those of `replay.json`. `dearer`: case-budgets where "
             "predictive costs more than reactive.", "",
             "| alpha | group | n | vs reactive 0.5% | vs reactive 0 | over oracle 0.5% | dearer |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    for alpha in sorted({r["alpha"] for r in payload["rows"]}, reverse=True):
        rows = [r for r in payload["rows"] if r["alpha"] == alpha]
        groups = {"all": rows, "periodic": [r for r in rows if r["periodic"]],
                  "mixed-lead-time profiles": [r for r in rows if r["mixed"]]}
        for name, group in groups.items():
            dearer = sum(1 for r in group for v in r["vs_reactive"].values() if v is not None and v < 0)
            lines.append(f"| {alpha:g} | {name} | {len(group)} | {pct(mean(r['vs_reactive']['0.5%'] for r in group))} "
                         f"| {pct(mean(r['vs_reactive']['0'] for r in group))} "
                         f"| {pct(mean(r['over_oracle']['0.5%'] for r in group))} | {dearer} |")
    return "\n".join(lines) + "\n"


def perfect_markdown(payload: dict) -> str:
    lines = ["# Replay: the predictive rule with a perfect forecast", "",
             f"Command: `{payload['command']}`. Every quantile of every forecast is the demand that happened "
             "(q=0.5, no headroom); the oracle's zero-violation cost is read from `replay.json`. The distance "
             "to the oracle is the rule's own loss, apart from forecast error. A negative one means the "
             "oracle's chunked MILP stopped above the true minimum (see its gap in `replay.json`).", "",
             "| trace | profile | cost | violation min | slack | oracle 0 | over oracle |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in payload["rows"]:
        over = "-" if r["over_oracle"] is None else f"{r['over_oracle']:+.1%}"
        oracle = "-" if r["oracle"] is None else f"{r['oracle']:,.0f}"
        lines.append(f"| {r['trace']} | {r['profile']} | {r['cost']:,.0f} | {r['violation_minutes']:g} "
                     f"| {r['slack']:.0%} | {oracle} | {over} |")
    overs = [r["over_oracle"] for r in payload["rows"] if r["over_oracle"] is not None]
    if overs:
        lines += ["", f"Mean over oracle: {np.mean(overs):+.1%} over {len(overs)} cases (median "
                      f"{np.median(overs):+.1%}, max {np.max(overs):+.1%})."]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------- report


def aggregate(rows: list[dict]) -> dict:
    def mean(values):
        values = [v for v in values if v is not None]
        return None if not values else float(np.mean(values))

    groups = {
        "all": rows,
        "periodic": [r for r in rows if r["periodic"]],
        "mixed-lead-time profiles": [r for r in rows if r["mixed"]],
        "periodic, mixed": [r for r in rows if r["periodic"] and r["mixed"]],
        "single kind (web)": [r for r in rows if not r["mixed"]],
    }
    out = {}
    for name, group in groups.items():
        out[name] = {
            "n": len(group),
            **{f"vs_reactive_{b}": mean([r["comparison"][b]["vs_reactive"] for r in group]) for b in ("0.5%", "0")},
            **{f"over_oracle_{b}": mean([r["comparison"][b]["over_oracle"] for r in group]) for b in ("0.5%", "0")},
            "predictive_more_expensive": sum(
                1 for r in group for b in ("0.5%", "0")
                if r["comparison"][b]["vs_reactive"] is not None and r["comparison"][b]["vs_reactive"] < 0
            ),
            "predictive_slack": mean([r["headline"]["predictive"]["slack"] for r in group]),
            "oracle_slack": mean([r["headline"].get("oracle", {}).get("slack") for r in group]),
            **reference_aggregate(group, mean),
        }
    return out


def reference_aggregate(group: list[dict], mean) -> dict:
    """Per published reference: predictive's mean saving against it at each budget (as against reactive), the
    case-budgets where predictive is dearer, and the reference's own saving against reactive."""
    out = {}
    for name in REFERENCES:
        ran = [r for r in group if name in r["budget_costs"]]
        for b in ("0.5%", "0"):
            out[f"vs_{name}_{b}"] = mean([r["comparison"][b].get(f"vs_{name}") for r in ran])
            out[f"{name}_vs_reactive_{b}"] = mean([savings(r["budget_costs"]["reactive"].get(b),
                                                           r["budget_costs"][name].get(b)) for r in ran])
        out[f"predictive_dearer_than_{name}"] = sum(
            1 for r in ran for b in ("0.5%", "0")
            if (v := r["comparison"][b].get(f"vs_{name}")) is not None and v < 0)
    return out


def markdown(payload: dict) -> str:
    def pct(v):
        return "-" if v is None else f"{v:+.1%}"

    def usd(v):
        return "-" if v is None else f"{v:,.0f}"

    lines = ["# Replay: policies at equal violation budgets", "",
             f"Command: `{payload['command']}`. Costs in USD over the scored window; budgets are shares of the "
             "scored minutes. `vs reactive`: how much cheaper predictive is than reactive at the same budget "
             "(each at its own cheapest setting within the budget); `over oracle`: predictive's cost over the "
             "oracle's zero-violation cost. `-`: no setting reaches the budget.", "",
             "| trace | profile | periodic | predictive 0.5% | reactive 0.5% | static 0.5% | oracle 0 "
             "| predictive 0 | reactive 0 | vs reactive 0.5% | vs reactive 0 | over oracle 0.5% | over oracle 0 "
             "| slack pred / oracle |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in payload["rows"]:
        c, b, h = r["comparison"], r["budget_costs"], r["headline"]
        lines.append(
            f"| {r['trace']} | {r['profile']} | {'yes' if r['periodic'] else 'no'} | {usd(b['predictive']['0.5%'])} "
            f"| {usd(b['reactive']['0.5%'])} | {usd(b['static']['0.5%'])} | {usd(b.get('oracle', {}).get('0'))} "
            f"| {usd(b['predictive']['0'])} | {usd(b['reactive']['0'])} | {pct(c['0.5%']['vs_reactive'])} "
            f"| {pct(c['0']['vs_reactive'])} | {pct(c['0.5%']['over_oracle'])} | {pct(c['0']['over_oracle'])} "
            f"| {h['predictive']['slack']:.0%} / {h.get('oracle', {}).get('slack', 0):.0%} |"
        )
    lines += ["", "| group | n | vs reactive 0.5% | vs reactive 0 | over oracle 0.5% | over oracle 0 "
              "| pred. dearer (cases) | slack pred / oracle |", "|---|---|---:|---:|---:|---:|---:|---|"]
    for name, g in payload["aggregate"].items():
        lines.append(f"| {name} | {g['n']} | {pct(g['vs_reactive_0.5%'])} | {pct(g['vs_reactive_0'])} "
                     f"| {pct(g['over_oracle_0.5%'])} | {pct(g['over_oracle_0'])} | {g['predictive_more_expensive']} "
                     f"| {_p(g['predictive_slack'])} / {_p(g['oracle_slack'])} |")
    lines += reference_markdown(payload)
    fp = payload.get("fast_path", {})
    if fp:
        lines += ["", "## Fast path", ""]
        rl = fp.get("rounding")
        if rl:
            lines.append(f"- cover cache rounding loss over {rl['levels']} random levels: mean {rl['mean']:.3%}, "
                         f"p95 {rl['p95']:.3%}, max {rl['max']:.3%}; no loss at {rl['zero_share']:.0%} of levels")
        for item in fp.get("allocate_vs_fast", []):
            for s in item["settings"]:
                lines.append(
                    f"- {item['trace']}/{item['profile']} {s['setting']}, {item['steps']} steps: cache "
                    f"{s['fast']['cost']} USD, {s['fast']['violations']} violation min, "
                    f"{s['fast']['ms_per_decision']} ms/decision; allocate (exact MILP every step) "
                    f"{s['allocate']['cost']} USD, {s['allocate']['violations']} min, "
                    f"{s['allocate']['ms_per_decision']} ms/decision; cost difference {pct(s['cost_difference'])}")
        sp = fp.get("speed")
        if sp:
            lines.append(f"- speed, {sp['trace']} ({sp['steps']} one-minute steps): forecaster {sp['forecaster']} "
                         f"trained in {sp['train_seconds']} s, {sp['steps']} batched forecasts in "
                         f"{sp['forecast_seconds']} s; one predictive setting: " + ", ".join(
                             f"{k} {v['replay_seconds']} s ({v['covers']['solves']} cover solves)"
                             for k, v in sp["profiles"].items()))
    return "\n".join(lines) + "\n"


def reference_markdown(payload: dict) -> list[str]:
    """The published references' tables: per case, then per group (rows of an older run without them: none)."""
    rows = [r for r in payload["rows"] if all(n in r["budget_costs"] for n in REFERENCES)]
    if not rows:
        return []

    def pct(v):
        return "-" if v is None else f"{v:+.1%}"

    def usd(v):
        return "-" if v is None else f"{v:,.0f}"

    lines = ["", "## Against the published references", "",
             "AWS EC2 predictive scaling with target tracking (`aws`) and Crane's EHPA with its DSP predictor "
             "(`crane`), each swept over reactive's target utilisations with reactive's node choice "
             "(`prescale/replay/policies/aws.py`, `crane.py`). `vs aws`, `vs crane`: how much cheaper predictive is "
             "at the same budget, each at its cheapest setting within it (as `vs reactive`).", "",
             "| trace | profile | periodic | reactive 0.5% | aws 0.5% | crane 0.5% | predictive 0.5% "
             "| vs aws 0.5% | vs aws 0 | vs crane 0.5% | vs crane 0 | aws / crane headline |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        c, b, h = r["comparison"], r["budget_costs"], r["headline"]
        lines.append(
            f"| {r['trace']} | {r['profile']} | {'yes' if r['periodic'] else 'no'} | {usd(b['reactive']['0.5%'])} "
            f"| {usd(b['aws']['0.5%'])} | {usd(b['crane']['0.5%'])} | {usd(b['predictive']['0.5%'])} "
            f"| {pct(c['0.5%'].get('vs_aws'))} | {pct(c['0'].get('vs_aws'))} | {pct(c['0.5%'].get('vs_crane'))} "
            f"| {pct(c['0'].get('vs_crane'))} | {h['aws']['setting']} / {h['crane']['setting']} |")
    lines += ["", "| group | n | vs aws 0.5% | vs aws 0 | vs crane 0.5% | vs crane 0 | pred. dearer than aws "
              "/ crane (case-budgets) | aws vs reactive 0.5% | crane vs reactive 0.5% |",
              "|---|---|---:|---:|---:|---:|---|---:|---:|"]
    for name, g in payload["aggregate"].items():
        if "vs_aws_0.5%" not in g:
            continue
        lines.append(f"| {name} | {g['n']} | {pct(g['vs_aws_0.5%'])} | {pct(g['vs_aws_0'])} "
                     f"| {pct(g['vs_crane_0.5%'])} | {pct(g['vs_crane_0'])} "
                     f"| {g['predictive_dearer_than_aws']} / {g['predictive_dearer_than_crane']} "
                     f"| {pct(g['aws_vs_reactive_0.5%'])} | {pct(g['crane_vs_reactive_0.5%'])} |")
    return lines


def _p(v):
    return "-" if v is None else f"{v:.0%}"


def command() -> str:
    return "python benchmarks/replay.py " + " ".join(sys.argv[1:])


def publish(name: str, payload: dict, render) -> None:
    """Write ``results/<name>.json`` and the Markdown ``render`` makes of it, and print the Markdown."""
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}.json").write_text(json.dumps(payload, indent=1, default=str))
    text = render(payload)
    (OUT / f"{name}.md").write_text(text)
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two traces, two profiles, short sweeps")
    parser.add_argument("--vms", type=int, default=5, help="Azure per-VM series to include")
    parser.add_argument("--forecaster", default="best")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--peak-scale", type=float, default=1.0)
    parser.add_argument("--profiles", default=",".join(PROFILES))
    parser.add_argument("--traces", default="", help="comma-separated trace names (default: all)")
    parser.add_argument("--skip-fast-path", action="store_true")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="(trace, profile) cases replayed at once, one process each (default: the CPU count; "
                             "1: in this process)")
    parser.add_argument("--perfect", action="store_true",
                        help="only the predictive rule with a perfect forecast against the oracle of replay.json "
                             "(writes replay-perfect.json and .md; minutes, not an hour)")
    parser.add_argument("--ex-ante", action="store_true",
                        help="only prescale as a user runs it: tuned on the stretch before the window from the "
                             "SLO (0.5%% and 0.1%%), run once with its controller, against reactive at the same "
                             "violations and at the HPA default (writes replay-ex-ante.json and .md)")
    parser.add_argument("--trials", type=int, default=16, help="--ex-ante: predictive tuning trials per case")
    parser.add_argument("--reactive-trials", type=int, default=6, help="--ex-ante: reactive tuning trials per case")
    parser.add_argument("--tune-seconds", type=float, default=50.0, help="--ex-ante: tuning time limit per case")
    parser.add_argument("--error-scale", default="", metavar="A,B,...",
                        help="only the predictive sweep with forecast errors scaled by each alpha (1: as made, "
                             "0: perfect) against replay.json's reactive and oracle costs (replay-error-scale.*)")
    args = parser.parse_args()
    try:
        args.error_scale = [float(a) for a in args.error_scale.split(",") if a.strip()]
    except ValueError:
        parser.error(f"--error-scale takes comma-separated numbers, got {args.error_scale!r}")
    if any(not 0 <= a <= 1 for a in args.error_scale):
        parser.error("--error-scale values must lie in [0, 1]")
    args.profiles = [p for p in args.profiles.split(",") if p]
    catalog = load_catalog(ROOT / "infra" / "catalog.yaml")
    config = sweeps(SWEEP_QUANTILES, SWEEP_HEADROOMS, SWEEP_TARGETS)
    traces = load_traces(args.vms)
    if args.traces:
        traces = [t for t in traces if t.name in args.traces.split(",")]
    if args.quick:
        traces = [t for t in traces if t.name in ("google2019-cpu", "azure2019-cpu")]
        args.profiles = ["web", "transcoder"]
        config = sweeps((0.9,), (0.0, 0.2), (0.5, 0.8))  # 0.8: the HPA default --ex-ante compares with
    if args.ex_ante:
        args.root, args.quantiles, args.targets = ROOT, QUANTILES, config.settings_for("reactive").targets
        args.references = {name: config.settings_for(name) for name in REFERENCES}
        args.hindsight = ex_ante.hindsight_costs(OUT / "replay.json")
        started = time.perf_counter()
        rows, _ = run_cases(ex_ante_case, traces, catalog, config, args,
                            prepare=functools.partial(ex_ante_forecasts, catalog=catalog, args=args))
        payload = {"command": command(), "jobs": args.jobs, "seconds": round(time.perf_counter() - started, 1),
                   "rows": rows, "aggregate": ex_ante.aggregate(rows)}
        publish("replay-ex-ante-quick" if args.quick else "replay-ex-ante", payload, ex_ante.markdown)
        return
    if args.error_scale:
        rows = [row for trace in traces for row in error_scale(trace, catalog, config, args)]
        rows = compare(rows, json.loads((OUT / "replay.json").read_text())["rows"])  # read last: it may be new
        name = "replay-error-scale" + ("" if args.preset == "small" else f"-{args.preset}")
        publish(name, {"command": command(), "rows": rows}, error_scale_markdown)
        return
    if args.perfect:
        stored = json.loads((OUT / "replay.json").read_text())
        oracle = {(r["trace"], r["profile"]): r["budget_costs"].get("oracle", {}).get("0") for r in stored["rows"]}
        rows = [row for trace in traces for row in perfect_forecast(trace, catalog, config, args, oracle)]
        publish("replay-perfect", {"command": command(), "rows": rows}, perfect_markdown)
        return
    started = time.perf_counter()
    rows, infos = run_cases(replay_case, traces, catalog, config, args,
                            prepare=functools.partial(trace_info, catalog=catalog, args=args))
    kept = sum("(kept solve)" in str((r["oracle"] or {}).get("message", "")) for r in rows)
    payload = {"command": command(), "jobs": args.jobs, "seconds": round(time.perf_counter() - started, 1),
               "oracle_kept_solves": kept, "traces": infos, "rows": rows, "aggregate": aggregate(rows)}
    if not args.skip_fast_path and not args.quick:
        by_name = {t.name: t for t in load_traces(args.vms)}
        payload["fast_path"] = {
            "rounding": rounding_loss(catalog),
            "allocate_vs_fast": [allocate_vs_fast(by_name["google2019-cpu"], catalog, "inference", args),
                                 allocate_vs_fast(by_name["azure2019-cpu"], catalog, "transcoder", args),
                                 allocate_vs_fast(by_name["nasa-1min"], catalog, "analytics", args, hours=6.0)],
            "speed": speed(by_name["nasa-1min"], catalog, args),
        }
    publish("replay-quick" if args.quick else "replay", payload, markdown)


if __name__ == "__main__":
    main()
