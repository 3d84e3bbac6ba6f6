"""The `ingest-metrics` flow against Prefect's real API server (the demo flow: tests/cli/test_demo.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from prescale.metrics.store import MetricsStore
from prescale.metrics.validation import MetricsInputError
from prescale.settings import load_settings

CORPUS = Path(__file__).resolve().parents[1] / "metrics" / "corpus"


async def _artifact(key: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async with get_client() as client:
        found = await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    return found


def test_ingest_flow_stores_rows_and_publishes_a_summary(prefect_harness, prescale_home):
    from flows.ingest import ingest_metrics

    report = ingest_metrics(path=str(CORPUS / "negative_value.csv"))
    assert (report.read, report.accepted, report.quarantined) == (2, 0, 2)
    report = ingest_metrics(path=str(CORPUS / "clean.csv"))
    assert report.accepted == report.read == 3
    settings = load_settings()
    assert len(MetricsStore(settings.store.root).read("web")) == 3
    artifacts = asyncio.run(_artifact("ingest-summary"))
    assert artifacts, "the flow should publish an `ingest-summary` markdown artifact"
    assert any("clean.csv" in a.data and "| **3** |" in a.data for a in artifacts)


def test_ingest_flow_rerun_is_a_no_op(prefect_harness, prescale_home):
    from flows.ingest import ingest_metrics

    first = ingest_metrics(path=str(CORPUS / "clean.parquet"))
    again = ingest_metrics(path=str(CORPUS / "clean.parquet"))
    assert not first.already_ingested and again.already_ingested
    assert len(MetricsStore(load_settings().store.root).read("web")) == first.accepted


def test_ingest_flow_fails_fast_on_unusable_input(prefect_harness, prescale_home):
    from flows.ingest import ingest_metrics

    with pytest.raises(MetricsInputError, match="truncated or malformed"):
        ingest_metrics(path=str(CORPUS / "error_truncated.csv"))
    assert not load_settings().store.root.exists() or not list(load_settings().store.root.rglob("*.parquet"))


def test_ingest_flow_compacts_partitions_that_piled_up(prefect_harness, prescale_home, monkeypatch, tmp_path):
    from flows.ingest import ingest_metrics

    monkeypatch.setenv("PRESCALE_STORE__COMPACT_MIN_FILES", "3")
    for minute in range(3):  # three one-minute batches of the same app and day
        path = tmp_path / f"m{minute}.csv"
        path.write_text(f"ts,app,metric,value\n2026-01-01T00:0{minute}:00Z,web,cpu_cores,{minute}\n")
        ingest_metrics(path=str(path))
    store = MetricsStore(load_settings().store.root)
    assert len(store.files("web")) == 1
    assert store.read("web")["value"].tolist() == [0.0, 1.0, 2.0]


async def _task_runs(name: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

    async with get_client() as client:
        return await client.read_task_runs(task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_=name)))


def test_user_errors_are_not_retried(prefect_harness, prescale_home, tmp_path):
    from flows.ingest import ingest_metrics

    mapping = tmp_path / "naive.yaml"
    mapping.write_text(
        "timestamp: {start: '2026-01-01T00:00:00', step_seconds: 60}\nmetrics: {cpu_cores: {column: v}}\n"
    )
    before = {r.id for r in asyncio.run(_task_runs("read-metrics-file"))}
    with pytest.raises(MetricsInputError, match="no UTC offset"):
        ingest_metrics(path=str(CORPUS / "clean.csv"), app="web", mapping=str(mapping))
    runs = [r for r in asyncio.run(_task_runs("read-metrics-file")) if r.id not in before]
    assert len(runs) == 1 and runs[0].run_count == 1  # failed once, no retries


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    "hostile",
    [
        pytest.param("web/../../../ledger/app=web", id="traversal-into-the-ledger"),
        pytest.param("x" * 300, id="name-over-255-bytes"),
        pytest.param("../" * 8 + "tmp", id="traversal-out-of-the-home"),
    ],
)
def test_a_quarantined_app_name_is_never_compacted(prefect_harness, prescale_home, monkeypatch, tmp_path, hostile):
    """A refused name never becomes a path: the flow compacts only the apps it stored rows for."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from flows.ingest import ingest_metrics

    monkeypatch.setenv("PRESCALE_STORE__COMPACT_MIN_FILES", "2")
    day = load_settings().orchestrate.ledger / "app=web" / "date=2026-01-01"
    day.mkdir(parents=True)
    for i in range(10):  # what the attack rewrote into one row of NaT/NaN: a ledger day of ten files
        pq.write_table(pa.table({"decided_at": [i], "app": ["web"]}), day / f"part-{i:03d}.parquet")
    before = _tree(prescale_home)
    path = tmp_path / "hostile.csv"
    rows = [f"2026-01-01T00:0{i}:00Z,{name},cpu_cores,1" for i in range(3) for name in (hostile, "web")]
    path.write_text("ts,app,metric,value\n" + "\n".join(rows) + "\n")

    report = ingest_metrics(path=str(path))

    assert (report.read, report.accepted, report.quarantined) == (6, 3, 3)
    assert report.quarantine_reasons == {"invalid_app_name": 3}
    assert report.stored_apps == ["web"]
    after = _tree(prescale_home)
    assert {k: v for k, v in after.items() if k in before} == before, "a file outside the new batch changed"
    assert len(MetricsStore(load_settings().store.root).read("web")) == 3


def test_any_registered_source_is_read_by_name_and_options(prefect_harness, prescale_home):
    from flows.ingest import ingest_metrics

    report = ingest_metrics(source="file", options={"path": str(CORPUS / "clean.csv")})
    assert (report.read, report.accepted) == (3, 3)
    with pytest.raises(MetricsInputError, match="no metrics source named 'kafka'"):
        ingest_metrics(source="kafka", options={})


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        pytest.param({"path": "m.csv", "app": "web"}, ("file", {"path": "m.csv", "app": "web"}), id="file"),
        pytest.param({"prometheus_config": "q.yaml"}, ("prometheus", {"config": "q.yaml"}), id="prometheus"),
        pytest.param(
            {"path": "m.csv", "prometheus_config": "q.yaml"}, ("file", {"path": "m.csv"}), id="backfill-by-deployment"
        ),
        pytest.param(
            {"source": "prometheus", "options": {"config": "x.yaml"}, "path": "m.csv"},
            ("prometheus", {"config": "x.yaml"}),
            id="by-name-first",
        ),
    ],
)
def test_the_parameters_name_one_source(given, expected):
    from flows.ingest import requested_source

    names = ("path", "app", "mapping", "prometheus_config", "source", "options")
    assert requested_source(**{**dict.fromkeys(names), **given}) == expected


def test_no_source_is_a_clear_error():
    from flows.ingest import requested_source

    with pytest.raises(ValueError, match="give `path`"):
        requested_source(path=None, app=None, mapping=None, prometheus_config=None, source=None, options=None)
