"""The Parquet metrics store: partitioned, atomic, idempotent, compactable; on disk or object storage.

Layout under ``root``::

    app=<app>/date=<YYYY-MM-DD>/part-<batch_id>-<stamp>.parquet   accepted rows
    app=<app>/date=<YYYY-MM-DD>/part-c-<digest>-<stamp>.parquet   a compacted partition
    _batches/<batch_id>.json                                      the commit record of a batch
    .compact.lock                                                 serialises compactions (local roots)

Files hold ``ts`` (timestamp[ns, UTC]), ``metric`` and ``phase`` (dictionary
strings) and ``value`` (float64); ``app`` and ``date`` come from the hive
directory names. ``<stamp>`` is the write time in ns (19 digits): it orders the
files of a partition, oldest first (files of older stores end in ``-0`` or have
no stamp; their modification time stands in).

Every app name becomes a path here, so every method that takes one checks it as
an :class:`~prescale.names.AppName` before building ``app=<app>`` (a name such as
``web/../../../ledger/app=web`` raises ``InvalidNameError`` and touches nothing),
and :meth:`MetricsStore.apps` and :meth:`MetricsStore.compact` over all apps never
open a folder whose name is not a valid app. Batch ids are checked the same way.

``root`` is a local folder or a URI (``s3://bucket/prefix``; also ``file://`` and,
through fsspec, ``memory://``); ``location.py`` resolves it to a ``pyarrow.fs``
filesystem, and every operation below goes through that one interface.

**Writing a batch** (:meth:`MetricsStore.write_batch`): the rows are grouped by
(app, date) and each group is written as one file, atomically and durably, all
files of the batch at once (``Location.write_tables``; locally each file is
fsynced before its rename, then each folder that changed is fsynced once); only
then is the commit record written, the same way (fsynced, renamed, its folder
fsynced). A batch whose commit record exists is skipped when it comes again: a
retried or repeated batch adds nothing. A batch killed before its commit left at
most some files behind (complete ones, and hidden temporary ones); its retry
deletes them from the partitions it writes (the batch id derives from the
content, so a retry writes the same partitions) before writing its own, and the
folders' fsyncs make those deletions durable too.

*What durability costs*, measured on a 2-core VM (ext4 on a virtual disk), old and
new code alternated in one process. A 2M-row batch (200 files): with the disk
otherwise idle, fsyncs are cheap and every variant is within the noise of the
other load on the machine (0.5-1.1 s; 0.5-0.9 s with no fsync at all); with the
disk busy (another process writing and fsyncing 32 MiB in a loop) it took
1.6-1.8 s when each file and folder was fsynced in turn on two threads, and
0.75 s with the fsyncs in parallel behind the encoding (0.55 s with no fsync).
The benchmark's 5M-row ingest (450 files) under that disk load: the store step
from 4.2-4.5 s to 1.6 s, end to end from 0.7-0.8 to 1.2-1.3 M rows/s. With the
disk idle the store step is CPU work, fsync or not: of its 1.2-2 s of CPU, Parquet
encoding is about 0.85 s and the kernel's file creation and writes 0.4-0.9 s. A
one-minute batch (one file) pays four fsyncs one after another (file, folder,
commit record, ``_batches``): 3-9 ms idle, about 25 ms with the disk busy against
6-8 ms with no fsync. Rejected: writing and fsyncing the commit record's
temporary file alongside the data files, which would save one of the four, for a
second code path and a ``committed_at`` older than the data, once a minute.

**The commit record is the unit of visibility** as well as of idempotency. Readers
(and compaction) use a ``part-<batch_id>-<stamp>`` file only when
``_batches/<batch_id>.json`` exists; a compacted ``part-c-*`` file is always used,
since it is merged only from files that were. So a batch is seen whole or not at
all: a batch killed between its file writes and its commit is invisible (its files
are left for its retry to replace), and a reader running during a write sees the
batch's rows once the commit lands, never a part of them. How, cheaply: a store
keeps the set of batch ids it has seen committed (a commit record is never
removed, so a positive answer stays true); a read lists its partitions as before
and checks a commit record only for the batch ids it has not seen yet (locally a
``stat`` each, on an object store a HEAD each, in parallel; a compacted store has
few such files). A batch first seen committed may have committed after the listing,
with some of its files listed and some not yet: the partitions are then listed
again, which now hold all of them. Rejected: listing ``_batches/`` on every read
(a store ingesting every minute holds half a million records after a year: five
hundred LIST pages per read on S3) and a manifest file rewritten per batch (a
second file that two writers would have to update without losing each other).
Measured on a 24 h read of 1,440 never-compacted one-minute files (0.5-0.6 s in all,
most of it opening the files): finding the visible files took 26 ms for a new store
(1,440 ``stat`` calls and a second listing) against 7 ms for the listing alone, and
12 ms once the ids are known; after compaction there is nothing to check.

**Atomic writes, local and on object storage.** Locally a file is written to a
hidden temporary name in its partition folder (readers only list
``part-*.parquet``) and moved onto its final name with ``os.replace``, atomic on
one filesystem. An object store has no rename (S3 copies and deletes), but a PUT is
atomic per object: the object appears whole when its upload completes, never
before. So there each file is encoded in memory and uploaded directly under its
final name, and the commit record is uploaded last, as locally. Differences:

- no temporary files and no rename: a writer killed mid-upload leaves no object
  at all (an unfinished multipart upload is invisible; let a bucket lifecycle rule
  ``AbortIncompleteMultipartUpload`` reclaim its parts);
- ``has_batch`` and the readers rely on S3's strong consistency (since December
  2020 a successful PUT or DELETE is seen by every later GET, HEAD and LIST; MinIO
  and Ceph RGW behave the same), so a committed batch is seen as committed by the
  next writer, wherever it runs;
- S3 modification times have one-second resolution, which is why files carry a
  write stamp in their name to order overlapping batches;
- each listing is a request: a window read lists only its own ``date=`` folders
  (one LIST each), a compaction one paginated LIST of the app's folder.

**Reading** (:meth:`MetricsStore.read`) lists only the ``date=`` folders of the
asked window for the one app, so it touches only the partitions it needs, then
filters on ``ts`` inside them. Rows with the same ``(ts, metric)`` from different
batches (overlapping Prometheus windows, say) are collapsed to the one written
last. :meth:`MetricsStore.read_many` reads many apps' windows in one scan (each file
tagged with its app) and splits the rows by app: the orchestrate cycle's read of a chunk of
apps, 2.5 ms per app against 8 ms for one read each.

**Compaction** (:meth:`MetricsStore.compact`) rewrites a partition with many
small visible files as one sorted, deduplicated file, written in before the inputs
are deleted; a crash in between leaves duplicates that reads collapse and the next
compaction removes. Files of uncommitted batches are neither merged nor deleted.
A reader that listed a file a compaction then deleted lists again and rereads (the
merged file was written before the deletion), a few times at most.

*Concurrent compactions.* Locally a compaction holds an exclusive ``flock`` on
``.compact.lock`` in the root, so two processes compacting the same store run one
after the other (the second lists afresh and finds the merged file). An object
store has no lock; there the rule that keeps every row is that a compaction
deletes only files it has read, and only after its merged file, holding their
rows, is written. Whatever the interleaving, every deleted file's rows are then in
a file written before the deletion (a merged file deleted in turn by another
compaction was read by it first, so its rows moved on again), so no row is lost.
What concurrency can leave on an object store: two merged files with the same rows
(reads collapse them, the next compaction removes one), or a compaction that meets
a file deleted under it, lists again and merges what is there. One residue: two
merged files carrying the same newest stamp order by name, so for a key that
another batch also wrote, the value read may be that of either merged set until
the next compaction. Run one compaction per store at a time there (the ingest
flow compacts after its own batch; a schedule of one deployment does it).
Batch writes need no lock against compaction: an uncommitted batch's files are
invisible to it, and a committed batch's files are final.

*Two writers of one batch id* (the same file ingested twice at the same moment):
locally the second waits on the batch's lock and then finds the commit. On an
object store nothing stops the second, which found no commit record yet, from
deleting the first's files as leftovers of a killed attempt; it then writes the
same rows again and commits, so the batch ends whole, unless the second is killed
in between (then re-ingest the file under a new batch id, e.g. ``--mapping``).

What it does not do: validation (see ``validation.py``: only accepted rows
arrive here).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cached_property
from pathlib import Path, PurePath, PurePosixPath

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from prescale.metrics.location import Location, sibling
from prescale.names import AppName, is_valid_app_name

FILE_SCHEMA = pa.schema(
    [
        ("ts", pa.timestamp("ns", tz="UTC")),
        ("metric", pa.dictionary(pa.int32(), pa.string())),
        ("value", pa.float64()),
        ("phase", pa.dictionary(pa.int32(), pa.string())),
    ]
)
PARTITIONING = ds.partitioning(pa.schema([("app", pa.string()), ("date", pa.date32())]), flavor="hive")
KEY = ["ts", "metric"]
# Quarantine files: every cell as text (as read), so batches of any source read back together.
QUARANTINE_SCHEMA = pa.schema(
    [("source_row", pa.int64())]
    + [(c, pa.string()) for c in ("app", "raw_app", "ts", "metric", "value", "phase", "reason", "detail", "source")]
)
_QUARANTINE_READ = QUARANTINE_SCHEMA.append(pa.field("batch_id", pa.string()))
_PARQUET = ds.ParquetFileFormat()
# Listings and deletions: object stores are I/O-bound per request, so more in flight; locally two threads
# suffice. (A batch's files go through Location.write_tables, which has its own pipeline.)
_LOCAL_THREADS, _REMOTE_THREADS = 2, 16
# Windows up to this many days list their date folders one by one; longer ones list the app's folder once.
_MAX_FOLDERS_LOCAL, _MAX_FOLDERS_REMOTE = 400, 8
# A read whose listed file vanished (a concurrent compaction deleted it) lists again and rereads, at most this often.
READ_ATTEMPTS = 4
COMPACT_LOCK = ".compact.lock"  # in the root; hidden: no listing of the store counts it
# A batch id becomes a file and an object name: no '/', nothing a shell or URL escapes; 'c-' marks compacted files.
_BATCH_ID = re.compile(r"(?!c-)[A-Za-z0-9][-A-Za-z0-9_]{0,127}")


@dataclass(frozen=True)
class WriteResult:
    batch_id: str
    rows: int
    files: int
    skipped: bool  # True when the batch was already committed: nothing was written


@dataclass(frozen=True)
class CompactionResult:
    partitions: int
    files_before: int
    files_after: int
    rows: int


def batch_id_for(*parts: bytes | str) -> str:
    """A stable batch id from the batch's identity (content digest, app, mapping...)."""
    digest = hashlib.blake2b(digest_size=12)
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\x00")
    return digest.hexdigest()


