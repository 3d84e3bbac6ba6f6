"""Trace replay: a past window, minute by minute, through the decision code, under several scaling policies.

The question a replay answers: *on this app's real demand, what would each policy have cost, and how often
would it have left demand unserved?* Policies (``policies/``, one module each, one registry ``POLICIES``
that the engine, the settings tree and the backtest read): **predictive** (ours: the pure decision of
``prescale.decision`` on a simulated clock and cluster: forecast quantiles, looking ahead by each tier's lead
time, slow cheap nodes for the base and fast ones for bursts, a reactive floor), **reactive** (HPA-like on
observed demand, Karpenter-like node choice), **static** peak, and the **oracle** (solved by ``oracle.py``:
the exact cheapest zero-violation schedule given the lead times). Adding one: ``policies/__init__.py``.

How data moves::

    ReplayInput (demand, batched historical forecasts, history peak; fetched by the task layer)
      + Fleet (prescale.fleet: the app's types as arrays, tiers by lead time)
      -> engine.backtest: per registered policy and setting, a Rule steps through the window; covers.py turns
         levels into node counts (the allocation's exact MILP, cached per quantised level); simulate.py carries the
         counts out (prescale.holding: lead times, make-before-break; billing per node-step)
      -> frontier.py: scores per run, each policy's frontier, its cost at equal violation budgets
      -> plots.py: PNGs (demand and forecast band, capacity by kind, frontiers, cumulative cost);
         report.py: the results table in Markdown

Pure: no Prefect, no MLflow, no ``models``; the forecasts come in as arrays. ``models/history.py`` trains
the forecaster on data before the window and batches its historical forecasts; ``tasks/backtest.py`` wraps
the I/O steps.
"""

from prescale.fleet import Fleet, FleetError, Tier, build_fleet
from prescale.replay.covers import CoverCache
from prescale.replay.engine import BacktestResult, ReplayConfig, ReplayInput, backtest, replay_policy
from prescale.replay.errors import ReplayError
from prescale.replay.frontier import BUDGETS, PolicyResult, Score, score_series
from prescale.replay.oracle import OracleResult, solve_oracle
from prescale.replay.policies import POLICIES, PolicySettings, ReplayPolicy, register, run_rule
from prescale.replay.simulate import Executor, Series

__all__ = [
    "BUDGETS",
    "POLICIES",
    "BacktestResult",
    "CoverCache",
    "Executor",
    "Fleet",
    "FleetError",
    "OracleResult",
    "PolicyResult",
    "PolicySettings",
    "ReplayConfig",
    "ReplayError",
    "ReplayInput",
    "ReplayPolicy",
    "Score",
    "Series",
    "Tier",
    "backtest",
    "build_fleet",
    "register",
    "replay_policy",
    "run_rule",
    "score_series",
    "solve_oracle",
]
