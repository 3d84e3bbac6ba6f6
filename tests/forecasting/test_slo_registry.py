"""The tuned SLO policy published with its model version (MLflow on SQLite) and read back with the champion."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from models.registry import ChampionLoader, Registry, model_name
from models.slo_stretch import stretch_input
from prescale.catalog import load_catalog
from prescale.settings import load_settings
from prescale.slo.policy import SloPolicy
from prescale.slo.tuning import tune
from tests.forecasting.conftest import tiny_config
from tests.forecasting.test_slo_stretch import SHORT, svc_profile

PHASE = "default"


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Registry:
    folder = tmp_path_factory.mktemp("mlflow")
    return Registry(f"sqlite:///{folder / 'mlflow.db'}", artifact_root=folder / "artifacts")


@pytest.fixture(autouse=True)
def active(registry):
    registry.activate()  # another module may have pointed MLflow elsewhere


@pytest.fixture(scope="module")
def policy(trained, tmp_path_factory) -> SloPolicy:
    """The policy tuned on the fixture training's held-out tail (a few trials)."""
    profile = svc_profile(tmp_path_factory.mktemp("profiles"))
    inp, fleet = stretch_input(trained, profile, load_catalog(load_settings().search.catalog),
                               min_scored_minutes=SHORT)
    return tune(inp, fleet, 0.02, trials=5, reactive_trials=3, timeout_seconds=30).policy


@pytest.fixture
def app(request) -> str:
    return "slo-" + request.node.name.replace("_", "-")[5:40].strip("-")


def test_the_policy_is_logged_with_the_version_and_read_back(registry, trained, policy, app, tmp_path):
    published = registry.publish(trained, app=app, phase=PHASE, config=tiny_config(), margin=0.02, slo=policy)
    name = model_name(app, PHASE)
    mv = registry.client.get_model_version(name, published.version)
    assert mv.tags["slo.violation_budget"] == "0.02"
    assert mv.tags["slo.rule"] == policy.rule and mv.tags["slo.setting"] == policy.setting
    logged = {a.path for a in registry.client.list_artifacts(mv.run_id, "slo")}
    assert logged == {"slo/policy.json", "slo/study.json", "slo/frontier.png"}
    assert registry.load_policy(name, published.version) == policy
    folder = Path(registry.client.download_artifacts(mv.run_id, "slo", str(tmp_path)))
    study = json.loads((folder / "study.json").read_text())
    assert study["tuning"] == policy.tuning and len(study["frontier"]) == len(policy.frontier)
    assert (folder / "frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_version_published_without_a_policy_has_none(registry, trained, app):
    published = registry.publish(trained, app=app, phase=PHASE, config=tiny_config(), margin=0.02)
    mv = registry.client.get_model_version(model_name(app, PHASE), published.version)
    assert not any(key.startswith("slo.") for key in mv.tags)
    assert registry.load_policy(model_name(app, PHASE), published.version) is None


def test_publishing_the_session_again_attaches_a_policy_for_another_budget(registry, trained, policy, app):
    first = registry.publish(trained, app=app, phase=PHASE, config=tiny_config(), margin=0.02)
    again = registry.publish(trained, app=app, phase=PHASE, config=tiny_config(), margin=0.02, slo=policy)
    assert again.version == first.version
    assert registry.load_policy(model_name(app, PHASE), first.version) == policy
    tighter = policy.model_copy(update={"violation_budget": 0.01})
    registry.publish(trained, app=app, phase=PHASE, config=tiny_config(), margin=0.02, slo=tighter)
    assert registry.load_policy(model_name(app, PHASE), first.version).violation_budget == 0.01


def test_the_champion_cache_gives_the_champions_policy_and_follows_the_alias(registry, trained, policy, app):
    clock = [0.0]
    loader = ChampionLoader(registry, refresh_seconds=30, clock=lambda: clock[0])
    assert loader.policy(app, PHASE) is None  # no champion yet
    worst = max(trained.candidates, key=lambda n: trained.candidates[n].scores.mase)
    alone = replace(trained, candidates={worst: trained.candidates[worst]}, best=worst)
    registry.publish(alone, app=app, phase=PHASE, config=tiny_config(), margin=0.02)
    assert loader.policy(app, PHASE) is None and loader.policy_loads == 1  # v1: published untuned
    assert loader.policy(app, PHASE) is None and loader.policy_loads == 1  # cached with the version

    better = registry.publish(trained, app=app, phase=PHASE, config=tiny_config(), margin=0.02, slo=policy)
    assert better.promoted
    assert loader.policy(app, PHASE) is None  # within refresh_seconds: the alias is not asked again
    clock[0] = 31.0
    assert loader.policy(app, PHASE) == policy and loader.policy_loads == 2
    assert loader.get(app, PHASE).candidate == trained.best and loader.version(app, PHASE) == better.version
    assert loader.policy(app, PHASE) == policy and loader.policy_loads == 2
