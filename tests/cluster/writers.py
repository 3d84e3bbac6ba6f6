"""Concurrent writers of one simulated cluster's state file, each in its own process (see test_concurrent_writers).

A worker does what ``prescale apply`` does (``cli/commands/apply.py: decide_and_apply``): open the
cluster from its state file, observe, plan its app's target with the other apps' claims as ``others``, and
apply. It is started with the ``spawn`` method, so it imports this small module rather than the test's.
"""

from __future__ import annotations

from pathlib import Path
from threading import BrokenBarrierError

from prescale.catalog import load_catalog, load_profile
from prescale.cluster import Guardrails, SimulatedCluster, make_plan

REPO = Path(__file__).resolve().parents[2]
RTYPE = "m7i.xlarge"  # one pool both apps claim nodes on


def nodes_in_round(app: str, round_: int) -> int:
    """The target of ``app`` in a round: a different count each round, so a lost update shows."""
    return 2 + (round_ + len(app)) % 4


def decide_and_apply(state: Path, app: str, nodes: int) -> str:
    """One ``prescale apply`` of ``app`` to ``nodes`` nodes of ``RTYPE``; returns the report's status."""
    catalog = load_catalog(REPO / "infra" / "catalog.yaml")
    profile = load_profile(REPO / "infra" / "apps" / f"{app}.yaml")
    cluster = SimulatedCluster.open(state, catalog)
    observed = cluster.observe()
    plan = make_plan(
        app,
        observed.holdings(app),
        {RTYPE: nodes},
        catalog=catalog,
        profile=profile,
        guardrails=Guardrails(),
        others=observed.others(app),
    )
    return cluster.apply(plan).status


def writer(state: Path, app: str, rounds: int, barrier, results) -> None:
    """``rounds`` applies of ``app``, each started together with the other writers (``barrier``)."""
    try:
        for round_ in range(rounds):
            barrier.wait()
            try:
                results.put((round_, app, decide_and_apply(state, app, nodes_in_round(app, round_))))
            except Exception as exc:  # reported to the test, which fails with it
                results.put((round_, app, f"{type(exc).__name__}: {exc}"))
            barrier.wait()
    except BrokenBarrierError:  # the test stopped early (it failed): nothing left to do
        return
