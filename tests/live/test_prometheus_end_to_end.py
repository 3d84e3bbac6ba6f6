"""The real path, as `serve --live` runs it: history backfilled by promtool, then Prometheus scraping the exporter.

Reuses the metrics tests' :func:`~tests.metrics.prometheus_server.backfill` and
:class:`~tests.metrics.prometheus_server.PrometheusServer` (started with no scrape job) and gives it
one, the exporter, by rewriting its configuration and sending ``SIGHUP``, Prometheus' own reload.
It scrapes every second, so a few seconds give a few samples per series. The Prometheus source then
reads, with the queries of ``write_queries``, the backfilled minutes (exactly what played) and the
scraped seconds (what played at the scrape, at most a second before the evaluation).
"""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import httpx
import pytest

from prescale.demo import DEFAULT_MANIFEST
from prescale.live import LiveTraces, write_openmetrics, write_queries
from prescale.metrics.ingest import validate_batch
from prescale.metrics.sources import Window, build_source
from prescale.settings import load_settings
from tests.live.exporter_process import running_exporter
from tests.metrics.prometheus_server import PrometheusServer, backfill, binaries_present
from tests.support import need_component

SCRAPE = timedelta(seconds=1)


def scrape(server: PrometheusServer, target: str, *, series: int, within_s: float = 20.0) -> None:
    """Point ``server`` at ``target`` (reload by SIGHUP) and wait until it holds all ``series``."""
    (server.workdir / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        f"scrape_configs:\n  - job_name: prescale-live\n    static_configs:\n      - targets: ['{target}']\n"
    )
    server.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        answer = httpx.get(
            f"{server.url}/api/v1/query", params={"query": 'count(prescale_live_value{instance!=""})'}, timeout=5
        )
        result = answer.json()["data"]["result"]
        if result and int(float(result[0]["value"][1])) == series:
            return
        time.sleep(0.2)
    raise AssertionError(f"Prometheus did not scrape {series} series from {target} within {within_s}s")


@pytest.mark.timeout(120)
def test_prometheus_serves_the_backfilled_history_then_the_scrapes_and_the_source_reads_what_plays(tmp_path):
    if not binaries_present():
        need_component("prometheus", "`prometheus` and `promtool` must be on PATH (Debian: apt-get install prometheus)")
    traces = LiveTraces.from_manifest(DEFAULT_MANIFEST)
    series = {(app, metric) for app, metrics in traces.metrics.items() for metric in metrics}
    (tmp_path / "prometheus").mkdir()
    server = PrometheusServer(tmp_path / "prometheus")
    backfilled_until = datetime.now(UTC).replace(second=0, microsecond=0)
    history = Window(  # from 5 minutes into the backfill, so that 5-minute traces have a sample already
        backfilled_until - timedelta(minutes=20), backfilled_until - timedelta(minutes=1)
    )
    write_openmetrics(traces, history.start - timedelta(minutes=5), backfilled_until, tmp_path / "history.om")
    backfill(server.workdir / "data", (tmp_path / "history.om").read_text())
    queries = {"config": str(write_queries(traces, tmp_path / "queries.yaml"))}
    with running_exporter(DEFAULT_MANIFEST) as exporter:
        server.start()
        try:
            scrape(server, urlsplit(exporter).netloc, series=len(series))
            live = datetime.now(UTC) + SCRAPE
            time.sleep(4)
            per_minute, per_second = (
                build_source("prometheus", queries, load_settings(home=tmp_path, prometheus=prom))
                for prom in ({"url": server.url, "retries": 0}, {"url": server.url, "step_seconds": 1, "retries": 0})
            )
            past, now = per_minute.read(history), per_second.read(Window(live, datetime.now(UTC)))
        finally:
            server.stop()
    assert len(past.rows) == 20 * len(series), "the backfilled history, one sample a minute"
    for row in past.rows.itertuples():
        assert row.value == _values(traces, row.ts)[(row.app, row.metric)], f"{row.app} {row.metric} at {row.ts}"
    rows = now.rows
    assert set(zip(rows["app"], rows["metric"], strict=True)) == series
    assert len(rows) >= 3 * len(series), "a sample per second per series"
    for ts, group in rows.groupby("ts"):
        playing = [_values(traces, ts - delay) for delay in (timedelta(0), 2 * SCRAPE)]  # the last scrape is <= 1 s old
        for row in group.itertuples():
            assert row.value in {p[(row.app, row.metric)] for p in playing}, f"{row.app} {row.metric} at {ts}"
    for batch in (past, now):
        result = validate_batch(batch)
        assert len(result.accepted) == len(batch.rows) and len(result.quarantined) == 0


def _values(traces: LiveTraces, at: datetime) -> dict[tuple[str, str], float]:
    rows = traces.at(at)
    return dict(zip(zip(rows["app"], rows["metric"], strict=True), rows["value"], strict=True))
