"""The store under SIGKILL and concurrent processes: readers see only committed batches, no row is lost.

- A batch write is killed at fixed points (after its first file, half its files, all its files
  renamed in but their folders not yet fsynced, everything durable but the commit record not yet
  written, just after the commit): the kill is made by the writer itself, from a test driver that
  wraps the rename landing each data file and the commit record's write, so the point is exact
  rather than a timing guess.
  A reader polling during the write sees, per app, 0 rows or the committed count, never a part; a
  re-run restores the exact row count.
- Two processes compact the same store while a third writes batches into the same partitions:
  every committed row is kept, once (locally the compactions take turns on the store's lock).

Local store only: the kill points and the lock are about local files (an object store's atomic PUT
is covered by test_store.py's killed ingest on S3).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prescale.metrics.store import COMPACT_LOCK, MetricsStore
from tests.metrics.conftest import blocked_until_released

REPO = Path(__file__).resolve().parents[2]
APPS, DAYS = 6, 10  # 60 partitions, one file each

DRIVER = """
import os, signal, sys, threading
import numpy as np, pandas as pd
from prescale.metrics.location import Location
from prescale.metrics.store import COMPACT_LOCK, MetricsStore
from tests.metrics.conftest import blocked_until_released

root, point = sys.argv[1], sys.argv[2]
apps, days = int(sys.argv[3]), int(sys.argv[4])
ts = pd.date_range("2026-03-01", periods=days * 1440, freq="min", tz="UTC")
rng = np.random.default_rng(7)
frame = pd.DataFrame({
    "app": pd.Categorical(np.repeat([f"app-{i}" for i in range(apps)], len(ts))),
    "ts": pd.to_datetime(np.tile(ts.tz_convert(None).to_numpy(), apps), utc=True),
    "metric": pd.Categorical(["cpu_cores"] * (apps * len(ts))),
    "value": rng.uniform(0, 10, apps * len(ts)),
})
files = apps * days
kill_after = {"first-file": 1, "half-the-files": files // 2, "all-files-no-folder-sync": files}.get(point)
landed, lock = [0], threading.Lock()
replace, write_bytes = os.replace, Location.write_bytes

def counting(source, target):  # a data file renamed in, fsynced; its folder's fsync comes after all of them
    replace(source, target)
    if os.path.basename(target).startswith("part-"):
        with lock:
            landed[0] += 1
            if landed[0] == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)

def around_commit(self, relative, data):
    commit = relative.startswith("_batches/")
    if point == "all-durable-no-commit" and commit:  # every file and folder fsynced, the record not written
        os.kill(os.getpid(), signal.SIGKILL)
    write_bytes(self, relative, data)
    if point == "after-commit" and commit:
        os.kill(os.getpid(), signal.SIGKILL)

os.replace, Location.write_bytes = counting, around_commit
print(MetricsStore(root).write_batch(frame, batch_id="sigkill").rows, flush=True)
"""


def _driver(root: Path, point: str) -> subprocess.Popen:
    args = [sys.executable, "-c", DRIVER, str(root), point, str(APPS), str(DAYS)]
    return subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _poll_while_running(root: Path, proc: subprocess.Popen) -> set[int]:
    """Row counts of app-0 seen by fresh readers until the writer exits (one app: one read is one snapshot)."""
    seen = set()
    while proc.poll() is None:
        seen.add(len(MetricsStore(root).read("app-0")))
        time.sleep(0.005)
    seen.add(len(MetricsStore(root).read("app-0")))
    return seen


@pytest.mark.parametrize(
    ("point", "visible"),
    [
        pytest.param("first-file", False, id="after-the-first-file"),
        pytest.param("half-the-files", False, id="after-half-the-files"),
        pytest.param("all-files-no-folder-sync", False, id="after-every-file-before-the-folder-fsyncs"),
        pytest.param("all-durable-no-commit", False, id="after-every-fsync-before-the-commit"),
        pytest.param("after-commit", True, id="just-after-the-commit"),
    ],
)
def test_a_batch_killed_at_any_point_shows_all_or_nothing_and_a_rerun_restores_every_row(tmp_path, point, visible):
    root, per_app = tmp_path / "metrics", DAYS * 1440
    proc = _driver(root, point)
    seen = _poll_while_running(root, proc)
    assert proc.returncode == -9, f"the writer was not killed at {point}: {proc.stderr.read()}"
    assert seen <= {0, per_app}, f"a reader saw part of a batch: {sorted(seen)}"

    store = MetricsStore(root)
    assert store.has_batch("sigkill") == visible
    assert sum(len(store.read(app)) for app in store.apps()) == (APPS * per_app if visible else 0)

    rerun = _driver(root, "never")
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    store = MetricsStore(root)
    assert [len(store.read(app)) for app in store.apps()] == [per_app] * APPS
    partitions = {p.parent for p in root.glob("app=*/date=*/part-*.parquet")}
    assert len(partitions) == APPS * DAYS and len(list(root.glob("app=*/date=*/part-*.parquet"))) == APPS * DAYS, (
        "the re-run replaced the killed attempt's files"
    )
    assert not list(root.glob("**/.tmp-*")), "no temporary file is left"


COMPACTOR = """
import sys, time
from pathlib import Path
from prescale.metrics.store import COMPACT_LOCK, MetricsStore
from tests.metrics.conftest import blocked_until_released
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.001)
for _ in range(3):
    MetricsStore(sys.argv[1]).compact(min_files=2)
