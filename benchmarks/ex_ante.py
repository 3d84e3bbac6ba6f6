"""The replay benchmark's ex-ante mode: prescale as a user runs it, tuned on history, against reactive.

Per trace, the forecaster is trained on the history before a *tuning stretch* (``TUNE_DAYS`` before the
replay window: 2 days at one-minute steps, 7 at five, at most half the history) and forecasts the stretch and
the window out of sample.
Per (trace, profile, budget): the before-use search (``prescale.slo.tuning.tune``) runs on the stretch alone;
the policy it returns (the rule the skill gate chose, its knobs) runs once over the window with its online
controller, starting from the state the tuning replay ended in (``Adaptive``). Nothing of prescale's is
chosen with hindsight.

Baselines on the same window: reactive's whole sweep (``replay.py``'s 15 targets x 2 type sets), read two
ways: *at the same violations*, its cost interpolated on its Pareto frontier at prescale's realised violation
share (the strongest fair baseline: reactive's best setting for that level, found with hindsight), and *at
the HPA default* (target 0.8, all compatible types). Also reported: the realised violations against the
budget, the tuning's seconds, and the hindsight predictive sweep's cost at the budget (from ``replay.json``)
for reference. The published references (``aws``, ``crane``: AWS predictive scaling, Crane's EHPA) are swept
on the window like reactive and read the same way, at prescale's realised violations on their frontiers.
"""

from __future__ import annotations

import json
import time

import numpy as np

from prescale.catalog import resolve_profile
from prescale.replay import ReplayConfig, build_fleet, replay_policy
from prescale.replay.covers import CoverCache
from prescale.replay.engine import context
from prescale.replay.frontier import savings
from prescale.replay.inputs import Window, demand_map, make_input
from prescale.replay.policies import REFERENCES
from prescale.slo.exante import compare, frontier_cost
from prescale.slo.tuning import share, tune

BUDGETS = (0.005, 0.001)
TUNE_DAYS = {60: 2.0, 300: 7.0}  # by step seconds


