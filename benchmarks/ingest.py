"""Ingestion speed: file -> validated Parquet, and one app's 24 h window read.

Measures, on this machine:
1. rows per second end to end (CSV read, pandera validation, dedupe, Parquet write)
   on a generated canonical CSV of N rows (default 5M) with a realistic mix:
   50 apps, 8 metrics, 1-minute steps, ISO timestamps with offsets, 0.1% bad rows;
2. the time to read one app's last 24 h from a store of M rows (default 50M).

Targets (issue 2): >= 1M rows/s end to end; < 0.5 s for the window read.
Writes benchmarks/results/ingest.json and ingest.md.

    .venv/bin/python benchmarks/ingest.py [--rows 5000000] [--store-rows 50000000] [--quick]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
from rich.console import Console
from rich.table import Table

from prescale.metrics.ingest import ingest
from prescale.metrics.sources import FileSource
from prescale.metrics.store import MetricsStore
from prescale.metrics.validation import split

METRICS = [
    "cpu_cores",
    "memory_gib",
    "net_rx_mbps",
    "net_tx_mbps",
    "disk_read_mbps",
    "disk_write_mbps",
    "gpu_util",
    "app.requests_per_s",
]
RESULTS = Path(__file__).parent / "results"


def make_frame(rows: int, *, apps: int, seed: int, start: str = "2026-01-01T00:00:00Z") -> pd.DataFrame:
    """A long frame: `apps` apps x 8 metrics, 1-minute steps, enough steps for `rows` rows."""
    rng = np.random.default_rng(seed)
    per_step = apps * len(METRICS)
    steps = -(-rows // per_step)
    ts = pd.Timestamp(start) + pd.to_timedelta(np.repeat(np.arange(steps), per_step), unit="min")
    app = np.tile(np.repeat([f"app-{i:03d}" for i in range(apps)], len(METRICS)), steps)
    metric = np.tile(np.array(METRICS * apps), steps)
    value = rng.gamma(2.0, 10.0, size=steps * per_step).clip(0, 100)
    frame = pd.DataFrame({"ts": ts, "app": pd.Categorical(app), "metric": pd.Categorical(metric), "value": value})
    return frame.iloc[:rows]


def write_csv(frame: pd.DataFrame, path: Path, *, bad_fraction: float, seed: int) -> int:
    """Write the canonical CSV with `bad_fraction` of the values replaced by NaN; return how many."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    ts = pa.compute.strftime(table["ts"], format="%Y-%m-%dT%H:%M:%S+00:00")
    rng = np.random.default_rng(seed)
    bad = rng.random(len(frame)) < bad_fraction
    value = pa.compute.cast(pa.array(np.where(bad, np.nan, frame["value"].to_numpy())), pa.string())
    out = pa.table(
        {"ts": ts, "app": table["app"].cast(pa.string()), "metric": table["metric"].cast(pa.string()), "value": value}
    )
    pacsv.write_csv(out, path)
    return int(bad.sum())


def bench_ingest(rows: int, work: Path, *, bad_fraction: float) -> dict:
    frame = make_frame(rows, apps=50, seed=1)
    csv = work / "metrics.csv"
    injected = write_csv(frame, csv, bad_fraction=bad_fraction, seed=2)
    store = MetricsStore(work / "store")
    t0 = time.perf_counter()
    report = ingest(FileSource(csv), store=store)
    elapsed = time.perf_counter() - t0
    if report.accepted + report.quarantined != report.read or report.read != rows:
        raise RuntimeError(f"counts do not add up: {report}")
    return {
        "rows": rows,
        "seconds": round(elapsed, 3),
        "rows_per_s": round(rows / elapsed),
        "accepted": report.accepted,
        "injected_bad": injected,
        "quarantined": report.quarantined,
        "csv_mib": round(csv.stat().st_size / 2**20),
    }


