"""The decision ledger: one Parquet row per decision, appended atomically, read back by app and window.

Every orchestrate cycle writes, per app, a :class:`LedgerRow` (the record of one decision, not the
rule's :class:`~prescale.decision.Decision` itself): when it decided,
on what (phase, champion version or the fallback and why, the last observed demand),
what it forecast (start, step, the covered quantile and the 10/50/90 bands per
step), what it chose (allocation, cost per hour, the plan's steps, the reasons for
every type not used), what happened (applied, dry run, failed, with the error) and
the predictive rule's state after the decision (``rule_state``: its recent keep
levels and the SLO controller's state under ``"slo"``, read back by the app's next
decision; files written before the column existed read it as ``{}``), and the SLO
the decision ran under (``slo``: the violation budget, the rule and its setting,
whether the policy was tuned, the controller's scale and the realised rate so far;
``{}`` in files written before issue 16), and what the decision cost (``timing``: ``cpu_ms``, the CPU
milliseconds of each stage of the cycle, read, phase, health, forecast and decide, its chunk's shared
work split evenly among the chunk's apps; ``{}`` in files written before issue 19).
Nested values are stored as JSON text so the ledger stays one flat table that any
Parquet reader (and pandas) can open.

Where: ``root`` is a local folder or an object-store URI (``s3://bucket/prefix``,
the ``orchestrate.ledger`` setting), resolved by the metrics store's
:class:`~prescale.metrics.location.Location`; every file operation goes through it.

Layout: ``<root>/app=<app>/date=<YYYY-MM-DD>/part-<uuid>.parquet`` with one fixed
schema (:data:`SCHEMA`: a column that is empty in one cycle is still typed;
``decided_at`` is floored to the microsecond). Each file appears whole or not at
all: locally it is written to a hidden temporary name and renamed in; on an object
store it is encoded in memory and uploaded in one PUT under its final name (no
rename there; see ``location.py``).

Every app name becomes a folder here, so every method checks it as an
:class:`~prescale.names.AppName` first (``web/../x`` raises ``InvalidNameError``
and touches nothing).

A cycle adds one file per app, so :meth:`Ledger.compact` merges a day's files into
one once they pile up (the orchestrate flow calls it after recording). The merged
file is written before its inputs are deleted, so a reader that lists the day
afterwards sees every row, and one that meets both the merged file and its parts
drops the duplicate rows. Two compactions at once (two orchestrate runs): locally
they take turns on an exclusive ``flock`` of ``.compact.lock`` in the root; on an
object store (no lock) each deletes only the files it read, after writing the
merged file that holds their rows, so whatever the interleaving no row is lost
(at worst two merged files repeat rows, which reads drop and the next compaction
merges). A reader that listed the day *before* the deletion may
find a listed file gone: it lists the day again and rereads it (a few times at
most), see :meth:`Ledger.read`.

The monitoring step (:func:`prescale.monitoring.judged_decisions`) reads
the newest predictive decisions back to compare what was forecast with what then
happened; ``read(..., mode=..., last=...)`` filters on the mode before it counts,
walking day partitions newest first and stopping once it has enough rows. The orchestrate cycle asks
that of every app every minute, so a worker keeps the answers in a :class:`RecentRows` between cycles and
reads only the files it has not seen (its docstring says why that stays correct with other writers).
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import PurePath
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from prescale.metrics.location import Location
from prescale.metrics.store import utc
from prescale.names import AppName

JSON_FIELDS = ("forecast", "observed", "allocation", "plan", "reasons", "health", "rule_state", "slo", "timing")
SCHEMA = pa.schema(
    [("decided_at", pa.timestamp("us", tz="UTC"))]
    + [(name, pa.string()) for name in ("app", "phase", "mode", "why", "champion_version")]
    + [("covered_quantile", pa.float64()), ("cost_per_hour", pa.float64())]
    + [(name, pa.string()) for name in ("outcome", "error", *JSON_FIELDS)]
    + [("retrain_requested", pa.bool_()), ("duration_s", pa.float64())]
)
KEY = ["app", "decided_at"]
# A day read whose listed file vanished (a concurrent compaction) is listed and read again at most this often.
READ_ATTEMPTS = 4
COMPACT_LOCK = ".compact.lock"  # in the root; hidden: no listing of the ledger counts it
_PARQUET = ds.ParquetFileFormat()


@dataclass
class LedgerRow:
    """The ledger's record of one decision of one app (see the module docstring for the fields)."""

    decided_at: pd.Timestamp
    app: str
    phase: str
    mode: str  # "predictive" (the champion's forecast), "fallback" (a forecast the rule could not use), "reactive"
    why: str  # why this mode (e.g. "champion v3", "no champion for (web, p0): reactive fallback")
    champion_version: str | None
    covered_quantile: float | None
    cost_per_hour: float
    outcome: str  # applied | dry-run | failed | skipped
    error: str = ""
    forecast: dict[str, Any] = field(default_factory=dict)
    observed: dict[str, float] = field(default_factory=dict)
    allocation: dict[str, int] = field(default_factory=dict)  # the rule's target nodes per type
    plan: list[dict[str, Any]] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)
    health: dict[str, Any] = field(default_factory=dict)
    retrain_requested: bool = False
    duration_s: float = 0.0
    rule_state: dict[str, Any] = field(default_factory=dict)  # the rule's and the SLO controller's state after
    slo: dict[str, Any] = field(default_factory=dict)  # budget, rule, setting, tuned, scale, realised rate
    timing: dict[str, Any] = field(default_factory=dict)  # {"cpu_ms": {stage: ms}}: what the decision cost

    def to_record(self) -> dict[str, Any]:
        """The row as stored: JSON text for nested fields, ``decided_at`` in UTC floored to the microsecond.

        The schema's ``timestamp[us]`` cannot hold nanoseconds (Arrow refuses the cast rather than
        lose them), so a sub-microsecond instant is floored here instead of failing the cycle's write.
        """
        record = {name: getattr(self, name) for name in _FIELDS}  # shallow: the nested ones become JSON text
        for name in JSON_FIELDS:
            record[name] = json.dumps(record[name], default=str, sort_keys=True)
        record["decided_at"] = utc(self.decided_at).floor("us")
        return record


