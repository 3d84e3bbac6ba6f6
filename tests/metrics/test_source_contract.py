"""Every registered metrics source keeps the contract the ingest flow and its one read task rely on.

Parametrised over ``prescale.metrics.sources.SOURCES``: each source is built through the registry
(``build_source``, as the flow does) from a small staged fixture holding good and bad rows (a
file on disk; the real Prometheus server with its backfilled history), then must:

- read the rows as they are, and validation must account for every one (``accepted +
  quarantined == read``, both non-zero: the fixture holds rows of each kind);
- read the same rows under the same batch id a second time, so storing twice writes once;
- build without I/O from a location that does not exist, and fail on read with a user error
  that names it and that the read task does not retry;
- refuse options it does not know, and honour its ``live`` flag (a window, or none).

A new source adds its stager to :data:`STAGERS` (what data to read, and where).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from prescale.metrics.ingest import ingest, validate_batch
from prescale.metrics.sources import SOURCES, FileSource, Window, build_source, register
from prescale.metrics.store import MetricsStore
from prescale.metrics.validation import MetricsInputError
from prescale.settings import Settings, load_settings
from tasks.ingest import is_transient
from tests.metrics.prometheus_server import ANCHOR

EVERY = [pytest.param(name, id=name) for name in SOURCES]


@dataclass
class Staged:
    """A source's fixture: options naming data of known size, and options naming nothing."""

    options: dict[str, Any]
    read: int  # rows the options name
    missing: dict[str, Any]  # same, but the location does not exist
    location: str  # what the error on `missing` must name
    settings: Settings


def _file(tmp_path: Path, request: pytest.FixtureRequest) -> Staged:
    path = tmp_path / "metrics.csv"
    rows = [f"2026-01-01T00:{m:02d}:00Z,web,cpu_cores,{m}" for m in range(5)]
    rows += ["2026-01-01T00:05:00Z,web,cpu_cores,-1", "2026-01-01T00:06:00Z,web,cpu_cores,NaN"]
    path.write_text("ts,app,metric,value\n" + "\n".join(rows) + "\n")
    absent = tmp_path / "absent.csv"
    return Staged({"path": str(path)}, 7, {"path": str(absent)}, str(absent), load_settings(home=tmp_path))


def _prometheus(tmp_path: Path, request: pytest.FixtureRequest) -> Staged:
    server = request.getfixturevalue("prometheus")
    config = tmp_path / "queries.yaml"
    config.write_text(
        "apps:\n  web:\n"
        "    cpu_cores: 'prescale_test_cpu_cores{app=\"web\"}'\n"
        "    app.odd_values: 'prescale_test_odd{app=\"web\"}'\n"  # NaN, +Inf, -Inf, 1.25 in turn
    )
    absent = tmp_path / "absent.yaml"
    settings = load_settings(home=tmp_path, prometheus={"url": server.url, "retries": 0})
    return Staged({"config": str(config)}, 2 * 31, {"config": str(absent)}, str(absent), settings)


def _replay(tmp_path: Path, request: pytest.FixtureRequest) -> Staged:
    """A one-day trace at 1-minute steps (it loops daily, so WINDOW plays its 01:30 to 02:00): 30 rows, 6 bad."""
    day = pd.date_range("2021-01-01", periods=1440, freq="1min", tz="UTC")
    values = ["-1" if m % 10 == 3 else "NaN" if m % 10 == 7 else str(m) for m in range(len(day))]
    lines = [f"{ts.isoformat()},web,cpu_cores,{value}" for ts, value in zip(day, values, strict=True)]
    (tmp_path / "day.csv").write_text("ts,app,metric,value\n" + "\n".join(lines) + "\n")
    (tmp_path / "demo.yaml").write_text("apps:\n  - app: web\n    file: day.csv\n")
    absent = tmp_path / "absent.yaml"
    settings = load_settings(home=tmp_path)
    return Staged({"manifest": str(tmp_path / "demo.yaml")}, 30, {"manifest": str(absent)}, str(absent), settings)


STAGERS: dict[str, Callable[[Path, pytest.FixtureRequest], Staged]] = {
    "file": _file,
    "prometheus": _prometheus,
    "replay": _replay,
}
WINDOW = Window.last(30, end=ANCHOR + timedelta(hours=2))  # 31 one-minute steps, both ends included


@pytest.fixture
def staged(request: pytest.FixtureRequest, tmp_path: Path, name: str) -> Staged:
    if name not in STAGERS:
        pytest.fail(f"the metrics source {name!r} has no fixture: add a stager to STAGERS in {__file__}")
    return STAGERS[name](tmp_path, request)


def _window(name: str) -> Window | None:
    return WINDOW if SOURCES[name].live else None


@pytest.mark.parametrize("name", EVERY)
def test_validation_accounts_for_every_row_read(name, staged):
    source = build_source(name, staged.options, staged.settings)
    batch = source.read(_window(name))
    result = validate_batch(batch)
    assert len(batch.rows) == result.read == staged.read
    assert len(result.accepted) + len(result.quarantined) == staged.read
    assert len(result.accepted) > 0 and len(result.quarantined) > 0, "the fixture holds good and bad rows"
    assert batch.batch_id and batch.source


@pytest.mark.parametrize("name", EVERY)
def test_a_second_read_is_the_same_batch(name, staged, tmp_path):
    source = build_source(name, staged.options, staged.settings)
    first, second = source.read(_window(name)), source.read(_window(name))
    assert second.batch_id == first.batch_id
    pd.testing.assert_frame_equal(second.rows, first.rows)
    store = MetricsStore(tmp_path / "m", quarantine=tmp_path / "q")
    once, again = (ingest(source, store=store, window=_window(name)) for _ in range(2))
    assert not once.already_ingested and again.already_ingested
    assert sum(len(store.read(app)) for app in store.apps()) == once.accepted


@pytest.mark.parametrize("name", EVERY)
def test_a_missing_location_fails_on_read_with_a_user_error_naming_it(name, staged):
    source = build_source(name, staged.missing, staged.settings)  # building does no I/O
    with pytest.raises(Exception) as caught:
        source.read(_window(name))
    assert staged.location in str(caught.value)
    assert not is_transient(caught.value), "a missing location is not retried"


@pytest.mark.parametrize("name", EVERY)
def test_unknown_options_are_refused_with_the_source_named(name, staged):
    with pytest.raises(MetricsInputError, match=f"'{name}' metrics source.*no_such_option"):
        build_source(name, {**staged.options, "no_such_option": 1}, staged.settings)


@pytest.mark.parametrize("name", EVERY)
def test_a_source_is_read_by_window_only_when_live(name, staged):
    source = build_source(name, staged.options, staged.settings)
    wrong = None if SOURCES[name].live else WINDOW
    with pytest.raises(MetricsInputError, match=name):
        source.read(wrong)


def test_an_unknown_source_and_a_second_registration_are_refused(tmp_path):
    with pytest.raises(MetricsInputError, match=f"no metrics source named 'kafka': use one of {', '.join(SOURCES)}"):
        build_source("kafka", {}, load_settings(home=tmp_path))
    with pytest.raises(ValueError, match="already registered"):
        register(FileSource)
