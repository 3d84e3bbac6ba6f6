"""The orchestrate cycle's chunks of apps: how many per worker, contiguous, named for the Prefect UI."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(("apps", "workers", "sizes"), [
    pytest.param(5, 2, [5], id="few-apps-one-chunk"),
    pytest.param(50, 2, [10] * 5, id="no-chunk-under-ten-apps"),
    pytest.param(1000, 2, [125] * 8, id="four-chunks-per-worker"),
    pytest.param(1001, 4, [63] * 9 + [62] * 7, id="uneven-split-stays-contiguous"),
    pytest.param(0, 2, [], id="no-apps"),
])  # fmt: skip
def test_the_cycle_cuts_its_apps_into_a_few_contiguous_chunks_per_worker(apps, workers, sizes):
    from tasks.orchestrate import chunk_label, chunks

    names = [f"app-{i:04d}" for i in range(apps)]
    parts = chunks(names, workers)
    assert [len(p) for p in parts] == sizes
    assert [app for part in parts for app in part] == names
    if parts:
        assert chunk_label(parts[0]) == f"{parts[0][0]}..{parts[0][-1]}-{len(parts[0])}-apps" or len(parts[0]) == 1


def test_the_picture_of_a_large_cycle_shows_its_costliest_apps():
    import pandas as pd

    from prescale.cycle import Decided
    from prescale.ledger import LedgerRow
    from tasks.orchestrate import PICTURE_MAX_APPS, pictured

    def decided(app: str, cost: float) -> Decided:
        return Decided(app, LedgerRow(decided_at=pd.Timestamp("2026-03-02T12:10Z"), app=app, phase="default",
                                      mode="reactive", why="", champion_version=None, covered_quantile=None,
                                      cost_per_hour=cost, outcome="dry-run"))  # fmt: skip

    few = [decided(f"app-{i:04d}", float(i)) for i in range(3)]
    assert pictured(few) == ["app-0000", "app-0001", "app-0002"]  # all of them, in the cycle's order
    many = [decided(f"app-{i:04d}", float(i % 50)) for i in range(1000)]
    shown = pictured(many)
    assert len(shown) == PICTURE_MAX_APPS and all(int(name[4:]) % 50 == 49 for name in shown)
    assert shown == sorted(shown)  # equal costs: by name


def test_the_chunks_are_sized_from_the_runners_workers():
    from prefect.task_runners import ThreadPoolTaskRunner

    from flows.runners import workers

    assert workers(ThreadPoolTaskRunner(max_workers=3)) == 3
    assert workers(None) == 1
