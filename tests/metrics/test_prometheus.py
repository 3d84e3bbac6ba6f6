"""The Prometheus source against a real Prometheus 2.x with backfilled, known history.

Values are compared exactly with the functions that generated them (see
``prometheus_server.py``); failure paths go through a loopback proxy that fails or
hangs on purpose; retry delays are recorded through the injected ``sleep``, never
timed.
"""

from __future__ import annotations

import itertools
import math
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prescale.metrics.ingest import ingest
from prescale.metrics.prometheus import (
    MAX_POINTS,
    PrometheusConfig,
    PrometheusConfigError,
    PrometheusError,
    PrometheusQueryError,
    PrometheusUnavailableError,
    fetch_range,
    load_prometheus_config,
    plan_chunks,
)
from prescale.metrics.sources import PrometheusSource, Window
from prescale.metrics.store import MetricsStore
from tests.metrics.prometheus_server import (
    ANCHOR,
    ANCHOR_S,
    LAST_S,
    ODD_CYCLE,
    SAMPLE_SECONDS,
    FlakyProxy,
    cpu_cores,
    free_port,
    memory_gib,
    odd_values,
    requests_a,
    requests_b,
    sample_times,
)

EXAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "infra" / "prometheus" / "queries.yaml"
END = ANCHOR + timedelta(seconds=LAST_S - ANCHOR_S)

CONFIG = PrometheusConfig(
    apps={
        "web": {
            "cpu_cores": 'prescale_test_cpu_cores{app="web"}',
            "app.requests_per_s": 'sum(prescale_test_requests{app="web"})',
        },
        "batch-jobs": {"memory_gib": 'prescale_test_memory_gib{app="batch-jobs"}'},
    }
)
CPU_ONLY = PrometheusConfig(apps={"web": {"cpu_cores": 'prescale_test_cpu_cores{app="web"}'}})
EXPECTED = {
    ("web", "cpu_cores"): cpu_cores,
    ("web", "app.requests_per_s"): lambda t: requests_a(t) + requests_b(t),
    ("batch-jobs", "memory_gib"): memory_gib,
}


def fetch(config: PrometheusConfig, url: str, start: datetime = ANCHOR, end: datetime = END, **overrides):
    options = {
        "step_seconds": 60,
        "chunk_hours": 6.0,
        "timeout_seconds": 10.0,
        "retries": 0,
        "backoff_seconds": 0.5,
    }
    options.update(overrides)
    return fetch_range(config, url=url, start=start, end=end, **options)


