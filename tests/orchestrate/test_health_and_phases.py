"""What a decision reads besides the metrics: the champion's track record from the ledger (monitoring)
and the app's phase report written by training, on a local folder and on S3."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from prescale.catalog import parse_profile
from prescale.cycle import ClusterView, Gathered, data_step
from prescale.forecast import Forecast
from prescale.ledger import Ledger, LedgerRow
from prescale.monitoring import champion_health, judged_decisions
from prescale.orchestrate import summarise_forecast
from prescale.phase_reports import load_report, read_report, write_report
from prescale.phases import PhaseInfo, PhaseReport
from prescale.settings import load_settings

PROFILE = parse_profile(
    {
        "name": "web",
        "metrics": [{"name": "requests_per_second", "per_unit": 60, "source": "app.requests_per_s",
                     "source_scale": 2.0}],
        "kinds": ["cpu-vm"],
        "workload_class": "latency",
        "replica": {"vcpu": 0.5, "memory_gib": 1},
    }
)  # fmt: skip
START = pd.Timestamp("2026-01-01T22:00:00Z")


def _decision(minute: int, mode: str, level: float, version: str | None = None) -> LedgerRow:
    """A decision at START + minute that forecast `level` requests/s for the next minute."""
    at = START + pd.Timedelta(minutes=minute)
    forecast = Forecast.from_median(np.full((1, 1), level), start=at + pd.Timedelta(minutes=1), step_seconds=60,
                                    metrics=["requests_per_second"], spread=0.1)  # fmt: skip
    return LedgerRow(decided_at=at, app="web", phase="default", mode=mode, why="", champion_version=version,
                       covered_quantile=0.9, cost_per_hour=1.0, outcome="ok",
                       forecast=summarise_forecast(forecast, "requests_per_second"))  # fmt: skip


def _observed(minutes: int) -> pd.DataFrame:
    """50 stored requests/s every minute: 100 in the profile's units (source_scale 2)."""
    ts = START + pd.to_timedelta(np.arange(minutes + 2), unit="min")
    return pd.DataFrame({"app": "web", "ts": ts, "metric": "app.requests_per_s", "value": 50.0, "phase": None})


def _health(app, rows, now, profile, settings, *, champion=None):
    """The champion's record as the gather step reads and judges it."""
    cfg = settings.orchestrate
    decisions = judged_decisions(Ledger(cfg.ledger), app, now, lookback_hours=cfg.lookback_hours,
                                 points=cfg.monitor_points)  # fmt: skip
    return champion_health(decisions, rows, profile, champion=champion, window=cfg.monitor_points,
                           min_points=cfg.min_points, error_budget=cfg.error_budget,
                           min_coverage=cfg.min_coverage)  # fmt: skip


def test_a_champion_set_aside_stays_judged_by_its_forecasts_however_many_reactive_rows_follow(root, prescale_home):
    settings = load_settings(orchestrate={"ledger": root, "monitor_points": 20, "min_points": 10})
    ledger = Ledger(settings.orchestrate.ledger)
    ledger.append([_decision(m, "predictive", 200.0) for m in range(40)])  # twice the demand: outside budget
    # then the champion is set aside: every decision is reactive, its fallback forecast exact
    ledger.append([_decision(m, "reactive", 100.0) for m in range(40, 40 + 3 * 20)])
    now = START + pd.Timedelta(minutes=101)

    health = _health("web", _observed(100), now, PROFILE, settings)

    assert health.verdict == "outside-budget", health
    assert health.points == 20 and health.relative_error == 1.0
    assert not health.healthy, "the bad champion is not reinstated"


def test_a_retrained_champion_is_judged_afresh_not_by_the_record_of_the_one_it_replaced(root, prescale_home):
    settings = load_settings(orchestrate={"ledger": root, "monitor_points": 20, "min_points": 10})
    ledger = Ledger(settings.orchestrate.ledger)
    ledger.append([_decision(m, "predictive", 200.0, version="1") for m in range(40)])  # v1 was bad
    now = START + pd.Timedelta(minutes=41)

    assert _health("web", _observed(40), now, PROFILE, settings, champion="1").verdict == "outside-budget"
    fresh = _health("web", _observed(40), now, PROFILE, settings, champion="2")  # retrained: the alias moved
    assert fresh.verdict == "warming-up" and fresh.healthy


def test_without_predictive_decisions_monitoring_is_warming_up(root, prescale_home):
    settings = load_settings(orchestrate={"ledger": root, "monitor_points": 20, "min_points": 10})
    Ledger(settings.orchestrate.ledger).append([_decision(m, "reactive", 100.0) for m in range(30)])
    health = _health("web", _observed(30), START + pd.Timedelta(minutes=31), PROFILE, settings)
    assert health.verdict == "warming-up" and health.reason == "no earlier predictive decision"


def _report(phase: str) -> dict:
    info = PhaseInfo(id=phase, rows=100, runs=1, share=1.0, level={"app.requests_per_s": 50.0})
    return json.loads(json.dumps(PhaseReport(method="single", phases=(info,), reason="one regime").to_dict()))


