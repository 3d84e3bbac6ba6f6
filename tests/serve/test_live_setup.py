"""`prescale serve --live` before and around its servers: bad input stops it first, and what it generates.

No server runs here except a listening socket: a bad manifest must stop serve before anything starts
(exit 2, the file named, no port opened, no log written); a port already taken must stop a service
before its health check can accept another program's server; the generated prefect file must change
only the ingest deployment's parameters; prometheus.yml must scrape the exporter.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from cli.services import (
    INGEST_DEPLOYMENT,
    REPO_ROOT,
    Live,
    Service,
    ServiceError,
    _start,
    ingest_parameters,
    prometheus_config,
    write_prefect_file,
)
from prescale.demo import DEFAULT_MANIFEST
from prescale.live import LiveTraces
from tests.serve.processes import free_port, serve_env

PRESCALE = str(Path(sys.executable).parent / "prescale")


def _serve(args: list[str], home: Path, ports: dict[str, int]) -> subprocess.CompletedProcess:
    env = serve_env(home, **{k: str(v) for k, v in ports.items()})
    return subprocess.run([PRESCALE, "serve", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip


def _manifest(tmp_path: Path, csv_text: str) -> Path:
    (tmp_path / "trace.csv").write_text(csv_text, encoding="utf-8")
    manifest = tmp_path / "demo.yaml"
    manifest.write_text(yaml.safe_dump({"apps": [{"app": "web", "file": "trace.csv"}]}), encoding="utf-8")
    return manifest


@pytest.mark.parametrize(
    "csv_text, named",
    [
        pytest.param("when,value\n1,2\n2,3\n", "trace.csv", id="no-time-column"),
        pytest.param(None, "gone.csv", id="missing-file"),
    ],
)
def test_a_trace_that_cannot_play_stops_serve_before_any_server_starts(tmp_path, csv_text, named):
    if csv_text is None:
        manifest = tmp_path / "demo.yaml"
        manifest.write_text(yaml.safe_dump({"apps": [{"app": "web", "file": "gone.csv"}]}), encoding="utf-8")
    else:
        manifest = _manifest(tmp_path, csv_text)
    ports = {"PRESCALE_SERVE__PREFECT_PORT": free_port(), "PRESCALE_SERVE__MLFLOW_PORT": free_port()}
    home = tmp_path / "home"

    done = _serve(["--live", "--manifest", str(manifest)], home, ports)

    assert done.returncode == 2, done.stderr
    assert named in " ".join(done.stderr.split())  # rich wraps long lines
    assert not (home / "logs").exists(), "a server was started (or a setup command run) before the check"


def test_live_options_without_live_are_refused(tmp_path):
    ports = {"PRESCALE_SERVE__PREFECT_PORT": free_port(), "PRESCALE_SERVE__MLFLOW_PORT": free_port()}
    done = _serve(["--speed", "60"], tmp_path / "home", ports)
    assert done.returncode == 2
    assert "--speed only apply with --live" in " ".join(done.stderr.split())


def test_a_taken_port_stops_the_service_before_its_health_check(tmp_path):
    with socket.socket() as other:  # another program already listening where the service would
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        service = Service("prefect-server", [sys.executable, "-c", "import time; time.sleep(60)"],
                          f"http://127.0.0.1:{port}/api/health", tmp_path / "x.log",
                          port_setting="PRESCALE_SERVE__PREFECT_PORT")  # fmt: skip
        with pytest.raises(ServiceError, match=rf"127\.0\.0\.1:{port} is already in use.*PREFECT_PORT"):
            _start(service, dict(os.environ), timeout=5)
    assert service.process is None, "the child was started anyway"


@pytest.fixture(scope="module")
def live() -> Live:
    return Live(LiveTraces.from_manifest(DEFAULT_MANIFEST), DEFAULT_MANIFEST, history_days=8)


def test_the_generated_prefect_file_changes_only_the_ingest_parameters(tmp_path, live):
    base = REPO_ROOT / "prefect.yaml"
    queries = tmp_path / "queries.yaml"
    for ingest in (ingest_parameters(live, queries), ingest_parameters(live, None)):
        written = yaml.safe_load(write_prefect_file(base, ingest, tmp_path / "prefect.yaml").read_text())
        original = yaml.safe_load(base.read_text())
        by_name = {d["name"]: d for d in written["deployments"]}
        assert by_name[INGEST_DEPLOYMENT]["parameters"] == ingest
        for deployment in original["deployments"]:
            if deployment["name"] != INGEST_DEPLOYMENT:
                assert by_name[deployment["name"]] == deployment
        assert {k: v for k, v in written.items() if k != "deployments"} == {
            k: v for k, v in original.items() if k != "deployments"
        }


def test_ingest_reads_prometheus_where_it_runs_and_the_replayed_traces_elsewhere(tmp_path, live):
    queries = tmp_path / "queries.yaml"
    assert ingest_parameters(live, queries) == {"prometheus_config": str(queries), "lookback_minutes": 10}
    replay = ingest_parameters(live, None)
    assert replay["source"] == "replay" and "prometheus_config" not in replay
    assert replay["options"] == {"manifest": str(DEFAULT_MANIFEST), "speed": 1.0, "epoch": None}


def test_the_seed_covers_the_history_in_trace_time(live):
    assert live.seed_parameters()["lookback_minutes"] == 8 * 24 * 60
    assert live.seed_parameters()["source"] == "replay"
    epoch = datetime(2026, 12, 5, 8, 0, tzinfo=UTC)
    faster = Live(LiveTraces.from_manifest(DEFAULT_MANIFEST, speed=60, epoch=epoch), DEFAULT_MANIFEST)
    assert faster.seed_parameters()["lookback_minutes"] == 8 * 24  # 8 days of trace at 60 trace minutes a minute
    assert faster.seed_parameters()["options"] == {"manifest": str(DEFAULT_MANIFEST), "speed": 60.0,
                                                   "epoch": "2026-12-05T08:00:00+00:00"}  # fmt: skip
    with pytest.raises(ValueError, match=r"history \(0 days\)"):
        Live(live.traces, DEFAULT_MANIFEST, history_days=0)


def test_prometheus_scrapes_the_exporter_every_15_seconds():
    config = yaml.safe_load(prometheus_config("127.0.0.1:9469"))
    assert config["global"]["scrape_interval"] == "15s"
    assert config["scrape_configs"][0]["static_configs"] == [{"targets": ["127.0.0.1:9469"]}]
