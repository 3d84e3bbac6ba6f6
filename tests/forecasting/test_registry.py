"""The MLflow adapter against a real registry (SQLite in tmp_path): register, promote, refuse, load."""

from __future__ import annotations

import json
from dataclasses import replace

import mlflow
import numpy as np
import pandas as pd
import pytest

from models.promotion import CHALLENGER, CHAMPION
from models.registry import INPUTS_TAG, ChampionLoader, Registry, model_name
from tests.forecasting.conftest import tiny_config

PHASE = "default"


@pytest.fixture(scope="module")
def shared_registry(tmp_path_factory) -> Registry:
    """One real SQLite registry for the module (creating its schema takes seconds); tests use their own app."""
    folder = tmp_path_factory.mktemp("mlflow")
    return Registry(f"sqlite:///{folder / 'mlflow.db'}", artifact_root=folder / "artifacts")


@pytest.fixture
def registry(shared_registry) -> Registry:
    shared_registry.activate()  # another module may have pointed MLflow elsewhere
    return shared_registry


@pytest.fixture
def app(request) -> str:
    """An app name of the test's own, so tests sharing the registry never see each other's models."""
    return "svc-" + request.node.name.replace("_", "-")[5:40].strip("-")


def only(result, name):
    """The same training, as if ``name`` had been its only (hence best) candidate."""
    return replace(result, candidates={name: result.candidates[name]}, best=name)


def worst_candidate(result):
    return max(result.candidates, key=lambda n: result.candidates[n].scores.mase)


def test_first_model_is_registered_and_becomes_champion(registry, trained, app):
    published = registry.publish(trained, app=app, phase=PHASE, config=tiny_config(), margin=0.02)
    assert published.promoted and published.version == "1" and published.champion_version == "1"
    client = registry.client
    mv = client.get_model_version_by_alias(model_name(app, PHASE), CHAMPION)
    assert str(mv.version) == "1"
    assert "promoted to `champion`" in mv.description and "first model" in mv.description
    runs = mlflow.search_runs(experiment_ids=[published.experiment_id], output_format="list")
    candidate_runs = [r for r in runs if "prescale.candidate" in r.data.tags]
    assert {r.data.tags["prescale.candidate"] for r in candidate_runs} == set(trained.candidates)
    run = next(r for r in candidate_runs if r.data.tags["prescale.candidate"] == trained.best)
    expected = {"mae", "mae_last", "mase", "smape", "coverage_80", "coverage_90", "coverage_90_raw"}
    assert expected <= set(run.data.metrics)
    assert {"train_start", "train_end", "test_start", "fingerprint"} <= set(run.data.params)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "forecast.png" in artifacts
    assert mv.run_id == run.info.run_id  # the registered model is the best candidate's, logged in its run
    # what the orchestrator must read to serve it: the loaded forecaster's inputs, also on the version in the UI
    assert json.loads(mv.tags[INPUTS_TAG]) == list(trained.panel.metrics)
    assert registry.load_version(mv.name, mv.version).inputs == tuple(trained.panel.metrics)


def test_a_phase_that_is_not_running_at_the_end_is_published(registry, trained, app):
    """A phase's panel is missing where the app's other phases run; its input example ends at its own newest row."""
    others = np.zeros(len(trained.panel), dtype=bool)
    others[-60:] = True  # another phase runs the last five hours
    phase = replace(only(trained, "persistence"), panel=trained.panel.where(~others))
    published = registry.publish(phase, app=app, phase="p0", config=tiny_config(), margin=0.02)
    assert published.promoted and published.champion_version == "1"


def test_a_better_candidate_takes_the_alias_and_a_worse_one_is_refused(registry, trained, app):
    worst = worst_candidate(trained)
    first = registry.publish(only(trained, worst), app=app, phase=PHASE, config=tiny_config(), margin=0.02)
    assert first.promoted and first.candidate == worst

    better = registry.publish(trained, app=app, phase=PHASE, config=tiny_config(), margin=0.02)
    assert better.promoted, better.reason
    assert better.previous_champion == "1" and better.champion_version == "2"
    assert "beats the champion's" in better.reason

    refused = registry.publish(only(trained, worst), app=app, phase=PHASE, config=tiny_config(epochs=1),
                               margin=0.02)
    assert not refused.promoted and refused.alias == CHALLENGER
    name = model_name(app, PHASE)
    assert str(registry.client.get_model_version_by_alias(name, CHAMPION).version) == "2"
    assert str(registry.client.get_model_version_by_alias(name, CHALLENGER).version) == refused.version
    description = registry.client.get_model_version(name, refused.version).description
    assert "kept as `challenger`" in description and "does not beat" in description


