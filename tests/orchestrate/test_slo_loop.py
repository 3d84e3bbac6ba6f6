"""The loop decides from the app's SLO (issue 16): the policy's rule and knobs, steered by the online controller,
with the controller's state kept in the ledger.

* the knobs follow the policy and the controller's scale (``knobs_for``), the same for every caller;
* a minute the app's *ready* nodes served less than observed demand raises the scale (and capacity), a
  covered minute lowers it a little, a minute already counted changes nothing;
* the policy's reactive rule decides without the forecast, and the ledger's ``why`` says so;
* the controller's state survives a restart: two cycles with the state round-tripped through the ledger's
  JSON end where one tracker stepping twice does; ledger files from before the ``slo`` column still read;
* ``prescale plan`` (a real process) meets the SLO for every shipped profile, reads ``--slo-policy`` and
  refuses a file that is not a policy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prescale.catalog import parse_profile
from prescale.cluster import Holding
from prescale.cycle import ClusterView, Gathered, cycle_table
from prescale.decide_inputs import SloState, newest_slo_state, newest_state, state_from_json, state_to_json
from prescale.decision import RuleState
from prescale.forecast import Forecast
from prescale.ledger import SCHEMA, Ledger, LedgerRow
from prescale.orchestrate import knobs_for
from prescale.settings import load_settings
from prescale.slo import SloPolicy, Tracker, TrackerState
from tests.orchestrate.conftest import planned

PROFILE = parse_profile({
    "name": "web",
    "metrics": [
        {"name": "requests_per_second", "per_unit": 60, "source": "app.requests_per_s", "source_scale": 2.0},
        {"name": "connections", "per_unit": 2000, "basis": "memory_gib"},  # never observed: not judged
    ],
    "kinds": ["cpu-vm"], "workload_class": "latency", "replica": {"vcpu": 0.5, "memory_gib": 1},
})  # fmt: skip
START = pd.Timestamp("2026-01-01T00:00:00Z")
PLENTY = ClusterView({"m7i.xlarge": Holding(nodes=40, replicas=40, ready_replicas=40, exists=True, booting=())}, {})
BOOTING = ClusterView({"m7i.xlarge": Holding(nodes=40, exists=True, booting=(60.0,) * 40)}, {})
NOTHING = ClusterView({}, {})


def _rows(now: pd.Timestamp, minutes: int = 5, value: float = 50.0) -> pd.DataFrame:
    """The store's rows of the ``minutes`` before ``now`` (the newest one minute before it)."""
    ts = now - pd.to_timedelta(np.arange(1, minutes + 1)[::-1], unit="min")
    return pd.DataFrame({"app": "web", "ts": ts, "metric": "app.requests_per_s", "value": value, "phase": None})


def _forecast(now: pd.Timestamp, level: float = 100.0) -> Forecast:
    return Forecast.from_median(np.full((6, 1), level), start=now, step_seconds=60, metrics=["app.requests_per_s"])


def _gathered(now=START, **fields) -> Gathered:
    defaults = {"rows": _rows(now), "forecast": _forecast(now), "champion_version": "3", "why": "champion v3"}
    return Gathered(app="web", now=now, profile=PROFILE, phase="default", **{**defaults, **fields})


@pytest.mark.parametrize(
    ("policy", "scale", "quantile", "headroom"),
    [
        pytest.param(SloPolicy(violation_budget=0.01, quantile=0.8, headroom=0.1), 1.0, 0.8, 0.1, id="predictive"),
        pytest.param(SloPolicy(violation_budget=0.01, quantile=0.8, headroom=0.1), 1.5, 0.8, 0.65,
                     id="predictive-scaled-up"),
        pytest.param(SloPolicy(violation_budget=0.01, quantile=0.8, headroom=0.0), 0.8, 0.8, -0.2,
                     id="scaled-below-the-quantile"),
        pytest.param(SloPolicy(violation_budget=0.01, rule="reactive", reactive_target=0.5), 1.0, 0.9, 1.0,
                     id="reactive-target-0.5-is-headroom-1"),
        pytest.param(SloPolicy(violation_budget=0.01, rule="reactive", reactive_target=0.9), 0.8, 0.9, 0.0,
                     id="reactive-target-capped-at-1"),
    ],
)  # fmt: skip
def test_the_knobs_follow_the_policy_and_the_controllers_scale(policy, scale, quantile, headroom):
    knobs = knobs_for(policy, scale, hold_minutes=5, margin=0.1)
    assert knobs.quantile == quantile and knobs.headroom == pytest.approx(headroom)
    assert (knobs.hold_minutes, knobs.margin) == (5, 0.1)


