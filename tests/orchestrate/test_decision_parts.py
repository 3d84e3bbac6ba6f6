"""The pure parts of a decision around the rule: binding, ledger round trip, monitoring verdicts, the ledger
row of a metric the champion does not forecast (the floor and the fallback are the rule's:
test_decide_inputs.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from prescale.catalog import parse_profile
from prescale.cycle import ClusterView, Gathered
from prescale.forecast import Forecast
from prescale.ledger import Ledger, LedgerRow
from prescale.monitoring import forecast_health
from prescale.orchestrate import bind_forecast, observed_demand, summarise_forecast

PROFILE = parse_profile(
    {
        "name": "web",
        "metrics": [
            {"name": "requests_per_second", "per_unit": 60, "source": "app.requests_per_s", "source_scale": 2.0},
            {"name": "connections", "per_unit": 2000, "basis": "memory_gib"},
        ],
        "kinds": ["cpu-vm"],
        "workload_class": "latency",
        "replica": {"vcpu": 0.5, "memory_gib": 1},
    }
)
START = pd.Timestamp("2026-01-01T00:00:00Z")


def stored_forecast(level: float = 10.0) -> Forecast:
    return Forecast.from_median(np.full((4, 1), level), start=START, step_seconds=60, metrics=["app.requests_per_s"])


def test_binding_renames_scales_and_reports_unbound_metrics():
    bound, unbound = bind_forecast(stored_forecast(10.0), PROFILE)
    assert bound.metrics == ["requests_per_second", "connections"]
    assert bound.quantile(0.5)[:, 0].tolist() == [20.0] * 4
    assert bound.quantile(0.5)[:, 1].tolist() == [0.0] * 4
    assert unbound == ("connections",)


def test_observed_demand_takes_the_newest_value_in_profile_units():
    rows = pd.DataFrame(
        {"ts": [START, START + pd.Timedelta(minutes=1)], "metric": ["app.requests_per_s"] * 2, "value": [1.0, 3.0]}
    )
    assert observed_demand(rows, PROFILE) == {"requests_per_second": 6.0}


def test_ledger_round_trip(tmp_path):
    bound, _ = bind_forecast(stored_forecast(10.0), PROFILE)
    row = LedgerRow(
        decided_at=START, app="web", phase="default", mode="predictive", why="champion v1", champion_version="1",
        covered_quantile=0.9, cost_per_hour=1.5, outcome="ok", allocation={"m7i.xlarge": 2},
        forecast=summarise_forecast(bound, "requests_per_second"),
    )  # fmt: skip
    ledger = Ledger(tmp_path)
    ledger.append([row])
    back = ledger.read("web")
    assert back["allocation"][0] == {"m7i.xlarge": 2}
    assert back["forecast"][0]["q50"] == [20.0] * 4
    assert ledger.read("web", start=START + pd.Timedelta(seconds=1)).empty


def _row(minute: int, **fields) -> LedgerRow:
    base = dict(decided_at=START + pd.Timedelta(minutes=minute), app="web", phase="default", mode="reactive",
                why="no champion", champion_version=None, covered_quantile=None, cost_per_hour=1.0, outcome="ok")
    return LedgerRow(**{**base, **fields})


def test_ledger_reads_cycles_whose_columns_were_empty_in_one_and_set_in_another(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.append([_row(0)])  # champion_version, covered_quantile, error all empty: still typed
    ledger.append([_row(1, champion_version="3", covered_quantile=0.9, error="boom", mode="predictive")])
    back = ledger.read("web")
    assert back["champion_version"].tolist()[1] == "3" and back["covered_quantile"].tolist()[1] == 0.9
    assert pd.isna(back["champion_version"][0]) and back["error"].tolist() == ["", "boom"]


def test_ledger_compaction_keeps_every_row_once_and_last_reads_the_newest(tmp_path):
    ledger = Ledger(tmp_path)
    for minute in range(10):
        ledger.append([_row(minute, cost_per_hour=float(minute))])
    day = next((tmp_path / "app=web").iterdir())
    assert len(list(day.glob("part-*.parquet"))) == 10
    assert ledger.compact("web", min_files=8) == 9
    assert len(list(day.glob("part-*.parquet"))) == 1
    assert ledger.read("web")["cost_per_hour"].tolist() == [float(m) for m in range(10)]
    assert ledger.read("web", last=3)["cost_per_hour"].tolist() == [7.0, 8.0, 9.0]
    assert ledger.compact("web", min_files=8) == 0  # one file: nothing to merge
    ledger.append([_row(3, cost_per_hour=3.0)])  # a row seen twice (merged file and a part) reads once
    assert len(ledger.read("web")) == 10


def _decisions(levels: list[float]) -> pd.DataFrame:
    forecasts = []
    for i, level in enumerate(levels):
        f = Forecast.from_median(np.full((1, 1), level), start=START + pd.Timedelta(minutes=i), step_seconds=60,
                                 metrics=["requests_per_second"], spread=0.1)  # fmt: skip
        forecasts.append(summarise_forecast(f, "requests_per_second"))
    return pd.DataFrame({"forecast": forecasts})


@pytest.mark.parametrize(
    ("forecast_level", "verdict"),
    [pytest.param(100.0, "ok", id="accurate"), pytest.param(200.0, "outside-budget", id="twice-too-high")],
)
def test_monitoring_verdicts(forecast_level, verdict):
    observed = pd.Series(100.0, index=START + pd.to_timedelta(np.arange(60), unit="min"))
    health = forecast_health(_decisions([forecast_level] * 60), observed, min_points=30)
    assert health.verdict == verdict and health.points == 60


def test_monitoring_waits_for_enough_points():
    observed = pd.Series(100.0, index=START + pd.to_timedelta(np.arange(5), unit="min"))
    assert forecast_health(_decisions([500.0] * 5), observed, min_points=30).verdict == "warming-up"


@pytest.mark.parametrize(
    ("trained_on", "named", "not_named"),
    [
        pytest.param("app.requests_per_s", ["no data for ['connections']: covered at zero"],
                     ["does not forecast"], id="profile-metric-without-a-source"),
        pytest.param("net_tx_mbps", ["the champion does not forecast 'app.requests_per_s' (source of "
                                     "'requests_per_second')", "reactive floor raised capacity"],
                     [], id="source-the-champion-was-not-trained-on"),
    ],
)  # fmt: skip
def test_a_profile_metric_the_champion_does_not_forecast_is_named_in_the_ledger_row(prescale_home, trained_on,
                                                                                    named, not_named):
    """The skew opposite to the champion reading more than the profile: the profile needs a metric the champion
    never forecasts. The decision stays predictive, and its ledger row says which metric and why."""
    from prescale.settings import load_settings
    from tests.orchestrate.conftest import planned

    rows = pd.DataFrame({"app": "web", "ts": START - pd.to_timedelta(np.arange(5)[::-1], unit="min"),
                         "metric": "app.requests_per_s", "value": 50.0, "phase": None})  # fmt: skip
    champion = Forecast.from_median(np.full((3, 1), 60.0), start=START + pd.Timedelta(minutes=1), step_seconds=60,
                                    metrics=[trained_on])  # fmt: skip
    gathered = Gathered(app="web", now=START, profile=PROFILE, rows=rows, phase="default", forecast=champion,
                        champion_version="3", why="champion v3 (lstm) of phase default")  # fmt: skip

    row = planned(gathered, ClusterView({}, {}), load_settings()).row

    assert row.mode == "predictive" and row.outcome == "planned" and not row.retrain_requested
    assert row.why.startswith("predictive rule (untuned") and "; champion v3" in row.why
    for text in named:
        assert text in row.why
    for text in not_named:
        assert text not in row.why
