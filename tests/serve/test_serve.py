"""`prescale serve` end to end: real Prefect and MLflow servers, deployments with schedules, a worker, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
PRESCALE = str(Path(sys.executable).parent / "prescale")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def served(tmp_path):
    ports = {"PRESCALE_SERVE__PREFECT_PORT": str(_free_port()), "PRESCALE_SERVE__MLFLOW_PORT": str(_free_port())}
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(ports, PRESCALE_HOME=str(tmp_path / "home"))
    proc = subprocess.Popen([PRESCALE, "serve", "--json"], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    lines = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("}"):
            break
    try:
        ready = json.loads("".join(lines)) if lines else {}
        yield proc, ready, {k: int(v) for k, v in ports.items()}, tmp_path / "home"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                proc.kill()


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
        assert not _port_open(port), f"port {port} still open after Ctrl-C"
