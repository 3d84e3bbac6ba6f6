"""The traces played as live demand: which trace instant plays when, and which rows a window holds.

Most tests play a *clock trace* (tests/live/traces.py): every value is its own trace instant, so a
played row tells which instant it came from. The time mapping under test is stated in
``prescale/live/player.py``: at speed 1, ``tau(t) = t (mod L)`` with ``L`` whole weeks.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from prescale.demo import load_manifest
from prescale.live import LiveTraces
from prescale.metrics.sources.file import FileSource
from prescale.metrics.validation import MetricsInputError
from tests.live.traces import STEP, clock_trace, manifest

TRACE_START = datetime(2021, 3, 3, tzinfo=UTC)  # a Wednesday
TRACE_SPAN = timedelta(days=15)  # loops over its last 14 days
LOOP = timedelta(days=14)
TRACE_END = TRACE_START + TRACE_SPAN


@pytest.fixture
def clock_traces(tmp_path) -> LiveTraces:
    trace = clock_trace(tmp_path / "clock.csv", app="web", start=TRACE_START, span=TRACE_SPAN)
    return LiveTraces.from_manifest(manifest(tmp_path / "demo.yaml", [{"app": "web", "file": trace.name}]))


def played(rows: pd.DataFrame) -> list[datetime]:
    """The trace instants the rows came from (a clock trace's values)."""
    return [datetime.fromtimestamp(value, UTC) for value in rows["value"]]


@pytest.mark.parametrize(
    "now",
    [
        pytest.param(datetime(2026, 12, 5, 8, 27, 13, tzinfo=UTC), id="saturday-morning"),
        pytest.param(datetime(2026, 12, 7, 0, 0, tzinfo=UTC), id="monday-midnight-on-a-step"),
        pytest.param(datetime(2027, 2, 28, 23, 59, 59, tzinfo=UTC), id="sunday-last-second"),
        pytest.param(datetime(2031, 6, 18, 13, 2, tzinfo=UTC), id="years-later"),
    ],
)
def test_speed_1_keeps_the_weekday_and_the_time_of_day(clock_traces, now):
    row = clock_traces.at(now)
    (instant,) = played(row)
    assert instant.weekday() == now.weekday()
    assert instant.time() == pd.Timestamp(now).floor(STEP).time()
    assert TRACE_END - LOOP <= instant < TRACE_END, "only the loop's last whole weeks play"
    assert row["ts"].iloc[0] == pd.Timestamp(now).floor(STEP), "served with its real instant"
    assert (row["ts"].iloc[0] - pd.Timestamp(instant)) % timedelta(weeks=1) == timedelta(0)


def test_the_loop_wraps_from_the_trace_end_to_the_loop_start(clock_traces):
    loops = (datetime(2026, 12, 1, tzinfo=UTC) - TRACE_END) // LOOP + 1
    wrap = TRACE_END + loops * LOOP  # a real instant playing the loop's start again
    rows = clock_traces.rows(wrap - 2 * STEP, wrap + 2 * STEP)
    assert played(rows) == [TRACE_END - 2 * STEP, TRACE_END - STEP, TRACE_END - LOOP, TRACE_END - LOOP + STEP]
    assert list(rows["ts"]) == [pd.Timestamp(wrap + k * STEP) for k in (-2, -1, 0, 1)]


def test_windows_are_half_open_shifted_and_repeatable(clock_traces):
    start = datetime(2026, 12, 5, 8, 25, tzinfo=UTC)
    rows = clock_traces.rows(start, start + 3 * STEP)
    assert list(rows["ts"]) == [pd.Timestamp(start + k * STEP) for k in range(3)], "start in, end out"
    assert [instant.time() for instant in played(rows)] == [(start + k * STEP).time() for k in range(3)]
    pd.testing.assert_frame_equal(clock_traces.rows(start, start + 3 * STEP), rows)
    halves = pd.concat([clock_traces.rows(start, start + STEP), clock_traces.rows(start + STEP, start + 3 * STEP)])
    pd.testing.assert_frame_equal(halves.reset_index(drop=True), rows)
    assert clock_traces.rows(start + timedelta(seconds=1), start + STEP).empty


def test_at_is_the_last_row_a_window_ending_there_holds(clock_traces):
    now = datetime(2026, 12, 5, 8, 27, 13, tzinfo=UTC)
    window = clock_traces.rows(now - timedelta(hours=1), now + timedelta(microseconds=1))
    pd.testing.assert_frame_equal(clock_traces.at(now), window.tail(1).reset_index(drop=True))


def test_speed_above_1_starts_where_real_time_is_and_runs_faster(tmp_path):
    trace = clock_trace(tmp_path / "clock.csv", app="web", start=TRACE_START, span=TRACE_SPAN)
    path = manifest(tmp_path / "demo.yaml", [{"app": "web", "file": trace.name}])
    epoch = datetime(2026, 12, 5, 8, 25, tzinfo=UTC)
    fast = LiveTraces.from_manifest(path, speed=60, epoch=epoch)
    assert played(fast.at(epoch)) == played(LiveTraces.from_manifest(path).at(epoch))
    rows = fast.rows(epoch, epoch + timedelta(minutes=10))  # ten hours of trace
    assert len(rows) == 120
    assert set(rows["ts"].diff().dropna()) == {pd.Timedelta(seconds=5)}, "a 5-minute step every 5 seconds"
    instants = played(rows)
    assert instants[0].time() == epoch.time()
    assert {b - a for a, b in zip(instants, instants[1:], strict=False)} == {STEP}
    later = epoch + timedelta(days=3, minutes=7)  # another process, another moment: the same mapping
    again = LiveTraces.from_manifest(path, speed=60, epoch=epoch)
    pd.testing.assert_frame_equal(
        again.rows(later, later + timedelta(minutes=1)), fast.rows(later, later + timedelta(minutes=1))
    )
    assert played(fast.at(later))[0] != played(LiveTraces.from_manifest(path).at(later))[0]


def test_speed_1_with_an_epoch_is_the_same_mapping_as_without(tmp_path):
    trace = clock_trace(tmp_path / "clock.csv", app="web", start=TRACE_START, span=TRACE_SPAN)
    path = manifest(tmp_path / "demo.yaml", [{"app": "web", "file": trace.name}])
    start = datetime(2026, 12, 5, 8, 25, tzinfo=UTC)
    with_epoch = LiveTraces.from_manifest(path, epoch=datetime(2026, 11, 2, 3, 1, 7, tzinfo=UTC))
    pd.testing.assert_frame_equal(
        with_epoch.rows(start, start + LOOP), LiveTraces.from_manifest(path).rows(start, start + LOOP)
    )


@pytest.mark.parametrize(
    ("speed", "epoch", "message"),
    [
        pytest.param(10, None, "speed 10 needs an epoch", id="faster-without-epoch"),
        pytest.param(0, None, r"speed \(0\) must be a positive number", id="zero"),
        pytest.param(-2.0, datetime(2026, 1, 1, tzinfo=UTC), r"speed \(-2.0\) must be a positive", id="negative"),
        pytest.param(10, datetime(2026, 1, 1), "epoch .* has no time zone", id="naive-epoch"),
    ],
)
def test_a_speed_without_a_defined_mapping_is_refused(clock_traces, tmp_path, speed, epoch, message):
    with pytest.raises(MetricsInputError, match=message):
        LiveTraces.from_manifest(tmp_path / "demo.yaml", speed=speed, epoch=epoch)


def test_a_trace_under_a_week_loops_over_whole_days_and_says_the_weekday_is_lost(tmp_path):
    trace = clock_trace(tmp_path / "short.csv", app="web", start=TRACE_START, span=timedelta(days=2, hours=5))
    traces = LiveTraces.from_manifest(manifest(tmp_path / "demo.yaml", [{"app": "web", "file": trace.name}]))
    (described,) = traces.describe(at=datetime(2026, 12, 5, tzinfo=UTC))
    assert described["loop"] == timedelta(days=2)
    assert described["keeps"] == "time of day (not the weekday)"
    now = datetime(2026, 12, 5, 17, 42, tzinfo=UTC)
    (instant,) = played(traces.at(now))
    assert instant.time() == pd.Timestamp(now).floor(STEP).time()


def test_the_demo_traces_play_with_their_own_steps_quickly():
    entries = load_manifest().apps
    traces = LiveTraces.from_manifest()
    assert traces.apps == [entry.app for entry in entries]
    end = datetime(2026, 12, 5, 8, 30, tzinfo=UTC)
    began = time.perf_counter()
    rows = traces.rows(end - timedelta(days=8), end)
    assert time.perf_counter() - began < 0.5
    for entry in entries:
        trace = FileSource(entry.file, app=entry.app, mapping=entry.mapping).read().rows
        own_step = pd.Series(pd.to_datetime(trace["ts"], utc=True).unique()).diff().mode()[0]
        played = rows[rows["app"] == entry.app].drop_duplicates("ts")["ts"].diff().mode()[0]
        assert played == own_step, entry.app
    assert set(traces.at(end)["app"]) == set(traces.apps)
    for described in traces.describe(at=end):
        assert described["keeps"] == "weekday and time of day", described["app"]
        assert described["shift"] % timedelta(weeks=1) == timedelta(0), described["app"]


@pytest.mark.parametrize(
    ("csv", "mapping", "message"),
    [
        pytest.param(None, None, "which does not exist", id="missing-file"),
        pytest.param(
            "when,requests\n2021-01-01T00:00:00Z,3\n",
            "timestamp:\n  column: ts\n",
            r"lacks column\(s\) \['ts'\]",
            id="no-time-column",
        ),
        pytest.param("ts,requests\n", "timestamp:\n  column: ts\n", "no rows", id="header-only"),
        pytest.param(
            "ts,metric,value\nyesterday,cpu_cores,1\n2021-01-01T00:05:00Z,cpu_cores,2\n",
            None,
            r"1 row\(s\) without a readable instant \(first: 'yesterday'\)",
            id="row-without-instant",
        ),
        pytest.param(
            "ts,requests\n2021-01-01T00:00:00Z,3\n", "timestamp:\n  column: ts\n", "single instant", id="one-instant"
        ),
    ],
)
def test_an_entry_that_cannot_be_played_names_its_file(tmp_path, csv, mapping, message):
    good = clock_trace(tmp_path / "good.csv", app="web", start=TRACE_START, span=TRACE_SPAN)
    bad = tmp_path / "bad.csv"
    entry = {"app": "analytics", "file": bad.name}
    if csv is not None:
        bad.write_text(csv)
    if mapping is not None:
        (tmp_path / "bad.yaml").write_text(mapping + "metrics:\n  app.requests_per_s: {column: requests}\n")
        entry["mapping"] = "bad.yaml"
    path = manifest(tmp_path / "demo.yaml", [{"app": "web", "file": good.name}, entry])
    with pytest.raises(MetricsInputError, match=message) as caught:
        LiveTraces.from_manifest(path)
    assert str(bad) in str(caught.value)
