"""The Parquet store: partitions, idempotent batches, window reads, compaction, crash safety.

Every contract here runs once per backend (``local``, ``s3``: see conftest.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from prescale.metrics.store import MetricsStore
from prescale.metrics.validation import split
from prescale.names import InvalidNameError
from tests.metrics.conftest import stored

REPO = Path(__file__).resolve().parents[2]


def frame(start: str, minutes: int, *, apps=("web", "api"), metrics=("cpu_cores", "memory_gib"), seed=0):
    rng = np.random.default_rng(seed)
    ts = pd.date_range(start, periods=minutes, freq="min", tz="UTC")
    rows = [
        {"app": a, "ts": t, "metric": m, "value": float(rng.uniform(0, 10))} for t in ts for a in apps for m in metrics
    ]
    return split(pd.DataFrame(rows)).accepted


@pytest.fixture
def store(any_store) -> MetricsStore:
    return any_store


def test_layout_is_partitioned_by_app_and_date(store):
    store.write_batch(frame("2026-03-01T23:00:00Z", 120), batch_id="b1")
    folders = sorted({path.rpartition("/")[0] for path in stored(store, "app=*/date=*/part-*.parquet")})
    assert folders == [
        "app=api/date=2026-03-01",
        "app=api/date=2026-03-02",
        "app=web/date=2026-03-01",
        "app=web/date=2026-03-02",
    ]
    assert store.apps() == ["api", "web"]


def test_a_repeated_batch_adds_nothing(store):
    rows = frame("2026-03-01T00:00:00Z", 30)
    first = store.write_batch(rows, batch_id="same")
    again = store.write_batch(rows, batch_id="same")
    assert not first.skipped and again.skipped
    assert len(store.read("web")) == 30 * 2
    assert len(stored(store, "*.parquet")) == first.files


def test_overlapping_batches_read_back_once_with_the_latest_value(store):
    store.write_batch(frame("2026-03-01T00:00:00Z", 30, seed=1), batch_id="a")
    later = frame("2026-03-01T00:20:00Z", 30, seed=2)
    store.write_batch(later, batch_id="b")
    rows = store.read("web")
    assert len(rows) == 50 * 2
    assert not rows.duplicated(["ts", "metric"]).any()
    overlap = rows[rows["ts"] == pd.Timestamp("2026-03-01T00:25:00Z")].set_index("metric")["value"]
    expected = later[(later["app"] == "web") & (later["ts"] == pd.Timestamp("2026-03-01T00:25:00Z"))]
    assert overlap.sort_index().tolist() == expected.set_index("metric")["value"].sort_index().tolist()


def test_window_read_touches_only_its_partitions(store):
    store.write_batch(frame("2026-03-01T00:00:00Z", 60 * 24 * 5, apps=("web",), metrics=("cpu_cores",)), batch_id="x")
    start, end = pd.Timestamp("2026-03-03T12:00:00Z"), pd.Timestamp("2026-03-04T12:00:00Z")
    touched = {p.parent.name for p in store.files("web", start=start, end=end)}
    assert touched == {"date=2026-03-03", "date=2026-03-04"}
    rows = store.read("web", start=start, end=end)
    assert len(rows) == 24 * 60
    assert rows["ts"].min() == start and rows["ts"].max() == end - pd.Timedelta(minutes=1)


def test_read_filters_metrics_and_returns_the_documented_columns(store):
    store.write_batch(frame("2026-03-01T00:00:00Z", 10), batch_id="x")
    rows = store.read("api", metrics=["memory_gib"])
    assert list(rows.columns) == ["app", "ts", "metric", "value", "phase"]
    assert set(rows["metric"]) == {"memory_gib"} and set(rows["app"]) == {"api"}
    assert rows["ts"].is_monotonic_increasing
    assert store.read("nobody").empty


def test_compaction_merges_files_and_keeps_the_rows(store):
    for i in range(10):
        store.write_batch(frame(f"2026-03-01T0{i}:00:00Z", 60, seed=i), batch_id=f"b{i}")
    before = store.read("web")
    result = store.compact(min_files=4)
    assert result.partitions == 2 and result.files_after == 2 and result.files_before == 20
    after = store.read("web")
    pd.testing.assert_frame_equal(before, after)
    assert len(stored(store, "app=web/*.parquet")) == 1


def test_a_batch_stamped_before_a_compaction_but_landing_after_it_still_wins(store, monkeypatch):
    import prescale.metrics.store as store_module

    clock = {"ns": 0}
    monkeypatch.setattr(store_module, "_stamp", lambda: f"{clock['ns']:019d}")
    rows = frame("2026-03-01T00:00:00Z", 1, apps=("web",), metrics=("cpu_cores",))
    for ns, value, batch in ((100, 1.0, "first"), (200, 2.0, "second")):
        clock["ns"] = ns
        store.write_batch(rows.assign(value=value), batch_id=batch)
    clock["ns"] = 400
    store.compact(min_files=2)  # merging at time 400
    clock["ns"] = 300  # a batch that took its stamp at 300, before the merge, and landed after it
    store.write_batch(rows.assign(value=3.0), batch_id="late")
    assert store.read("web")["value"].tolist() == [3.0]


def _uncommit(store: MetricsStore, batch_id: str) -> MetricsStore:
    """The store as a batch killed after its files and before its commit left it, seen by a new process."""
    store.location.delete(store.location.path(f"_batches/{batch_id}.json"))
    return MetricsStore(store.root, quarantine=store.quarantine)


def test_a_batch_killed_before_its_commit_is_invisible_and_its_retry_adds_no_duplicates(store):
    rows = frame("2026-03-01T00:00:00Z", 30)
    store.write_batch(rows, batch_id="before")
    store.write_batch(frame("2026-03-01T00:00:00Z", 30, seed=1), batch_id="crashy")
    store = _uncommit(store, "crashy")

    assert not store.has_batch("crashy")
    assert store.read("web")["value"].tolist() == rows[rows["app"] == "web"]["value"].tolist(), "only 'before' shows"
    assert len(store.files("web")) == 1 and store.apps() == ["api", "web"]
    result = store.compact(min_files=1)
    assert (result.files_before, result.files_after) == (2, 2), "compaction neither merges nor deletes them"
    assert len(stored(store, "app=*/date=*/part-crashy-*.parquet")) == 2, "left for the retry to replace"

    store.write_batch(rows, batch_id="crashy")
    assert len(store.read("web")) == 60
    assert len(stored(store, "app=web/date=*/part-crashy-*.parquet")) == 1


def test_a_store_of_only_uncommitted_files_shows_no_app(store):
    store.write_batch(frame("2026-03-01T00:00:00Z", 10), batch_id="lost")
    store = _uncommit(store, "lost")
    assert store.apps() == [] and store.read("web").empty and store.files("api") == []


def test_a_batch_committing_between_a_readers_listing_and_its_check_is_read_whole(store, monkeypatch):
    """The reader lists while the writer's last file is not yet there, then finds the batch committed."""
    store.write_batch(frame("2026-03-01T23:30:00Z", 60, apps=("web",)), batch_id="late")  # two day partitions
    store = _uncommit(store, "late")
    last_file = stored(store, "app=web/date=2026-03-02/part-late-*.parquet")[0]
    data = store.location.read_bytes(last_file)
    store.location.delete(store.location.path(last_file))
    check = store.has_batch

    def writer_finishes_first(batch_id: str) -> bool:  # the file lands, then the commit record
        store.location.write_bytes(last_file, data)
        store.location.write_bytes("_batches/late.json", b"{}")
        return check(batch_id)

    monkeypatch.setattr(store, "has_batch", writer_finishes_first)
    assert len(store.read("web")) == 60 * 2, "the folders are listed again once the commit is seen"


