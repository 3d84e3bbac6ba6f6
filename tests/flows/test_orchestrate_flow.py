"""The `orchestrate` flow: Prefect's real API server, a real MLflow registry (SQLite), the simulated cluster."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from prescale.ledger import Ledger
from prescale.metrics.store import MetricsStore
from prescale.settings import load_settings
from tests.conftest import REPO
from tests.flows.test_train_flow import _store_app
from tests.forecasting.conftest import daily_frame

START = "2024-03-04"


@pytest.fixture
def trained_web(prefect_harness, prescale_home, monkeypatch):
    """`web` (requests per second, 3 days at 5 minutes) with a trained champion; `analytics` with data only."""
    monkeypatch.setenv("PRESCALE_FORECAST__EPOCHS", "1")
    monkeypatch.setenv("PRESCALE_SEARCH__TIME_BUDGET_MS", "300")
    from flows.train import train_forecasters

    store = MetricsStore(load_settings().store.root)
    web = daily_frame(3.0, seed=7, metrics=("app.requests_per_s",), start=START) * 20
    _store_app(store, "web", web)
    _store_app(store, "analytics", daily_frame(3.0, seed=8, metrics=("app.scan_gbps",), start=START))
    report = train_forecasters(apps=["web"], preset="small")
    assert report.models[0].champion, report.to_dict()
    from tasks.orchestrate import forget_champions

    forget_champions()
    return web.index[-1] + pd.Timedelta(minutes=5)


def test_cycle_decides_applies_and_records_every_app(trained_web):
    from flows.orchestrate import orchestrate

    rows = {r["app"]: r for r in orchestrate(apps=["web", "analytics", "ghost"], at=str(trained_web))}
    web, analytics, ghost = rows["web"], rows["analytics"], rows["ghost"]
    assert web["mode"] == "predictive" and web["champion_version"] == "1"
    assert web["outcome"] in {"ok", "applied", "noop"} and web["cost_per_hour"] > 0
    assert analytics["mode"] == "reactive" and "no champion" in analytics["why"]
    assert analytics["retrain_requested"] and "retraining requested" in analytics["why"]  # a missing champion
    assert not web["retrain_requested"]
    assert ghost["outcome"] == "failed" and "ghost" in ghost["error"]  # no profile: only this app fails
    cpu = json.loads(web["timing"])["cpu_ms"]  # each stage's CPU per app, for benchmarks/scale.py
    assert set(cpu) == {"read", "phase", "health", "forecast", "decide", "record"} and cpu["forecast"] > 0
    ledger = Ledger(load_settings().orchestrate.ledger)
    recorded = ledger.read("web")
    assert len(recorded) == 1 and recorded["forecast"][0]["metric"] == "requests_per_second"
    assert len(recorded["forecast"][0]["q50"]) >= 3


def test_a_corrupt_champion_falls_back_to_the_reactive_rule_and_asks_for_retraining(trained_web):
    from flows.orchestrate import orchestrate

    shutil.rmtree(load_settings().registry.artifacts)  # the registered model files are gone
    (row,) = orchestrate(apps=["web"], at=str(trained_web))
    assert row["mode"] == "reactive"
    assert "champion failed" in row["why"] and "retraining requested" in row["why"]
    assert row["outcome"] != "failed" and row["cost_per_hour"] > 0
    (recorded,) = Ledger(load_settings().orchestrate.ledger).read("web").to_dict("records")
    assert recorded["retrain_requested"], "the ledger keeps the request (no train deployment runs here)"


def test_an_invalid_app_name_fails_the_cycle_before_anything_is_read_or_written(prefect_harness, prescale_home):
    from flows.orchestrate import orchestrate
    from prescale.names import InvalidNameError

    with pytest.raises(InvalidNameError, match="web/../../ledger"):
        orchestrate(apps=["web/../../ledger"], at="2024-03-04T00:00:00Z", dry_run=True)
    assert not (prescale_home / "ledger").exists()


def test_observed_demand_above_the_band_raises_capacity_at_once(trained_web, monkeypatch):
    from flows.orchestrate import orchestrate

    monkeypatch.setenv("PRESCALE_ORCHESTRATE__DRY_RUN", "true")
    (calm,) = orchestrate(apps=["web"], at=str(trained_web))
    store = MetricsStore(load_settings().store.root)
    spike = pd.DataFrame({"app": ["web"], "ts": [trained_web], "metric": ["app.requests_per_s"], "value": [5000.0]})
    store.write_batch(spike.assign(phase=None), batch_id="spike")
    (burst,) = orchestrate(apps=["web"], at=str(trained_web + pd.Timedelta(minutes=1)))
    assert "reactive floor" in burst["why"]
    assert burst["cost_per_hour"] > calm["cost_per_hour"]
    assert burst["outcome"] == "dry-run"


def test_a_cycle_between_coarse_data_steps_covers_the_running_step(trained_web, monkeypatch):
    from flows.orchestrate import orchestrate

    monkeypatch.setenv("PRESCALE_ORCHESTRATE__DRY_RUN", "true")
    # 5-minute data, a decision every minute: the forecast's first step began before the decision
    (row,) = orchestrate(apps=["web"], at=str(trained_web + pd.Timedelta(minutes=3)))
    assert row["outcome"] == "dry-run", row["error"]
    assert row["mode"] == "predictive" and row["cost_per_hour"] > 0


def test_the_readme_example_ingest_then_train_then_a_cycle_decides_predictively(prefect_harness, prescale_home,
                                                                                traces, tmp_path):
    """README "Ingest": `prescale ingest <the NASA 5-minute file> --app web --mapping infra/mappings/nasa_http_5m.yaml`,
    then `prescale train --preset small`. The mapping stores two metrics, so the champion reads `net_tx_mbps`
    besides the profile's `app.requests_per_s`: the cycle must read both, not fall back to the reactive rule."""
    from flows.orchestrate import orchestrate
    from tests.cli.test_cli import run_cli

    lines = (traces / "nasa_http" / "nasa_traffic_5m.csv").read_text().splitlines()
    trace = tmp_path / "nasa_traffic_5m.csv"
    trace.write_text("\n".join(lines[: 1 + 3 * 288]) + "\n")  # the header and the first three days
    mapping = REPO / "infra" / "mappings" / "nasa_http_5m.yaml"
    ingested = run_cli("ingest", str(trace), "--app", "web", "--mapping", str(mapping), "--json")
    assert ingested.returncode == 0, ingested.stderr
    trained = run_cli("train", "--app", "web", "--preset", "small", "--json")
    assert trained.returncode == 0, trained.stderr
    (model,) = json.loads(trained.stdout)["models"]
    assert model["champion"], model

    at = pd.Timestamp(lines[3 * 288].split(",")[0]) + pd.Timedelta(minutes=5)
    (row,) = orchestrate(apps=["web"], at=str(at), dry_run=True)
    recorded = Ledger(load_settings().orchestrate.ledger).read("web").iloc[-1]
    assert recorded["mode"] == row["mode"] == "predictive", row["why"]
    assert recorded["why"].startswith("predictive rule (") and \
        f"; champion v{model['champion_version']} (" in recorded["why"], recorded["why"]
    assert recorded["slo"]["violation_budget"] == 0.005 and recorded["slo"]["steps"] == 1, recorded["slo"]
    assert not recorded["retrain_requested"] and row["outcome"] == "dry-run"

    # without the phase report (or with one listing fewer metrics than an older champion reads), the champion's
    # own inputs still decide what is read
    (prescale_home / "phases" / "web.json").unlink()
    (again,) = orchestrate(apps=["web"], at=str(at + pd.Timedelta(minutes=5)), dry_run=True)
    assert again["mode"] == "predictive", again["why"]


def test_an_app_is_sent_for_retraining_at_most_once_per_cooldown(prefect_harness):
    """A champion that keeps failing asks every minute; the deployment runs for it once per cooldown."""
    from prefect import get_client

    from flows.train import train_forecasters
    from tasks.orchestrate import request_retraining

    with get_client(sync_client=True) as client:
        flow_id = client.create_flow(train_forecasters)
        client.create_deployment(flow_id=flow_id, name="retrain-cooldown-test")
    deployment = f"{train_forecasters.name}/retrain-cooldown-test"

    first = request_retraining.fn(["web"], deployment, cooldown_minutes=60)
    again = request_retraining.fn(["web"], deployment, cooldown_minutes=60)
    other = request_retraining.fn(["web", "analytics"], deployment, cooldown_minutes=60)
    no_cooldown = request_retraining.fn(["web"], deployment, cooldown_minutes=0)

    assert "scheduled as flow run" in first and "['web']" in first
    assert "already requested" in again
    assert "scheduled as flow run" in other and "['analytics']" in other
    assert "scheduled as flow run" in no_cooldown
