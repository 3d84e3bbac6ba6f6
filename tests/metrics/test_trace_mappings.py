"""Every shared trace ingests through its shipped mapping, with its real gaps quarantined."""

from __future__ import annotations

from pathlib import Path

import pytest

from prescale.metrics.ingest import ingest
from prescale.metrics.sources import FileSource
from prescale.metrics.store import MetricsStore

REPO = Path(__file__).resolve().parents[2]
MAPPINGS = REPO / "infra" / "mappings"

CASES = [
    pytest.param("nasa_http/nasa_requests_1min_reconstructed.csv", "nasa_http_1min", "nasa", id="nasa-1min"),
    pytest.param("nasa_http/nasa_traffic_5m.csv", "nasa_http_5m", "nasa", id="nasa-5m"),
    pytest.param("azure_v1_pervm/microsoft_avg_100.csv", "azure_v1_pervm_avg", "vm", id="azure-vm-avg"),
    pytest.param("azure_v1_pervm/microsoft_max_100.csv", "azure_v1_pervm_max", "vm", id="azure-vm-max"),
    pytest.param(
        "cluster_aggregates/alibaba2018_machine_usage_300s.csv", "alibaba2018_machine_usage", "alibaba", id="alibaba"
    ),
    pytest.param(
        "cluster_aggregates/google2019_instance_usage_300s.csv", "google2019_instance_usage", "google", id="google"
    ),
    pytest.param("cluster_aggregates/azure2019_vm_cpu_mem_300s.csv", "azure2019_vm_cpu_mem", "azure", id="azure2019"),
]


def test_every_shipped_mapping_is_exercised():
    tested = {case.values[1] for case in CASES}
    assert {p.stem for p in MAPPINGS.glob("*.yaml")} == tested


@pytest.mark.parametrize(("trace", "mapping", "app"), CASES)
def test_trace_ingests_and_counts_add_up(tmp_path, traces, trace, mapping, app):
    store = MetricsStore(tmp_path / "m", quarantine=tmp_path / "q")
    report = ingest(FileSource(traces / trace, app=app, mapping=MAPPINGS / f"{mapping}.yaml"), store=store)
    assert report.read > 0
    assert report.accepted + report.quarantined == report.read
    assert sum(c.read for c in report.per_app.values()) == report.read
    assert sum(report.quarantine_reasons.values()) == report.quarantined
    stored = sum(len(store.read(a)) for a in store.apps())
    assert stored == report.accepted


def test_nasa_gaps_are_missing_not_zero(tmp_path, traces):
    store = MetricsStore(tmp_path / "m", quarantine=tmp_path / "q")
    one_minute = ingest(
        FileSource(
            traces / "nasa_http/nasa_requests_1min_reconstructed.csv",
            app="nasa",
            mapping=MAPPINGS / "nasa_http_1min.yaml",
        ),
        store=store,
    )
    assert one_minute.quarantine_reasons == {"missing_value": 7212}  # the two real gaps: 4,947 + 2,265 minutes
    five = ingest(
        FileSource(traces / "nasa_http/nasa_traffic_5m.csv", app="nasa", mapping=MAPPINGS / "nasa_http_5m.yaml"),
        store=MetricsStore(tmp_path / "m5"),
    )
    assert five.quarantine_reasons == {"excluded": 1444 * 2}  # 1,444 buckets x 2 metrics, none ingested as zero
    rows = MetricsStore(tmp_path / "m5").read("nasa", metrics=["app.requests_per_s"])
    gap = rows[(rows["ts"] >= "1995-07-28T18:00:00Z") & (rows["ts"] < "1995-08-01T04:00:00Z")]
    assert gap.empty


def test_azure_per_vm_makes_one_app_per_column(tmp_path, traces):
    store = MetricsStore(tmp_path / "m")
    ingest(
        FileSource(
            traces / "azure_v1_pervm/microsoft_avg_100.csv", app="vm", mapping=MAPPINGS / "azure_v1_pervm_avg.yaml"
        ),
        store=store,
    )
    assert len(store.apps()) == 100 and store.apps()[0] == "vm-000"
    first = store.read("vm-000")
    assert first["ts"].iloc[0].isoformat() == "2017-01-01T00:00:00+00:00"
    assert first["value"].iloc[0] == pytest.approx(44.46)
    assert (first["ts"].diff().dropna() == "300s").all()
