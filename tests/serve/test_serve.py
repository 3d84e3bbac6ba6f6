"""`prescale serve` end to end: real Prefect and MLflow servers, deployments with schedules, a worker, Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.serve.processes import free_port, interrupt, port_open, read_ready, serve_env

REPO = Path(__file__).resolve().parents[2]
PRESCALE = str(Path(sys.executable).parent / "prescale")


@pytest.fixture
def served(tmp_path):
    ports = {"PRESCALE_SERVE__PREFECT_PORT": str(free_port()), "PRESCALE_SERVE__MLFLOW_PORT": str(free_port())}
    env = serve_env(tmp_path / "home", **ports)
    proc = subprocess.Popen([PRESCALE, "serve", "--json"], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    try:
        ready = read_ready(proc, within=300)
        yield proc, ready, {k: int(v) for k, v in ports.items()}, tmp_path / "home"
    finally:
        interrupt(proc, within=90)


def test_serve_deploys_the_schedules_and_stops_cleanly(served):
    proc, ready, ports, home = served
    assert ready.get("ready") is True, f"serve did not come up; logs in {home / 'logs'}"
    deployments = httpx.post(f"{ready['prefect_api']}/deployments/filter", json={}, timeout=10).json()
    by_name = {d["name"]: d for d in deployments}
    assert "ingest-every-minute" in by_name
    schedule = by_name["ingest-every-minute"]["schedules"][0]
    assert schedule["schedule"]["interval"] == 60 and schedule["active"]
    assert httpx.get(f"{ready['mlflow_ui']}/health", timeout=10).status_code == 200
    pools = httpx.post(f"{ready['prefect_api']}/work_pools/filter", json={}, timeout=10).json()
    assert ready["work_pool"] in {p["name"] for p in pools}

    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=90) == 0
    for port in ports.values():
        assert not port_open(port), f"port {port} still open after Ctrl-C"