_FIELDS = tuple(LedgerRow.__dataclass_fields__)



class Ledger:
    """Append-only decision rows under ``root``: a local folder or an object-store URI.

    ``root`` reads back as a ``Path`` (local) or the URI string; ``location`` is the
    resolved filesystem and base path.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.location = Location.parse(root)
        self.root = self.location.root

    def append(self, rows: list[LedgerRow]) -> list[PurePath | str]:
        """Write the rows, one file per (app, day); each file appears whole or not at all. Returns where.

        The rows become one Arrow table, cut per (app, day) and written by ``Location.write_tables`` (encoding
        and landing overlapped): a cycle appends a row for each of a thousand apps."""
        if not rows:
            return []
        frame = pd.DataFrame([row.to_record() for row in rows])
        frame = frame.assign(_day=frame["decided_at"].dt.date).sort_values(["app", "_day"], kind="stable")
        table = _table(frame)
        files, start = [], 0
        for (app, day), size in frame.groupby(["app", "_day"], sort=False).size().items():
            files.append((f"{_day_folder(app, day)}/part-{uuid.uuid4().hex}.parquet", table.slice(start, size)))
            start += size
        self.location.write_tables(files)
        return [self.location.display(self.location.path(relative)) for relative, _ in files]

    def read(self, app: str, *, start=None, end=None, last: int | None = None, mode: str | None = None) -> pd.DataFrame:
        """Decisions of one app in [start, end), oldest first, JSON fields decoded.

        ``mode`` keeps only the decisions of that mode ("predictive", "reactive"), and ``last``
        only the newest ``last`` of the rows kept: the mode filter applies first, so ``last``
        counts only matching rows. Day partitions are read newest first and the walk stops
        once ``last`` rows are in hand (bound it further with ``start``).
        """
        condition = _condition(start, end, mode)
        frames, rows = [], 0
        for folder in reversed(self._days(app, start, end)):  # newest day first
            table, _ = self._read_day(folder, condition)
            if not table.num_rows:
                continue
            frames.append(table.to_pandas().drop_duplicates(KEY))
            rows += len(frames[-1])
            if last is not None and rows >= last:
                break
        if not frames:
            return pd.DataFrame(columns=[f for f in LedgerRow.__dataclass_fields__])
        frame = pd.concat(frames[::-1], ignore_index=True).sort_values("decided_at", kind="stable")
        frame = frame.tail(last) if last is not None else frame
        for name in JSON_FIELDS:
            frame[name] = frame[name].map(_decoded)
        return frame.reset_index(drop=True)

    def compact(self, app: str, *, min_files: int = 8) -> int:
        """Merge each day of ``app`` holding at least ``min_files`` files into one; returns files removed.

        One (paginated, on S3) listing of the app's folder finds the days to merge. The merged
        file is written (atomically) before the inputs are deleted: a reader sees every row
        throughout, at worst twice (it drops the duplicates). Holds the compaction lock (locally).
        """
        app_folder = _app_folder(app)
        with self.location.lock(COMPACT_LOCK):
            by_day: dict[str, list[pafs.FileInfo]] = {}
            for info in self.location.files(app_folder, recursive=True):
                folder, _, name = info.path[len(self.location.base) + 1 :].rpartition("/")
                if _is_data(name) and folder.rpartition("/")[2].startswith("date="):
                    by_day.setdefault(folder, []).append(info)
            return sum(
                self._merge_day(folder, files) for folder, files in sorted(by_day.items()) if len(files) >= min_files
            )

    def _merge_day(self, folder: str, files: list[pafs.FileInfo]) -> int:
        """Merge one day's files into one; returns the files removed (0: another compaction merged it meanwhile)."""
        table, files = self._read_day(folder, None, sorted(files, key=lambda i: i.base_name))
        if len(files) < 2:
            return 0
        frame = table.to_pandas().drop_duplicates(KEY).sort_values("decided_at")
        self.location.write_table(f"{folder}/part-{uuid.uuid4().hex}.parquet", _table(frame))
        for info in files:  # only what was read: a file written meanwhile stays
            self.location.delete(info.path)
        return len(files) - 1

    def _days(self, app: str, start, end) -> list[str]:
        """The day folders of `app` (relative to the root) overlapping [start, end), oldest first; one listing."""
        first = utc(start).date() if start is not None else date.min
        last = (utc(end) - timedelta(microseconds=1)).date() if end is not None else date.max
        folder = _app_folder(app)
        days = sorted(date.fromisoformat(name[5:]) for name in self.location.folders(folder, prefix="date="))
        return [_day_folder(app, day) for day in days if first <= day <= last]

    def _day_files(self, folder: str) -> list[pafs.FileInfo]:
        """The data files of one day folder (temporary files and folder markers left out), by name."""
        infos = self.location.files(folder)
        return sorted((i for i in infos if _is_data(i.base_name)), key=lambda i: i.base_name)

    def _read_day(
        self, folder: str, condition: ds.Expression | None, files: list[pafs.FileInfo] | None = None
    ) -> tuple[pa.Table, list[pafs.FileInfo]]:
        """The matching rows of one day and the files they came from (`files`: the day as listed already).

        A compaction running at the same time may delete a file between the listing and the
        read (locally FileNotFoundError; on an object store an OSError, or an ArrowInvalid for a
        body that is gone). The day is then listed again: if a listed file has vanished, the
        new listing (which holds the merged file, written before the deletion) is read instead,
        at most ``READ_ATTEMPTS`` times in all. A failure with every listed file still present is
        a real error and raised as it is.
        """
        files = self._day_files(folder) if files is None else files
        for attempt in range(1, READ_ATTEMPTS + 1):
            try:
                return self._dataset(files).to_table(filter=condition), files
            except (OSError, pa.ArrowInvalid):
                if attempt == READ_ATTEMPTS:
                    raise
                listed, files = {i.path for i in files}, self._day_files(folder)
                if listed <= {i.path for i in files}:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _dataset(self, files: list[pafs.FileInfo]) -> ds.FileSystemDataset:
        """The files as one dataset; their sizes are known from the listing, so no HEAD request per file."""
        fs = self.location.fs
        fragments = [_PARQUET.make_fragment(i.path, filesystem=fs, file_size=i.size) for i in files]
        return ds.FileSystemDataset(fragments, SCHEMA, _PARQUET, fs)


