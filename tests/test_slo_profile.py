"""The SLO is the user's one knob: a profile's ``slo.violation_budget`` and the settings that override it.

A profile file states the share of minutes whose demand may exceed serving capacity (default 0.005, valid
(0, 0.2]); a bad value is refused at load naming the file, the field and the value. Settings may override it
for every app (``PRESCALE_SLO__VIOLATION_BUDGET``) or per app (``slo.apps``), the most specific winning.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from prescale.catalog import (
    DEFAULT_VIOLATION_BUDGET,
    MAX_VIOLATION_BUDGET,
    CatalogError,
    Slo,
    list_profiles,
    load_profile,
)
from prescale.settings import MAX_VIOLATION_BUDGET as SETTINGS_MAX_BUDGET
from prescale.settings import SettingsError, SloSettings, load_settings

REPO = Path(__file__).resolve().parents[1]
APPS = REPO / "infra" / "apps"
PROFILE = {
    "name": "shop",
    "metrics": [{"name": "requests_per_second", "per_unit": 60}],
    "kinds": ["cpu-vm"],
    "workload_class": "latency",
}


@pytest.fixture(autouse=True)
def _no_slo_environment(monkeypatch):
    """The caller's own PRESCALE_SLO__* variables must not decide these tests."""
    monkeypatch.delenv("PRESCALE_SLO__VIOLATION_BUDGET", raising=False)
    monkeypatch.delenv("PRESCALE_SLO__APPS", raising=False)
    monkeypatch.delenv("PRESCALE_SLO__APPS__WEB", raising=False)


def _write(tmp_path: Path, **extra: object) -> Path:
    path = tmp_path / "shop.yaml"
    path.write_text(yaml.safe_dump({**PROFILE, **extra}, sort_keys=False), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------- profiles


def test_a_profile_without_slo_gets_the_default_budget(tmp_path):
    assert load_profile(_write(tmp_path)).slo.violation_budget == 0.005 == DEFAULT_VIOLATION_BUDGET


@pytest.mark.parametrize("budget", [0.001, 0.05, 0.2], ids=["tight", "loose", "upper-bound-included"])
def test_a_valid_budget_is_read(tmp_path, budget):
    assert load_profile(_write(tmp_path, slo={"violation_budget": budget})).slo == Slo(violation_budget=budget)


@pytest.mark.parametrize(
    ("slo", "field", "shown"),
    [
        pytest.param({"violation_budget": 0}, "slo.violation_budget", "(got 0)", id="zero-excluded"),
        pytest.param({"violation_budget": -0.1}, "slo.violation_budget", "(got -0.1)", id="negative"),
        pytest.param({"violation_budget": 0.5}, "slo.violation_budget", "(got 0.5)", id="above-0.2"),
        pytest.param({"violation_budget": "abc"}, "slo.violation_budget", "(got 'abc')", id="not-a-number"),
        pytest.param({"violation_budget": ".nan"}, "slo.violation_budget", "(got nan)", id="nan"),
        pytest.param({"budget": 0.01}, "slo.budget", "(got 0.01)", id="unknown-key"),
    ],
)
def test_a_bad_slo_is_refused_naming_the_file_the_field_and_the_value(tmp_path, slo, field, shown):
    path = _write(tmp_path)
    text = path.read_text(encoding="utf-8") + "slo: " + yaml.safe_dump(slo, default_flow_style=True)
    path.write_text(text.replace("'.nan'", ".nan"), encoding="utf-8")  # YAML's own NaN, not the string
    with pytest.raises(CatalogError) as raised:
        load_profile(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: "), message
    line = next((line for line in message.splitlines() if line.strip().startswith(f"{field}:")), None)
    assert line is not None, message
    assert line.endswith(shown), message


def test_every_shipped_profile_states_its_budget_explicitly():
    apps = list_profiles(APPS)
    assert apps, f"no profiles in {APPS}"
    for app in apps:
        data = yaml.safe_load((APPS / f"{app}.yaml").read_text(encoding="utf-8"))
        assert data.get("slo") == {"violation_budget": 0.005}, app
        assert load_profile(APPS / f"{app}.yaml").slo.violation_budget == 0.005


# ------------------------------------------------------------------------------------------- settings


def test_settings_and_catalog_share_the_upper_bound():
    assert SETTINGS_MAX_BUDGET == MAX_VIOLATION_BUDGET == 0.2


@pytest.mark.parametrize(
    ("slo", "app", "expected"),
    [
        pytest.param({}, "web", 0.01, id="no-override-keeps-the-profile"),
        pytest.param({"violation_budget": 0.02}, "web", 0.02, id="global-over-profile"),
        pytest.param({"violation_budget": 0.02, "apps": {"web": 0.001}}, "web", 0.001, id="per-app-over-global"),
        pytest.param({"apps": {"web": 0.001}}, "web", 0.001, id="per-app-over-profile"),
        pytest.param({"violation_budget": 0.02, "apps": {"web": 0.001}}, "shop", 0.02, id="other-app-gets-global"),
        pytest.param({"apps": {"web": 0.001}}, "shop", 0.01, id="other-app-keeps-its-profile"),
    ],
)
def test_budget_precedence_is_per_app_then_global_then_profile(tmp_path, slo, app, expected):
    settings = load_settings(home=tmp_path / "home", slo=slo)
    assert settings.slo.budget_for(app, 0.01) == expected


def test_the_global_override_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PRESCALE_SLO__VIOLATION_BUDGET", "0.03")
    settings = load_settings(home=tmp_path / "home")
    assert settings.slo.violation_budget == 0.03
    assert settings.slo.budget_for("web", 0.005) == 0.03


def test_a_per_app_override_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PRESCALE_SLO__VIOLATION_BUDGET", "0.03")
    monkeypatch.setenv("PRESCALE_SLO__APPS__WEB", "0.002")
    slo = load_settings(home=tmp_path / "home").slo
    assert (slo.budget_for("web", 0.005), slo.budget_for("inference", 0.005)) == (0.002, 0.03)


def test_no_override_is_the_default():
    assert SloSettings().budget_for("web", 0.007) == 0.007


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        pytest.param("PRESCALE_SLO__VIOLATION_BUDGET", "0", "greater than 0 (got '0')", id="global-zero"),
        pytest.param("PRESCALE_SLO__VIOLATION_BUDGET", "0.5", "less than or equal to 0.2 (got '0.5')",
                     id="global-above-0.2"),
        pytest.param("PRESCALE_SLO__VIOLATION_BUDGET", "abc", "valid number", id="global-not-a-number"),
        pytest.param("PRESCALE_SLO__APPS", '{"web": 0.5}', "app 'web': violation budget 0.5 is outside (0, 0.2]",
                     id="per-app-above-0.2"),
        pytest.param("PRESCALE_SLO__APPS", '{"web": 0}', "app 'web': violation budget 0", id="per-app-zero"),
        pytest.param("PRESCALE_SLO__APPS__WEB", "abc", "PRESCALE_SLO__APPS__WEB: Input should be a valid number",
                     id="per-app-not-a-number"),
        pytest.param("PRESCALE_SLO__APPS", '{"Web_1": 0.01}', "app 'Web_1' is not an app name",
                     id="per-app-bad-name"),
    ],
)  # fmt: skip
def test_an_invalid_override_is_refused_naming_the_variable_and_value(tmp_path, monkeypatch, variable, value, says):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as raised:
        load_settings(home=tmp_path / "home")
    message = str(raised.value)
    assert variable.split("__")[0] + "__" + variable.split("__")[1] in message, message
    assert says in message, message
