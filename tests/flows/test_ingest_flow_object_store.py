"""`ingest-metrics` into S3: the flow and its tasks (tasks/ingest.py) on the store the settings select.

The object store is moto's S3 server over real HTTP (tests/s3.py); what landed is
checked with an independent boto3 client, object by object.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from prescale.metrics.store import MetricsStore
from prescale.settings import load_settings
from tests.s3 import S3Server, s3_server

CORPUS = Path(__file__).resolve().parents[1] / "metrics" / "corpus"


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        yield server


def test_ingest_flow_stores_quarantines_and_compacts_in_the_bucket(prefect_harness, prescale_home, s3, monkeypatch):
    from flows.ingest import ingest_metrics

    bucket = s3.create_bucket()
    env = s3.env()
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"):
        monkeypatch.setenv(key, env[key])
    monkeypatch.setenv("PRESCALE_STORE__ROOT", f"s3://{bucket}/prescale/metrics")
    monkeypatch.setenv("PRESCALE_STORE__ENDPOINT_URL", s3.endpoint_url)
    monkeypatch.setenv("PRESCALE_STORE__COMPACT_MIN_FILES", "2")

    first = ingest_metrics(path=str(CORPUS / "duplicate_key.csv"))
    again = ingest_metrics(path=str(CORPUS / "duplicate_key.csv"))
    assert (first.read, first.accepted, first.quarantined) == (3, 1, 2)
    assert again.already_ingested
    assert f"prescale/quarantine/batch_id={first.batch_id}/part-0.parquet" in s3.keys(bucket)
    second = ingest_metrics(path=str(CORPUS / "clean.parquet"))  # same app and day: the partition's 2nd file

    data = [k for k in s3.keys(bucket, "prescale/metrics/app=") if not k.endswith("/")]
    assert len(data) == 1 and re.search(r"/date=2026-01-01/part-c-\w+-\d{19}\.parquet$", data[0]), data
    commits = s3.keys(bucket, "prescale/metrics/_batches/")
    assert commits == sorted(f"prescale/metrics/_batches/{r.batch_id}.json" for r in (first, second))
    store = MetricsStore(load_settings().store.root)
    assert len(store.read("web")) == 50, "the overlapping row is read once"
    assert not (prescale_home / "data").exists(), "nothing of the store lands on local disk"