def _app_folder(app: str) -> str:
    """``app=<app>``, for a valid app name only (else :class:`~prescale.names.InvalidNameError`, nothing touched)."""
    return f"app={AppName(app)}"


def _day_folder(app: str, day: date) -> str:
    return f"{_app_folder(app)}/date={day.isoformat()}"


def _is_data(name: str) -> bool:
    return name.startswith("part-") and name.endswith(".parquet")


def _condition(start, end, mode: str | None) -> ds.Expression | None:
    """The row filter of a read, applied while scanning (before ``last`` counts)."""
    stamp = pa.timestamp("ns", "UTC")  # compared at ns: a bound between two microseconds stays exact
    conditions = []
    if start is not None:
        conditions.append(ds.field("decided_at") >= pa.scalar(utc(start), stamp))
    if end is not None:
        conditions.append(ds.field("decided_at") < pa.scalar(utc(end), stamp))
    if mode is not None:
        conditions.append(ds.field("mode") == mode)
    expr = None
    for condition in conditions:
        expr = condition if expr is None else expr & condition
    return expr


def _decoded(text: Any) -> Any:
    """A JSON field; a column the file predates (``rule_state`` before issue 14, ``slo`` before issue 16) reads
    as null (None or NaN once pandas joins it with other files): ``{}``."""
    return json.loads(text) if isinstance(text, str) else {}