def file_digest(path: Path) -> bytes:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, lambda: hashlib.blake2b(digest_size=16)).digest()


class MetricsStore:
    """Accepted metrics (``root``) and quarantined rows (``quarantine``), on disk or on an object store.

    `root` and `quarantine` are local paths or URIs (``s3://bucket/prefix``); the
    quarantine defaults to the folder ``quarantine`` beside the root. ``root`` and
    ``quarantine`` read back as a ``Path`` (local) or the URI string;
    ``location`` is the resolved filesystem and base path.
    """

    def __init__(self, root: str | os.PathLike, *, quarantine: str | os.PathLike | None = None) -> None:
        self.location = Location.parse(root)
        self.root: Path | str = self.location.root
        self._quarantine_root = quarantine or sibling(root, "quarantine")
        # Batch ids seen committed. Only positive answers are kept: a commit record is never removed.
        self._committed: set[str] = set()

    @cached_property
    def quarantine_location(self) -> Location:
        return Location.parse(self._quarantine_root)  # opened on first use: most stores never quarantine

    @property
    def quarantine(self) -> Path | str:
        return self.quarantine_location.root

    # -- writing ---------------------------------------------------------------

    def has_batch(self, batch_id: str) -> bool:
        if batch_id in self._committed:
            return True
        if self.location.exists(_commit_path(_checked_batch_id(batch_id))):
            self._committed.add(batch_id)
            return True
        return False

    def write_batch(self, accepted: pd.DataFrame, *, batch_id: str, source: str = "") -> WriteResult:
        """Write validated rows (app, ts, metric, value[, phase]) as one idempotent batch.

        The data files are durable (fsynced, locally) before the commit record is written: the
        record is what makes them visible (see the module docstring). Locally two writers of one
        batch id run one after the other (``.locks/<batch_id>.lock``), so the second finds the
        first's commit instead of deleting its files as leftovers.
        """
        lock = f".locks/{_checked_batch_id(batch_id)}.lock"
        with self.location.lock(lock):
            result = self._write_once(accepted, batch_id, source)
            # safe while held: whoever takes this lock next, even on the unlinked file, finds the commit record
            self.location.delete(self.location.path(lock))
        return result

    def _write_once(self, accepted: pd.DataFrame, batch_id: str, source: str) -> WriteResult:
        committed = self._commit_record(batch_id)
        if committed is not None:
            return WriteResult(batch_id, rows=committed["rows"], files=len(committed["files"]), skipped=True)
        files = self._write_partitions(accepted, batch_id) if len(accepted) else []
        record = {
            "batch_id": batch_id,
            "rows": len(accepted),
            "files": files,
            "source": source,
            "committed_at": datetime.now().astimezone().isoformat(),
        }
        self.location.write_bytes(_commit_path(batch_id), json.dumps(record, indent=1).encode())
        self._committed.add(batch_id)
        return WriteResult(batch_id, rows=len(accepted), files=len(files), skipped=False)

    def _commit_record(self, batch_id: str) -> dict | None:
        """The batch's commit record, or None (read directly: no separate existence check)."""
        try:
            return json.loads(self.location.read_bytes(_commit_path(batch_id)))
        except FileNotFoundError:
            return None

    def _write_partitions(self, accepted: pd.DataFrame, batch_id: str) -> list[str]:
        """One file per (app, date), each written atomically (a temp name and a rename, or one PUT), all durable.

        What a killed earlier attempt of the batch left in these partitions is deleted first; the
        folders' fsyncs after the writes make the deletions durable too.

        Rows are grouped with one stable integer sort (radix sort when the group ids
        fit 16 bits), which keeps each partition's rows in time order. This measured
        about twice as fast as ``pyarrow.dataset.write_dataset`` on interleaved input.
        """
        table = _to_arrow(accepted)
        app_code = _dictionary(accepted["app"]).indices.to_numpy().astype(np.int64)
        names = _dictionary(accepted["app"]).dictionary.to_pylist()
        day = table["date"].to_numpy().astype("datetime64[D]").astype(np.int64)
        first_day, n_days = int(day.min()), int(day.max() - day.min() + 1)
        key = app_code * n_days + (day - first_day)
        order = np.argsort(key.astype(np.int16) if key.max() < 2**15 else key, kind="stable")
        ordered_key = key[order]
        data = table.drop_columns(["app", "date"]).take(pa.array(order))
        cuts = np.flatnonzero(np.diff(ordered_key)) + 1
        stamp = _stamp()
        files: list[tuple[str, pa.Table]] = []
        for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(order)], strict=True):
            group = int(ordered_key[lo])
            partition_day = date.fromordinal(date(1970, 1, 1).toordinal() + first_day + group % n_days)
            folder = f"app={AppName(names[group // n_days])}/date={partition_day.isoformat()}"
            files.append((f"{folder}/part-{batch_id}-{stamp}.parquet", data.slice(int(lo), int(hi - lo))))
        self._remove_leftovers([path.rpartition("/")[0] for path, _ in files], batch_id)
        self.location.write_tables(files)  # all durable, names included, on return (locally fsynced in parallel)
        return [path for path, _ in files]

    def _remove_leftovers(self, folders: list[str], batch_id: str) -> None:
        """Delete what a killed earlier attempt of this batch left in the partition `folders`."""
        if len(folders) == 1:  # a one-minute batch: no hand-off to a thread
            self._remove_uncommitted(folders[0], batch_id)
            return
        with ThreadPoolExecutor(max_workers=self._threads) as pool:
            list(pool.map(lambda folder: self._remove_uncommitted(folder, batch_id), folders))

    def _remove_uncommitted(self, folder: str, batch_id: str) -> None:
        """Delete what a killed earlier attempt of this batch left in `folder` (files, local temp files)."""
        mine, temporary = f"part-{batch_id}-", f"-part-{batch_id}-"
        for info in self.location.files(folder):
            name = info.base_name
            if name.startswith(mine) or (name.startswith(".tmp-") and temporary in name):
                self.location.delete(info.path)

    def write_quarantine(self, rows: pd.DataFrame, *, batch_id: str, source: str = "") -> PurePath | str | None:
        """Store rejected rows with their reasons, one file per batch (replaced on retry); return where."""
        if not len(rows):
            return None
        frame = rows.assign(source=source)
        table = pa.table(
            {f.name: pa.array(frame[f.name].to_numpy(), type=f.type, from_pandas=True) for f in QUARANTINE_SCHEMA}
        )
        relative = f"batch_id={batch_id}/part-0.parquet"
        self.quarantine_location.write_table(relative, table)
        return self.quarantine_location.display(self.quarantine_location.path(relative))

    def read_quarantine(self) -> pd.DataFrame:
        """Every quarantined row of every batch, with its `batch_id`."""
        where = self.quarantine_location
        if not where.exists():
            return pd.DataFrame(columns=[f.name for f in QUARANTINE_SCHEMA] + ["batch_id"])
        partitioning = ds.partitioning(pa.schema([("batch_id", pa.string())]), flavor="hive")
        dataset = ds.dataset(
            where.path(), filesystem=where.fs, format="parquet", partitioning=partitioning, schema=_QUARANTINE_READ
        )
        return dataset.to_table().to_pandas()

    @property
    def _threads(self) -> int:
        return _LOCAL_THREADS if self.location.local else _REMOTE_THREADS

    # -- reading ---------------------------------------------------------------

    def apps(self) -> list[str]:
        """Apps with at least one visible data file (folders whose name is not a valid app are never opened)."""
        folders = self.location.folders(prefix="app=")
        return [folder[4:] for folder in folders if is_valid_app_name(folder[4:]) and self._has_data(folder)]

    def _has_data(self, app_folder: str) -> bool:
        return any(
            self._committed_only(lambda day=day: [i for i in self.location.files(f"{app_folder}/{day}") if _is_data(i)])
            for day in self.location.folders(app_folder, prefix="date=")
        )

    def dates(self, app: str) -> list[date]:
        """The date partitions of `app` (folders; a partition may hold only files of uncommitted batches)."""
        return [date.fromisoformat(name[5:]) for name in self.location.folders(_app_folder(app), prefix="date=")]

    def files(self, app: str, *, start: datetime | None = None, end: datetime | None = None) -> list[PurePath]:
        """Visible data files of `app` whose date partition can hold rows in [start, end), oldest first per partition.

        Local files come as ``Path``; on an object store as ``bucket/key`` paths on its filesystem.
        """
        infos = self._data_files(app, start=start, end=end)
        return [Path(i.path) if self.location.local else PurePosixPath(i.path) for i in infos]

    def _data_files(self, app: str, *, start, end) -> list[pafs.FileInfo]:
        """The visible data files of `app` in the window's partitions, in read order."""
        folder = _app_folder(app)
        infos = self._committed_only(lambda: self._listed_files(folder, start=start, end=end))
        return sorted(infos, key=lambda i: (_folder(i), _write_order(i)))

    def _listed_files(self, app_folder: str, *, start, end) -> list[pafs.FileInfo]:
        """Every data file (committed or not) of the app's partitions that can hold rows in [start, end)."""
        first = utc(start).date() if start is not None else date.min
        last = (utc(end) - pd.Timedelta(1, "ns")).date() if end is not None else date.max
        limit = _MAX_FOLDERS_LOCAL if self.location.local else _MAX_FOLDERS_REMOTE
        if start is not None and end is not None and (last - first).days < limit:
            days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
            folders = [f"{app_folder}/date={day.isoformat()}" for day in days]
            if self.location.local or len(folders) <= 1:
                infos = [info for folder in folders for info in self.location.files(folder)]
            else:  # one LIST request per folder: in parallel
                with ThreadPoolExecutor(max_workers=len(folders)) as pool:
                    infos = [info for listed in pool.map(self.location.files, folders) for info in listed]
        else:  # one (paginated) listing of the whole app, cut to the window
            infos = [info for info in self.location.files(app_folder, recursive=True) if first <= _day(info) <= last]
        return [i for i in infos if _is_data(i)]

    def _committed_only(self, listing: Callable[[], list[pafs.FileInfo]]) -> list[pafs.FileInfo]:
        """The files of `listing()` that are visible: compacted files and files of committed batches.

        A batch first seen committed here may have committed after `listing()` ran, while some of
        its files were still being written: then the listing is taken again. Its commit record was
        written after all its files, so the second listing holds every one of them (or, if a
        compaction ran meanwhile, the merged file that holds their rows).
        """
        infos = listing()
        unknown = {_batch_of(i) for i in infos} - self._committed - {None}
        if unknown and self._learn_commits(unknown):
            infos = listing()
        return [i for i in infos if _batch_of(i) is None or _batch_of(i) in self._committed]

    def _learn_commits(self, batch_ids: set[str]) -> bool:
        """Check the commit records of `batch_ids` (in parallel on an object store); True if any is committed."""
        ids = sorted(batch_ids)
        if self.location.local or len(ids) == 1:
            found = [self.has_batch(i) for i in ids]
        else:  # one HEAD request each
            with ThreadPoolExecutor(max_workers=min(len(ids), _REMOTE_THREADS)) as pool:
                found = list(pool.map(self.has_batch, ids))
        return any(found)

    def read(
        self,
        app: str,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        metrics: list[str] | None = None,
    ) -> pd.DataFrame:
        """Rows of one app in [start, end): app, ts, metric, value, phase; sorted, one row per (ts, metric)."""
        app = AppName(app)
        infos = self._data_files(app, start=start, end=end)
        if not infos:
            return _empty_frame()
        table, _ = self._scan(infos, _filter(start, end, metrics), lambda: self._data_files(app, start=start, end=end))
        frame = table.to_pandas()
        frame = frame.drop_duplicates(KEY, keep="last").sort_values(["ts", "metric"], kind="stable")
        frame.insert(0, "app", app)
        frame["metric"] = frame["metric"].astype(str)
        frame["phase"] = frame["phase"].astype("string")
        return frame.reset_index(drop=True)[["app", "ts", "metric", "value", "phase"]]

    def read_many(
        self,
        apps: list[str],
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        metrics: list[str] | None = None,
    ) -> dict[str, pd.DataFrame]:
        """:meth:`read` of each app, in one scan: app -> the same frame ``read(app, ...)`` returns.

        The orchestrate cycle reads a chunk of apps' recent windows at once: each app's visible files are
        listed as :meth:`read` lists them, then all of them are scanned as one dataset (each file tagged with
        its app) and the rows split by app, so the per-read costs (the dataset, the scan's threads, the
        conversion to pandas, the dedup and sort) are paid once per chunk instead of once per app.
        """
        apps = [AppName(app) for app in dict.fromkeys(apps)]
        listed = {app: self._data_files(app, start=start, end=end) for app in apps}
        out = {app: _empty_frame() for app in apps if not listed[app]}
        wanted = [app for app in apps if listed[app]]
        if not wanted:
            return out
        table = self._scan_apps({app: listed[app] for app in wanted}, _filter(start, end, metrics),
                                lambda app: self._data_files(app, start=start, end=end))  # fmt: skip
        frame = table.to_pandas()
        frame["app"] = pd.Categorical(frame["app"], categories=wanted)
        frame = frame.drop_duplicates(["app", *KEY], keep="last").sort_values(["app", "ts", "metric"], kind="stable")
        frame["metric"] = frame["metric"].astype(str)
        frame["phase"] = frame["phase"].astype("string")
        codes = frame["app"].cat.codes.to_numpy()
        bounds = np.searchsorted(codes, np.arange(len(wanted) + 1))
        frame = frame[["app", "ts", "metric", "value", "phase"]].reset_index(drop=True)
        for k, app in enumerate(wanted):
            part = frame.iloc[bounds[k]:bounds[k + 1]].reset_index(drop=True)
            part["app"] = part["app"].astype(str)
            out[app] = part if len(part) else _empty_frame()
        return {app: out[app] for app in apps}

    def _scan_apps(
        self, listed: dict[str, list[pafs.FileInfo]], condition: ds.Expression | None,
        relist: Callable[[str], list[pafs.FileInfo]],
    ) -> pa.Table:
        """The matching rows of every app's files with an ``app`` column; a vanished file (a concurrent
        compaction) relists and rereads, as :meth:`_scan` does."""
        fs, schema = self.location.fs, FILE_SCHEMA.append(pa.field("app", pa.string()))
        for attempt in range(1, READ_ATTEMPTS + 1):
            fragments = [_PARQUET.make_fragment(i.path, filesystem=fs, file_size=i.size,
                                                partition_expression=ds.field("app") == app)
                         for app, infos in listed.items() for i in infos]  # fmt: skip
            try:
                return ds.FileSystemDataset(fragments, schema, _PARQUET, fs).to_table(filter=condition)
            except (OSError, pa.ArrowInvalid):
                before = {i.path for infos in listed.values() for i in infos}
                listed = {app: relist(app) for app in listed}
                if attempt == READ_ATTEMPTS or before <= {i.path for infos in listed.values() for i in infos}:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _scan(
        self, infos: list[pafs.FileInfo], condition: ds.Expression | None, relist: Callable[[], list[pafs.FileInfo]]
    ) -> tuple[pa.Table, list[pafs.FileInfo]]:
        """The matching rows of the files and the files they came from.

        A compaction may delete a listed file before it is read (locally FileNotFoundError; on an
        object store an OSError, or an ArrowInvalid for a body that is gone). Then `relist()` is
        read instead (its merged file was written before the deletion), at most ``READ_ATTEMPTS``
        times in all; a failure with every listed file still present is a real error, raised as is.
        """
        for attempt in range(1, READ_ATTEMPTS + 1):
            try:
                return self._dataset(infos).to_table(filter=condition), infos
            except (OSError, pa.ArrowInvalid):
                listed, infos = {i.path for i in infos}, relist()
                if attempt == READ_ATTEMPTS or listed <= {i.path for i in infos}:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _dataset(self, infos: list[pafs.FileInfo]) -> ds.FileSystemDataset:
        """The files as one dataset, in the given order; their sizes are known, so no HEAD per file."""
        fs = self.location.fs
        fragments = [_PARQUET.make_fragment(i.path, filesystem=fs, file_size=i.size) for i in infos]
        return ds.FileSystemDataset(fragments, FILE_SCHEMA, _PARQUET, fs)

    # -- maintenance -----------------------------------------------------------

    def compact(self, *, app: str | None = None, min_files: int = 8) -> CompactionResult:
        """Merge every partition holding at least `min_files` visible files into one file.

        `app` None: every app folder whose name is a valid app (any other folder is never opened).
        Holds the store's compaction lock throughout (locally; see the module docstring).
        """
        folders = [_app_folder(app)] if app is not None else self._valid_app_folders()
        with self.location.lock(COMPACT_LOCK):
            compacted = files_before = files_after = rows = 0
            for folder, infos in sorted(self._partitions(folders).items()):
                files_before += len(infos)
                merged = self._compact_partition(folder, infos) if len(infos) >= min_files else None
                files_after += len(infos) if merged is None else 1
                compacted += merged is not None
                rows += merged or 0
        return CompactionResult(compacted, files_before, files_after, rows)

    def _valid_app_folders(self) -> list[str]:
        return [folder for folder in self.location.folders(prefix="app=") if is_valid_app_name(folder[4:])]

    def _partitions(self, app_folders: list[str]) -> dict[str, list[pafs.FileInfo]]:
        """The visible data files of the apps, by partition folder (relative); one listing per app."""
        partitions: dict[str, list[pafs.FileInfo]] = {}
        for app_folder in app_folders:
            for info in self._committed_only(lambda f=app_folder: self._listed_files(f, start=None, end=None)):
                partitions.setdefault(info.path[len(self.location.base) + 1 :].rpartition("/")[0], []).append(info)
        return partitions

    def _partition_files(self, folder: str) -> list[pafs.FileInfo]:
        """The visible data files of one partition folder (relative), oldest first."""
        infos = self._committed_only(lambda: [i for i in self.location.files(folder) if _is_data(i)])
        return sorted(infos, key=_write_order)

    def _compact_partition(self, folder: str, infos: list[pafs.FileInfo]) -> int | None:
        """Merge the partition's visible files into one; its rows, or None when another compaction merged it first.

        Only the files read are deleted, after the merged file holding their rows is written: a file
        that lands meanwhile (a batch, or another compaction's output) stays.
        """
        table, infos = self._scan(sorted(infos, key=_write_order), None, lambda: self._partition_files(folder))
        if len(infos) < 2:
            return None
        frame = table.to_pandas().drop_duplicates(KEY, keep="last").sort_values(["ts", "metric"], kind="stable")
        digest = batch_id_for(*(i.base_name for i in infos), str(time.time_ns()))
        # the merged file takes the newest stamp of its inputs, not the time of merging: a batch that took its
        # stamp before this merge but landed after it must still win over the rows merged here
        newest = max(_write_order(info)[0] for info in infos)
        relative = f"{folder}/part-c-{digest}-{newest:019d}.parquet"
        self.location.write_table(relative, pa.Table.from_pandas(frame, schema=FILE_SCHEMA, preserve_index=False))
        with ThreadPoolExecutor(max_workers=self._threads) as pool:  # on S3 three requests each: in parallel
            list(pool.map(self.location.delete, [info.path for info in infos]))
        return len(frame)


