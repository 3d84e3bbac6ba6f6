"""The exporter as a real process over real HTTP: what it serves is what the traces play now; a bad start exits 2."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from prescale.demo import DEFAULT_MANIFEST
from prescale.live import LiveTraces
from tests.live.exporter_process import exporter_command, parse_exposition, running_exporter
from tests.live.traces import clock_trace, manifest
from tests.metrics.prometheus_server import free_port


def expected(traces: LiveTraces, now: datetime) -> dict[tuple[str, str], float]:
    rows = traces.at(now)
    return dict(zip(zip(rows["app"], rows["metric"], strict=True), rows["value"], strict=True))


def test_metrics_serve_every_series_at_the_instant_playing_now():
    traces = LiveTraces.from_manifest(DEFAULT_MANIFEST)
    with running_exporter(DEFAULT_MANIFEST) as url:
        before = datetime.now(UTC)
        response = httpx.get(f"{url}/metrics", timeout=10)
        after = datetime.now(UTC)
        assert httpx.get(f"{url}/nowhere", timeout=10).status_code == 404
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "# TYPE prescale_live_value gauge" in response.text
    served, early, late = parse_exposition(response.text), expected(traces, before), expected(traces, after)
    assert set(served) == set(early) == {(app, m) for app, metrics in traces.metrics.items() for m in metrics}
    for series, value in served.items():
        assert value in (early[series], late[series]), f"{series}: served {value}, playing {early[series]}"


def test_speed_and_epoch_reach_the_exporter(tmp_path):
    trace = clock_trace(
        tmp_path / "clock.csv", app="web", start=datetime(2021, 3, 3, tzinfo=UTC), span=timedelta(days=15)
    )
    path = manifest(tmp_path / "demo.yaml", [{"app": "web", "file": trace.name}])
    epoch = datetime.now(UTC) - timedelta(hours=1)
    traces = LiveTraces.from_manifest(path, speed=600, epoch=epoch)
    with running_exporter(path, "--speed", "600", "--epoch", epoch.isoformat().replace("+00:00", "Z")) as url:
        before = datetime.now(UTC)
        response = httpx.get(f"{url}/metrics", timeout=10)
        after = datetime.now(UTC)
    (value,) = parse_exposition(response.text).values()
    assert expected(traces, before)[("web", "cpu_cores")] <= value <= expected(traces, after)[("web", "cpu_cores")]
    at_speed_1 = expected(LiveTraces.from_manifest(path), before)[("web", "cpu_cores")]
    assert abs(value - at_speed_1) > 3600, "ten hours of trace played in the last hour, not real time"


@pytest.mark.parametrize(
    ("entry", "extra", "message"),
    [
        pytest.param({"app": "web", "file": "absent.csv"}, [], "absent.csv", id="missing-file"),
        pytest.param({"app": "web", "file": "clock.csv"}, ["--speed", "10"], "speed 10 needs an epoch", id="no-epoch"),
    ],
)
def test_a_bad_start_exits_2_naming_the_problem_before_listening(tmp_path, entry, extra, message):
    clock_trace(tmp_path / "clock.csv", app="web", start=datetime(2021, 3, 3, tzinfo=UTC), span=timedelta(days=2))
    path = manifest(tmp_path / "demo.yaml", [entry])
    port = free_port()
    done = subprocess.run(exporter_command(path, port, *extra), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert message in done.stderr
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