def _table(frame: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(frame[SCHEMA.names], schema=SCHEMA, preserve_index=False)


class RecentRows:
    """The newest decisions of each app, kept in memory between cycles and refreshed by what is new.

    The orchestrate cycle asks the ledger, per app and every minute, for the few newest decisions (the rule's
    and the SLO controller's state) and the newest ``monitor_points`` predictive ones (monitoring). Reading
    and decoding them afresh costs a scan of the window's day files and some hundred rows of JSON per app;
    here a worker process keeps, per app, the newest ``keep[mode]`` rows of each asked mode (``None``: any
    mode) and the keys (``decided_at``) of every row of the window it has seen, and each read

    1. lists the app's day folders from the window's start on (one listing each, as :meth:`Ledger.read` does);
    2. for each file it has not accounted for, reads its ``decided_at`` column only: rows whose key it holds
       are skipped (a compaction's merged file holds rows already seen), the new ones are read and merged
       into the kept rows (their JSON decoded only if they are kept);
    3. answers from the kept rows.

    So the ledger's files stay the truth: another process's rows (a second worker, a backfill) are found by
    the listing, and :meth:`add` (the cycle's own appended rows and the files they went to) only saves reading
    them back. This is correct because the ledger is append-only (a compaction rewrites rows, never drops
    one): the newest N rows of a mode can only be displaced by newer ones. A read it cannot answer from
    memory goes to :meth:`Ledger.read`: more rows than kept, a window starting before the one it holds, or a
    window ending at or before a row it holds (a replay at a past instant). A ledger deleted under a running
    worker (no file left from the window's start on) empties the app's entry.
    """

    def __init__(self, ledger: Ledger, keep: dict[str | None, int]) -> None:
        self.ledger, self.keep = ledger, dict(keep)
        self._apps: dict[str, _Recent] = {}

    def read(self, app: str, *, start, end, last: int, mode: str | None = None) -> pd.DataFrame:
        """What ``ledger.read(app, start=start, end=end, last=last, mode=mode)`` returns (its columns may come
        in another order)."""
        app = str(AppName(app))
        start, end = utc(start), utc(end)
        entry = self._apps.get(app)
        if last > self.keep.get(mode, 0) or (entry is not None and entry.start is not None and start < entry.start):
            return self.ledger.read(app, start=start, end=end, last=last, mode=mode)
        entry = self._refresh(app, start)
        if entry.newest is not None and entry.newest >= end.value:
            return self.ledger.read(app, start=start, end=end, last=last, mode=mode)
        rows = [r for r in entry.rows if start <= r["decided_at"] < end and (mode is None or r["mode"] == mode)]
        if not rows:
            return pd.DataFrame(columns=list(LedgerRow.__dataclass_fields__))
        return pd.DataFrame(rows[-last:])

    def add(self, rows: list[LedgerRow], written: list[PurePath | str]) -> None:
        """Rows this process appended (``Ledger.append`` says where): kept without reading them back."""
        files: dict[str, set[str]] = {}
        for where in written:
            folder, _, name = str(where).replace("\\", "/").rpartition("/")
            files.setdefault(folder.rpartition("/app=")[2].partition("/")[0], set()).add(name)
        by_app: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            if row.app in self._apps:
                by_app.setdefault(row.app, []).append(row.to_record())
        for app, records in by_app.items():
            self._apps[app].merge(records, self.keep)
            self._apps[app].files |= files.get(app, set())

    def _refresh(self, app: str, start: pd.Timestamp) -> _Recent:
        listed = [i for folder in self.ledger._days(app, start, None) for i in self.ledger._day_files(folder)]
        entry = self._apps.get(app)
        if entry is None or not listed:
            self._apps[app] = entry = _Recent()
        entry.forget_before(start)
        unknown = [i for i in listed if i.base_name not in entry.files]
        if unknown:
            dataset = self.ledger._dataset(unknown)
            stamps = _ns(dataset.to_table(columns=["decided_at"])["decided_at"])
            fresh = np.setdiff1d(stamps[stamps >= start.value], entry.keys)
            if len(fresh):
                wanted = ds.field("decided_at").isin(pa.array(fresh).cast(pa.timestamp("ns", "UTC")))
                entry.merge(dataset.to_table(filter=wanted).to_pylist(), self.keep)
            entry.files |= {i.base_name for i in unknown}
        return entry


class _Recent:
    """One app's entry of :class:`RecentRows`: kept rows (oldest first, JSON decoded), the keys seen (ns since
    the epoch, sorted), the files accounted for, and the start of the window it holds."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.keys = np.empty(0, dtype=np.int64)
        self.files: set[str] = set()
        self.start: pd.Timestamp | None = None

    @property
    def newest(self) -> int | None:
        return int(self.keys[-1]) if len(self.keys) else None

    def merge(self, records: list[dict[str, Any]], keep: dict[str | None, int]) -> None:
        """Add the records (rows as stored: JSON text) not seen before, then keep the newest ``keep[mode]``
        rows of each asked mode; only the new rows kept are decoded."""
        fresh: dict[int, dict[str, Any]] = {}
        for record in records:
            stamp = utc(record["decided_at"]).as_unit("ns")
            fresh.setdefault(stamp.value, {**record, "decided_at": stamp})  # the first of a key, as reads keep
        stamps = np.fromiter(fresh, dtype=np.int64, count=len(fresh))
        stamps = stamps[~np.isin(stamps, self.keys)]
        if not len(stamps):
            return
        self.keys = np.union1d(self.keys, stamps)
        new = [fresh[int(k)] for k in stamps]
        merged = sorted(self.rows + new, key=lambda r: r["decided_at"])
        kept = set()
        for mode, count in keep.items():
            matching = [k for k, r in enumerate(merged) if mode is None or r["mode"] == mode]
            kept.update(matching[max(0, len(matching) - count):])
        self.rows = [merged[k] for k in sorted(kept)]
        added = {id(r) for r in new}
        for row in self.rows:
            if id(row) in added:  # as stored until now
                for name in JSON_FIELDS:
                    row[name] = _decoded(row.get(name))

    def forget_before(self, start: pd.Timestamp) -> None:
        """Drop what is older than the window (no later read asks for it: windows move forward)."""
        self.start = start
        self.keys = self.keys[self.keys >= start.value]
        self.rows = [r for r in self.rows if r["decided_at"] >= start]


def _ns(column: pa.ChunkedArray) -> np.ndarray:
    return column.cast(pa.timestamp("ns", "UTC")).cast(pa.int64()).to_numpy(zero_copy_only=False)


def _base_name(written: PurePath | str) -> str:
    return str(written).replace("\\", "/").rpartition("/")[2]
