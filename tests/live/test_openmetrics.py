"""The played traces on the wire: OpenMetrics the real promtool backfills, NaN for flagged rows, the queries file."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from prescale.live import LiveTraces, prometheus_queries, write_openmetrics, write_queries
from prescale.live.openmetrics import exposition
from prescale.metrics.prometheus import load_prometheus_config
from tests.live.exporter_process import parse_exposition
from tests.live.traces import manifest
from tests.support import need_component

DUMPED = re.compile(r'^\{__name__="prescale_live_value", app="([^"]+)", metric="([^"]+)"\} (\S+) (\d+)$')
END = datetime(2026, 12, 5, 8, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def demo() -> LiveTraces:
    return LiveTraces.from_manifest()


def test_promtool_backfills_the_openmetrics_of_a_window_sample_for_sample(demo, tmp_path):
    if shutil.which("promtool") is None:
        need_component("promtool", "`promtool` must be on PATH (Debian: apt-get install prometheus)")
    start = END - timedelta(hours=3)
    written = write_openmetrics(demo, start, END, tmp_path / "live.om")
    assert (tmp_path / "live.om").read_text().endswith("# EOF\n")
    blocks = tmp_path / "blocks"
    (blocks / "wal").mkdir(parents=True)  # promtool 2.42 dump opens the WAL even of a backfill
    for command in (
        ["create-blocks-from", "openmetrics", str(tmp_path / "live.om"), str(blocks)],
        ["dump", str(blocks)],
    ):
        done = subprocess.run(["promtool", "tsdb", *command], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    dumped = [DUMPED.match(line) for line in done.stdout.splitlines() if line.strip()]
    assert None not in dumped, "promtool dumped only prescale_live_value samples"
    rows = demo.rows(start, END)
    assert written == len(rows) == len(dumped)
    stored = {(m[1], m[2], pd.Timestamp(int(m[4]), unit="ms", tz=UTC)): float(m[3]) for m in dumped}
    for row in rows.itertuples():
        assert stored[(row.app, row.metric, row.ts)] == row.value, f"{row.app} {row.metric} at {row.ts}"


def test_rows_the_file_source_flags_go_out_as_nan_not_as_numbers(tmp_path):
    lines = ["ts,app,metric,value"] + [
        f"2021-03-0{day}T{hour:02d}:00:00Z,web,cpu_cores,{'oops' if hour % 2 else hour}"
        for day in (3, 4)
        for hour in range(24)
    ]
    (tmp_path / "odd.csv").write_text("\n".join(lines) + "\n")
    traces = LiveTraces.from_manifest(manifest(tmp_path / "demo.yaml", [{"app": "web", "file": "odd.csv"}]))
    odd_hour = datetime(2026, 12, 5, 9, 30, tzinfo=UTC)
    assert math.isnan(parse_exposition(exposition(traces.at(odd_hour)))[("web", "cpu_cores")])
    assert parse_exposition(exposition(traces.at(odd_hour + timedelta(hours=1))))[("web", "cpu_cores")] == 10.0
    write_openmetrics(traces, odd_hour - timedelta(minutes=30), odd_hour + timedelta(minutes=31), tmp_path / "odd.om")
    assert [line.split()[1] for line in (tmp_path / "odd.om").read_text().splitlines()[2:-1]] == ["NaN", "10.0"]


def test_the_queries_file_selects_every_played_series_and_loads_as_prometheus_config(demo, tmp_path):
    path = write_queries(demo, tmp_path / "deep" / "queries.yaml")
    config = load_prometheus_config(path)
    assert config.model_dump() == prometheus_queries(demo)
    assert {app: sorted(queries) for app, queries in config.apps.items()} == demo.metrics
    assert config.apps["web"]["app.requests_per_s"] == (
        'max(prescale_live_value{app="web",metric="app.requests_per_s",instance!=""})'
        ' or max(prescale_live_value{app="web",metric="app.requests_per_s"})'
    )