def test_phase_reports_are_written_whole_and_read_back_from_any_location(root):
    from tasks.train import read_phase_report, write_phase_report

    assert read_report(root, "web") is None, "no report yet"
    write_report(root, "web", _report("steady"))
    assert read_report(root, "web") == _report("steady")
    write_phase_report.fn(str(root), "web", _report("busy"))  # the training flow's task: replaces it
    write_phase_report.fn(str(root), "api", None)  # no report (the app was skipped): nothing written
    assert read_phase_report.fn(str(root), "web")["phases"][0]["id"] == "busy"
    assert read_phase_report.fn(str(root), "api") is None


def test_orchestrate_reads_the_phase_report_from_the_configured_location(root, prescale_home):
    from models.series import serving_phase

    settings = load_settings(forecast={"phase_reports": root})
    write_report(settings.forecast.phase_reports, "web", _report("steady"))
    reports = settings.forecast.phase_reports
    assert serving_phase(_observed(5), load_report(reports, "web")) == "steady"
    assert serving_phase(_observed(5), load_report(reports, "api")) == "default", "no report: the default phase"
    assert not (prescale_home / "phases").exists(), "nothing in the pod's own home"


def test_phase_reports_on_s3_are_one_object_per_app(s3_env, prescale_home):
    from tests.metrics.conftest import s3_uri

    bucket = s3_env.create_bucket()
    settings = load_settings(forecast={"phase_reports": f"s3://{bucket}/prescale/phases"},
                             store={"endpoint_url": s3_env.endpoint_url})  # fmt: skip
    assert settings.forecast.phase_reports == s3_uri(s3_env, bucket, "prescale/phases"), "the store's endpoint"
    write_report(settings.forecast.phase_reports, "web", _report("steady"))
    write_report(settings.forecast.phase_reports, "web", _report("busy"))
    assert s3_env.keys(bucket) == ["prescale/phases/web.json"]
    assert read_report(settings.forecast.phase_reports, "web")["phases"][0]["id"] == "busy"


def test_the_phase_reports_setting_defaults_to_the_home(prescale_home):
    assert load_settings().forecast.phase_reports == prescale_home.absolute() / "phases"


def test_the_reactive_fallback_of_an_app_with_two_demand_metrics_steps_by_its_instants(prescale_home):
    """Long rows repeat each instant once per metric: the step is between instants, not between rows, and a
    decision without a forecast is taken on that step (the fleet's lead times in 5-minute steps)."""
    from tests.orchestrate.conftest import planned

    profile = parse_profile({
        "name": "analytics", "kinds": ["cpu-vm"], "workload_class": "memory-bandwidth",
        "replica": {"vcpu": 1, "memory_gib": 2},
        "metrics": [{"name": "scan_gbps", "per_unit": 0.5, "source": "app.d0"},
                    {"name": "working_set_gib", "per_unit": 0.75, "basis": "memory_gib", "source": "app.d1"}],
    })  # fmt: skip
    ts = pd.date_range(START, periods=12, freq="5min", tz="UTC")
    rows = pd.concat([pd.DataFrame({"app": "analytics", "ts": ts, "metric": m, "value": 10.0, "phase": None})
                      for m in ("app.d0", "app.d1")], ignore_index=True).sort_values(["ts", "metric"])  # as read
    gathered = Gathered(app="analytics", now=ts[-1] + pd.Timedelta(minutes=5), profile=profile, rows=rows,
                        phase="default")  # fmt: skip

    assert data_step(rows) == 300
    row = planned(gathered, ClusterView({}, {}), load_settings()).row
    assert row.mode == "reactive" and row.outcome == "planned" and row.allocation
    assert "forecast missing: the fast tier covers the reactive floor alone" in row.why


def test_serving_tells_the_phase_from_the_rows_as_training_does():
    """Two metrics per instant, the label on one of them only (as a mapping that labels one column writes):
    training reads each step's last label on its grid; serving must find the same phase, not the unlabelled
    first row of the newest instant."""
    from models.series import panel_from_long, phase_labels, serving_phase

    ts = pd.date_range(START, periods=12, freq="5min", tz="UTC")
    phases = ["serving"] * 8 + ["batch"] * 4
    rows = pd.concat([
        pd.DataFrame({"app": "analytics", "ts": ts, "metric": "app.d0", "value": 10.0, "phase": None}),
        pd.DataFrame({"app": "analytics", "ts": ts, "metric": "app.d1", "value": 5.0, "phase": phases}),
    ], ignore_index=True).sort_values(["ts", "metric"], ignore_index=True)  # fmt: skip
    rows["phase"] = rows["phase"].astype("string")
    infos = tuple(PhaseInfo(id=p, rows=4, runs=1, share=0.5, level={}) for p in ("serving", "batch"))
    report = PhaseReport(method="labels", phases=infos, reason="labelled", metrics=("app.d0", "app.d1"))

    panel = panel_from_long(rows)
    assert phase_labels(rows, panel).iloc[-1] == "batch"  # what training sees at the newest step
    assert serving_phase(rows, report) == "batch"
