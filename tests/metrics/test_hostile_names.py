"""Issue 13, item 1, replayed: a hostile app name aimed from the metrics store at the decision ledger.

Under one ``PRESCALE_HOME`` the store (``data/metrics``) and the ledger (``ledger``) are siblings, so
``app=web/../../../ledger/app=web`` under the store is the ledger's folder of ``web``. Compacting that
name once rewrote a ledger day's ten files into one row of NaT. Every store, ledger and phase-report
entry point now refuses it (and a 300-character name) before building a path, and the ledger's files
stay byte-identical.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from prescale.ledger import Ledger, LedgerRow
from prescale.metrics.store import MetricsStore
from prescale.names import InvalidNameError
from prescale.phase_reports import read_report, write_report
from prescale.settings import load_settings

TRAVERSAL = "web/../../../ledger/app=web"
HOSTILE = [pytest.param(TRAVERSAL, id="traversal-into-the-ledger"), pytest.param("a" * 300, id="300-characters")]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _decision(minute: int, app: str = "web") -> LedgerRow:
    return LedgerRow(decided_at=pd.Timestamp("2026-03-01T12:00:00Z") + pd.Timedelta(minutes=minute), app=app,
                       phase="default", mode="reactive", why="no champion", champion_version=None,
                       covered_quantile=None, cost_per_hour=1.0, outcome="applied")  # fmt: skip


@pytest.fixture
def home(prescale_home) -> tuple[MetricsStore, Ledger, Path]:
    """A store holding `web` and a ledger day of ten files, laid out as PRESCALE_HOME lays them out."""
    settings = load_settings()
    store, ledger = MetricsStore(settings.store.root), Ledger(settings.orchestrate.ledger)
    rows = pd.DataFrame({"app": "web", "ts": pd.date_range("2026-03-01", periods=10, freq="min", tz="UTC"),
                         "metric": "cpu_cores", "value": 1.0})  # fmt: skip
    store.write_batch(rows, batch_id="web")
    for minute in range(10):
        ledger.append([_decision(minute)])
    assert (store.root / f"app={TRAVERSAL}").resolve() == (ledger.root / "app=web").resolve(), "the attack is real"
    return store, ledger, settings.forecast.phase_reports


@pytest.mark.parametrize("app", HOSTILE)
def test_compacting_a_hostile_name_refuses_and_leaves_the_ledger_byte_identical(home, app):
    store, ledger, _ = home
    before = _snapshot(ledger.root)
    with pytest.raises(InvalidNameError, match="not a valid"):
        store.compact(app=app, min_files=1)
    assert store.compact(min_files=1).files_before == 1, "compacting every app sees only the store's own files"
    assert _snapshot(ledger.root) == before
    assert len(ledger.read("web")) == 10


@pytest.mark.parametrize("app", HOSTILE)
@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda store, ledger, phases, app: store.read(app), id="store-read"),
        pytest.param(lambda store, ledger, phases, app: ledger.compact(app, min_files=1), id="ledger-compact"),
        pytest.param(lambda store, ledger, phases, app: ledger.read(app), id="ledger-read"),
        pytest.param(lambda store, ledger, phases, app: ledger.append([_decision(0, app)]), id="ledger-append"),
        pytest.param(lambda store, ledger, phases, app: write_report(phases, app, {}), id="phase-report-write"),
        pytest.param(lambda store, ledger, phases, app: read_report(phases, app), id="phase-report-read"),
    ],
)
def test_every_per_app_path_refuses_a_hostile_name_and_changes_nothing(home, prescale_home, app, call):
    store, ledger, phases = home
    before = _snapshot(prescale_home)
    with pytest.raises(InvalidNameError, match="not a valid"):
        call(store, ledger, phases, app)
    assert _snapshot(prescale_home) == before