def test_a_miss_raises_the_scale_and_capacity_a_covered_minute_lowers_it(prescale_home):
    """100 requests/s observed (50 stored x 2): nothing ready (nothing held, or 40 nodes still booting) missed
    it; 40 ready nodes covered it. The miss steps θ up by γ (1 - α), the covered minute down by γ α (a gain
    of 0.3, so the raised level needs whole nodes more)."""
    settings = load_settings()
    policy = SloPolicy(violation_budget=0.005, gain=0.3, tuned=True)
    busy = {"slo_policy": policy, "forecast": _forecast(START, 1_000.0)}
    missed = planned(_gathered(**busy), NOTHING, settings).row
    booting = planned(_gathered(**busy), BOOTING, settings).row
    covered = planned(_gathered(**busy), PLENTY, settings).row

    assert missed.slo["missed"] is True and booting.slo["missed"] is True and covered.slo["missed"] is False
    assert missed.slo["scale"] == pytest.approx(np.exp(0.3 * (1 - 0.005)), rel=1e-5)
    assert covered.slo["scale"] == pytest.approx(np.exp(-0.3 * 0.005), rel=1e-5)
    assert (missed.slo["steps"], missed.slo["misses"], missed.slo["realised_rate"]) == (1, 1, 1.0)
    assert covered.slo["realised_rate"] == 0.0
    assert missed.cost_per_hour > covered.cost_per_hour, "the raised scale buys more capacity"
    assert missed.slo | {"missed": None} == {"violation_budget": 0.005, "rule": "predictive",
                                             "setting": policy.setting, "tuned": True, "missed": None,
                                             "scale": missed.slo["scale"], "steps": 1, "misses": 1,
                                             "realised_rate": 1.0}  # fmt: skip


def test_a_minute_already_counted_is_not_counted_again(prescale_home):
    settings = load_settings()
    first = planned(_gathered(), NOTHING, settings).row
    state = newest_slo_state([first.rule_state])
    again = planned(_gathered(slo_state=state), NOTHING, settings).row  # same rows: no newer observation
    assert again.slo["steps"] == 1 and again.slo["missed"] is None and again.slo["scale"] == first.slo["scale"]


def test_the_policys_reactive_rule_decides_without_the_forecast_and_the_ledger_says_so(prescale_home):
    """The skill gate chose the reactive rule: the forecast (a huge one) is not used; the fast tier covers the
    observed 100 requests/s at the target 0.5 (and the controller's scale), no more."""
    policy = SloPolicy(violation_budget=0.005, rule="reactive", reactive_target=0.5, tuned=True,
                       reasons=("no skill over persistence at the fast tier's lead",))  # fmt: skip
    row = planned(_gathered(slo_policy=policy, forecast=_forecast(START, 10_000.0)), PLENTY, load_settings()).row

    assert row.mode == "reactive" and row.outcome == "planned"
    assert row.why.startswith("reactive rule (no skill over persistence")
    assert "forecast is not used" in row.why and row.forecast == {} and row.covered_quantile is None
    assert row.slo["rule"] == "reactive" and row.slo["tuned"] is True and row.slo["setting"] == "reactive target=0.5"
    nodes = row.allocation.get("m7i.xlarge", 0) + sum(n for t, n in row.allocation.items() if t != "m7i.xlarge")
    assert 0 < nodes < 20, f"sized on observed demand (200 req/s at most), not the forecast: {row.allocation}"


def test_a_tuned_policy_decides_at_its_budget_and_an_override_starts_untuned(prescale_home):
    tuned = SloPolicy(violation_budget=0.005, quantile=0.8, headroom=0.05, tuned=True, reasons=("tuned: 40 trials",))
    at_budget = planned(_gathered(slo_policy=tuned), PLENTY, load_settings()).row
    overridden = planned(_gathered(slo_policy=tuned, budget=0.02), PLENTY, load_settings()).row

    assert at_budget.why.startswith("predictive rule (tuned: 40 trials)") and at_budget.covered_quantile == 0.8
    assert at_budget.slo["tuned"] is True and at_budget.slo["setting"] == "q=0.8,headroom=0.05"
    assert overridden.slo["violation_budget"] == 0.02 and overridden.slo["tuned"] is False
    assert "tuned for budget 0.005, asked 0.02" in overridden.why


def test_the_controllers_state_survives_the_ledger_round_trip(prescale_home):
    """Two cycles, the first's state written to the ledger and read back as ``gather`` reads it (a restarted
    worker), end at the θ of one tracker stepping twice on the same misses."""
    from tasks.orchestrate import previous_state

    settings = load_settings()
    ledger = Ledger(settings.orchestrate.ledger)
    second = START + pd.Timedelta(minutes=1)

    first = planned(_gathered(), NOTHING, settings)  # nothing held: missed
    ledger.append([first.row])
    rule_state, slo_state = previous_state("web", second, settings)
    assert slo_state is not None and slo_state.observed_at == START - pd.Timedelta(minutes=1)
    then = planned(_gathered(second, rule_state=rule_state, slo_state=slo_state), PLENTY, settings)  # covered

    policy = SloPolicy.untuned(0.005)
    tracker = Tracker(0.005, gain=policy.gain)
    expected = tracker.update(tracker.update(TrackerState(), True), False)
    state = newest_slo_state([then.row.rule_state])
    assert state.tracker.theta == pytest.approx(expected.theta, abs=1e-6)
    assert (state.tracker.steps, state.tracker.misses) == (2, 1) and then.row.slo["realised_rate"] == 0.5


