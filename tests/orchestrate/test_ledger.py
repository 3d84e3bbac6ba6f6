"""The decision ledger on a local folder and on S3: append, window and newest reads, the mode filter,
compaction, reads that race a compaction, the microsecond timestamps, and the setting that selects it;
locally, two processes compacting while a third appends (the compaction lock). Hostile app names:
tests/metrics/test_hostile_names.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.fs as pafs
import pytest

from prescale.ledger import COMPACT_LOCK, READ_ATTEMPTS, Ledger, LedgerRow
from prescale.settings import load_settings
from tests.metrics.conftest import blocked_until_released

REPO = Path(__file__).resolve().parents[2]

START = pd.Timestamp("2026-01-01T23:56:00Z")  # four minutes before midnight: rows span two days


def _row(minute: int, **fields) -> LedgerRow:
    base = dict(decided_at=START + pd.Timedelta(minutes=minute), app="web", phase="default", mode="reactive",
                why="no champion", champion_version=None, covered_quantile=None, cost_per_hour=float(minute),
                outcome="ok")  # fmt: skip
    return LedgerRow(**{**base, **fields})


def _files(ledger: Ledger) -> list[str]:
    """Data files under the ledger's root, relative to it, on any backend."""
    where = ledger.location
    relative = (i.path[len(where.base) + 1 :] for i in where.files(recursive=True))
    return sorted(p for p in relative if p.rpartition("/")[2].startswith("part-"))


def _costs(frame: pd.DataFrame) -> list[float]:
    return frame["cost_per_hour"].tolist()


def test_append_then_read_a_window_and_the_newest_rows(root):
    ledger = Ledger(root)
    written = ledger.append([_row(m, allocation={"m7i.xlarge": m}) for m in range(8)])  # 23:56 .. 00:03

    assert len(written) == 2 and len(_files(ledger)) == 2, "one file per (app, day)"
    assert [f.split("/")[1] for f in _files(ledger)] == ["date=2026-01-01", "date=2026-01-02"]
    assert all(str(w).startswith("s3://" if isinstance(root, str) else "/") for w in written)
    everything = ledger.read("web")
    assert _costs(everything) == [float(m) for m in range(8)]
    assert everything["allocation"][5] == {"m7i.xlarge": 5}, "JSON fields come back decoded"
    window = ledger.read("web", start=START + pd.Timedelta(minutes=2), end=START + pd.Timedelta(minutes=6))
    assert _costs(window) == [2.0, 3.0, 4.0, 5.0], "[start, end), across the day boundary"
    assert _costs(ledger.read("web", last=5)) == [3.0, 4.0, 5.0, 6.0, 7.0], "the newest, across the day boundary"
    assert ledger.read("api").empty and ledger.read("web", start=START + pd.Timedelta(hours=1)).empty


def test_compaction_keeps_every_row_once(root):
    ledger = Ledger(root)
    for minute in range(10):  # 23:56 .. 00:05: 4 files on the first day, 6 on the second
        ledger.append([_row(minute)])
    assert len(_files(ledger)) == 10

    assert ledger.compact("web", min_files=5) == 5, "only the day holding at least min_files files is merged"
    assert len(_files(ledger)) == 5
    assert _costs(ledger.read("web")) == [float(m) for m in range(10)]
    assert _costs(ledger.read("web", last=3)) == [7.0, 8.0, 9.0]
    assert ledger.compact("web", min_files=5) == 0, "nothing left to merge"
    ledger.append([_row(7)])  # a row in the merged file and in a new part reads once
    assert len(ledger.read("web")) == 10


