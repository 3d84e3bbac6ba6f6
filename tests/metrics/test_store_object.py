"""The store on object storage: S3 through moto's server over real HTTP, selected by settings.

The store contracts (idempotent batches, window reads, compaction, crash safety)
run on S3 too, in test_store.py (the ``any_store`` backends). Here is what only an
object store has: the settings that select it, where its objects land in the
bucket (seen by an independent boto3 client), which requests a window read sends,
and the invisibility of an upload that never completed.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pandas as pd
import pytest

from prescale.metrics.ingest import ingest
from prescale.metrics.location import sibling, with_endpoint
from prescale.metrics.sources import FileSource
from prescale.metrics.store import MetricsStore
from prescale.settings import load_settings
from tests.metrics.conftest import s3_uri, stored
from tests.metrics.test_store import frame

CORPUS = Path(__file__).parent / "corpus"


@pytest.fixture
def bucket(s3_env) -> str:
    return s3_env.create_bucket()


def test_settings_select_the_bucket_for_metrics_and_quarantine(s3_env, bucket, monkeypatch, prescale_home):
    monkeypatch.setenv("PRESCALE_STORE__ROOT", f"s3://{bucket}/prescale/metrics")
    monkeypatch.setenv("PRESCALE_STORE__ENDPOINT_URL", s3_env.endpoint_url)
    settings = load_settings()
    store = MetricsStore(settings.store.root, quarantine=settings.store.quarantine)

    report = ingest(FileSource(CORPUS / "duplicate_key.csv"), store=store)
    again = ingest(FileSource(CORPUS / "duplicate_key.csv"), store=store)

    assert (report.read, report.accepted, report.quarantined) == (3, 1, 2)
    assert again.already_ingested and report.store.startswith(f"s3://{bucket}/prescale/metrics?endpoint_override=")
    keys = s3_env.keys(bucket)
    batch = report.batch_id
    data = [k for k in keys if "/app=" in k]
    assert len(data) == 1
    assert re.fullmatch(rf"prescale/metrics/app=web/date=2026-01-01/part-{batch}-\d{{19}}\.parquet", data[0])
    assert f"prescale/metrics/_batches/{batch}.json" in keys
    assert f"prescale/quarantine/batch_id={batch}/part-0.parquet" in keys
    assert len(keys) == 3, "the repeated ingest adds no object"
    assert set(store.read_quarantine()["reason"]) == {"duplicate_key"}
    assert len(store.read("web")) == 1
    assert not (prescale_home / "data").exists(), "nothing of the store lands on local disk"


@pytest.mark.parametrize(
    ("root", "quarantine"),
    [
        pytest.param("s3://metrics/prescale", "s3://metrics/quarantine", id="beside-the-prefix"),
        pytest.param("s3://metrics", "s3://metrics/quarantine", id="bucket-root"),
        pytest.param("file:///data/metrics", "file:///data/quarantine", id="file-uri"),
    ],
)
def test_a_uri_root_keeps_its_quarantine_beside_it(root, quarantine, prescale_home):
    settings = load_settings(store={"root": root})
    assert (settings.store.root, settings.store.quarantine) == (root, quarantine)
    assert sibling(root, "quarantine") == quarantine


def test_settings_keep_local_roots_as_paths_and_carry_the_endpoint_in_s3_uris(prescale_home):
    local = load_settings(store={"root": "/data/metrics"}).store
    assert local.root == Path("/data/metrics") and local.quarantine == prescale_home.absolute() / "data" / "quarantine"
    remote = load_settings(store={"root": "s3://metrics/prescale", "endpoint_url": "http://minio:9000"}).store
    assert remote.root == "s3://metrics/prescale?endpoint_override=http%3A%2F%2Fminio%3A9000"
    assert remote.quarantine == "s3://metrics/quarantine?endpoint_override=http%3A%2F%2Fminio%3A9000"
    assert with_endpoint(remote.root, "http://other:9000") == remote.root, "an endpoint in the URI wins"


def test_credentials_in_the_uri_are_refused_without_echoing_them():
    with pytest.raises(ValueError, match="AWS_ACCESS_KEY_ID") as refused:
        MetricsStore("s3://AKIDEXAMPLE:wJalrXUtnFEMI@metrics/prescale")
    assert "wJalrXUtnFEMI" not in str(refused.value)


def test_the_standard_endpoint_variable_reaches_the_store(s3_env, bucket, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_env.endpoint_url)
    store = MetricsStore(f"s3://{bucket}/plain")
    store.write_batch(frame("2026-03-01T00:00:00Z", 10), batch_id="env")
    assert store.has_batch("env") and len(store.read("api")) == 20
    assert "plain/_batches/env.json" in s3_env.keys(bucket)


def test_a_missing_bucket_is_a_clear_error_that_is_not_retried(s3_env):
    from tasks.ingest import is_transient

    store = MetricsStore(s3_uri(s3_env, "prescale-no-such-bucket", "m"))
    with pytest.raises(OSError, match="bucket does not exist") as failed:
        store.write_batch(frame("2026-03-01T00:00:00Z", 10), batch_id="nowhere")
    assert not is_transient(failed.value)


def _requests(records: list[logging.LogRecord]) -> list[tuple[str, str]]:
    """(method, object key or listed prefix) of each request moto's server logged."""
    seen = []
    for record in records:
        line = re.search(r'"([A-Z]+) (\S+) HTTP/', record.getMessage())
        if line:
            target = urlsplit(line.group(2))
            query = parse_qs(target.query)
            key = query["prefix"][0] if "prefix" in query else unquote(target.path).split("/", 2)[-1]
            seen.append((line.group(1), key))
    return seen