def epoch_seconds(frame: pd.DataFrame) -> np.ndarray:
    return (frame["ts"] - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(dtype=np.int64)


class Recorder(list):
    def __call__(self, *args: object) -> None:
        self.append(args[0] if len(args) == 1 else args)


# --- values -------------------------------------------------------------------------------------------------------


def test_fetched_values_equal_backfilled_samples(prometheus) -> None:
    frame = fetch(CONFIG, prometheus.url)

    assert list(frame.columns) == ["app", "ts", "metric", "value"]
    assert pd.api.types.is_string_dtype(frame["app"]) and pd.api.types.is_string_dtype(frame["metric"])
    assert str(frame["ts"].dtype) == "datetime64[ns, UTC]" and frame["value"].dtype == np.float64
    assert frame.equals(frame.sort_values(["app", "ts", "metric"], ignore_index=True))
    times = np.array(sample_times(), dtype=np.int64)
    for (app, metric), expected in EXPECTED.items():
        rows = frame[(frame["app"] == app) & (frame["metric"] == metric)]
        np.testing.assert_array_equal(epoch_seconds(rows), times, err_msg=f"{app}/{metric} timestamps")
        np.testing.assert_array_equal(rows["value"].to_numpy(), [expected(t) for t in times], err_msg=metric)
    assert len(frame) == 3 * len(times)


def test_step_jump_is_where_it_was_backfilled(prometheus) -> None:
    frame = fetch(CPU_ONLY, prometheus.url)
    jumps = np.diff(frame["value"].to_numpy())

    assert epoch_seconds(frame)[1:][np.argmax(jumps)] == ANCHOR_S + 30 * 3600
    assert jumps.max() > 1.4


def test_nan_and_infinities_are_kept_not_dropped(prometheus) -> None:
    config = PrometheusConfig(apps={"web": {"app.odd_values": 'prescale_test_odd{app="web"}'}})

    frame = fetch(config, prometheus.url, end=ANCHOR + timedelta(hours=1))

    values = frame["value"].to_numpy()
    assert len(values) == 61
    np.testing.assert_array_equal(values, [odd_values(t) for t in epoch_seconds(frame)])  # NaN == NaN here
    assert np.isnan(values).sum() == 16 and (values == math.inf).sum() == 15 and (values == -math.inf).sum() == 15
    assert ODD_CYCLE[3] in values


def test_query_without_series_gives_an_empty_typed_frame(prometheus) -> None:
    config = PrometheusConfig(apps={"web": {"cpu_cores": "prescale_test_never_written"}})

    frame = fetch(config, prometheus.url)

    assert frame.empty and list(frame.columns) == ["app", "ts", "metric", "value"]
    assert str(frame["ts"].dtype) == "datetime64[ns, UTC]" and frame["value"].dtype == np.float64


def test_start_is_rounded_up_to_the_step_grid(prometheus) -> None:
    start = ANCHOR + timedelta(hours=2, seconds=17)

    frame = fetch(CPU_ONLY, prometheus.url, start=start, end=start + timedelta(minutes=10))

    assert epoch_seconds(frame)[0] == ANCHOR_S + 2 * 3600 + SAMPLE_SECONDS
    assert np.all(epoch_seconds(frame) % SAMPLE_SECONDS == 0) and len(frame) == 10


# --- chunks -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("chunk_hours", "span", "chunks"),
    [
        pytest.param(1.0, timedelta(hours=6, minutes=17), 7, id="hourly-chunks"),
        pytest.param(0.3, timedelta(hours=3), 10, id="chunks-off-the-hour"),
        pytest.param(1 / 60, timedelta(minutes=20), 20, id="one-point-per-chunk"),
        pytest.param(1 / 120, timedelta(minutes=5), 5, id="chunk-shorter-than-step"),
    ],
)
def test_chunk_boundaries_neither_repeat_nor_skip_points(prometheus, chunk_hours, span, chunks) -> None:
    start = ANCHOR + timedelta(hours=7, seconds=30)
    calls = Recorder()

    chunked = fetch(CONFIG, prometheus.url, start=start, end=start + span, chunk_hours=chunk_hours, progress=calls)
    whole = fetch(CONFIG, prometheus.url, start=start, end=start + span, chunk_hours=48.0)

    assert calls[-1] == (3 * chunks, 3 * chunks)
    pd.testing.assert_frame_equal(chunked, whole)
    assert not chunked.duplicated(["app", "ts", "metric"]).any()
    first = ANCHOR_S + 7 * 3600 + SAMPLE_SECONDS
    expected = np.arange(first, int((start + span).timestamp()) + 1, SAMPLE_SECONDS)
    for _, rows in chunked.groupby(["app", "metric"]):
        np.testing.assert_array_equal(epoch_seconds(rows), expected)


def test_chunk_shrinks_to_stay_under_the_points_limit(prometheus) -> None:
    # 4 hours at 1 s steps is 14,401 points: Prometheus refuses that in one query (HTTP 400).
    start = ANCHOR + timedelta(hours=1)
    calls = Recorder()

    frame = fetch(CPU_ONLY, prometheus.url, start=start, end=start + timedelta(hours=4), step_seconds=1, progress=calls)

    assert calls[-1] == (2, 2)
    times = epoch_seconds(frame)
    np.testing.assert_array_equal(times, np.arange(ANCHOR_S + 3600, ANCHOR_S + 5 * 3600 + 1))
    held = [cpu_cores(t - (t - ANCHOR_S) % SAMPLE_SECONDS) for t in times]  # last sample at or before t
    np.testing.assert_array_equal(frame["value"].to_numpy(), held)


