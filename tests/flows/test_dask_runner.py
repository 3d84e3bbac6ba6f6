"""The train and orchestrate flows on Dask (prefect-dask, a LocalCluster of worker processes) give what threads give.

Each flow runs twice on the same data, in two fresh PRESCALE_HOMEs: once on the default thread runner, once on
``DaskTaskRunner`` with two worker processes (tasks and their inputs pickled across processes). Training is
seeded and single-threaded per model, and the orchestrate test uses the exact MILP allocation, so the two runs
must agree number for number.
"""

from __future__ import annotations

import pandas as pd
import pytest

from prescale.metrics.store import MetricsStore
from prescale.settings import RunnerSettings, load_settings
from tests.flows.test_train_flow import _store_app
from tests.forecasting.conftest import daily_frame

START = "2024-03-04"
DASK = RunnerSettings(kind="dask", dask_workers=2, dask_threads_per_worker=1, dask_processes=True)


def _fill(home, monkeypatch) -> pd.Timestamp:
    monkeypatch.setenv("PRESCALE_HOME", str(home))
    store = MetricsStore(load_settings().store.root)
    web = daily_frame(3.0, seed=7, metrics=("app.requests_per_s",), start=START) * 20
    _store_app(store, "web", web)
    _store_app(store, "analytics", daily_frame(3.0, seed=8, metrics=("app.scan_gbps",), start=START))
    _store_app(store, "inference", daily_frame(3.0, seed=9, metrics=("app.requests_per_s",), start=START) * 5)
    return web.index[-1] + pd.Timedelta(minutes=5)


def _on(flow, runner: RunnerSettings | None):
    from flows.runners import task_runner

    return flow if runner is None else flow.with_options(task_runner=task_runner(runner))


def _train(runner):
    from flows.train import train_forecasters

    report = _on(train_forecasters, runner)(apps=["web", "inference"], preset="small")
    return {(m.app, m.phase): (m.best, m.skipped, m.scores) for m in report.models}


def _cycle(runner, at):
    from flows.orchestrate import orchestrate
    from tasks.orchestrate import forget_champions

    forget_champions()
    rows = _on(orchestrate, runner)(apps=["web", "analytics", "inference", "ghost"], at=str(at))
    keep = ("app", "mode", "allocation", "cost_per_hour", "outcome", "champion_version", "forecast", "error")
    return {r["app"]: {k: r[k] for k in keep} for r in rows}


def test_settings_select_the_runner():
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    from flows.runners import task_runner

    assert isinstance(task_runner(RunnerSettings(), threads=3), ThreadPoolTaskRunner)
    local = task_runner(DASK)
    assert isinstance(local, DaskTaskRunner) and local.cluster_kwargs["n_workers"] == 2
    remote = task_runner(RunnerSettings(kind="dask", dask_address="tcp://127.0.0.1:8786"))
    assert remote.address == "tcp://127.0.0.1:8786"
    with pytest.raises(ValueError, match="kind"):
        RunnerSettings(kind="ray")


def test_train_and_orchestrate_on_dask_match_the_thread_runner(prefect_harness, tmp_path, monkeypatch):
    monkeypatch.setenv("PRESCALE_FORECAST__EPOCHS", "1")
    monkeypatch.setenv("PRESCALE_SEARCH__SOLVER", "milp")  # exact, so both runs must choose the same nodes
    monkeypatch.setenv("PRESCALE_ORCHESTRATE__DRY_RUN", "true")
    results = {}
    for name, runner in (("threads", None), ("dask", DASK)):
        at = _fill(tmp_path / name, monkeypatch)
        results[name] = (_train(runner), _cycle(runner, at))
    (trained, cycle), (trained_dask, cycle_dask) = results["threads"], results["dask"]
    assert set(trained) == {("web", "default"), ("inference", "default")}
    for key, (best, skipped, scores) in trained.items():
        assert skipped is None and best
        assert trained_dask[key][1] is None, trained_dask[key][1]  # trained and published on Dask too
        assert trained_dask[key][0] == best
        assert _flat(trained_dask[key][2]) == pytest.approx(_flat(scores), rel=1e-6, nan_ok=True)
    assert cycle["web"]["mode"] == "predictive" and cycle["web"]["allocation"]
    assert cycle["ghost"]["outcome"] == "failed" and cycle_dask["ghost"]["outcome"] == "failed"
    _same(cycle_dask, cycle)


def _flat(scores: dict) -> dict:
    return {(c, k): v for c, values in scores.items() for k, v in values.items() if isinstance(v, int | float)}


def _same(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for app in want:
        for key, value in want[app].items():
            if isinstance(value, float):
                assert got[app][key] == pytest.approx(value, rel=1e-9), (app, key)
            else:
                assert got[app][key] == value, (app, key)


def test_a_pinned_chunk_runs_on_its_worker_every_time(prefect_harness):
    """The orchestrate flow's pin (``flows.runners.pinned``) reaches the Dask scheduler through prefect-dask:
    submission ``i`` runs on the ``i % n``-th worker, the same one in every run of the same cut."""
    from prefect import flow, task
    from prefect.context import FlowRunContext

    from flows.runners import pinned, placements, task_runner

    @task
    def where() -> str:
        from distributed import get_worker

        return get_worker().address

    @flow(task_runner=task_runner(DASK))
    def spread() -> tuple[list[str], list[str]]:
        addresses = placements(FlowRunContext.get().task_runner)
        futures = []
        for i in range(8):
            with pinned(addresses, i):
                futures.append(where.submit())
        return addresses, [f.result() for f in futures]

    addresses, ran = spread()
    assert len(addresses) == 2 and len(set(addresses)) == 2
    assert ran == [addresses[i % 2] for i in range(8)]


def test_threads_are_not_pinned():
    import dask

    from flows.runners import pinned, placements, task_runner

    assert placements(task_runner(RunnerSettings(), threads=2)) == []
    with pinned([], 3):
        assert "workers" not in dask.get_annotations()
    with pinned(["tcp://a:1", "tcp://b:2"], 3):
        assert dask.get_annotations()["workers"] == ["tcp://b:2"]
