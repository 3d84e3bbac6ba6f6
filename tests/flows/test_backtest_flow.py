"""The `backtest` flow (and `prescale backtest --json`) against Prefect's real API server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

SWEEP = {
    "PRESCALE_REPLAY__POLICIES__PREDICTIVE__QUANTILES": "[0.9]",
    "PRESCALE_REPLAY__POLICIES__PREDICTIVE__HEADROOMS": "[0.0, 0.3]",
    "PRESCALE_REPLAY__POLICIES__REACTIVE__TARGETS": "[0.5, 0.8]",
    "PRESCALE_REPLAY__POLICIES__STATIC__FACTORS": "[1.0]",
    "PRESCALE_REPLAY__POLICIES__ORACLE__TIME_LIMIT_SECONDS": "20",
    "PRESCALE_REPLAY__FORECASTER": "seasonal_naive",
}


def _metrics_file(folder: Path, *, days: int = 3, seed: int = 0) -> Path:
    """A periodic request rate at five-minute steps, in the web profile's declared source metric."""
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2026-02-01", periods=days * 288, freq="300s", tz="UTC")
    hours = np.arange(len(ts)) / 12.0
    rate = 4000 + 3000 * np.sin(2 * np.pi * hours / 24) + rng.normal(0, 150, len(ts))
    path = folder / "shop.csv"
    pd.DataFrame({"ts": ts.strftime("%Y-%m-%dT%H:%M:%S+00:00"), "app": "shop", "metric": "app.requests_per_s",
                  "value": np.maximum(rate, 1.0).round(2)}).to_csv(path, index=False)
    return path


@pytest.fixture
def shop(prefect_harness, prescale_home, tmp_path, monkeypatch):
    for key, value in SWEEP.items():
        monkeypatch.setenv(key, value)
    from flows.ingest import ingest_metrics

    ingest_metrics(path=str(_metrics_file(tmp_path)))
    return "shop"


async def _artifact(key: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async with get_client() as client:
        return await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))


def test_backtest_flow_scores_every_policy_writes_plots_and_publishes_a_table(shop, prescale_home):
    from flows.backtest import backtest
    from prescale.replay import POLICIES

    out = backtest(app=shop, profile="web", days=1.0)
    assert set(out["policies"]) == set(POLICIES)  # every registered policy, in one report
    assert out["source"]["demand"]["units"] == "declared"
    assert out["source"]["forecaster"] == "seasonal_naive"
    assert out["budget_costs"]["oracle"]["0"] <= min(c for c in out["budget_costs"]["predictive"].values() if c)
    for name in ("demand", "capacity", "frontier", "cumulative_cost", "report"):
        path = Path(out["files"][name])
        assert path.is_file() and path.stat().st_size > 0 and str(path).startswith(str(prescale_home))
    artifacts = asyncio.run(_artifact("backtest-results"))
    assert any("| predictive |" in a.data and "cost at 0.5%" in a.data for a in artifacts)
    # the SLO and the ex-ante run: tuned on the stretch before the window, one run over it, against reactive
    assert out["slo"]["violation_budget"] == 0.005
    ahead = out["ex_ante"]
    assert {"cost", "violation_share"} <= set(ahead["predictive"])
    assert {"cost", "violation_share"} <= set(ahead["reactive_default"])
    assert ahead["reactive_at_same_violations"] > 0
    for ref in ("aws", "crane"):  # the published references, read at prescale's violations like reactive
        assert ahead[f"{ref}_at_same_violations"] > 0 and ahead[f"vs_{ref}_same"] is not None
        assert out["comparison"]["0.5%"].get(f"vs_{ref}", "absent") != "absent"
    assert any("cheaper than aws" in a.data and "cheaper than crane" in a.data for a in artifacts)
    assert ahead["policy"]["rule"] in ("predictive", "reactive") and ahead["policy"]["tuned"]
    tuning = ahead["tuning"]
    assert tuning["end"] < out["window"]["start"]  # tuned on data before the window only
    assert tuning["trials"] >= 10
    assert any("Ex ante (tuned on" in a.data and "aws at the same violations" in a.data for a in artifacts)


def test_backtest_tuning_stretch_is_left_out_when_asked(shop):
    from flows.backtest import backtest

    out = backtest(app=shop, profile="web", days=1.0, policies=["reactive"], tune_days=0.0)
    assert out["ex_ante"] is None and out["slo"]["violation_budget"] == 0.005


def test_backtest_command_prints_the_json_contract(shop):
    from typer.testing import CliRunner

    from cli.main import app

    result = CliRunner().invoke(app, ["backtest", "--app", shop, "--profile", "web", "--days", "1",
                                      "--policies", "reactive,static", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert set(out["policies"]) == {"reactive", "static"}
    assert {"cost", "slo_violation_minutes", "slack", "migrations", "frontier"} <= set(out["policies"]["reactive"])
    assert set(out["budget_costs"]["reactive"]) == {"0.5%", "0"}


def test_backtest_command_says_what_is_wrong_with_a_too_long_window(shop):
    from typer.testing import CliRunner

    from cli.main import app

    result = CliRunner().invoke(app, ["backtest", "--app", shop, "--profile", "web", "--days", "30"])
    assert result.exit_code == 2
    assert "ask for at most" in result.output
