"""Column mappings: units, exclusions with their reasons, one-app-per-column, and bad mappings."""

from __future__ import annotations

from pathlib import Path

import pytest

from prescale.metrics.ingest import ingest
from prescale.metrics.sources import FileSource
from prescale.metrics.store import MetricsStore
from prescale.metrics.validation import MetricsInputError


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture
def store(tmp_path) -> MetricsStore:
    return MetricsStore(tmp_path / "m", quarantine=tmp_path / "q")


def test_scale_applies_even_when_a_cell_is_text(tmp_path, store):
    data = _write(
        tmp_path, "d.csv", "t,req\n2026-01-01T00:00:00Z,60\n2026-01-01T00:01:00Z,abc\n2026-01-01T00:02:00Z,\n"
    )
    mapping = _write(tmp_path, "m.yaml", "timestamp: {column: t}\nmetrics:\n  app.rps: {column: req, scale: 0.5}\n")
    report = ingest(FileSource(data, app="web", mapping=mapping), store=store)
    assert report.quarantine_reasons == {"bad_type": 1, "missing_value": 1}
    assert store.read("web")["value"].tolist() == [30.0]


def test_exclusions_carry_their_reason_and_flag_columns_are_not_apps(tmp_path, store):
    data = _write(
        tmp_path,
        "d.csv",
        "t,vm1,vm2,outage\n2026-01-01T00:00:00Z,1,2,0\n2026-01-01T00:05:00Z,3,4,1\n",
    )
    mapping = _write(
        tmp_path,
        "m.yaml",
        "timestamp: {column: t}\napps_from_columns: {metric: cpu_util_pct}\n"
        "exclude:\n  - {column: outage, equals: 1, reason: planned outage}\n",
    )
    report = ingest(FileSource(data, app="vm", mapping=mapping), store=store)
    assert store.apps() == ["vm-000", "vm-001"]
    assert (report.read, report.accepted, report.quarantined) == (4, 2, 2)
    quarantine = store.read_quarantine()
    assert set(quarantine["detail"]) == {"excluded by the column mapping: planned outage"}
    assert set(quarantine["app"]) == {"vm-000", "vm-001"}


def test_text_without_offset_needs_the_mappings_timezone(tmp_path, store):
    data = _write(tmp_path, "d.csv", "t,v\n2026-01-01 00:00:00,1\n2026-01-01T00:01:00+01:00,2\n")
    plain = _write(tmp_path, "plain.yaml", "timestamp: {column: t}\nmetrics: {cpu_cores: {column: v}}\n")
    report = ingest(FileSource(data, app="web", mapping=plain), store=store)
    assert report.quarantine_reasons == {"bad_timestamp": 1}
    zoned = _write(
        tmp_path, "zoned.yaml", "timestamp: {column: t, timezone: '-04:00'}\nmetrics: {cpu_cores: {column: v}}\n"
    )
    other = MetricsStore(tmp_path / "m2")
    ingest(FileSource(data, app="web", mapping=zoned), store=other)
    assert [t.isoformat() for t in other.read("web")["ts"]] == [
        "2025-12-31T23:01:00+00:00",
        "2026-01-01T04:00:00+00:00",
    ]


BAD_MAPPINGS = [
    pytest.param(
        "timestamp: {start: '2026-01-01T00:00:00', step_seconds: 60}\nmetrics: {cpu_cores: {column: v}}\n",
        "no UTC offset",
        id="naive-start",
    ),
    pytest.param(
        "timestamp: {column: t, timezone: Mars/Olympus}\nmetrics: {cpu_cores: {column: v}}\n",
        "zone name",
        id="unknown-timezone",
    ),
    pytest.param(
        "timestamp: {column: t}\napps_from_columns: {metric: cpu_util_pct, name: '{x}'}\n",
        "may use only",
        id="bad-name-template",
    ),
    pytest.param(
        "timestamp: {column: t}\nmetrics: {cpu_cores: {column: v}}\nexclude: [{reason: all}]\n",
        "neither a column",
        id="rule-without-target",
    ),
    pytest.param(
        "timestamp: {column: t}\nmetrics: {cpu_cores: {column: v}}\nexclude: [{reason: r, column: v}]\n",
        "together",
        id="column-without-equals",
    ),
    pytest.param(
        "timestamp: {column: t}\nmetrics: {cpu_cores: {column: v}}\nexclude: [{reason: r, from: '2026-01-01'}]\n",
        "no UTC offset",
        id="naive-window",
    ),
    pytest.param("timestamp: {column: t}\n", "exactly one of", id="no-metrics"),
]


@pytest.mark.parametrize(("text", "message"), BAD_MAPPINGS)
def test_bad_mappings_are_user_errors(tmp_path, store, text, message):
    data = _write(tmp_path, "d.csv", "t,v\n2026-01-01T00:00:00Z,1\n")
    mapping = _write(tmp_path, "m.yaml", text)
    with pytest.raises(MetricsInputError, match=message):
        ingest(FileSource(data, app="web", mapping=mapping), store=store)
    assert not store.root.exists()


@pytest.mark.parametrize(
    ("header", "message"),
    [
        pytest.param("t,v,v", "repeats column", id="duplicate-header"),
        pytest.param("t,w", "lacks column", id="no-column"),
    ],
)
def test_unusable_tables_are_user_errors(tmp_path, store, header, message):
    cells = ",".join(["2026-01-01T00:00:00Z"] + ["1"] * (header.count(",")))
    data = _write(tmp_path, "d.csv", f"{header}\n{cells}\n")
    mapping = _write(tmp_path, "m.yaml", "timestamp: {column: t}\nmetrics: {cpu_cores: {column: v}}\n")
    with pytest.raises(MetricsInputError, match=message):
        ingest(FileSource(data, app="web", mapping=mapping), store=store)


def test_numeric_flag_compared_with_text_is_a_user_error(tmp_path, store):
    data = _write(tmp_path, "d.csv", "t,v,flag\n2026-01-01T00:00:00Z,1,0\n")
    mapping = _write(
        tmp_path,
        "m.yaml",
        "timestamp: {column: t}\nmetrics: {cpu_cores: {column: v}}\n"
        "exclude: [{reason: r, column: flag, equals: 'yes'}]\n",
    )
    with pytest.raises(MetricsInputError, match="numeric but `equals` is 'yes'"):
        ingest(FileSource(data, app="web", mapping=mapping), store=store)


def test_invalid_app_option_is_refused_before_reading(tmp_path, store):
    with pytest.raises(MetricsInputError, match="not a valid Kubernetes Service name"):
        ingest(FileSource(Path(__file__).parent / "corpus" / "clean.csv", app="9Web"), store=store)


def test_quarantine_reads_back_across_batches_with_and_without_apps(tmp_path, store):
    corpus = Path(__file__).parent / "corpus"
    ingest(FileSource(corpus / "missing_app.csv"), store=store)  # raw app all empty
    ingest(FileSource(corpus / "nan_value.csv"), store=store)
    quarantine = store.read_quarantine()
    assert sorted(quarantine["reason"]) == ["missing_app", "nan_value"]
    assert quarantine["batch_id"].nunique() == 2