class CompactingAfterFirstListing:
    """The store's location, except that another process compacts right after the first listing of files."""

    def __init__(self, location):
        self.location, self.calls = location, []

    def __getattr__(self, name):
        return getattr(self.location, name)

    def files(self, *args, **kwargs):
        self.calls.append(args)
        files = self.location.files(*args, **kwargs)
        if len(self.calls) == 1:  # another process's compaction deletes what this read has just listed
            assert MetricsStore(self.location.root).compact(min_files=2).partitions == 1
        return files


def test_a_read_that_lists_before_a_compaction_reads_the_merged_file(store, monkeypatch):
    for i in range(3):
        store.write_batch(frame(f"2026-03-01T0{i}:00:00Z", 60, apps=("web",), seed=i), batch_id=f"b{i}")
    before = store.read("web")
    location = CompactingAfterFirstListing(store.location)
    monkeypatch.setattr(store, "location", location)
    pd.testing.assert_frame_equal(store.read("web"), before)
    assert len(location.calls) == 2, "listed once more, then read from the merged file"


HOSTILE_APPS = [
    pytest.param("web/../../../ledger/app=web", id="traversal"),
    pytest.param("../web", id="parent"),
    pytest.param("a" * 300, id="300-characters"),
    pytest.param("Web", id="upper-case"),
    pytest.param("", id="empty"),
]