def test_a_ledger_written_before_the_rule_state_column_still_reads_and_compacts(tmp_path):
    """Files of an older schema (no ``rule_state``) read as ``{}`` beside new rows, and merge with them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from prescale.ledger import SCHEMA

    ledger = Ledger(tmp_path / "ledger")
    old = pa.schema([f for f in SCHEMA if f.name != "rule_state"])
    record = {k: v for k, v in _row(0).to_record().items() if k != "rule_state"}
    folder = tmp_path / "ledger" / "app=web" / "date=2026-01-01"
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([record], schema=old), folder / "part-old.parquet")
    ledger.append([_row(1, rule_state={"bare-metal": [[1.5, None]]})])
    frame = ledger.read("web")
    assert frame["rule_state"].tolist() == [{}, {"bare-metal": [[1.5, None]]}]
    assert ledger.compact("web", min_files=2) == 1
    assert ledger.read("web")["rule_state"].tolist() == [{}, {"bare-metal": [[1.5, None]]}]


def test_the_mode_filter_applies_before_last_counts(root):
    ledger = Ledger(root)
    ledger.append([_row(m, mode="predictive") for m in range(3)])  # 23:56 .. 23:58, the first day
    ledger.append([_row(m) for m in range(3, 20)])  # reactive, mostly on the second day

    predictive = ledger.read("web", last=2, mode="predictive")
    assert _costs(predictive) == [1.0, 2.0], "the newest predictive rows, past the newer reactive ones"
    assert set(predictive["mode"]) == {"predictive"}
    assert _costs(ledger.read("web", last=2)) == [18.0, 19.0], "without a mode: the newest rows of any mode"
    assert len(ledger.read("web", mode="reactive")) == 17


class Listings:
    """The ledger's own :class:`~prescale.metrics.location.Location`, with a hook on every listing of a day
    folder: what a reader sees when another cycle's compaction runs between its listing and its read."""

    def __init__(self, location, hook) -> None:
        self.inner, self.hook, self.calls = location, hook, []

    def files(self, folder="", **options):
        listed = self.inner.files(folder, **options)
        self.calls.append(folder)
        return self.hook(folder, listed)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def _listing(ledger: Ledger, hook=lambda folder, listed: listed) -> Listings:
    ledger.location = Listings(ledger.location, hook)
    return ledger.location


def test_a_read_that_lists_before_a_compaction_reads_the_merged_file(root):
    ledger = Ledger(root)
    for minute in range(4, 10):  # all on the second day
        ledger.append([_row(minute)])

    def then_compact(folder, listed):
        if len(listing.calls) == 1:  # another cycle's compaction deletes what this read has just listed
            assert Ledger(root).compact("web", min_files=2) == 5
        return listed

    listing = _listing(ledger, then_compact)
    assert _costs(ledger.read("web")) == [float(m) for m in range(4, 10)]
    assert len(listing.calls) == 2, "the day was listed once more, then read from the merged file"


def test_a_listing_that_keeps_naming_vanished_files_fails_after_a_few_attempts(root):
    ledger = Ledger(root)
    ledger.append([_row(5)])

    def with_a_new_ghost(folder, listed):
        ghost = pafs.FileInfo(ledger.location.path(f"{folder}/part-ghost-{len(listing.calls)}.parquet"),
                              type=pafs.FileType.File, size=1000)  # fmt: skip
        return [*listed, ghost]

    listing = _listing(ledger, with_a_new_ghost)
    with pytest.raises((OSError, ValueError)):  # FileNotFoundError locally; an OSError or ArrowInvalid on S3
        ledger.read("web")
    assert len(listing.calls) == READ_ATTEMPTS


def test_a_broken_file_is_an_error_at_once_not_a_retry(root):
    ledger = Ledger(root)
    ledger.append([_row(5)])
    ledger.location.write_bytes("app=web/date=2026-01-02/part-broken.parquet", b"not parquet at all")
    listing = _listing(ledger)
    with pytest.raises((OSError, ValueError)):
        ledger.read("web")
    assert len(listing.calls) == 2, "listed again once: every file is still there, so the error is real"


def test_a_sub_microsecond_decision_time_is_floored_not_refused(root):
    instant = pd.Timestamp("2026-01-02T00:00:00.000001999Z")
    row = _row(0, decided_at=instant)
    assert row.to_record()["decided_at"] == pd.Timestamp("2026-01-02T00:00:00.000001Z")
    ledger = Ledger(root)
    ledger.append([row])
    assert ledger.read("web")["decided_at"].tolist() == [pd.Timestamp("2026-01-02T00:00:00.000001Z")]
    assert len(ledger.read("web", start=instant)) == 0, "a bound between microseconds stays exact"
    assert len(ledger.read("web", end=instant)) == 1


def test_an_s3_ledger_lands_in_the_bucket_only(s3_env, prescale_home):
    from tests.metrics.conftest import s3_uri

    bucket = s3_env.create_bucket()
    ledger = Ledger(s3_uri(s3_env, bucket, "prescale/ledger"))
    ledger.append([_row(m) for m in range(5, 7)])
    keys = s3_env.keys(bucket)
    assert len(keys) == 1 and keys[0].startswith("prescale/ledger/app=web/date=2026-01-02/part-")
    assert keys[0].endswith(".parquet") and not Path("s3:").exists() and not prescale_home.exists()