def test_progress_counts_every_request(prometheus) -> None:
    calls = Recorder()

    fetch(CONFIG, prometheus.url, end=ANCHOR + timedelta(hours=12), progress=calls)

    assert calls == [(done, 9) for done in range(10)]  # 3 metrics x 3 chunks (6 h, 6 h, the last point)


@pytest.mark.parametrize(
    ("start_ms", "end_ms", "step_ms", "chunk_ms", "count"),
    [
        pytest.param(0, 3_600_000, 60_000, 600_000, 7, id="end-on-grid"),
        pytest.param(0, 3_659_999, 60_000, 600_000, 7, id="end-between-grid-points"),
        pytest.param(0, 0, 60_000, 600_000, 1, id="single-point"),
        pytest.param(0, 21_600_000, 1_000, 21_600_000, 2, id="small-step-shrinks-chunk"),
        pytest.param(0, 600_000, 60_000, 1_000, 11, id="chunk-shorter-than-step"),
        pytest.param(0, 100, 60_000, 600_000, 1, id="range-shorter-than-step"),
    ],
)
def test_plan_chunks_covers_the_grid_once(start_ms, end_ms, step_ms, chunk_ms, count) -> None:
    chunks = plan_chunks(start_ms, end_ms, step_ms=step_ms, chunk_ms=chunk_ms)

    assert len(chunks) == count
    assert grid_of(chunks, step_ms) == list(range(start_ms, end_ms + 1, step_ms))


def grid_of(chunks, step_ms: int) -> list[int]:
    return [t for chunk in chunks for t in range(chunk.first_ms, chunk.last_ms + 1, step_ms)]


