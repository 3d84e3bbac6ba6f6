"""Named decision cases: each builds a tiny catalog whose right answer can be read off, then checks it."""

from __future__ import annotations

import pandas as pd
import pytest

from prescale.allocation import SolverSettings, allocate
from tests.allocation.builders import START, catalog, flat, profile, rtype

EXACT = SolverSettings(solver="milp", time_budget_ms=None, max_spot_share=0.0)
LONG_AGO = START - pd.Timedelta(hours=2)  # decided long before: every lead time has passed

CPU = rtype("c", "cpu-vm", price=1.0)
GPU = rtype("g", "gpu-vm", price=2.0)


def decide(cat, prof, fc, *, current=None, settings=EXACT, now=None):
    return allocate(fc, cat, prof, current or {}, settings, now=now)


CASES = [
    pytest.param(
        dict(cat=catalog(CPU, GPU), prof=profile({"c": 100, "g": 1000}), fc=flat(3000), now=LONG_AGO),
        {"g": 3},
        {"c": "dominated on cost"},
        id="gpu-cheaper-than-cpu",
    ),
    pytest.param(
        dict(cat=catalog(CPU, GPU), prof=profile({"c": 100, "g": 150}), fc=flat(3000), now=LONG_AGO),
        {"c": 30},
        {"g": "dominated on cost"},
        id="cpu-cheaper-than-gpu",
    ),
    pytest.param(
        dict(
            cat=catalog(CPU, rtype("g", "gpu-vm", price=2.0, quota=2)),
            prof=profile({"c": 100, "g": 1000}),
            fc=flat(3000),
            now=LONG_AGO,
        ),
        {"g": 2, "c": 10},
        {},
        id="quota-forces-mix",
    ),
    pytest.param(
        dict(
            cat=catalog(CPU, rtype("f", "fpga", price=0.1, family="fam-b")),
            prof=profile({"c": 100, "f": 5000}),
            fc=flat(3000),
            now=LONG_AGO,
        ),
        {"c": 30},
        {"f": "incompatible: no bitstream for FPGA family 'fam-b'"},
        id="fpga-incompatible",
    ),
    pytest.param(
        dict(
            cat=catalog(CPU, GPU), prof=profile({"c": 100, "g": 1000}, kinds=("cpu-vm",)), fc=flat(3000), now=LONG_AGO
        ),
        {"c": 30},
        {"g": "incompatible: app 'app' runs on cpu-vm, not gpu-vm"},
        id="gpu-kind-incompatible",
    ),
    pytest.param(
        dict(
            cat=catalog(CPU, rtype("g", "gpu-vm", price=2.0, quota=0)),
            prof=profile({"c": 100, "g": 1000}),
            fc=flat(3000),
            now=LONG_AGO,
        ),
        {"c": 30},
        {"g": "over quota"},
        id="zero-quota-rejected",
    ),
    pytest.param(
        # GPU is 5x cheaper per request but ready only at step 5 of 10; nothing runs now.
        dict(cat=catalog(CPU, GPU), prof=profile({"c": 100, "g": 1000}), fc=flat(3000)),
        {"c": 30},
        {"g": "lead time"},
        id="lead-time-forces-cpu-now",
    ),
    pytest.param(
        dict(
            cat=catalog(CPU, rtype("m", "bare-metal", price=1.0, lead=1500)),
            prof=profile({"c": 100, "m": 400}),
            fc=flat(3000),
        ),
        {"c": 30},
        {"m": "lead time: a node takes 1500 s, longer than the 600 s horizon"},
        id="lead-time-beyond-horizon",
    ),
]


@pytest.mark.parametrize(("inputs", "nodes", "reasons"), CASES)
def test_decision(inputs, nodes, reasons):
    decision = decide(**inputs)
    assert decision.nodes == nodes
    for name, start in reasons.items():
        assert decision.rejected[name].startswith(start), decision.rejected[name]
    assert set(decision.rejected) == {t.name for t in inputs["cat"]} - set(nodes)


def test_running_nodes_bridge_the_lead_time_of_a_cheaper_switch():
    """make-before-break: 30 CPU nodes run now, so switching to 3 GPUs leaves no gap and pays back."""
    cat, prof = catalog(CPU, GPU), profile({"c": 100, "g": 1000})
    settings = SolverSettings(solver="milp", time_budget_ms=None, max_spot_share=0.0, amortize_hours=24)
    decision = decide(cat, prof, flat(3000, steps=30), current={"c": 30}, settings=settings)
    assert decision.nodes == {"g": 3}
    assert decision.covered, decision.explanation
    assert decision.drain_after_seconds >= GPU["lead_time_seconds"] - 60  # CPUs stay until the GPUs serve


def test_churn_keeps_running_nodes_when_switching_does_not_pay_back():
    cat, prof = catalog(CPU, GPU), profile({"c": 100, "g": 1000})
    settings = SolverSettings(solver="milp", time_budget_ms=None, max_spot_share=0.0, amortize_hours=0.05,
                              churn_cost=2.0)
    decision = decide(cat, prof, flat(3000, steps=30), current={"c": 30}, settings=settings)
    assert decision.nodes == {"c": 30}
    assert decision.rejected["g"].startswith(("dominated on cost: switching", "lead time"))