def test_the_margin_protects_the_champion_from_an_equal_model(registry, trained, app):
    registry.publish(trained, app=app, phase=PHASE, config=tiny_config(), margin=0.02)
    again = registry.publish(trained, app=app, phase=PHASE, config=tiny_config(seed=1), margin=0.02)
    # the same candidate re-trained on the same data: not better by 2%, so no flapping
    assert not again.promoted


def test_publishing_the_same_session_twice_registers_once(registry, trained, app):
    a = registry.publish(trained, app=app, phase=PHASE, config=tiny_config(), margin=0.02)
    b = registry.publish(trained, app=app, phase=PHASE, config=tiny_config(), margin=0.02)
    assert a.version == b.version
    assert len(registry.client.search_model_versions(f"name = '{model_name(app, PHASE)}'")) == 1


def test_loader_returns_the_champion_and_follows_the_alias(registry, trained, app):
    clock = [0.0]
    loader = ChampionLoader(registry, refresh_seconds=30, clock=lambda: clock[0])
    with pytest.raises(LookupError, match="prescale train --app svc-"):
        loader.get(app, PHASE)
    worst = worst_candidate(trained)
    registry.publish(only(trained, worst), app=app, phase=PHASE, config=tiny_config(), margin=0.02)
    first = loader.get(app, PHASE)
    assert first.candidate == worst and loader.loads == 1
    assert loader.get(app, PHASE) is first and loader.loads == 1  # cached

    registry.publish(trained, app=app, phase=PHASE, config=tiny_config(), margin=0.02)
    assert loader.get(app, PHASE) is first  # within refresh_seconds: not asked again
    clock[0] = 31.0
    second = loader.get(app, PHASE)
    assert second.candidate == trained.best and loader.loads == 2 and loader.version(app, PHASE) == "2"


def test_a_cycle_asks_the_registry_for_the_alias_once(registry, trained, app, monkeypatch):
    """Monitoring asks which version is champion, then the forecast loads it: one alias request, not two."""
    registry.publish(trained, app=app, phase=PHASE, config=tiny_config(), margin=0.02)
    asked = []
    ask = registry.champion_version
    monkeypatch.setattr(registry, "champion_version", lambda *key: asked.append(key) or ask(*key))
    clock = [0.0]
    loader = ChampionLoader(registry, refresh_seconds=60, clock=lambda: clock[0])
    for minute in range(3):
        clock[0] = 60.0 * minute
        assert loader.champion_version(app, PHASE) == "1"
        loader.get(app, PHASE)
    assert len(asked) == 3 and loader.loads == 1


def test_the_champion_forecasts_through_pyfunc_and_directly(registry, trained, app):
    registry.publish(trained, app=app, phase=PHASE, config=tiny_config(), margin=0.02)
    model = mlflow.pyfunc.load_model(f"models:/{model_name(app, PHASE)}@{CHAMPION}")
    forecaster = model.unwrap_python_model().forecaster
    history = trained.panel.to_frame().iloc[-forecaster.history_steps :]
    frame = history.rename_axis("ts").reset_index()
    frame["ts"] = frame["ts"].dt.tz_convert("UTC").dt.tz_localize(None)  # the signature: naive UTC
    out = model.predict(frame)
    assert set(out.columns) == {"ts", "metric", "quantile", "value"}
    assert len(out) == forecaster.horizon * len(forecaster.metrics) * len(forecaster.quantiles)
    forecast = forecaster.forecast(history)
    assert forecast.start == history.index[-1] + pd.Timedelta(seconds=300)
    assert forecast.values.shape == (3, 1, 7)  # 0.05 .. 0.995
    assert (np.diff(forecast.values, axis=-1) >= 0).all()
    assert forecast.quantile(0.5)[0, 0] == pytest.approx(forecast.values[0, 0, 2])
