"""`prescale plan`: the JSON contract, demand files, and exit code 2 on bad input (the rule itself and
``--pareto``: tests/cli/test_plan.py)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cli.main import app

runner = CliRunner()


def plan(*args: str):
    return runner.invoke(app, ["plan", *args, "--json"])


@pytest.fixture(autouse=True)
def _home(prescale_home):
    return prescale_home


def test_plan_json_has_the_promised_keys():
    result = plan("--app", "inference")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert {"allocation", "cost_per_hour", "covered", "rejected"} <= set(out)
    assert out["allocation"] and all(isinstance(v, int) and v > 0 for v in out["allocation"].values())
    assert out["rejected"]["vt1.3xlarge"].startswith("incompatible")
    assert out["demand"] == "example" and out["current"] == {"g6.xlarge": 2}


def test_plan_reads_a_quantile_csv_and_current_nodes(tmp_path):
    csv = tmp_path / "demand.csv"
    rows = ["ts,streams@0.1,streams@0.5,streams@0.9"]
    rows += [f"2026-03-02T10:{m:02d}:00Z,{40 + m},{50 + m},{60 + m}" for m in range(10)]
    csv.write_text("\n".join(rows) + "\n")
    result = plan("--app", "transcoder", "--demand", str(csv), "--current", "vt1.3xlarge=4")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["current"] == {"vt1.3xlarge": 4}
    assert out["allocation"].get("vt1.3xlarge", 0) >= 4  # FPGAs take 600 s: the running ones stay
    assert out["rejected"]["g5.xlarge"].startswith("incompatible")


def test_profile_option_plans_an_app_without_its_own_file():
    result = plan("--app", "shop", "--profile", "web")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["app"] == "shop"


BAD = [
    pytest.param(["--app", "shop"], "no profile 'shop'", id="unknown-app"),
    pytest.param(["--app", "web", "--current", "c7g.2xlarge"], "expected TYPE=N", id="bad-current"),
    pytest.param(["--app", "web", "--current", "c9.huge=2"], "unknown type(s) ['c9.huge']", id="unknown-type"),
    pytest.param(["--app", "web", "--demand", "/nonexistent.csv"], "not found", id="missing-demand"),
    pytest.param(["--app", "Bad_App"], "--app 'Bad_App' is not a valid", id="invalid-app"),
    pytest.param(["--app", "shop", "--profile", "../apps/web"], "profile '../apps/web' is not a valid",
                 id="profile-traversal"),
    pytest.param(["--app", "web", "--current", "c7g.2xlarge=99999999999999999999"], "more than the 100,000 accepted",
                 id="current-overflow"),
]


@pytest.mark.parametrize(("args", "message"), BAD)
def test_bad_input_exits_2_with_a_message(args, message):
    result = plan(*args)
    assert result.exit_code == 2
    assert message in json.loads(result.stdout)["error"]


def test_missing_metric_column_names_it(tmp_path):
    csv = tmp_path / "demand.csv"
    csv.write_text("requests_per_second\n100\n200\n")
    result = plan("--app", "web", "--demand", str(csv))
    assert result.exit_code == 2
    assert "missing column(s) ['connections']" in json.loads(result.stdout)["error"]


def test_plan_prints_a_table_without_json():
    result = runner.invoke(app, ["plan", "--app", "web"])
    assert result.exit_code == 0, result.output
    assert "target" in result.stdout and "not chosen" in result.stdout and "predictive rule" in result.stdout


def test_one_step_of_demand_is_refused_with_the_lead_time_as_reason(tmp_path):
    """It used to plan nothing, explained by min_nodes and quota: no node can be ready within 60 s."""
    csv = tmp_path / "demand.csv"
    csv.write_text("requests_per_second,connections\n100,50\n")
    result = plan("--app", "web", "--demand", str(csv))
    assert result.exit_code == 2
    assert "takes 75 s to serve" in json.loads(result.stdout)["error"]
    csv.write_text("requests_per_second,connections\n100,50\n100,50\n")
    result = plan("--app", "web", "--demand", str(csv))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["allocation"]
