r"""Before use: the policy's knobs found from the SLO on the app's recent history, and the skill gate.

:func:`tune` replays a stretch of history *before* the window it will be used on (a
:class:`~prescale.replay.ReplayInput` with the forecasts the forecaster made there, out of sample) through the
one decision function in the replay's simulator, with the online controller on, exactly as the loop would run
(:class:`~prescale.replay.policies.adaptive.Adaptive`), and keeps the cheapest knobs whose realised violation
share stays within the budget:

* **predictive**: an Optuna study (TPE with a constraint, ``violation share - budget <= 0``) over the covered
  quantile ``q`` (the forecast's quantiles) and the headroom ``h`` in ``[0, 1]``, started from three
  enqueued points that bracket the usual answers;
* **reactive**: a small study over its target utilisation ``u`` in ``[0.3, 0.95]`` (the rule used where the
  forecast has no skill, and the yardstick of the gate).

**Skill gate** (:func:`forecast_skill`, then :func:`tune`): at each tier's lead time ``r`` the forecast's
pinball loss at ``q`` against persistence's (the last observation plus the stretch's ``q``-quantile of its
``r``-step changes: the quantile forecast of a no-skill model), ``skill = 1 - L_model / L_persistence``. The
predictive rule is chosen when the forecast has skill at some tier's lead (``skill > 0``) *and* its tuned cost
on the stretch is below the reactive rule's at the same budget; else the reactive rule, and the reasons say
which test failed. Both rules keep the reactive floor: the predictive rule never serves less than
``(1 + h) o[t]`` at the step it decides (``prescale.decision``), as AWS predictive scaling and AHPA take the
larger of forecast and observation.

Where no trial meets the budget (a bursty stretch), the trial with the fewest violations is kept and the
reasons say the budget was not reached. Every trial is one point of the app's cost-of-SLO curve
(``SloPolicy.frontier``). Seeded: the same stretch gives the same policy.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import optuna

from prescale.fleet import Fleet
from prescale.replay.covers import CoverCache
from prescale.replay.engine import ReplayConfig, ReplayInput, context
from prescale.replay.frontier import Score, score_series
from prescale.replay.policies import run_rule
from prescale.replay.policies.adaptive import Adaptive
from prescale.replay.policies.base import Context
from prescale.slo.controller import TrackerState
from prescale.slo.policy import FrontierPoint, SloPolicy

Progress = Callable[[int, int, str], None]
PREDICTIVE_STARTS = ({"quantile": 0.9, "headroom": 0.1}, {"quantile": 0.95, "headroom": 0.2},
                     {"quantile": 0.5, "headroom": 0.35})


@dataclass(frozen=True)
class Run:
    """One replay of an :class:`SloPolicy` over an input: its score and the controller's state at the end."""

    policy: SloPolicy
    score: Score
    state: TrackerState
    scales: tuple[float, ...]

    @property
    def violation_share(self) -> float:
        return share(self.score)


def share(score: Score) -> float:
    """Violated share of the scored, observed minutes."""
    minutes = score.scored_minutes
    return score.slo_violation_minutes / minutes if minutes > 0 else 0.0


def run_policy(policy: SloPolicy, inp: ReplayInput, ctx: Context, config: ReplayConfig,
               state: TrackerState | None = None) -> Run:
    """Replay ``policy`` with its controller over ``inp`` (from ``state``, or the initial one)."""
    base = inp.covered(policy.quantile) if policy.rule == "predictive" else None
    rule = Adaptive(ctx, demand=inp.demand, slo=policy, hold=config.hold_steps(inp.step_seconds),
                    step_seconds=inp.step_seconds, base=base, state=state or TrackerState())
    series = run_rule(ctx.fleet, rule, len(inp.index))
    score = score_series(ctx.fleet, series, inp.demand, start=inp.start, fallback_steps=rule.fallback_steps)
    return Run(policy, score, rule.state, tuple(rule.scales))


