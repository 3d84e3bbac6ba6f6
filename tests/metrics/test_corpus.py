"""The bad-input corpus: each kind of bad row gets its reason; unusable files write nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from prescale.metrics.ingest import ingest
from prescale.metrics.sources import FileSource
from prescale.metrics.store import MetricsStore
from prescale.metrics.validation import REASONS, MetricsInputError

CORPUS = Path(__file__).parent / "corpus"
ROW_CASES = sorted(p for p in CORPUS.glob("*.csv") if p.stem in REASONS and p.stem != "duplicate_key")
ERROR_CASES = sorted(CORPUS.glob("error_*"))


def _store(tmp_path: Path) -> MetricsStore:
    return MetricsStore(tmp_path / "metrics", quarantine=tmp_path / "quarantine")


def _all_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_corpus_covers_every_row_reason():
    covered = {p.stem for p in CORPUS.glob("*.csv")}
    uncovered = set(REASONS) - covered - {"excluded"}  # `excluded` needs a mapping: see test_trace_mappings
    assert not uncovered, f"no corpus file for reasons {sorted(uncovered)}"


@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem) for p in ROW_CASES])
def test_bad_rows_are_quarantined_with_their_reason(tmp_path, path):
    store = _store(tmp_path)
    report = ingest(FileSource(path), store=store)
    assert report.read > 0
    assert report.accepted == 0
    assert report.quarantined == report.read
    assert report.quarantine_reasons == {path.stem: report.read}
    stored = store.read_quarantine()
    assert len(stored) == report.read
    assert set(stored["reason"]) == {path.stem}
    assert stored["detail"].str.len().min() > 10  # a human explanation travels with each row


def test_duplicates_keep_the_first_row(tmp_path):
    store = _store(tmp_path)
    report = ingest(FileSource(CORPUS / "duplicate_key.csv"), store=store)
    assert (report.read, report.accepted, report.quarantined) == (3, 1, 2)
    assert report.quarantine_reasons == {"duplicate_key": 2}
    assert store.read("web")["value"].tolist() == [1.0]


@pytest.mark.parametrize("name", ["clean.csv", "clean.parquet"])
def test_clean_files_are_accepted(tmp_path, name):
    store = _store(tmp_path)
    report = ingest(FileSource(CORPUS / name), store=store)
    assert report.quarantined == 0
    assert report.accepted == report.read == len(store.read("web"))


def test_clean_csv_parses_offsets_epochs_and_phases(tmp_path):
    store = _store(tmp_path)
    ingest(FileSource(CORPUS / "clean.csv"), store=store)
    rows = store.read("web")
    assert [t.isoformat() for t in rows["ts"]] == [
        "2026-01-01T00:00:00+00:00",
        "2026-01-01T00:01:40+00:00",
        "2026-01-01T01:01:00+00:00",
    ]
    assert rows["phase"].tolist()[0] == "serving"


@pytest.mark.parametrize("path", [pytest.param(p, id=p.name) for p in ERROR_CASES])
def test_unusable_files_raise_and_write_nothing(tmp_path, path):
    store = _store(tmp_path)
    with pytest.raises(MetricsInputError) as info:
        ingest(FileSource(path), store=store)
    assert str(path.name) in str(info.value) or "column" in str(info.value)
    assert _all_files(tmp_path / "metrics") == []
    assert _all_files(tmp_path / "quarantine") == []


def test_missing_column_error_names_the_columns(tmp_path):
    with pytest.raises(MetricsInputError, match=r"missing column\(s\) \['metric'\]"):
        ingest(FileSource(CORPUS / "error_missing_column.csv"), store=_store(tmp_path))


def test_app_option_fills_rows_without_app(tmp_path):
    store = _store(tmp_path)
    report = ingest(FileSource(CORPUS / "missing_app.csv", app="api"), store=store)
    assert (report.accepted, report.quarantined) == (1, 0)
    assert store.apps() == ["api"]
