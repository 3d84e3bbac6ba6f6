"""How ``benchmarks/replay.py`` (and its ``--ex-ante`` mode) report the published references, on hand-made rows.

The benchmark replays the shared traces for half an hour; here its summarising functions run on rows in the
shape ``replay_trace`` and ``ex_ante_trace`` write, so the comparisons against AWS and Crane are pinned.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import ex_ante  # noqa: E402
import replay  # noqa: E402

from prescale.replay.frontier import PolicyResult, Score  # noqa: E402


def row(pred: float, reactive: float, aws: float | None, crane: float | None, *, periodic=True, refs=True) -> dict:
    """A case whose policies cost these at both budgets (None: no setting within the budget)."""
    costs = {"predictive": pred, "reactive": reactive, "static": 2 * reactive, "oracle": 0.5 * pred}
    if refs:
        costs |= {"aws": aws, "crane": crane}
    budget_costs = {name: {"0.5%": c, "0": c} for name, c in costs.items()}
    comparison = {b: {f"vs_{n}": None if c is None else round((c - pred) / c, 4)
                      for n, c in costs.items() if n not in ("predictive", "oracle")} for b in ("0.5%", "0")}
    headline = {n: {"setting": "target=0.7,types=all", "cost": c, "violations": 0, "slack": 0.2, "migrations": 0}
                for n, c in costs.items()}
    for b in comparison.values():
        b["over_oracle"] = 1.0
    return {"trace": "t", "profile": "web", "periodic": periodic, "mixed": False, "budget_costs": budget_costs,
            "comparison": comparison, "headline": headline}


def test_the_aggregate_reads_each_reference_as_reactive_is_read():
    rows = [row(90.0, 100.0, 120.0, 100.0), row(110.0, 100.0, 100.0, None, periodic=False)]
    g = replay.aggregate(rows)
    assert g["all"]["vs_aws_0.5%"] == pytest.approx(((120 - 90) / 120 + (100 - 110) / 100) / 2, abs=1e-4)
    assert g["all"]["vs_crane_0.5%"] == pytest.approx(0.1)  # the case without a crane point is left out
    assert g["all"]["predictive_dearer_than_aws"] == 2  # the second case, at both budgets
    assert g["periodic"]["aws_vs_reactive_0.5%"] == pytest.approx(-0.2)  # aws dearer than reactive there
    text = replay.markdown({"command": "x", "rows": rows, "aggregate": g})
    assert "## Against the published references" in text and "| t | web | yes | 100 | 120 | 100 | 90 |" in text


def test_a_run_without_the_references_renders_without_their_tables():
    rows = [row(90.0, 100.0, None, None, refs=False)]
    g = replay.aggregate(rows)
    assert g["all"]["vs_aws_0.5%"] is None
    assert "published references" not in replay.markdown({"command": "x", "rows": rows, "aggregate": g})


def _result(points: list[tuple[float, float]]) -> PolicyResult:
    result = PolicyResult("aws")
    for i, (violation_minutes, cost) in enumerate(points):
        result.add(f"target={i}", Score(cost=cost, slo_violation_minutes=violation_minutes, violation_steps=0,
                                        scored_minutes=1000.0, slack=0.0, migrations=0, node_hours=0.0))
    return result


class _Run:
    def __init__(self, share: float, cost: float) -> None:
        self.violation_share = share
        self.score = Score(cost=cost, slo_violation_minutes=share * 1000, violation_steps=0, scored_minutes=1000.0,
                           slack=0.0, migrations=0, node_hours=0.0)


def test_ex_ante_reads_a_reference_on_its_frontier_at_prescales_violations():
    """Frontier (0 min, 200 USD) .. (10 min, 100 USD): at prescale's 5 minutes it costs 150, interpolated."""
    out = ex_ante.at_same("aws", _result([(0.0, 200.0), (10.0, 100.0), (10.0, 300.0)]), _Run(0.005, 120.0))
    assert out["aws_at_same_violations"] == pytest.approx(150.0)
    assert out["vs_aws_same"] == pytest.approx(0.2)
    assert out["aws_how"] == "interpolated"