def _app_folder(app: str) -> str:
    """``app=<app>``, for a valid app name only (else :class:`~prescale.names.InvalidNameError`, nothing touched)."""
    return f"app={AppName(app)}"


def _checked_batch_id(batch_id: str) -> str:
    if not isinstance(batch_id, str) or not _BATCH_ID.fullmatch(batch_id):
        raise ValueError(
            f"batch id {batch_id!r:.80} is not valid: 1-128 letters, digits, '-' and '_', starting with a letter or "
            "digit, not with 'c-' (derive one with batch_id_for())"
        )
    return batch_id


def _batch_of(info: pafs.FileInfo) -> str | None:
    """The batch that wrote a data file (``part-<batch_id>-<stamp>.parquet``), or None for a compacted file."""
    name = info.base_name
    return None if name.startswith("part-c-") else name[len("part-") :].rpartition("-")[0]


def _commit_path(batch_id: str) -> str:
    return f"_batches/{batch_id}.json"


def _stamp() -> str:
    """The write time in ns as 19 digits (until the year 2286): orders files by name, not by mtime."""
    return f"{time.time_ns():019d}"


def _write_order(info: pafs.FileInfo) -> tuple[int, str]:
    """A file's place among its partition's files: its name's stamp, else (older files) its mtime."""
    stamp = info.base_name.removesuffix(".parquet").rpartition("-")[2]
    written = int(stamp) if len(stamp) == 19 and stamp.isdigit() else (info.mtime_ns or 0)
    return written, info.base_name