@settings(derandomize=True, max_examples=100, deadline=None)
@given(
    start_ms=st.integers(0, 10**12),
    steps=st.integers(0, 30_000),
    step_ms=st.integers(1, 600_000),
    past_grid_ms=st.integers(0, 599_999),
    chunk_ms=st.integers(1, 48 * 3_600_000),
)
def test_plan_chunks_property(start_ms, steps, step_ms, past_grid_ms, chunk_ms) -> None:
    end_ms = start_ms + steps * step_ms + past_grid_ms % step_ms
    chunks = plan_chunks(start_ms, end_ms, step_ms=step_ms, chunk_ms=chunk_ms)

    last_grid_point = chunks[-1].last_ms - (chunks[-1].last_ms - start_ms) % step_ms
    assert chunks[0].first_ms == start_ms and last_grid_point == start_ms + steps * step_ms
    assert all((c.last_ms - c.first_ms) // step_ms + 1 <= MAX_POINTS for c in chunks)
    assert all((c.first_ms - start_ms) % step_ms == 0 for c in chunks)
    assert all(b.first_ms - a.last_ms == step_ms for a, b in itertools.pairwise(chunks))


# --- query errors -------------------------------------------------------------------------------------------------


def test_bad_promql_raises_a_clear_error_without_retrying(prometheus) -> None:
    query = "sum(rate(prescale_test_requests[5m])"
    config = PrometheusConfig(apps={"web": {"app.requests_per_s": query}})
    sleeps = Recorder()

    with FlakyProxy(prometheus.url, failures=0) as proxy, pytest.raises(PrometheusQueryError) as caught:
        fetch(config, proxy.url, retries=3, sleep=sleeps)

    message = str(caught.value)
    assert "'web'" in message and "'app.requests_per_s'" in message and query in message
    assert "parse error" in message and "HTTP 400" in message
    assert proxy.requests == 1 and sleeps == []


def test_query_returning_several_series_asks_for_aggregation(prometheus) -> None:
    config = PrometheusConfig(apps={"web": {"app.requests_per_s": 'prescale_test_requests{app="web"}'}})

    with pytest.raises(PrometheusQueryError, match=r"returned 2 series") as caught:
        fetch(config, prometheus.url)

    assert "sum()" in str(caught.value) and "'instance': 'a'" in str(caught.value)


def test_non_prometheus_4xx_is_not_retried() -> None:
    sleeps = Recorder()

    with FlakyProxy(None, failures=None, mode=404) as proxy, pytest.raises(PrometheusError) as caught:
        fetch(CPU_ONLY, proxy.url, retries=3, sleep=sleeps)

    assert not isinstance(caught.value, PrometheusUnavailableError)
    assert "HTTP 404" in str(caught.value) and "is the url a Prometheus server" in str(caught.value)
    assert proxy.requests == 1 and sleeps == []


# --- retries ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503], ids=["500", "502", "503"])
def test_5xx_is_retried_with_exponential_backoff(prometheus, status) -> None:
    sleeps = Recorder()
    end = ANCHOR + timedelta(hours=1)

    with FlakyProxy(prometheus.url, failures=2, mode=status) as proxy:
        frame = fetch(CPU_ONLY, proxy.url, end=end, retries=3, backoff_seconds=0.25, sleep=sleeps)

    assert proxy.requests == 3 and sleeps == [0.25, 0.5]
    pd.testing.assert_frame_equal(frame, fetch(CPU_ONLY, prometheus.url, end=end))


def test_timeout_is_retried(prometheus) -> None:
    sleeps = Recorder()
    end = ANCHOR + timedelta(hours=1)

    with FlakyProxy(prometheus.url, failures=1, mode="hang") as proxy:
        frame = fetch(CPU_ONLY, proxy.url, end=end, timeout_seconds=0.5, retries=2, backoff_seconds=0.1, sleep=sleeps)

    assert proxy.requests == 2 and sleeps == [0.1]
    pd.testing.assert_frame_equal(frame, fetch(CPU_ONLY, prometheus.url, end=end))


def test_persistent_5xx_gives_up_after_the_configured_retries() -> None:
    sleeps = Recorder()

    with FlakyProxy(None, failures=None, mode=502) as proxy, pytest.raises(PrometheusUnavailableError) as caught:
        fetch(CPU_ONLY, proxy.url, retries=2, backoff_seconds=1.0, sleep=sleeps)

    assert proxy.requests == 3 and sleeps == [1.0, 2.0]
    assert "3 attempts (2 retries)" in str(caught.value) and "HTTP 502" in str(caught.value)


def test_unreachable_server_raises_after_the_configured_retries() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # bound then released: nothing listens there
    sleeps = Recorder()

    with pytest.raises(PrometheusUnavailableError) as caught:
        fetch(CPU_ONLY, url, retries=3, backoff_seconds=0.5, sleep=sleeps)

    assert sleeps == [0.5, 1.0, 2.0]
    message = str(caught.value)
    assert url in message and "4 attempts" in message and "ConnectError" in message and "'cpu_cores'" in message


# --- inputs -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        pytest.param({"start": datetime(2024, 3, 1)}, "start (2024-03-01T00:00:00) has no time zone", id="naive-start"),
        pytest.param({"start": END, "end": ANCHOR}, "is after end", id="start-after-end"),
        pytest.param({"url": "127.0.0.1:9090"}, "must start with http://", id="url-without-scheme"),
        pytest.param({"step_seconds": 0}, "step_seconds (0) must be at least", id="zero-step"),
        pytest.param({"retries": -1}, "retries (-1) must be 0 or more", id="negative-retries"),
        pytest.param({"apps": ["shop"]}, "'shop' have no queries", id="unknown-app"),
    ],
)
def test_bad_inputs_are_refused_before_any_request(overrides, fragment) -> None:
    options = {"url": f"http://127.0.0.1:{free_port()}", "start": ANCHOR, "end": END}
    options.update(overrides)

    with pytest.raises(ValueError) as caught:
        fetch(CPU_ONLY, options.pop("url"), options.pop("start"), options.pop("end"), **options)

    assert fragment in str(caught.value)
    assert not isinstance(caught.value, PrometheusError)


# --- configuration ------------------------------------------------------------------------------------------------


def test_example_config_is_valid() -> None:
    config = load_prometheus_config(EXAMPLE_CONFIG)

    assert config.apps and all(config.apps.values())
    assert "cpu_cores" in next(iter(config.apps.values()))