def forecast_skill(inp: ReplayInput, fleet: Fleet, quantile: float) -> dict[str, float]:
    """``1 - L_model / L_persistence`` of the ``quantile`` forecast at each tier's lead (see the docstring).

    Keys are the lead in minutes (``"5 min"``); computed over the input's scored steps, metrics pooled with
    each normalised by its mean demand.
    """
    if inp.forecast is None:
        return {}
    covered = inp.covered(quantile)  # (T, H, M): made at step t for steps t + j
    demand, observed = inp.demand, inp.observed
    T, H, _ = covered.shape
    scale = np.nanmean(np.abs(demand[inp.start :]), axis=0)
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
    out: dict[str, float] = {}
    for lead in sorted({max(1, tier.ready) for tier in fleet.tiers}):
        if lead >= H:
            continue
        t = np.arange(inp.start, T - lead)
        y = demand[t + lead]
        model = covered[t, lead]
        change = y - observed[t]
        ok = np.isfinite(y).all(axis=1) & np.isfinite(model).all(axis=1) & np.isfinite(observed[t]).all(axis=1)
        if ok.sum() < 10:
            continue
        persistence = observed[t] + np.quantile(change[ok], quantile, axis=0)
        lm = _pinball(y[ok], model[ok], quantile) / scale
        lp = _pinball(y[ok], persistence[ok], quantile) / scale
        out[f"{lead * inp.step_seconds / 60:g} min"] = float(1.0 - lm.sum() / lp.sum()) if lp.sum() > 0 else 0.0
    return out


def _pinball(y: np.ndarray, f: np.ndarray, q: float) -> np.ndarray:
    diff = y - f
    return np.maximum(q * diff, (q - 1.0) * diff).mean(axis=0)


@dataclass(frozen=True)
class Tuned:
    """The policy the search chose and the controller's state at the end of its replay."""

    policy: SloPolicy
    state: TrackerState
    run: Run


def tune(
    inp: ReplayInput, fleet: Fleet, budget: float, *, config: ReplayConfig | None = None, trials: int = 20,
    reactive_trials: int = 8, timeout_seconds: float = 50.0, gain: float = 0.05, seed: int = 0,
    covers: CoverCache | None = None, progress: Progress | None = None,
) -> Tuned:
    """The cheapest knobs within ``budget`` on ``inp``, and the rule the skill gate picks (see the docstring)."""
    config = config or ReplayConfig()
    ctx = context(inp, fleet, config, covers)
    started = time.perf_counter()
    total, done = (trials if inp.forecast is not None else 0) + reactive_trials, 0
    points: list[tuple[Run, str]] = []

    def replay(policy: SloPolicy) -> Run:
        nonlocal done
        run = run_policy(policy, inp, ctx, config)
        points.append((run, policy.rule))
        done += 1
        if progress:
            progress(done, total, f"{policy.setting}: {run.violation_share:.2%} violations, {run.score.cost:,.2f} USD")
        return run

    start = SloPolicy(violation_budget=budget, gain=gain, tuned=True)
    left = max(1.0, timeout_seconds - (time.perf_counter() - started))
    reactive = _study(
        lambda tr: replay(start.model_copy(update={
            "rule": "reactive", "reactive_target": tr.suggest_float("reactive_target", 0.3, 0.95)})),
        budget, reactive_trials, left / 3, seed, starts=({"reactive_target": 0.5}, {"reactive_target": 0.8}),
    )
    predictive, skill = None, {}
    if inp.forecast is not None:
        quantiles = tuple(q for q in inp.quantiles if 0.5 <= q < 1)
        left = max(1.0, timeout_seconds - (time.perf_counter() - started))
        predictive = _study(
            lambda tr: replay(start.model_copy(update={
                "rule": "predictive", "quantile": tr.suggest_categorical("quantile", quantiles),
                "headroom": tr.suggest_float("headroom", 0.0, 1.0)})),
            budget, trials, left, seed,
            starts=tuple(s for s in PREDICTIVE_STARTS if s["quantile"] in quantiles),
        )
        skill = forecast_skill(inp, fleet, predictive.policy.quantile)
    chosen, reasons = _gate(reactive, predictive, skill, budget)
    frontier = tuple(
        FrontierPoint(rule=rule, setting=run.policy.setting, cost=round(run.score.cost, 4),
                      violation_share=round(run.violation_share, 6), feasible=run.violation_share <= budget + 1e-12)
        for run, rule in sorted(points, key=lambda p: (p[0].violation_share, p[0].score.cost))
    )
    seconds = time.perf_counter() - started
    summary = {
        "trials": len(points), "seconds": round(seconds, 2), "start": inp.index[inp.start].isoformat(),
        "end": inp.index[-1].isoformat(), "steps": len(inp.index) - inp.start, "step_seconds": inp.step_seconds,
        "cost": round(chosen.score.cost, 4), "violation_share": round(chosen.violation_share, 6),
        "reactive_cost": round(reactive.score.cost, 4),
        "reactive_violation_share": round(reactive.violation_share, 6),
    }
    if predictive is not None:
        summary |= {"predictive_cost": round(predictive.score.cost, 4),
                    "predictive_violation_share": round(predictive.violation_share, 6)}
    policy = chosen.policy.model_copy(update={"reasons": tuple(reasons), "skill": skill, "tuning": summary,
                                              "frontier": frontier})
    return Tuned(policy, chosen.state, chosen)