def test_the_ledger_setting_takes_a_folder_or_a_uri(prescale_home):
    assert load_settings().orchestrate.ledger == prescale_home.absolute() / "ledger"
    assert load_settings(orchestrate={"ledger": "/data/ledger"}).orchestrate.ledger == Path("/data/ledger")
    remote = load_settings(orchestrate={"ledger": "s3://prescale/ledger"})
    assert remote.orchestrate.ledger == "s3://prescale/ledger", "a URI stays a URI (not the local path s3:/...)"
    minio = load_settings(orchestrate={"ledger": "s3://prescale/ledger"}, store={"endpoint_url": "http://minio:9000"})
    assert minio.orchestrate.ledger == "s3://prescale/ledger?endpoint_override=http%3A%2F%2Fminio%3A9000"


LEDGER_COMPACTOR = """
import sys, time
from pathlib import Path
from prescale.ledger import Ledger
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.001)
for _ in range(3):
    Ledger(sys.argv[1]).compact("web", min_files=2)
"""

LEDGER_APPENDER = """
import sys, time
from pathlib import Path
import pandas as pd
from prescale.ledger import LedgerRow, Ledger
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.001)
for minute in range(10, 20):  # the same day as the rows being compacted
    Ledger(sys.argv[1]).append([LedgerRow(
        decided_at=pd.Timestamp("2026-01-02T00:00:00Z") + pd.Timedelta(minutes=minute), app="web", phase="default",
        mode="reactive", why="no champion", champion_version=None, covered_quantile=None,
        cost_per_hour=float(minute), outcome="ok")])
"""


def test_two_compactions_and_an_append_at_once_lose_no_decision(tmp_path):
    root, go = tmp_path / "ledger", tmp_path / "go"
    ledger = Ledger(root)
    for minute in range(4, 10):  # 00:00 .. 00:05 of the second day: six files
        ledger.append([_row(minute)])
    scripts = (LEDGER_COMPACTOR, LEDGER_COMPACTOR, LEDGER_APPENDER)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(root), str(go)], cwd=REPO, stderr=subprocess.PIPE,
                              text=True) for script in scripts]  # fmt: skip
    go.touch()
    errors = [proc.communicate(timeout=120)[1] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0], errors

    expected = [float(m) for m in range(4, 10)] + [float(m) for m in range(10, 20)]
    assert sorted(_costs(Ledger(root).read("web"))) == expected
    Ledger(root).compact("web", min_files=2)
    assert len(_files(Ledger(root))) == 1 and sorted(_costs(Ledger(root).read("web"))) == expected


def test_a_ledger_compaction_waits_for_another_process_holding_the_lock(tmp_path):
    ledger = Ledger(tmp_path / "ledger")
    for minute in range(4, 7):
        ledger.append([_row(minute)])
    blocked_until_released(ledger.root, COMPACT_LOCK, lambda: ledger.compact("web", min_files=2))
    assert len(_files(ledger)) == 1 and _costs(ledger.read("web")) == [4.0, 5.0, 6.0]


def test_the_cached_recent_rows_answer_as_the_ledger_does_whoever_writes(root):
    """``RecentRows`` (the cycle's per-process cache) against ``Ledger.read`` at every minute: its own rows
    added as written, another writer's rows (found by listing), a compaction's merged file (rows already
    seen), the mode filter, and a read at a past instant (answered by the ledger itself)."""
    from prescale.ledger import RecentRows

    ledger, other = Ledger(root), Ledger(root)
    recent = RecentRows(ledger, keep={None: 3, "predictive": 4})
    for minute in range(12):
        now = START + pd.Timedelta(minutes=minute)
        window = dict(start=now - pd.Timedelta(hours=1), end=now)
        for last, mode in ((3, None), (4, "predictive"), (2, "predictive")):
            cached, read = recent.read("web", **window, last=last, mode=mode), ledger.read("web", **window, last=last,
                                                                                           mode=mode)  # fmt: skip
            assert _costs(cached) == _costs(read), (minute, mode)
            assert cached.get("rule_state", pd.Series()).tolist() == read.get("rule_state", pd.Series()).tolist()
        row = _row(minute, mode="predictive" if minute % 3 else "reactive", rule_state={"keep": [minute]})
        if minute % 4 == 1:
            other.append([row])  # another process: this cache learns of it by listing
        else:
            recent.add([row], ledger.append([row]))
        if minute == 7:
            assert ledger.compact("web", min_files=2) > 0
    past = START + pd.Timedelta(minutes=5)
    assert _costs(recent.read("web", start=START, end=past, last=3)) == [2.0, 3.0, 4.0]