def test_example_queries_are_valid_promql(prometheus) -> None:
    # None of these series exist in the test server: a query that parses yields no rows, one that does not raises.
    frame = fetch(load_prometheus_config(EXAMPLE_CONFIG), prometheus.url, end=ANCHOR + timedelta(hours=1))

    assert frame.empty


def test_config_strips_queries_and_keeps_order(tmp_path: Path) -> None:
    path = tmp_path / "queries.yaml"
    path.write_text("apps:\n  web:\n    memory_gib: |\n      sum(x)\n    cpu_cores: ' sum(y) '\n", encoding="utf-8")

    assert load_prometheus_config(path).apps == {"web": {"memory_gib": "sum(x)", "cpu_cores": "sum(y)"}}


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        pytest.param("apps:\n  Web_App:\n    cpu_cores: up\n", ["'Web_App'", "RFC 1035"], id="bad-app-name"),
        pytest.param(f"apps:\n  {'a' * 64}:\n    cpu_cores: up\n", ["Kubernetes Service name"], id="app-too-long"),
        pytest.param("apps:\n  web:\n    cpu: up\n", ["'cpu'", "cpu_cores", "app.<snake_case>"], id="unknown-metric"),
        pytest.param("apps:\n  web:\n    app.RequestsPerS: up\n", ["'app.RequestsPerS'"], id="bad-app-metric"),
        pytest.param("apps:\n  web:\n    cpu_cores: ''\n", ["query of metric 'cpu_cores'", "empty"], id="empty-query"),
        pytest.param("apps:\n  web:\n    cpu_cores: 5\n", ["apps.web.cpu_cores", "valid string"], id="query-not-text"),
        pytest.param("apps:\n  web: {}\n", ["app 'web' has no metrics"], id="app-without-metrics"),
        pytest.param("apps: {}\n", ["apps", "at least 1 item"], id="no-apps"),
        pytest.param("apps:\n  web:\n    cpu_cores: up\nstep: 5\n", ["step", "Extra inputs"], id="unknown-key"),
        pytest.param("- web\n", ["must be a mapping with an 'apps' key", "list"], id="not-a-mapping"),
        pytest.param("apps: [web\n", ["not valid YAML"], id="yaml-syntax"),
    ],
)
def test_invalid_config_names_file_and_problem(tmp_path: Path, text: str, fragments: list[str]) -> None:
    path = tmp_path / "queries.yaml"
    path.write_text(text, encoding="utf-8")

    with pytest.raises(PrometheusConfigError) as caught:
        load_prometheus_config(path)

    assert str(path) in str(caught.value)
    for fragment in fragments:
        assert fragment in str(caught.value)


def test_missing_config_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(PrometheusConfigError, match="cannot read Prometheus queries file .*absent.yaml"):
        load_prometheus_config(tmp_path / "absent.yaml")


def test_prometheus_window_flows_into_the_store_idempotently(prometheus, tmp_path):
    """What the one-minute deployment runs: the Prometheus source -> validate -> store, twice for one window."""
    config = tmp_path / "queries.yaml"
    config.write_text("apps:\n  web:\n    cpu_cores: 'prescale_test_cpu_cores{app=\"web\"}'\n")
    store = MetricsStore(tmp_path / "m", quarantine=tmp_path / "q")
    window = Window(ANCHOR + timedelta(hours=1), ANCHOR + timedelta(hours=3))
    source = PrometheusSource(
        config,
        url=prometheus.url,
        step_seconds=60,
        chunk_hours=1.0,
        timeout_seconds=10.0,
        retries=1,
        backoff_seconds=0.1,
    )
    reports = [ingest(source, store=store, window=window) for _ in range(2)]
    assert reports[0].accepted == reports[0].read == 121 and reports[0].quarantined == 0
    assert reports[1].already_ingested and reports[1].batch_id == reports[0].batch_id
    rows = store.read("web")
    assert len(rows) == 121
    first = int(rows["ts"].iloc[0].timestamp())
    assert rows["value"].iloc[0] == pytest.approx(cpu_cores(first))
