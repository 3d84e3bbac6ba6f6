"""Trace replay: a past window, minute by minute, through the decision code, under several scaling policies.

The question a replay answers: *on this app's real demand, what would each policy have cost, and how often
would it have left demand unserved?* Policies (``policies.py``): **predictive** (ours: the pure decision of
``prescale.decision`` on a simulated clock and cluster: forecast quantiles, looking ahead by each tier's lead
time, slow cheap nodes for the base and fast ones for bursts, a reactive floor), **reactive** (HPA-like on
observed demand, Karpenter-like node choice), **static** peak, and the **oracle** (``oracle.py``: the exact
cheapest zero-violation schedule given the lead times).

How data moves::

    ReplayInput (demand, batched historical forecasts, history peak; fetched by the task layer)
      + Fleet (prescale.fleet: the app's types as arrays, tiers by lead time)
      -> engine.backtest: per policy and setting, a Rule decides each step; covers.py turns levels into
         node counts (the allocation's exact MILP, cached per quantised level); simulate.py carries the
         counts out (prescale.holding: lead times, make-before-break; billing per node-step)
      -> frontier.py: scores per run, each policy's frontier, its cost at equal violation budgets
      -> plots.py: PNGs (demand and forecast band, capacity by kind, frontiers, cumulative cost)

Pure: no Prefect, no MLflow, no ``models``; the forecasts come in as arrays. ``tasks/backtest.py`` trains
the forecaster on data before the window and batches its historical forecasts.
"""

from prescale.fleet import Fleet, FleetError, Tier, build_fleet
from prescale.replay.covers import CoverCache
from prescale.replay.engine import POLICIES, BacktestResult, ReplayConfig, ReplayInput, backtest, run_rule
from prescale.replay.errors import ReplayError
from prescale.replay.frontier import BUDGETS, PolicyResult, Score, score_series
from prescale.replay.oracle import OracleResult, solve_oracle
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
    "ReplayConfig",
    "ReplayError",
    "ReplayInput",
    "Score",
    "Series",
    "Tier",
    "backtest",
    "build_fleet",
    "run_rule",
    "score_series",
    "solve_oracle",
]
