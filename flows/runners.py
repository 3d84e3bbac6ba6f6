"""The task runner a flow's mapped tasks run on, chosen by settings (``PRESCALE_RUNNER__*``).

- ``threads`` (default): Prefect's ``ThreadPoolTaskRunner`` in the flow run's own
  process, ``max_workers`` as each flow sizes it.
- ``dask``: prefect-dask's ``DaskTaskRunner``: the scheduler at
  ``PRESCALE_RUNNER__DASK_ADDRESS`` (a long-lived cluster, possibly many machines),
  else a ``distributed.LocalCluster`` started for the flow run and torn down after
  it (``dask_workers`` processes of ``dask_threads_per_worker`` threads).

Tasks and their inputs travel to Dask workers pickled, so every task of the train and
orchestrate flows takes plain, picklable values. Each Dask worker process keeps its own
champion cache: with a long-lived cluster the cache survives between cycles; a
LocalCluster per run starts cold every run.

How many workers a runner has (:func:`workers`) sizes the orchestrate flow's chunks of apps: threads
count as workers, and on Dask every worker thread of the cluster does (asked of the scheduler when the flow
runs, so a standing cluster that grew or shrank is sized as it is now).

On Dask the orchestrate flow pins each chunk to a worker (:func:`placements`, :func:`pinned`): chunk ``i`` of
the cycle's (stable) cut goes to the ``i % n``-th of the cluster's workers in address order, every cycle, so a
standing cluster's worker meets the same apps each minute and its caches (champions, the ledger's recent rows)
stay warm; without the pin, the scheduler hands a chunk to whichever worker is free and a worker keeps meeting
apps it has not loaded. The pin is a preference (``allow_other_workers``): a worker that left is no obstacle.

The choice is read when a flow module is imported, which is once per flow run for a
deployment (the worker starts a fresh process). In-process callers switch with
``flow.with_options(task_runner=task_runner(settings, ...))``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from prescale.settings import RunnerSettings, load_settings


def task_runner(settings: RunnerSettings | None = None, *, threads: int = 2) -> TaskRunner:
    """The runner the settings select; ``threads`` sizes the thread pool of the default runner."""
    rs = settings or load_settings().runner
    if rs.kind == "threads":
        return ThreadPoolTaskRunner(max_workers=threads)
    from prefect_dask import DaskTaskRunner

    if rs.dask_address:
        return DaskTaskRunner(address=rs.dask_address)
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={
            "n_workers": rs.dask_workers,
            "threads_per_worker": rs.dask_threads_per_worker,
            "processes": rs.dask_processes,
            "dashboard_address": None,
        },
    )


def workers(runner: TaskRunner | None) -> int:
    """The tasks ``runner`` runs at once: its threads, or a Dask cluster's worker threads (1 if unknown).

    prefect-dask connects its client on first use (``DaskTaskRunner.client``); asking it here is that first
    use, which the flow's first submission would make anyway."""
    if isinstance(runner, ThreadPoolTaskRunner):
        return max(1, runner._max_workers or 1)
    if runner is None or not hasattr(type(runner), "client"):
        return 1
    try:
        return max(1, sum(runner.client.nthreads().values()))
    except Exception:  # noqa: BLE001 - a scheduler that does not answer: the flow still runs (and says why)
        return 1


def placements(runner: TaskRunner | None) -> list[str]:
    """A Dask runner's worker addresses, sorted (one entry per worker thread); [] for threads or unknown."""
    if runner is None or isinstance(runner, ThreadPoolTaskRunner) or not hasattr(type(runner), "client"):
        return []
    try:
        return sorted(address for address, threads in runner.client.nthreads().items() for _ in range(threads))
    except Exception:  # noqa: BLE001 - as in workers(): unpinned is still correct, only colder
        return []


@contextlib.contextmanager
def pinned(addresses: list[str], index: int) -> Iterator[None]:
    """Tasks submitted inside go preferably to ``addresses[index % len(addresses)]`` (nothing without any)."""
    if not addresses:
        yield
        return
    import dask

    with dask.annotate(workers=[addresses[index % len(addresses)]], allow_other_workers=True):
        yield