@pytest.mark.parametrize("app", HOSTILE_APPS)
@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda store, app: store.read(app), id="read"),
        pytest.param(lambda store, app: store.files(app), id="files"),
        pytest.param(lambda store, app: store.dates(app), id="dates"),
        pytest.param(lambda store, app: store.compact(app=app, min_files=1), id="compact"),
    ],
)
def test_every_app_argument_is_checked_before_it_becomes_a_path(store, app, call):
    store.write_batch(frame("2026-03-01T00:00:00Z", 10), batch_id="x")
    before = stored(store)
    with pytest.raises(InvalidNameError, match="not a valid"):
        call(store, app)
    assert stored(store) == before


def test_folders_that_are_not_valid_apps_are_never_opened(tmp_path):
    store = MetricsStore(tmp_path / "metrics")
    for i in range(3):
        store.write_batch(frame(f"2026-03-01T0{i}:00:00Z", 10, apps=("web",), seed=i), batch_id=f"b{i}")
    stray = store.root / "app=Not_Valid" / "date=2026-03-01"
    stray.mkdir(parents=True)
    for i in range(3):  # copies of committed files: valid data, under a folder that is not an app
        (stray / f"part-b{i}-{i:019d}.parquet").write_bytes(store.files("web")[i].read_bytes())
    before = sorted(p.name for p in stray.iterdir())

    assert store.apps() == ["web"]
    assert store.compact(min_files=2).files_before == 3
    assert sorted(p.name for p in stray.iterdir()) == before


@pytest.mark.parametrize(
    "batch_id",
    [pytest.param("../escape", id="traversal"), pytest.param("c-123", id="compacted-prefix"),
     pytest.param("b" * 129, id="too-long"), pytest.param("", id="empty")],
)  # fmt: skip
def test_a_batch_id_that_is_not_a_plain_name_is_refused(store, batch_id):
    with pytest.raises(ValueError, match="batch id"):
        store.write_batch(frame("2026-03-01T00:00:00Z", 1), batch_id=batch_id)
    assert stored(store) == []


KILL_SCRIPT = """
import sys
from pathlib import Path
from prescale.metrics.ingest import ingest
from prescale.metrics.sources import FileSource
from prescale.metrics.store import MetricsStore
store = MetricsStore(sys.argv[2], quarantine=sys.argv[3])
print("start", flush=True)
ingest(FileSource(Path(sys.argv[1])), store=store)
print("done", flush=True)
"""