def trace_inputs(trace, catalog, args, forecasts_for, trace_panel):
    """The trace's panel, the replay window, the tuning stretch's window and the out-of-sample forecasts."""
    panel, window = trace_panel(trace, catalog)
    # at most half the history: the forecaster trains on the rest (Alibaba's trace has under six days of it)
    tune_steps = min(round(TUNE_DAYS.get(panel.step_seconds, 2.0) * 86_400 / panel.step_seconds),
                     window.replay_start // 2)
    start = window.replay_start - tune_steps
    ext = Window(window.rows, start, start + window.warmup, window.horizon, window.step_seconds)
    fc, candidate, *_ = forecasts_for(trace, panel, ext, candidate=args.forecaster, preset=args.preset)
    stretch = Window(window.replay_start, start, start + window.warmup, window.horizon, window.step_seconds)
    return panel, window, stretch, fc, candidate, tune_steps


def ex_ante_trace(trace, catalog, args, *, forecasts_for, trace_panel, daily_acf, hindsight: dict) -> list[dict]:
    panel, window, stretch, fc, candidate, tune_steps = trace_inputs(trace, catalog, args, forecasts_for, trace_panel)
    periodic = bool(daily_acf(panel.values[: window.replay_start, 0], panel.step_seconds) >= 0.6)
    rows = []
    for name in args.profiles:
        profile = resolve_profile(name, catalog_dir(args))
        fleet = build_fleet(catalog, profile, step_seconds=panel.step_seconds)
        horizon = int(np.ceil((fleet.lead_seconds.max() + 30 * 60) / panel.step_seconds))
        dmap = demand_map(panel.values[: window.replay_start, 0], profile, "x", peak_scale=args.peak_scale)
        q = args.quantiles
        tune_inp = make_input(trace.name, panel.index[: stretch.rows], panel.values[: stretch.rows, 0], stretch, dmap,
                              forecast=fc[:tune_steps, :horizon], quantiles=q)
        win_inp = make_input(trace.name, panel.index, panel.values[:, 0], window, dmap,
                             forecast=fc[tune_steps:, :horizon], quantiles=q)
        win_inp = win_inp.with_history(dmap.apply(panel.values[: window.replay_start, 0]))  # for the references
        config = ReplayConfig(settings={"reactive": {"targets": args.targets}, **args.references})
        covers = CoverCache(fleet, resolution=config.cover_resolution)
        ctx = context(win_inp, fleet, config, covers)
        began = time.perf_counter()
        reactive = replay_policy("reactive", win_inp, ctx, config)
        references = {ref: replay_policy(ref, win_inp, ctx, config) for ref in args.references}
        for budget in BUDGETS:
            t0 = time.perf_counter()
            tuned = tune(tune_inp, fleet, budget, config=config, covers=covers, trials=args.trials,
                         reactive_trials=args.reactive_trials, timeout_seconds=args.tune_seconds)
            tune_s = time.perf_counter() - t0
            result = compare(tuned, win_inp, ctx, config, reactive)
            run, same, how = result.run, result.reactive_same, result.reactive_how
            default_cost, default_share = result.reactive_default
            ours = run.violation_share
            label = f"{budget:.1%}"
            hind = hindsight.get((trace.name, name), {}).get(label.replace(".0%", "%"))
            row = {
                "trace": trace.name, "profile": name, "periodic": periodic, "mixed": name != "web",
                "budget": budget, "forecaster": candidate,
                "policy": tuned.policy.summary(), "tuning": tuned.policy.tuning, "tune_seconds": round(tune_s, 1),
                "predictive": {"cost": round(run.score.cost, 2), "violation_share": round(ours, 6),
                               "violation_minutes": run.score.slo_violation_minutes,
                               "scale_mean": round(float(np.mean(run.scales)), 3)},
                "reactive_at_same_violations": None if same is None else round(same, 2), "reactive_how": how,
                "reactive_default": {"cost": round(default_cost, 2), "violation_share": round(default_share, 6)},
                "vs_reactive_same": savings(same, run.score.cost),
                "vs_reactive_default": savings(default_cost, run.score.cost),
                "ratio_to_budget": round(ours / budget, 3),
                "hindsight_predictive": hind,
                **{k: v for ref, result in references.items() for k, v in at_same(ref, result, run).items()},
            }
            rows.append(row)
            print(f"  {trace.name}/{name} @{label}: {row['policy']['setting']} ({row['policy']['rule']}) "
                  f"{ours:.3%} viol, cost {run.score.cost:,.1f} vs reactive same {same} ({how}) "
                  f"-> {row['vs_reactive_same']}; default {default_cost:,.1f}; tune {tune_s:.0f} s "
                  f"[{time.perf_counter() - began:.0f} s]", flush=True)
    return rows


def at_same(name: str, result, run) -> dict:
    """Reference ``name``'s cost at prescale's realised violation share, on its swept frontier, as reactive's
    (``prescale.slo.exante.frontier_cost``), and prescale's saving against it."""
    cost, how = frontier_cost([(share(p.score), p.score.cost) for p in result.points], run.violation_share)
    return {f"{name}_at_same_violations": None if cost is None else round(cost, 2),
            f"{name}_how": how.replace("reactive's", f"{name}'s"), f"vs_{name}_same": savings(cost, run.score.cost)}


def catalog_dir(args):
    return args.root / "infra" / "apps"


def aggregate(rows: list[dict]) -> dict:
    out = {}
    for budget in BUDGETS:
        at = [r for r in rows if r["budget"] == budget]
        for name, group in (("all", at), ("periodic", [r for r in at if r["periodic"]]),
                            ("mixed-lead-time profiles", [r for r in at if r["mixed"]]),
                            ("single kind (web)", [r for r in at if not r["mixed"]])):
            same = [r["vs_reactive_same"] for r in group if r["vs_reactive_same"] is not None]
            ratios = [r["ratio_to_budget"] for r in group]
            out[f"{budget:.1%} {name}"] = {
                "budget": budget, "group": name, "n": len(group),
                "vs_reactive_same": float(np.mean(same)) if same else None,
                "vs_reactive_default": float(np.mean([r["vs_reactive_default"] for r in group])) if group else None,
                "dearer_over_1pct": sum(1 for v in same if v < -0.01),
                "within_band": sum(1 for v in ratios if 0.5 <= v <= 1.25),
                "over_band": sum(1 for v in ratios if v > 1.25),
                "under_band": sum(1 for v in ratios if v < 0.5),
                "predictive_rule": sum(1 for r in group if r["policy"]["rule"] == "predictive"),
                "tune_seconds_max": max((r["tune_seconds"] for r in group), default=None),
                **reference_aggregate(group),
            }
    return out


def reference_aggregate(group: list[dict]) -> dict:
    """Per published reference in the rows: prescale's mean saving against it at the same violations, and the
    cases where prescale is dearer by more than 1%."""
    out = {}
    for name in REFERENCES:
        same = [r[f"vs_{name}_same"] for r in group if r.get(f"vs_{name}_same") is not None]
        if any(f"vs_{name}_same" in r for r in group):
            out[f"vs_{name}_same"] = float(np.mean(same)) if same else None
            out[f"dearer_than_{name}_over_1pct"] = sum(1 for v in same if v < -0.01)
    return out


def markdown(payload: dict) -> str:
    def pct(v):
        return "-" if v is None else f"{v:+.1%}"

    lines = ["# Replay, ex ante: prescale tuned on history against reactive", "",
             f"Command: `{payload['command']}`. Per case and budget, prescale's policy is tuned on the "
             f"stretch before the window ({', '.join(f'{v:g} days at {k} s steps' for k, v in TUNE_DAYS.items())}; "
             "the forecaster trained before it) and run once over the window with its online controller: nothing "
             "chosen with hindsight. `reactive same`: reactive's cost at prescale's realised violation share, "
             "interpolated on its swept frontier (hindsight, the strongest fair baseline); `reactive 80%`: the HPA "
             "default. `viol/budget`: realised violations over the budget (target 0.5x-1.25x). `hindsight`: the "
             "predictive sweep's best cost within the budget, picked per case after the fact (`replay.json`).", "",
             "| trace | profile | budget | rule | setting | viol. | viol/budget | cost | reactive same "
             "| vs same | reactive 80% (viol.) | vs 80% | hindsight | tune s |",
             "|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in payload["rows"]:
        d = r["reactive_default"]
        same = "-" if r["reactive_at_same_violations"] is None else f"{r['reactive_at_same_violations']:,.0f}"
        hind = "-" if r["hindsight_predictive"] is None else f"{r['hindsight_predictive']:,.0f}"
        lines.append(
            f"| {r['trace']} | {r['profile']} | {r['budget']:.1%} | {r['policy']['rule']} | {r['policy']['setting']} "
            f"| {r['predictive']['violation_share']:.2%} | {r['ratio_to_budget']:.2f} | {r['predictive']['cost']:,.0f} "
            f"| {same} | {pct(r['vs_reactive_same'])} | {d['cost']:,.0f} ({d['violation_share']:.2%}) "
            f"| {pct(r['vs_reactive_default'])} | {hind} | {r['tune_seconds']:g} |")
    lines += ["", "| budget | group | n | vs reactive same | vs reactive 80% | dearer >1% | viol. in 0.5-1.25x "
              "| over | under | predictive rule | tune s max |",
              "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for g in payload["aggregate"].values():
        lines.append(f"| {g['budget']:.1%} | {g['group']} | {g['n']} | {pct(g['vs_reactive_same'])} "
                     f"| {pct(g['vs_reactive_default'])} | {g['dearer_over_1pct']} | {g['within_band']} "
                     f"| {g['over_band']} | {g['under_band']} | {g['predictive_rule']} | {g['tune_seconds_max']} |")
    return "\n".join(lines + reference_markdown(payload)) + "\n"


def reference_markdown(payload: dict) -> list[str]:
    """prescale ex ante against the published references at the same realised violations (rows without them:
    none)."""
    rows = [r for r in payload["rows"] if all(f"vs_{n}_same" in r for n in REFERENCES)]
    if not rows:
        return []

    def pct(v):
        return "-" if v is None else f"{v:+.1%}"

    def usd(v):
        return "-" if v is None else f"{v:,.0f}"

    lines = ["", "## Against the published references", "",
             "AWS EC2 predictive scaling with target tracking (`aws`) and Crane's EHPA (`crane`), each swept over "
             "reactive's targets on the window; `aws same`, `crane same`: its cost at prescale's realised "
             "violations on its frontier (hindsight, as `reactive same`).", "",
             "| trace | profile | budget | viol. | cost | reactive same | aws same | vs aws | crane same | vs crane |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['trace']} | {r['profile']} | {r['budget']:.1%} | {r['predictive']['violation_share']:.2%} "
            f"| {r['predictive']['cost']:,.0f} | {usd(r['reactive_at_same_violations'])} "
            f"| {usd(r['aws_at_same_violations'])} | {pct(r['vs_aws_same'])} "
            f"| {usd(r['crane_at_same_violations'])} | {pct(r['vs_crane_same'])} |")
    lines += ["", "| budget | group | n | vs reactive same | vs aws same | dearer than aws >1% | vs crane same "
              "| dearer than crane >1% |", "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for g in payload["aggregate"].values():
        if "vs_aws_same" not in g or "vs_crane_same" not in g:
            continue
        lines.append(f"| {g['budget']:.1%} | {g['group']} | {g['n']} | {pct(g['vs_reactive_same'])} "
                     f"| {pct(g['vs_aws_same'])} | {g['dearer_than_aws_over_1pct']} | {pct(g['vs_crane_same'])} "
                     f"| {g['dearer_than_crane_over_1pct']} |")
    return lines


def hindsight_costs(path) -> dict:
    if not path.exists():
        return {}
    rows = json.loads(path.read_text())["rows"]
    return {(r["trace"], r["profile"]): r["budget_costs"]["predictive"] for r in rows}


__all__ = ["aggregate", "ex_ante_trace", "hindsight_costs", "markdown"]