def _is_data(info: pafs.FileInfo) -> bool:
    return info.base_name.startswith("part-") and info.base_name.endswith(".parquet")


def _folder(info: pafs.FileInfo) -> str:
    """The name of the folder holding the file (``date=YYYY-MM-DD`` for data files)."""
    return info.path.rsplit("/", 2)[-2]


def _day(info: pafs.FileInfo) -> date:
    folder = _folder(info)
    return date.fromisoformat(folder[5:]) if folder.startswith("date=") else date.min


def _to_arrow(accepted: pd.DataFrame) -> pa.Table:
    """Canonical frame -> Arrow table with the partition columns (app, date) appended.

    Categorical columns go over as dictionary arrays and are decoded in Arrow's C++,
    never through Python strings (that alone cost seconds per million rows).
    """
    n = len(accepted)
    ts = pa.Array.from_pandas(accepted["ts"]).cast(pa.timestamp("ns", tz="UTC"))
    dict_type = FILE_SCHEMA.field("metric").type
    if "phase" in accepted.columns:
        phase = _dictionary(accepted["phase"]).cast(dict_type)
    else:
        phase = pa.nulls(n, type=dict_type)
    columns = {
        "ts": ts,
        "metric": _dictionary(accepted["metric"]).cast(dict_type),
        "value": pa.array(accepted["value"].to_numpy(), type=pa.float64()),
        "phase": phase,
        "app": _dictionary(accepted["app"]).dictionary_decode(),
        "date": pc.cast(ts, pa.date32()),
    }
    return pa.table(columns)


