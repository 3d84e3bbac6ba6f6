"""`prescale apply`: dry run, apply on the simulated cluster kept under PRESCALE_HOME, guardrails, exit codes."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cli.main import app

runner = CliRunner()


@pytest.fixture
def home(prescale_home, monkeypatch):
    return prescale_home


def _run(*args: str):
    result = runner.invoke(app, ["apply", *args])
    return result, (json.loads(result.stdout) if "--json" in args and result.stdout.strip() else None)


def test_help_lists_apply():
    assert "apply" in runner.invoke(app, ["--help"]).output


def test_a_dry_run_shows_the_plan_and_changes_nothing(home):
    result, payload = _run("--app", "inference", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    assert payload["status"] == "dry-run" and payload["report"] is None
    assert [s["action"] for s in payload["plan"]["steps"]][:1] == ["provision"]
    assert payload["allocation"] and payload["current"] == {}
    state = home / "cluster" / "state.json"
    assert not state.exists() or json.loads(state.read_text())["world"]["claims"] == {}


def test_apply_provisions_and_a_second_run_continues_the_same_cluster(home):
    result, first = _run("--app", "inference", "--json")
    assert result.exit_code == 0, result.output
    assert first["status"] == "applied"
    assert all(s["status"] == "done" for s in first["report"]["steps"])
    assert (home / "cluster" / "state.json").is_file()
    result, second = _run("--app", "inference", "--json")
    assert result.exit_code == 0, result.output
    assert second["current"] == first["allocation"]
    # from nothing the rule bridges with CPU VMs while its GPU band boots; once the band serves (this run's
    # cluster has every node of the first ready) it lets the bridge go, and then holds
    assert second["cost_per_hour"] < first["cost_per_hour"]
    result, third = _run("--app", "inference", "--json")
    assert third["current"] == second["allocation"]
    assert third["status"] == "noop" and third["plan"]["steps"] == []


def test_a_plan_over_budget_is_blocked_with_exit_code_2(home, monkeypatch):
    monkeypatch.setenv("PRESCALE_CLUSTER__BUDGET_PER_HOUR", "0.5")
    result, payload = _run("--app", "inference", "--json")
    assert result.exit_code == 2
    assert payload["status"] == "blocked"
    assert "budget cap 0.50 USD/h" in payload["plan"]["blocked"][0]


def test_the_kubernetes_backend_without_a_kubeconfig_is_a_user_error(home, monkeypatch, tmp_path):
    monkeypatch.setenv("PRESCALE_CLUSTER__BACKEND", "kubernetes")
    monkeypatch.setenv("PRESCALE_CLUSTER__KUBECONFIG", str(tmp_path / "missing"))
    result, payload = _run("--app", "inference", "--json")
    assert result.exit_code == 2
    assert "PRESCALE_CLUSTER__KUBECONFIG" in payload["error"]


def test_an_unknown_app_is_a_user_error(home):
    result = runner.invoke(app, ["apply", "--app", "nope"])
    assert result.exit_code == 2
    assert "no profile 'nope'" in result.output


def test_the_human_readable_output(home):
    result = runner.invoke(app, ["apply", "--app", "web"])
    assert result.exit_code == 0, result.output
    assert "applied" in result.output and "serving capacity: lowest" in result.output


def test_an_unreachable_cluster_exits_1_with_the_reason(home, monkeypatch, tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "gone",
                "clusters": [{"name": "gone", "cluster": {"server": "http://127.0.0.1:9"}}],
                "users": [{"name": "me", "user": {"token": "x"}}],
                "contexts": [{"name": "gone", "context": {"cluster": "gone", "user": "me"}}],
            }
        )
    )
    monkeypatch.setenv("PRESCALE_CLUSTER__BACKEND", "kubernetes")
    monkeypatch.setenv("PRESCALE_CLUSTER__KUBECONFIG", str(kubeconfig))
    monkeypatch.setenv("PRESCALE_CLUSTER__RETRIES", "0")
    result, payload = _run("--app", "inference", "--json")
    assert result.exit_code == 1
    assert payload["type"] == "ClusterUnavailable" and "gave up after 1 attempts" in payload["error"]
