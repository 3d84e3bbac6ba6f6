"""The `train-forecasters` flow against Prefect's real API server and a real MLflow registry (SQLite)."""

from __future__ import annotations

import asyncio
import tempfile

import pandas as pd
import pytest

from prescale.metrics.store import MetricsStore
from prescale.settings import load_settings
from tests.forecasting.conftest import daily_frame


async def _artifacts(key: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async with get_client() as client:
        return await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))


def _store_app(store: MetricsStore, app: str, frame: pd.DataFrame) -> None:
    long = frame.rename_axis("ts").reset_index().melt(id_vars="ts", var_name="metric", value_name="value")
    long.insert(0, "app", app)
    long["phase"] = None
    store.write_batch(long.dropna(subset=["value"]), batch_id=f"test-{app}")


def test_flow_trains_publishes_and_skips_bad_apps_with_a_reason(prefect_harness, prescale_home, monkeypatch):
    monkeypatch.setenv("PRESCALE_FORECAST__EPOCHS", "1")
    from flows.train import train_forecasters

    settings = load_settings()
    store = MetricsStore(settings.store.root)
    _store_app(store, "svc", daily_frame(3.0, seed=4))
    _store_app(store, "tiny", daily_frame(0.2, seed=5))
    flat = daily_frame(3.0)
    flat["cpu_cores"] = 2.0
    _store_app(store, "flat", flat)

    report = train_forecasters(preset="small")
    rows = {(m.app, m.phase): m for m in report.models}
    good = rows[("svc", "default")]
    assert good.skipped is None and good.promoted and good.champion == good.best
    assert {"persistence", "seasonal_naive", "ses", "holt_winters", "lstm"} <= set(good.scores)
    assert {"mae", "mase", "smape", "coverage_80", "coverage_90"} <= set(good.scores["lstm"])
    assert "too little history" in rows[("tiny", "default")].skipped
    assert "constant series" in rows[("flat", "default")].skipped
    assert report.phases["svc"]["method"] == "single"

    payload = report.to_dict()
    assert {"app", "phase", "champion", "promoted", "scores"} <= set(payload["models"][0])
    table = asyncio.run(_artifacts("train-scores"))
    # the session's Prefect server holds other tests' training artifacts too: find this run's
    assert any("constant series" in a.data and "holt_winters" in a.data for a in table)
    assert (settings.home / "phases" / "svc.json").is_file()

    again = train_forecasters(apps=["svc"], preset="small")
    assert again.models[0].version == good.version  # same data, same session: nothing new registered


def test_lstm_checkpoints_stay_inside_the_home_and_are_removed(prefect_harness, prescale_home, tmp_path,
                                                               monkeypatch):
    """darts writes checkpoints while the LSTM fits: under <home>/tmp/checkpoints, gone when training ends;
    nothing is left in the system temp dir (a fresh one here, so other processes' files do not count)."""
    monkeypatch.setenv("PRESCALE_FORECAST__EPOCHS", "1")
    from flows.train import train_forecasters

    system_temp = tmp_path / "system-temp"
    system_temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_temp))
    _store_app(MetricsStore(load_settings().store.root), "svc", daily_frame(3.0, seed=4))

    report = train_forecasters(apps=["svc"], preset="small")

    assert "lstm" in report.models[0].scores, report.to_dict()  # the LSTM did fit
    assert sorted(p.name for p in system_temp.iterdir()) == []
    checkpoints = prescale_home / "tmp" / "checkpoints"
    assert checkpoints.is_dir(), "the checkpoints were made under the home"
    assert list(checkpoints.iterdir()) == []


def test_an_invalid_app_name_fails_training_before_anything_is_read(prefect_harness, prescale_home):
    from flows.train import train_forecasters
    from prescale.names import InvalidNameError

    with pytest.raises(InvalidNameError, match=r"\.\./metrics"):
        train_forecasters(apps=["../metrics"], preset="small")
    assert not (prescale_home / "phases").exists() and not (prescale_home / "mlflow").exists()
