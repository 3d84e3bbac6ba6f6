"""`prescale plan`: the predictive rule every caller runs, its JSON contract, and the reference search only
beside it (``--pareto``)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from cli.main import app

runner = CliRunner()


def _plan(*args: str):
    result = runner.invoke(app, ["plan", *args])
    return result, (json.loads(result.stdout) if "--json" in args and result.exit_code == 0 else None)


def test_plan_json_keeps_the_contract_keys_and_decides_with_the_rule(prescale_home):
    result, payload = _plan("--app", "inference", "--json", "--current", "g6.xlarge=2")
    assert result.exit_code == 0, result.output
    assert {"allocation", "cost_per_hour", "covered", "rejected"} <= set(payload)
    assert payload["rule"] == "predictive" and payload["reasons"] and "reference" not in payload
    assert payload["current"] == {"g6.xlarge": 2}
    assert sum(payload["allocation"].values()) <= 64, "the profile's max_nodes"
    reasons = set(payload["rejected"].values())
    assert any(r.startswith("incompatible") for r in reasons) and "not chosen: dearer per unit" in reasons
    assert not set(payload["allocation"]) & set(payload["rejected"])


def test_the_reference_search_is_only_beside_the_rule_with_pareto(prescale_home, monkeypatch):
    monkeypatch.setenv("PRESCALE_SEARCH__SOLVER", "milp")
    plain, ruled = _plan("--app", "web", "--json")
    both, with_reference = _plan("--app", "web", "--json", "--pareto", "--trials", "3", "--seed", "1")
    assert plain.exit_code == 0 and both.exit_code == 0, both.output
    assert with_reference["allocation"] == ruled["allocation"], "the reference never replaces the rule's answer"
    assert "pareto" in with_reference["reference"] and with_reference["reference"]["allocation"]


def test_search_options_without_pareto_are_refused(prescale_home):
    result = runner.invoke(app, ["plan", "--app", "web", "--trials", "5", "--solver", "milp"])
    assert result.exit_code == 2
    assert "--solver, --trials tune the reference search: pass --pareto" in " ".join(result.output.split())