def _dictionary(values: pd.Series) -> pa.DictionaryArray:
    cat = values if isinstance(values.dtype, pd.CategoricalDtype) else values.astype("category")
    return pa.DictionaryArray.from_arrays(
        pa.array(cat.cat.codes.to_numpy(), mask=cat.cat.codes.to_numpy() < 0).cast(pa.int32()),
        pa.array(cat.cat.categories.astype(str).to_numpy(dtype=object), type=pa.string()),
    )


def utc(instant) -> pd.Timestamp:
    """An instant as a UTC timestamp; naive datetimes are taken as UTC."""
    stamp = pd.Timestamp(instant)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _filter(start, end, metrics) -> ds.Expression | None:
    expr = None
    conditions = []
    if start is not None:
        conditions.append(ds.field("ts") >= pa.scalar(utc(start), pa.timestamp("ns", "UTC")))
    if end is not None:
        conditions.append(ds.field("ts") < pa.scalar(utc(end), pa.timestamp("ns", "UTC")))
    if metrics:
        conditions.append(ds.field("metric").isin(list(metrics)))
    for condition in conditions:
        expr = condition if expr is None else expr & condition
    return expr


def _empty_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "app": pd.Series(dtype=str),
            "ts": pd.Series(dtype="datetime64[ns, UTC]"),
            "metric": pd.Series(dtype=str),
            "value": pd.Series(dtype="float64"),
            "phase": pd.Series(dtype="string"),
        }
    )