EXPLAINED = [
    pytest.param(
        dict(
            cat=catalog(rtype("c", "cpu-vm", price=1.0, quota=3)), prof=profile({"c": 100}, min_nodes=5), fc=flat(100)
        ),
        "infeasible",
        "min_nodes is 5 but compatible types allow only 3",
        id="infeasible-explained",
    ),
    pytest.param(
        dict(cat=catalog(GPU), prof=profile({"g": 1000}, kinds=("cpu-vm",)), fc=flat(100)),
        "infeasible",
        "no resource type can serve app 'app'",
        id="infeasible-no-compatible-type",
    ),
    pytest.param(
        dict(
            cat=catalog(rtype("c", "cpu-vm", price=1.0, quota=10)),
            prof=profile({"c": 100}),
            fc=flat(5000),
            now=LONG_AGO,
        ),
        "uncovered",
        "binding constraint: quota",
        id="uncovered-quota-explained",
    ),
    pytest.param(
        dict(cat=catalog(rtype("c", "cpu-vm", price=1.0, lead=200)), prof=profile({"c": 100}), fc=flat(1000)),
        "uncovered",
        "binding constraint: lead time; steps 0-2",
        id="uncovered-lead-time-explained",
    ),
    pytest.param(
        dict(cat=catalog(CPU), prof=profile({"c": 100}, max_nodes=5), fc=flat(1000), now=LONG_AGO),
        "uncovered",
        "binding constraint: max_nodes (5)",
        id="uncovered-max-nodes-explained",
    ),
    pytest.param(
        dict(cat=catalog(CPU), prof=profile({"c": 100}), fc=flat(1000), now=LONG_AGO),
        "covered",
        "covers the q0.9 forecast at every step",
        id="covered",
    ),
]


@pytest.mark.parametrize(("inputs", "status", "phrase"), EXPLAINED)
@pytest.mark.parametrize("solver", ["milp", "optuna"])
def test_status_is_explained_never_raised(inputs, status, phrase, solver):
    settings = SolverSettings(solver=solver, trials=6, time_budget_ms=None, max_spot_share=0.0)
    decision = decide(**inputs, settings=settings)
    assert decision.status == status
    assert phrase in decision.explanation, decision.explanation
    assert decision.covered is (status == "covered")


def test_spot_share_is_respected_and_used_when_cheaper():
    cat = catalog(rtype("c", "cpu-vm", price=1.0, spot=0.4))
    settings = SolverSettings(solver="milp", time_budget_ms=None, max_spot_share=0.5)
    decision = decide(cat, profile({"c": 100}), flat(2000), now=LONG_AGO, settings=settings)
    assert decision.nodes == {"c": 20}
    assert decision.spot == {"c": 10}  # half the spend at on-demand prices: the most the settings allow
    assert decision.cost_per_hour == pytest.approx(10 * 1.0 + 10 * 0.4)


def test_no_demand_releases_running_nodes():
    decision = decide(catalog(CPU, GPU), profile({"c": 100, "g": 1000}), flat(0.0), current={"c": 3})
    assert decision.nodes == {} and decision.covered
    assert decision.rejected["c"] == "dominated on cost: there is no demand to cover, so no node pays for itself"


BAD_INPUTS = [
    pytest.param(dict(fc=flat(10.0, metrics=("x",))), "the forecast lacks metric(s) ['rps'] of app 'app'", id="metric"),
    pytest.param(dict(current={"zz": 1}), "current allocation names unknown type(s) ['zz']", id="unknown-current"),
    pytest.param(dict(current={"c": -1}), "whole numbers >= 0, got {'c': -1}", id="negative-current"),
    pytest.param(dict(now=START + pd.Timedelta(minutes=5)), "before the decision time", id="forecast-in-the-past"),
]


@pytest.mark.parametrize(("change", "message"), BAD_INPUTS)
def test_inputs_that_do_not_fit_name_the_value(change, message):
    from prescale.allocation import AllocationError

    args = dict(cat=catalog(CPU), prof=profile({"c": 100}), fc=flat(10.0))
    args.update(change)
    with pytest.raises(AllocationError) as err:
        decide(**args)
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        pytest.param("covered_quantile", 1.5, "covered_quantile must be between 0 and 1", id="quantile"),
        pytest.param("solver", "cplex", "solver settings: solver must be 'optuna' or 'milp', got 'cplex'", id="solver"),
        pytest.param("time_budget_ms", 0, "solver settings: time_budget_ms must be > 0 or unset, got 0", id="budget"),
    ],
)
def test_bad_solver_settings_name_the_field(field, value, message):
    from prescale.allocation import AllocationError

    with pytest.raises(AllocationError, match=message.replace("(", r"\(")):
        SolverSettings(**{field: value})


def test_a_step_running_at_the_decision_counts_lead_times_from_the_decision():
    from prescale.allocation.problem import build_problem

    slow = rtype("c", "cpu-vm", price=1.0, lead=180)
    fc = flat(300.0, steps=6, step_seconds=300)
    # 3 minutes into step 0: a node ordered now serves 3 minutes later, inside step 1, so from step 2 in full
    late = build_problem(fc, catalog(slow), profile({"c": 100}), {}, EXACT, now=START + pd.Timedelta(minutes=3))
    on_time = build_problem(fc, catalog(slow), profile({"c": 100}), {}, EXACT, now=START)
    assert late.offset_seconds == -180 and late.ready.tolist() == [2]
    assert on_time.ready.tolist() == [1]
