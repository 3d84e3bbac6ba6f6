"""The `train-forecasters` flow tunes each trained (app, phase)'s SLO policy and publishes it with the version."""

from __future__ import annotations

import json

from models.registry import Registry, model_name
from prescale.metrics.store import MetricsStore
from prescale.settings import load_settings
from tests.flows.test_train_flow import _store_app
from tests.forecasting.conftest import daily_frame
from tests.forecasting.test_slo_stretch import svc_profile


def test_the_flow_tunes_the_slo_at_the_settings_budget_and_publishes_it(prefect_harness, prescale_home, tmp_path,
                                                                        monkeypatch):
    monkeypatch.setenv("PRESCALE_FORECAST__EPOCHS", "1")
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    svc_profile(profiles)  # svc.yaml: budget 0.005 in the profile...
    monkeypatch.setenv("PRESCALE_SEARCH__PROFILES", str(profiles))
    monkeypatch.setenv("PRESCALE_SLO__APPS", json.dumps({"svc": 0.02}))  # ...0.02 by the settings
    from flows.train import train_forecasters

    settings = load_settings()
    store = MetricsStore(settings.store.root)
    _store_app(store, "svc", daily_frame(6.0, seed=4))  # a 1.2-day held-out tail: long enough to tune on
    _store_app(store, "noprofile", daily_frame(6.0, seed=5))

    report = train_forecasters(preset="small")
    rows = {m.app: m for m in report.models}
    svc, other = rows["svc"], rows["noprofile"]
    assert svc.skipped is None and svc.slo is not None, svc.to_dict()
    assert svc.slo["violation_budget"] == 0.02
    policy = Registry(settings.registry.tracking_uri).load_policy(model_name("svc", "default"), svc.version)
    assert policy is not None and policy.tuned and policy.violation_budget == 0.02
    assert policy.rule == svc.slo["rule"] and policy.frontier
    # no profile: trained and published all the same, untuned
    assert other.skipped is None and other.promoted and other.slo is None
    assert Registry(settings.registry.tracking_uri).load_policy(model_name("noprofile", "default"),
                                                                other.version) is None
