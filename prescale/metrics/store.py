"""The Parquet metrics store: partitioned, atomic, idempotent, compactable.

Layout under ``root``::

    app=<app>/date=<YYYY-MM-DD>/part-<batch_id>-<n>.parquet   accepted rows
    app=<app>/date=<YYYY-MM-DD>/part-c-<digest>.parquet        a compacted partition
    _batches/<batch_id>.json                                   the commit record of a batch

Files hold ``ts`` (timestamp[ns, UTC]), ``metric`` and ``phase`` (dictionary
strings) and ``value`` (float64); ``app`` and ``date`` come from the hive
directory names.

**Writing a batch** (:meth:`MetricsStore.write_batch`): the rows are grouped by
(app, date); each group is written to a hidden temporary file in its partition
folder (readers only list ``part-*.parquet``) and moved to its final name with
``os.replace``, which is atomic on one filesystem; finally the commit record is
written (itself via a temporary file and a rename). So a reader never sees a
half-written file, whatever kills the writer.
A batch whose commit record exists is skipped when it comes again: a retried or
repeated batch adds nothing. A batch killed before its commit left at most some
complete files behind; its retry deletes them before moving its own in.

The commit record is the unit of idempotency, not of visibility: readers list the
partition folders, so the complete files of a batch killed between its renames and
its commit are visible (valid rows, each file whole) until the batch is retried,
which replaces them, or a compaction folds them in.

**Reading** (:meth:`MetricsStore.read`) lists only the ``date=`` folders of the
asked window for the one app, so it touches only the partitions it needs, then
filters on ``ts`` inside them. Rows with the same ``(ts, metric)`` from different
batches (overlapping Prometheus windows, say) are collapsed to the one written
last.

**Compaction** (:meth:`MetricsStore.compact`) rewrites a partition with many
small files as one sorted, deduplicated file, renamed in before the inputs are
deleted; a crash in between leaves duplicates that reads collapse and the next
compaction removes.

What it does not do: validation (see ``validation.py``: only accepted rows
arrive here) and locking between concurrent writers of the same batch id.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

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


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def atomic_write_table(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


class MetricsStore:
    """Accepted metrics (``root``) and quarantined rows (``quarantine``) on disk."""

    def __init__(self, root: Path, *, quarantine: Path | None = None) -> None:
        self.root = Path(root)
        self.quarantine = Path(quarantine) if quarantine else self.root.parent / "quarantine"

    # -- writing ---------------------------------------------------------------

    def has_batch(self, batch_id: str) -> bool:
        return self._commit_path(batch_id).exists()

    def write_batch(self, accepted: pd.DataFrame, *, batch_id: str, source: str = "") -> WriteResult:
        """Write validated rows (app, ts, metric, value[, phase]) as one idempotent batch."""
        if self.has_batch(batch_id):
            record = json.loads(self._commit_path(batch_id).read_text())
            return WriteResult(batch_id, rows=record["rows"], files=len(record["files"]), skipped=True)
        self._remove_uncommitted(batch_id)
        files = self._write_partitions(accepted, batch_id) if len(accepted) else []
        record = {
            "batch_id": batch_id,
            "rows": len(accepted),
            "files": files,
            "source": source,
            "committed_at": datetime.now().astimezone().isoformat(),
        }
        _atomic_write_bytes(self._commit_path(batch_id), json.dumps(record, indent=1).encode())
        return WriteResult(batch_id, rows=len(accepted), files=len(files), skipped=False)

    def _write_partitions(self, accepted: pd.DataFrame, batch_id: str) -> list[str]:
        """One file per (app, date), each written to a hidden temp name and renamed in.

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
        jobs = []
        for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(order)], strict=True):
            group = int(ordered_key[lo])
            partition_day = date.fromordinal(date(1970, 1, 1).toordinal() + first_day + group % n_days)
            relative = f"app={names[group // n_days]}/date={partition_day.isoformat()}/part-{batch_id}-0.parquet"
            jobs.append((data.slice(int(lo), int(hi - lo)), relative))
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(lambda job: atomic_write_table(job[0], self.root / job[1]), jobs))
        return [relative for _, relative in jobs]

    def write_quarantine(self, rows: pd.DataFrame, *, batch_id: str, source: str = "") -> Path | None:
        """Store rejected rows with their reasons, one file per batch (replaced on retry)."""
        if not len(rows):
            return None
        frame = rows.assign(source=source)
        table = pa.table(
            {f.name: pa.array(frame[f.name].to_numpy(), type=f.type, from_pandas=True) for f in QUARANTINE_SCHEMA}
        )
        path = self.quarantine / f"batch_id={batch_id}" / "part-0.parquet"
        atomic_write_table(table, path)
        return path

    def read_quarantine(self) -> pd.DataFrame:
        """Every quarantined row of every batch, with its `batch_id`."""
        if not self.quarantine.exists():
            return pd.DataFrame(columns=[f.name for f in QUARANTINE_SCHEMA] + ["batch_id"])
        partitioning = ds.partitioning(pa.schema([("batch_id", pa.string())]), flavor="hive")
        dataset = ds.dataset(self.quarantine, format="parquet", partitioning=partitioning, schema=_QUARANTINE_READ)
        return dataset.to_table().to_pandas()

    def _commit_path(self, batch_id: str) -> Path:
        return self.root / "_batches" / f"{batch_id}.json"

    def _remove_uncommitted(self, batch_id: str) -> None:
        """Delete files a killed earlier attempt of this batch left behind."""
        for pattern in (f"part-{batch_id}-*.parquet", f".tmp-*-part-{batch_id}-*.parquet"):
            for path in self.root.glob(f"app=*/date=*/{pattern}"):
                path.unlink(missing_ok=True)

    # -- reading ---------------------------------------------------------------

    def apps(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(p.name[4:] for p in self.root.glob("app=*") if p.is_dir() and any(p.glob("date=*/*.parquet")))

    def dates(self, app: str) -> list[date]:
        return sorted(date.fromisoformat(p.name[5:]) for p in (self.root / f"app={app}").glob("date=*") if p.is_dir())

    def files(self, app: str, *, start: datetime | None = None, end: datetime | None = None) -> list[Path]:
        """Data files of `app` whose date partition can hold rows in [start, end)."""
        first = utc(start).date() if start is not None else date.min
        last = (utc(end) - pd.Timedelta(1, "ns")).date() if end is not None else date.max
        if start is not None and end is not None and (last - first) < timedelta(days=400):
            days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
        else:
            days = [d for d in self.dates(app) if first <= d <= last]
        folders = [self.root / f"app={app}" / f"date={d.isoformat()}" for d in days]
        files = [f for folder in folders if folder.is_dir() for f in folder.glob("part-*.parquet")]
        return sorted(files, key=lambda f: (f.parent.name, f.stat().st_mtime_ns, f.name))

    def read(
        self,
        app: str,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        metrics: list[str] | None = None,
    ) -> pd.DataFrame:
        """Rows of one app in [start, end): app, ts, metric, value, phase; sorted, one row per (ts, metric)."""
        files = self.files(app, start=start, end=end)
        if not files:
            return _empty_frame()
        table = ds.dataset([str(f) for f in files], schema=FILE_SCHEMA, format="parquet").to_table(
            filter=_filter(start, end, metrics)
        )
        frame = table.to_pandas()
        frame = frame.drop_duplicates(KEY, keep="last").sort_values(["ts", "metric"], kind="stable")
        frame.insert(0, "app", app)
        frame["metric"] = frame["metric"].astype(str)
        frame["phase"] = frame["phase"].astype("string")
        return frame.reset_index(drop=True)[["app", "ts", "metric", "value", "phase"]]

    # -- maintenance -----------------------------------------------------------

    def compact(self, *, app: str | None = None, min_files: int = 8) -> CompactionResult:
        """Merge every partition holding at least `min_files` files into one file."""
        partitions = files_before = files_after = rows = 0
        for folder in sorted(self.root.glob(f"app={app or '*'}/date=*")):
            files = sorted(folder.glob("part-*.parquet"), key=lambda f: (f.stat().st_mtime_ns, f.name))
            files_before += len(files)
            if len(files) < min_files:
                files_after += len(files)
                continue
            rows += self._compact_partition(folder, files)
            partitions += 1
            files_after += 1
        return CompactionResult(partitions, files_before, files_after, rows)

    def _compact_partition(self, folder: Path, files: list[Path]) -> int:
        table = ds.dataset([str(f) for f in files], schema=FILE_SCHEMA, format="parquet").to_table()
        frame = table.to_pandas().drop_duplicates(KEY, keep="last").sort_values(["ts", "metric"], kind="stable")
        digest = batch_id_for(*(f.name for f in files), str(time.time_ns()))
        atomic_write_table(
            pa.Table.from_pandas(frame, schema=FILE_SCHEMA, preserve_index=False), folder / f"part-c-{digest}.parquet"
        )
        for f in files:
            f.unlink(missing_ok=True)
        return len(frame)


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