def _write_big_csv(path: Path, *, apps: int = 20) -> int:
    ts = pd.date_range("2026-01-01", periods=60 * 24 * 20, freq="min", tz="UTC")
    apps = [f"app-{i}" for i in range(apps)]
    big = pd.DataFrame(
        {
            "ts": np.repeat(ts.strftime("%Y-%m-%dT%H:%M:%SZ"), len(apps)),
            "app": np.tile(apps, len(ts)),
            "metric": "cpu_cores",
            "value": np.tile(np.arange(len(apps), dtype=float), len(ts)),
        }
    )
    big.to_csv(path, index=False)
    return len(big)


def _kill_when_writing(args: list[str], count_files, *, nth_file: int, poll: float) -> bool:
    """Start an ingest and SIGKILL it as soon as `count_files()` (temporary or final data files) reaches `nth_file`."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout.readline().strip() == "start"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if count_files() >= nth_file:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(poll)
    proc.wait()
    return False


def test_a_killed_ingest_leaves_no_partial_file_and_a_rerun_completes(tmp_path, store, request):
    """Locally: temp files and renames. On S3: one PUT per file, so a killed upload leaves no object at all."""
    csv = tmp_path / "big.csv"
    rows = _write_big_csv(csv, apps=20 if store.location.local else 5)  # 400 or 100 files: uploads are slower
    args = [sys.executable, "-c", KILL_SCRIPT, str(csv), str(store.root), str(store.quarantine)]
    if store.location.local:
        root = store.root  # pathlib's glob: a listing that tolerates files renamed while it runs
        killed = [_kill_when_writing(args, lambda: len(list(root.glob("app=*/date=*/*.parquet"))), nth_file=n,
                                     poll=0.002) for n in (1, 150)]  # fmt: skip
    else:
        client, (bucket, prefix) = request.getfixturevalue("s3_env").client(), store.location.base.split("/", 1)

        def objects(n: int) -> int:  # one LIST page of at most n keys: polling must not slow the server down
            return client.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/app=", MaxKeys=n)["KeyCount"]

        killed = [_kill_when_writing(args, lambda n=n: objects(n), nth_file=n, poll=0.02) for n in (1, 40)]
    assert any(killed), "the ingest finished before any kill: the test did not exercise a crash"
    assert not stored(store, "_batches/*.json"), "a killed batch must not be committed"
    reader = MetricsStore(store.root, quarantine=store.quarantine)
    assert reader.apps() == [] and reader.read("app-0").empty, "a killed batch is invisible"
    for visible in stored(store, "app=*/date=*/part-*.parquet"):
        pq.read_metadata(store.location.path(visible), filesystem=store.location.fs)  # every visible file is whole
    finished = subprocess.run(args, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert finished.returncode == 0, finished.stderr
    store = MetricsStore(store.root, quarantine=store.quarantine)
    assert sum(len(store.read(app)) for app in store.apps()) == rows
    assert not stored(store, "*.tmp-*"), "the rerun removes the killed attempt's temporary files"


def test_one_read_of_many_apps_gives_each_app_what_its_own_read_gives(store):
    """``read_many`` (the orchestrate cycle's one read per chunk): the same frame per app as ``read``, with
    overlapping batches collapsed to the newest, the metrics filter, and an app with no rows."""
    store.write_batch(frame("2026-03-01T23:30:00Z", 60, apps=("web", "api", "db")), batch_id="b1")
    store.write_batch(frame("2026-03-02T00:10:00Z", 30, apps=("web", "db"), seed=1), batch_id="b2")  # overlaps b1
    start, end = pd.Timestamp("2026-03-01T23:45:00Z"), pd.Timestamp("2026-03-02T00:35:00Z")
    apps = ["web", "api", "db", "ghost"]
    for metrics in (None, ["cpu_cores"]):
        many = store.read_many(apps, start=start, end=end, metrics=metrics)
        assert list(many) == apps
        for app in apps:
            pd.testing.assert_frame_equal(many[app], store.read(app, start=start, end=end, metrics=metrics))
    assert many["ghost"].empty and len(many["web"]) == 50
