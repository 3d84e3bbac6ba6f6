"""The ``replay`` metrics source: the played rows of a window, through the registry and the ingest path, as a batch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from prescale.live import LiveTraces
from prescale.metrics.ingest import ingest
from prescale.metrics.sources import Window, build_source
from prescale.metrics.store import MetricsStore
from prescale.metrics.validation import MetricsInputError
from prescale.settings import load_settings
from tests.live.traces import clock_trace, manifest

NOW = datetime(2026, 12, 5, 8, 30, tzinfo=UTC)


@pytest.fixture
def clock_manifest(tmp_path):
    trace = clock_trace(
        tmp_path / "clock.csv", app="web", start=datetime(2021, 3, 3, tzinfo=UTC), span=timedelta(days=15)
    )
    return manifest(tmp_path / "demo.yaml", [{"app": "web", "file": trace.name}])


def test_a_window_reads_the_rows_playing_in_it_under_one_batch_id_per_window(clock_manifest, tmp_path):
    settings = load_settings(home=tmp_path)
    source = build_source("replay", {"manifest": str(clock_manifest)}, settings)
    window = Window.last(30, end=NOW)
    batch = source.read(window)
    pd.testing.assert_frame_equal(batch.rows, LiveTraces.from_manifest(clock_manifest).rows(window.start, window.end))
    assert len(batch.rows) == 6, "5-minute steps in [08:00, 08:30)"
    assert build_source("replay", {"manifest": str(clock_manifest)}, settings).read(window).batch_id == batch.batch_id
    assert source.read(Window.last(30, end=NOW + timedelta(minutes=1))).batch_id != batch.batch_id
    faster = build_source(
        "replay", {"manifest": str(clock_manifest), "speed": 60, "epoch": "2026-12-05T08:00:00Z"}, settings
    )
    assert faster.read(window).batch_id != batch.batch_id
    assert len(faster.read(window).rows) == 360, "60 times the rows"


def test_a_speed_without_an_epoch_is_refused_when_built(clock_manifest, tmp_path):
    with pytest.raises(MetricsInputError, match="'replay' metrics source.*speed 60 needs an epoch"):
        build_source("replay", {"manifest": str(clock_manifest), "speed": 60}, load_settings(home=tmp_path))


def test_the_demo_manifest_is_the_default_and_ingests_clean_every_minute(tmp_path):
    source = build_source("replay", {}, load_settings(home=tmp_path))
    store = MetricsStore(tmp_path / "metrics", quarantine=tmp_path / "quarantine")
    first = ingest(source, store=store, window=Window.last(10, end=NOW))
    again = ingest(source, store=store, window=Window.last(10, end=NOW))
    following = ingest(source, store=store, window=Window.last(10, end=NOW + timedelta(minutes=1)))
    assert first.quarantined == 0 and first.accepted == first.read > 0
    assert set(first.per_app) == set(LiveTraces.from_manifest().apps)
    assert again.already_ingested
    assert not following.already_ingested
    assert store.read("web")["ts"].max() == pd.Timestamp(NOW), "the next minute's window adds the row at its start"
