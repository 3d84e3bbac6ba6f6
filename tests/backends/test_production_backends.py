"""`train-forecasters` against the production backends: Prefect and MLflow on PostgreSQL, artifacts in S3.

The servers are the ones `prescale serve` starts (``start_servers``) with
``serve.prefect_database_url``, ``serve.mlflow_backend_store_uri``,
``serve.mlflow_artifacts_destination`` and ``serve.s3_endpoint_url`` set; the
database is a real PostgreSQL, the object store moto's S3 server over HTTP. The
flow runs in this process as a client of both, like a worker on another machine.
Each claim is checked where the data really lands: the tables of both databases,
the bucket's objects, and the champion loaded back through the registry adapter.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from prescale.metrics.store import MetricsStore
from tests.backends.conftest import ARTIFACT_PREFIX
from tests.forecasting.conftest import daily_frame

APP = "svc"
PHASE = "default"


def _store_app(store: MetricsStore, app: str, frame: pd.DataFrame) -> None:
    long = frame.rename_axis("ts").reset_index().melt(id_vars="ts", var_name="metric", value_name="value")
    long.insert(0, "app", app)
    long["phase"] = None
    store.write_batch(long.dropna(subset=["value"]), batch_id=f"test-{app}")


@pytest.fixture(scope="module")
def trained(backends):
    """One run of the flow on three days of one app, against the backends' servers."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.train import train_forecasters
    from prescale.settings import load_settings

    frame = daily_frame(3.0, seed=4)
    env = {
        "PRESCALE_HOME": str(backends.home),
        "PRESCALE_REGISTRY__TRACKING_URI": backends.plane.mlflow_ui,
        "PRESCALE_FORECAST__EPOCHS": "1",
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        _store_app(MetricsStore(load_settings().store.root), APP, frame)
        _drain_prefect_workers()  # events sent from here on go to this server, not the session's harness
        with temporary_settings(updates={PREFECT_API_URL: backends.plane.prefect_api}):
            try:
                state = train_forecasters(apps=[APP], preset="small", history_days=3.0, return_state=True)
            finally:
                _drain_prefect_workers()  # deliver this run's logs and events; later runs start their own
    return state, state.result(), frame


def _drain_prefect_workers() -> None:
    """Flush and stop Prefect's background senders of this process.

    There is one events worker per process, bound to the API URL current when it
    started (its key holds no URL): without this, task-run events of this flow would
    go to the session's harness server, and later tests' events to this one after
    it stopped. A stopped worker is replaced by a fresh one on next use.
    """
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all()  # drain_all, not instance().drain(): instance() with no API URL set starts a server
    EventsWorker.drain_all()


def test_servers_started_on_the_configured_backends(backends):
    shown = "\n".join(backends.progress)
    assert "postgresql+asyncpg://prescale:***@127.0.0.1" in shown
    assert f"artifacts s3://{backends.bucket}/{ARTIFACT_PREFIX}" in shown
    assert backends.plane.backends["mlflow_backend_store"].startswith("postgresql://prescale:***@")
    # both servers created their schemas in PostgreSQL, not in SQLite under the home folder
    assert len(backends.postgres.query("prefect", "SELECT version_num FROM alembic_version")) == 1
    assert backends.postgres.query("mlflow", "SELECT count(*) FROM experiments")[0][0] >= 1
    assert not (backends.home / "mlflow" / "mlflow.db").exists()
    assert not (backends.settings.prefect.home / "prefect.db").exists()


def test_no_password_in_progress_command_lines_or_logs(backends, trained):  # logs after a flow ran too
    password = backends.postgres.password
    assert password not in "\n".join(backends.progress)
    assert password not in repr(backends.plane.backends)
    assert all(s.process.poll() is None for s in backends.plane.services)
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):  # the servers, their workers, every other process
        try:
            shown = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # ended meanwhile
            continue
        assert password not in shown, f"a command line shows the database password: {shown[:200]}"
    for log in (backends.home / "logs").glob("*.log"):
        assert password not in log.read_text(errors="replace"), f"{log.name} shows the database password"


def test_train_flow_registers_in_postgres_with_artifacts_in_s3(backends, trained):
    from mlflow import MlflowClient

    from models.registry import model_name

    state, report, _ = trained
    assert state.is_completed(), state
    [outcome] = report.models
    assert outcome.skipped is None and outcome.promoted, outcome
    name = model_name(APP, PHASE)

    client = MlflowClient(tracking_uri=backends.plane.mlflow_ui)
    versions = client.search_model_versions(f"name = '{name}'")
    assert [str(v.version) for v in versions] == [str(outcome.version)]
    champion = client.get_model_version_by_alias(name, "champion")
    assert str(champion.version) == str(outcome.version)

    pg = backends.postgres
    rows = pg.query("mlflow", "SELECT version, run_id FROM model_versions WHERE name = %s", (name,))
    assert rows == [(int(outcome.version), champion.run_id)]
    aliases = pg.query("mlflow", "SELECT alias, version FROM registered_model_aliases WHERE name = %s", (name,))
    assert ("champion", int(outcome.version)) in aliases
    runs = pg.query("mlflow", "SELECT count(*) FROM runs r JOIN experiments e ON e.experiment_id = r.experiment_id "
                              "WHERE e.name = %s", (f"prescale-{APP}",))[0][0]
    assert runs >= 2  # the parent run and one child per candidate

    keys = backends.s3.keys(backends.bucket, f"{ARTIFACT_PREFIX}/")
    assert any(k.endswith("/MLmodel") for k in keys), keys
    assert any("/forecaster/" in k for k in keys), keys
    assert any(k.endswith("forecast.png") for k in keys), keys
    assert not list((backends.home / "mlflow" / "artifacts").rglob("MLmodel")), "artifacts stayed on local disk"


def test_flow_run_is_recorded_in_prefects_postgres_database(backends, trained):
    state, _, _ = trained
    run_id = str(state.state_details.flow_run_id)
    rows = backends.postgres.query(
        "prefect",
        "SELECT f.name, r.state_type FROM flow_run r JOIN flow f ON f.id = r.flow_id WHERE r.id = %s",
        (run_id,),
    )
    assert rows == [("train-forecasters", "COMPLETED")]
    tasks = backends.postgres.query("prefect", "SELECT count(*) FROM task_run WHERE flow_run_id = %s", (run_id,))
    assert tasks[0][0] >= 3  # load history, label phases, train, publish, artifact


def test_champion_loads_back_through_the_registry(backends, trained):
    from models.registry import ChampionLoader, Registry

    _, report, frame = trained
    loader = ChampionLoader(Registry(backends.plane.mlflow_ui))
    forecaster = loader.get(APP, PHASE)
    assert loader.version(APP, PHASE) == str(report.models[0].version)
    forecast = forecaster.forecast(frame.iloc[-forecaster.history_steps:])
    assert forecast.metrics == ["cpu_cores"] and forecast.horizon >= 1
    assert forecast.index[0] > frame.index[-1]