def _study(replay: Callable[[optuna.Trial], Run], budget: float, trials: int, timeout: float, seed: int, *,
           starts: tuple[dict[str, float], ...]) -> Run:
    """Minimise cost subject to ``violation share <= budget``; the best feasible run, else the fewest violations."""
    runs: list[Run] = []

    def objective(trial: optuna.Trial) -> float:
        run = replay(trial)
        trial.set_constraint("violations over budget", run.violation_share - budget)
        runs.append(run)
        return run.score.cost

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(5, trials))
    study = optuna.create_study(direction="minimize", sampler=sampler)
    for point in starts[:trials]:
        study.enqueue_trial(point)
    study.optimize(objective, n_trials=trials, timeout=timeout)
    feasible = [r for r in runs if r.violation_share <= budget + 1e-12]
    if feasible:
        return min(feasible, key=lambda r: (r.score.cost, r.violation_share))
    return min(runs, key=lambda r: (r.violation_share, r.score.cost))


def _gate(reactive: Run, predictive: Run | None, skill: dict[str, float], budget: float) -> tuple[Run, list[str]]:
    """The skill gate (see the module docstring): which run's rule decides, and why."""
    if predictive is None:
        return reactive, ["reactive: no forecast to tune the predictive rule on"]
    ok_p = predictive.violation_share <= budget + 1e-12
    ok_r = reactive.violation_share <= budget + 1e-12
    shown = ", ".join(f"{k} {v:+.2f}" for k, v in skill.items()) or "none measured"
    costs = (f"tuned cost predictive {predictive.score.cost:,.2f} at {predictive.violation_share:.2%}, reactive "
             f"{reactive.score.cost:,.2f} at {reactive.violation_share:.2%} (budget {budget:.2%})")
    if not any(v > 0 for v in skill.values()):
        return reactive, [f"reactive: the forecast has no skill over persistence at any tier's lead ({shown})", costs]
    if ok_p and (not ok_r or predictive.score.cost < reactive.score.cost):
        return predictive, [f"predictive: skill over persistence ({shown}); cheaper within the budget", costs]
    if not ok_p and not ok_r:
        best = predictive if predictive.violation_share <= reactive.violation_share else reactive
        return best, [f"{best.policy.rule}: the budget was not reached on the tuning stretch; fewest violations kept",
                      costs]
    return reactive, [f"reactive: the predictive rule is not cheaper within the budget ({shown} skill)", costs]
