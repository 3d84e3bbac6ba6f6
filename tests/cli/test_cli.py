"""The `prescale` command: help, --json contracts, exit codes, PRESCALE_HOME."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from prescale.settings import load_settings

CORPUS = Path(__file__).resolve().parents[1] / "metrics" / "corpus"
PRESCALE = str(Path(sys.executable).parent / "prescale")
runner = CliRunner()


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """The real `prescale` program in a child process, recording its runs on the test session's Prefect server.

    (In-process CliRunner calls that run flows leave Prefect's console log handler on CliRunner's closed
    streams; a real process is also what users run.)
    """
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    return subprocess.run([PRESCALE, *args], capture_output=True, text=True, env=env, timeout=300)


def test_help_lists_the_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("ingest", "train", "plan", "apply", "backtest", "demo", "serve"):  # DESIGN.md's list
        assert command in result.output


def test_ingest_json_counts_add_up(prefect_harness, prescale_home):
    result = run_cli("ingest", str(CORPUS / "duplicate_key.csv"), "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["read"] == payload["accepted"] + payload["quarantined"] == 3
    assert payload["quarantine_reasons"] == {"duplicate_key": 2}


@pytest.mark.parametrize(
    "name", [pytest.param("error_empty.csv", id="empty"), pytest.param("error_missing_column.csv", id="no-column")]
)
def test_unusable_input_exits_2_and_writes_nothing(prefect_harness, prescale_home, name):
    result = run_cli("ingest", str(CORPUS / name), "--app", "web", "--json")
    assert result.returncode == 2, result.stderr
    assert "error" in json.loads(result.stdout)
    assert not (prescale_home / "data").exists() or not list((prescale_home / "data").rglob("*.parquet"))


def test_bad_mapping_is_a_user_error(prefect_harness, prescale_home, tmp_path):
    mapping = tmp_path / "bad.yaml"
    mapping.write_text("timestamp: {column: ts}\nmetrics: {}\n")
    result = run_cli("ingest", str(CORPUS / "clean.csv"), "--mapping", str(mapping))
    assert result.returncode == 2
    assert "invalid mapping" in result.stderr


def test_prescale_home_relocates_all_state(monkeypatch, tmp_path):
    monkeypatch.setenv("PRESCALE_HOME", str(tmp_path / "elsewhere"))
    settings = load_settings()
    for path in (settings.store.root, settings.store.quarantine, settings.prefect.home, settings.registry.artifacts):
        assert Path(path).is_relative_to(tmp_path / "elsewhere")
    assert str(tmp_path / "elsewhere") in settings.registry.tracking_uri


def test_nested_settings_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PRESCALE_STORE__ROOT", str(tmp_path / "metrics"))
    monkeypatch.setenv("PRESCALE_PROMETHEUS__URL", "http://prom.example:9090")
    settings = load_settings()
    assert settings.store.root == tmp_path / "metrics"
    assert settings.prometheus.url == "http://prom.example:9090"
