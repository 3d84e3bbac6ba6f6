"""The decision ledger: one Parquet row per decision, appended atomically, read back by app and window.

Every orchestrate cycle writes, per app, a :class:`DecisionRow`: when it decided,
on what (phase, champion version or the fallback and why, the last observed demand),
what it forecast (start, step, the covered quantile and the 10/50/90 bands per
step), what it chose (allocation, cost per hour, the plan's steps, the reasons for
every type not used) and what happened (applied, dry run, failed, with the error).
Nested values are stored as JSON text so the ledger stays one flat table that any
Parquet reader (and pandas) can open.

Layout: ``<root>/app=<app>/date=<YYYY-MM-DD>/part-<uuid>.parquet``, each file
written to a hidden temporary name and renamed in, like the metrics store, with one
fixed schema (:data:`SCHEMA`: a column that is empty in one cycle is still typed).
A cycle adds one file per app, so :meth:`Ledger.compact` merges a day's files into
one once they pile up (the orchestrate flow calls it after recording); a reader that
meets both the merged file and its parts drops the duplicate rows.

The monitoring step (``monitoring.py``) reads the ledger back to compare what was
forecast with what then happened.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from prescale.metrics.store import atomic_write_table, utc

JSON_FIELDS = ("forecast", "observed", "allocation", "plan", "reasons", "health")
SCHEMA = pa.schema(
    [("decided_at", pa.timestamp("us", tz="UTC"))]
    + [(name, pa.string()) for name in ("app", "phase", "mode", "why", "champion_version")]
    + [("covered_quantile", pa.float64()), ("cost_per_hour", pa.float64())]
    + [(name, pa.string()) for name in ("outcome", "error", *JSON_FIELDS)]
    + [("retrain_requested", pa.bool_()), ("duration_s", pa.float64())]
)


@dataclass
class DecisionRow:
    """One decision of one app (see the module docstring for the fields)."""

    decided_at: pd.Timestamp
    app: str
    phase: str
    mode: str  # "predictive" or "reactive"
    why: str  # why this mode (e.g. "champion v3", "no champion for (web, p0): reactive fallback")
    champion_version: str | None
    covered_quantile: float | None
    cost_per_hour: float
    outcome: str  # applied | dry-run | failed | skipped
    error: str = ""
    forecast: dict[str, Any] = field(default_factory=dict)
    observed: dict[str, float] = field(default_factory=dict)
    allocation: dict[str, int] = field(default_factory=dict)
    plan: list[dict[str, Any]] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)
    health: dict[str, Any] = field(default_factory=dict)
    retrain_requested: bool = False
    duration_s: float = 0.0

    def to_record(self) -> dict[str, Any]:
        record = asdict(self)
        for name in JSON_FIELDS:
            record[name] = json.dumps(record[name], default=str, sort_keys=True)
        record["decided_at"] = utc(self.decided_at)
        return record


class Ledger:
    """Append-only decision rows under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def append(self, rows: list[DecisionRow]) -> list[Path]:
        """Write the rows, one file per (app, day); each file appears whole or not at all."""
        if not rows:
            return []
        frame = pd.DataFrame([row.to_record() for row in rows])
        written = []
        for (app, day), group in frame.groupby([frame["app"], frame["decided_at"].dt.date], sort=True):
            path = self.root / f"app={app}" / f"date={day.isoformat()}" / f"part-{uuid.uuid4().hex}.parquet"
            atomic_write_table(_table(group), path)
            written.append(path)
        return written

    def read(self, app: str, *, start=None, end=None, last: int | None = None) -> pd.DataFrame:
        """Decisions of one app in [start, end), oldest first, JSON fields decoded; only the newest ``last``."""
        frames, rows = [], 0
        for files in reversed(self._files_by_day(app, start, end)):  # newest day first
            frame = ds.dataset([str(f) for f in files], format="parquet", schema=SCHEMA).to_table().to_pandas()
            if start is not None:
                frame = frame[frame["decided_at"] >= utc(start)]
            if end is not None:
                frame = frame[frame["decided_at"] < utc(end)]
            frames.append(frame.drop_duplicates(["app", "decided_at"]))
            rows += len(frames[-1])
            if last is not None and rows >= last:
                break
        if not frames:
            return pd.DataFrame(columns=[f for f in DecisionRow.__dataclass_fields__])
        frame = pd.concat(frames[::-1], ignore_index=True).sort_values("decided_at", kind="stable")
        frame = frame.tail(last) if last is not None else frame
        for name in JSON_FIELDS:
            frame[name] = frame[name].map(json.loads)
        return frame.reset_index(drop=True)

    def compact(self, app: str, *, min_files: int = 8) -> int:
        """Merge each day of ``app`` holding at least ``min_files`` files into one; returns files removed."""
        removed = 0
        for files in self._files_by_day(app, None, None):
            if len(files) < min_files:
                continue
            table = ds.dataset([str(f) for f in files], format="parquet", schema=SCHEMA).to_table()
            frame = table.to_pandas().drop_duplicates(["app", "decided_at"]).sort_values("decided_at")
            atomic_write_table(_table(frame), files[0].parent / f"part-{uuid.uuid4().hex}.parquet")
            for f in files:  # the merged file is in place first: a reader sees every row throughout
                f.unlink(missing_ok=True)
            removed += len(files) - 1
        return removed

    def _files_by_day(self, app: str, start, end) -> list[list[Path]]:
        """The files of each day partition overlapping [start, end), oldest day first."""
        folder = self.root / f"app={app}"
        if not folder.is_dir():
            return []
        first = utc(start).date() if start is not None else date.min
        last = (utc(end) - timedelta(microseconds=1)).date() if end is not None else date.max
        days = sorted(p for p in folder.glob("date=*") if first <= date.fromisoformat(p.name[5:]) <= last)
        return [files for day in days if (files := sorted(day.glob("part-*.parquet")))]


def _table(frame: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(frame[SCHEMA.names], schema=SCHEMA, preserve_index=False)