def test_a_ledger_written_before_the_slo_column_still_reads(tmp_path):
    """Rows of an older schema (no ``slo`` column, a ``rule_state`` without the controller) read as ``{}``
    and leave the controller at its start, while the rule's own state still reads."""
    ledger = Ledger(tmp_path / "ledger")
    old_state = {"bare-metal": [[1.5, None]]}
    row = LedgerRow(decided_at=START, app="web", phase="default", mode="predictive", why="champion v3",
                    champion_version="3", covered_quantile=0.9, cost_per_hour=1.0, outcome="applied",
                    rule_state=old_state)  # fmt: skip
    old = pa.schema([f for f in SCHEMA if f.name != "slo"])
    record = {k: v for k, v in row.to_record().items() if k != "slo"}
    folder = tmp_path / "ledger" / "app=web" / f"date={START.date().isoformat()}"
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([record], schema=old), folder / "part-old.parquet")

    back = ledger.read("web")
    assert back["slo"].tolist() == [{}]
    written = back["rule_state"].tolist()
    assert newest_slo_state(written) is None
    assert newest_state(written).recent_keep["bare-metal"].shape == (1, 2)


def test_the_rule_state_json_keeps_the_controller_beside_the_tiers():
    slo = SloState(TrackerState(0.123, 7, 2), START)
    data = json.loads(json.dumps(state_to_json(RuleState({"gpu": np.array([[1.0, np.nan]])}), slo)))
    assert SloState.from_json(data["slo"]) == slo
    assert set(state_from_json(data).recent_keep) == {"gpu"}, "the controller is not read as a tier"
    assert state_from_json({"slo": data["slo"]}).recent_keep == {}, "a row whose rule kept nothing"
    assert newest_slo_state([data, {"gpu": [[1.0]]}, {}]) == slo, "older rows are looked at past ones without it"


def test_the_cycle_table_shows_the_slo_budget_rule_and_realised_rate(prescale_home):
    decided = planned(_gathered(), NOTHING, load_settings())
    table = cycle_table([decided])
    assert "| SLO budget | rule (setting) | realised |" in table
    assert "| 0.50% | predictive (q=0.95,headroom=0.2) | 100.00% of 1 |" in table


# ------------------------------------------------------------------------------------------- prescale plan

PRESCALE = str(Path(sys.executable).parent / "prescale")


def _plan(home: Path, *args: str) -> subprocess.CompletedProcess:
    """The real `prescale plan` in a child process (no flow runs: no Prefect server needed)."""
    env = {**os.environ, "PRESCALE_HOME": str(home)}
    return subprocess.run([PRESCALE, "plan", *args], capture_output=True, text=True, env=env, timeout=300)


def test_plan_meets_the_slo_for_every_shipped_profile_with_the_untuned_policy(prescale_home):
    for app in ("web", "analytics", "inference", "transcoder"):
        result = _plan(prescale_home, "--app", app, "--json")
        assert result.returncode == 0, result.stderr
        payload = json.loads(result.stdout)
        assert payload["covered"] is True, (app, payload["reasons"])
        assert payload["slo"] == {"violation_budget": 0.005, "rule": "predictive", "setting": "q=0.95,headroom=0.2",
                                  "tuned": False}  # fmt: skip
        assert any(r.startswith("untuned") for r in payload["reasons"])


def test_plan_decides_with_a_given_policy_and_refuses_a_file_that_is_not_one(prescale_home, tmp_path):
    lean = SloPolicy(violation_budget=0.005, quantile=0.5, headroom=0.0, tuned=True, reasons=("tuned: 10 trials",))
    path = tmp_path / "slo_policy.json"
    path.write_text(lean.to_json())
    untuned = json.loads(_plan(prescale_home, "--app", "web", "--json").stdout)
    result = _plan(prescale_home, "--app", "web", "--json", "--slo-policy", str(path))
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["slo"] == {"violation_budget": 0.005, "rule": "predictive", "setting": "q=0.5,headroom=0",
                              "tuned": True}  # fmt: skip
    assert payload["covered"] is True and "tuned: 10 trials" in payload["reasons"]
    assert payload["cost_per_hour"] < untuned["cost_per_hour"], "the median without headroom needs less"

    path.write_text('{"violation_budget": 0.5}')
    bad = _plan(prescale_home, "--app", "web", "--json", "--slo-policy", str(path))
    assert bad.returncode == 2 and "--slo-policy" in bad.stdout + bad.stderr