def test_a_window_read_sends_requests_only_for_its_partitions(s3_env, bucket, caplog):
    store = MetricsStore(s3_uri(s3_env, bucket, "m"))
    store.write_batch(frame("2026-03-01T00:00:00Z", 60 * 24 * 5, apps=("web", "api")), batch_id="five-days")
    start, end = pd.Timestamp("2026-03-03T12:00:00Z"), pd.Timestamp("2026-03-04T12:00:00Z")

    caplog.set_level(logging.INFO, logger="werkzeug")  # moto's server logs one line per request
    rows = store.read("web", start=start, end=end)

    assert len(rows) == 24 * 60 * 2
    requests = _requests(caplog.records)
    touched = {key.split("/")[2] for _, key in requests}
    assert touched == {"date=2026-03-03", "date=2026-03-04"}, requests
    assert all(key.startswith("m/app=web/") for _, key in requests), requests
    assert {method for method, _ in requests} == {"GET"}, "listing and ranged reads only, no HEAD per file"

    caplog.clear()  # a new process knows no commit yet: one HEAD for the batch's record, then the folders again
    assert len(MetricsStore(s3_uri(s3_env, bucket, "m")).read("web", start=start, end=end)) == 24 * 60 * 2
    requests = _requests(caplog.records)
    assert [r for r in requests if r[0] != "GET"] == [("HEAD", "m/_batches/five-days.json")], requests
    assert all(key.startswith("m/app=web/") for method, key in requests if method == "GET"), requests


def test_an_unfinished_upload_is_invisible(s3_env, bucket):
    """What the store relies on instead of a rename: an object exists only once its upload completes."""
    store = MetricsStore(s3_uri(s3_env, bucket, "m"))
    store.write_batch(frame("2026-03-01T00:00:00Z", 10), batch_id="done")
    client = s3_env.client()
    for app in ("web", "ghost"):  # a writer killed mid-upload, in a known app's partition and in a new app
        key = f"m/app={app}/date=2026-03-01/part-killed-1795856517072921383.parquet"
        upload = client.create_multipart_upload(Bucket=bucket, Key=key)
        client.upload_part(Bucket=bucket, Key=key, UploadId=upload["UploadId"], PartNumber=1, Body=b"PAR1" * 1024)

    assert store.apps() == ["api", "web"]
    assert len(store.files("web")) == 1 and len(store.read("web")) == 20
    assert not store.has_batch("killed")
    assert store.compact(min_files=1).files_before == 2


def test_a_compaction_replaces_the_partition_objects(s3_env, bucket):
    store = MetricsStore(s3_uri(s3_env, bucket, "m"))
    for i in range(4):
        store.write_batch(frame(f"2026-03-01T0{i}:00:00Z", 60, apps=("web",), seed=i), batch_id=f"b{i}")
    before = store.read("web")
    result = store.compact(min_files=4)
    keys = [k for k in s3_env.keys(bucket, "m/app=web/") if not k.endswith("/")]  # pyarrow keeps folder markers
    assert (result.partitions, result.files_before, result.files_after) == (1, 4, 1)
    assert len(keys) == 1 and re.fullmatch(r"m/app=web/date=2026-03-01/part-c-[0-9a-f]{24}-\d{19}\.parquet", keys[0])
    pd.testing.assert_frame_equal(store.read("web"), before)


@pytest.mark.parametrize("scheme", ["file", "memory"])
def test_other_uris_round_trip(scheme, tmp_path):
    root = f"file://{tmp_path}/metrics" if scheme == "file" else "memory://prescale-test/metrics"
    store = MetricsStore(root)
    assert store.location.local == (scheme == "file")
    rows = frame("2026-03-01T23:00:00Z", 120)
    assert not store.write_batch(rows, batch_id="one").skipped
    assert store.write_batch(rows, batch_id="one").skipped
    assert store.apps() == ["api", "web"] and len(store.read("web")) == 240
    assert stored(store, "_batches/*") == ["_batches/one.json"]