def build_store(rows: int, work: Path, *, chunk: int = 5_000_000) -> MetricsStore:
    """A store of `rows` rows: 50 apps x 8 metrics at 1-minute steps (~87 days for 50M)."""
    store = MetricsStore(work / "big")
    per_step = 50 * len(METRICS)
    done = 0
    while done < rows:
        n = min(chunk, rows - done)
        start = pd.Timestamp("2026-01-01T00:00:00Z") + pd.Timedelta(minutes=done // per_step)
        frame = make_frame(n, apps=50, seed=done, start=str(start))
        result = split(frame)
        store.write_batch(result.accepted, batch_id=f"bench-{done}")
        done += n
    return store


def bench_window(store: MetricsStore, *, repeats: int = 5) -> dict:
    app = "app-007"
    last = max(store.dates(app))
    end = pd.Timestamp(last, tz="UTC") + pd.Timedelta(hours=12)
    start = end - pd.Timedelta(hours=24)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        frame = store.read(app, start=start, end=end)
        times.append(time.perf_counter() - t0)
    return {
        "app": app,
        "rows_returned": len(frame),
        "files_touched": len(store.files(app, start=start, end=end)),
        "seconds_median": round(float(np.median(times)), 4),
        "seconds_max": round(max(times), 4),
    }


def bench_small_files(work: Path, *, batches: int = 1440) -> dict:
    """The one-minute deployment's shape: `batches` one-minute batches, then the 24 h read, before/after compaction."""
    store = MetricsStore(work / "minutes")
    start = pd.Timestamp("2026-03-01T00:00:00Z")
    for minute in range(batches):
        ts = start + pd.Timedelta(minutes=minute)
        frame = pd.DataFrame({"ts": [ts] * len(METRICS), "app": "app-000", "metric": METRICS, "value": 1.0})
        store.write_batch(split(frame).accepted, batch_id=f"minute-{minute}")
    window = {"start": start, "end": start + pd.Timedelta(minutes=batches)}

    def timed() -> float:
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            store.read("app-000", **window)
            times.append(time.perf_counter() - t0)
        return float(np.median(times))

    before = timed()
    files_before = len(store.files("app-000"))
    store.compact(min_files=8)
    return {
        "batches": batches,
        "files_before": files_before,
        "read_s_before": round(before, 4),
        "files_after": len(store.files("app-000")),
        "read_s_after": round(timed(), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5_000_000, help="rows in the ingest file")
    parser.add_argument("--store-rows", type=int, default=50_000_000, help="rows in the store for the window read")
    parser.add_argument("--quick", action="store_true", help="200k rows / 2M store rows, for a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.store_rows = 200_000, 2_000_000
    console = Console()
    work = Path(tempfile.mkdtemp(prefix="prescale-bench-"))
    try:
        with console.status(f"ingesting {args.rows:,} rows ..."):
            ingested = bench_ingest(args.rows, work, bad_fraction=0.001)
        with console.status(f"building a {args.store_rows:,}-row store ..."):
            store = build_store(args.store_rows, work)
        window = bench_window(store)
        with console.status("1,440 one-minute batches ..."):
            small = bench_small_files(work, batches=200 if args.quick else 1440)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "ingest": ingested,
        "window_read": {"store_rows": args.store_rows, **window},
        "targets": {"rows_per_s": 1_000_000, "window_read_s": 0.5},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ingest.json").write_text(json.dumps(result, indent=2))
    ok = lambda good: "met" if good else "**missed**"  # noqa: E731
    md = [
        "| measure | value | target | |",
        "|---|---|---|---|",
        f"| end-to-end ingest ({ingested['rows']:,} rows, {ingested['csv_mib']} MiB CSV) | "
        f"{ingested['rows_per_s']:,} rows/s ({ingested['seconds']} s) | >= 1,000,000 rows/s | "
        f"{ok(ingested['rows_per_s'] >= 1_000_000)} |",
        f"| quarantined (0.1% NaN injected: {ingested['injected_bad']:,}) | {ingested['quarantined']:,} | = injected | "
        f"{ok(ingested['quarantined'] == ingested['injected_bad'])} |",
        f"| read one app's last 24 h from {args.store_rows:,} rows | {window['seconds_median']} s median, "
        f"{window['seconds_max']} s max ({window['rows_returned']:,} rows, {window['files_touched']} files) "
        f"| < 0.5 s | {ok(window['seconds_max'] < 0.5)} |",
        f"| 24 h read after {small['batches']:,} one-minute batches, never compacted ({small['files_before']:,} "
        "files; the flow compacts at 8) | "
        f"{small['read_s_before']} s | < 0.5 s | {ok(small['read_s_before'] < 0.5)} |",
        f"| same after compaction ({small['files_after']} files) | {small['read_s_after']} s | < 0.5 s | "
        f"{ok(small['read_s_after'] < 0.5)} |",
    ]
    (RESULTS / "ingest.md").write_text("\n".join(md) + "\n")
    table = Table(title="ingest benchmark")
    for col in ("measure", "value", "target", ""):
        table.add_column(col)
    for line in md[2:]:
        table.add_row(*[c.strip() for c in line.strip("|").split("|")])
    console.print(table)


if __name__ == "__main__":
    main()