"""

WRITER = """
import sys, time
from pathlib import Path
import numpy as np, pandas as pd
from prescale.metrics.store import COMPACT_LOCK, MetricsStore
from tests.metrics.conftest import blocked_until_released
go, rng = Path(sys.argv[2]), np.random.default_rng(11)
while not go.exists():
    time.sleep(0.001)
store = MetricsStore(sys.argv[1])
for i in range(10):  # minutes 100.. of each of the two days: new keys, in the partitions being compacted
    ts = pd.to_datetime(["2026-03-01", "2026-03-02"], utc=True) + pd.Timedelta(minutes=100 + i)
    frame = pd.DataFrame({"app": "web", "ts": ts, "metric": "cpu_cores", "value": rng.uniform(0, 10, 2)})
    store.write_batch(frame, batch_id=f"during-{i}")
"""


def test_two_compactions_and_a_writer_at_once_lose_no_row(tmp_path):
    root, go = tmp_path / "metrics", tmp_path / "go"
    store, rng = MetricsStore(root), np.random.default_rng(5)
    for i in range(30):  # 30 files in each of two day partitions
        ts = pd.to_datetime(["2026-03-01", "2026-03-02"], utc=True) + pd.Timedelta(minutes=i)
        frame = pd.DataFrame({"app": "web", "ts": ts, "metric": "cpu_cores", "value": rng.uniform(0, 10, 2)})
        store.write_batch(frame, batch_id=f"before-{i}")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(root), str(go)], cwd=REPO, stderr=subprocess.PIPE,
                              text=True) for script in (COMPACTOR, COMPACTOR, WRITER)]  # fmt: skip
    go.touch()
    errors = [proc.communicate(timeout=120)[1] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0], errors

    rows = MetricsStore(root).read("web")
    assert len(rows) == 2 * (30 + 10) and not rows.duplicated(["ts", "metric"]).any()
    MetricsStore(root).compact(min_files=2)
    assert len(list(root.glob("app=web/date=*/part-*.parquet"))) == 2, "one file per partition once compacted"
    assert len(MetricsStore(root).read("web")) == 2 * (30 + 10)


def test_a_compaction_waits_for_another_process_holding_the_stores_lock(tmp_path):
    store = MetricsStore(tmp_path / "metrics")
    for i in range(3):
        frame = pd.DataFrame({"app": "web", "ts": [pd.Timestamp("2026-03-01", tz="UTC") + pd.Timedelta(minutes=i)],
                              "metric": "cpu_cores", "value": float(i)})  # fmt: skip
        store.write_batch(frame, batch_id=f"b{i}")
    blocked_until_released(store.root, COMPACT_LOCK, lambda: store.compact(min_files=2))
    assert len(store.files("web")) == 1 and len(store.read("web")) == 3
