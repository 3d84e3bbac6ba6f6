"""Demand for `prescale plan` and `prescale apply`: a user's file, or the profile's example, as a `Forecast`.

A demand file is user input and is checked like a metrics file before anything is planned: it must be UTF-8
text (JSON or CSV) of at most :data:`MAX_FILE_BYTES`; timestamps are ISO 8601 with a UTC offset, strictly
increasing and evenly spaced; quantile columns ``<metric>@<level>`` have levels in (0, 1), written in
increasing order; every value is a finite number from 0 to ``MAX_DEMAND`` that does not decrease as the level
rises (:func:`prescale.forecast.check_demand`); at most ``MAX_STEPS`` steps. A file that breaks a rule is
refused with a :class:`UserError` (CSV) or :class:`ForecastError` (JSON) naming the file, the row or field,
the column and the value; nothing is repaired, because a plan for numbers the user did not mean is worse
than no plan.

:func:`check_reach` then refuses a demand too short for any node the app can use to be ready within it (a
one-step file of 60 s, when the fastest compatible type takes 75 s): the allocation could add nothing, and
would explain that with the quota or ``min_nodes`` rather than the horizon.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from cli.commands.common import UserError
from prescale.catalog import AppProfile, Catalog
from prescale.forecast import MAX_DEMAND, MAX_STEP_SECONDS, MAX_STEPS, Forecast, check_demand
from prescale.names import shown

DEMAND_HELP = (
    "Demand per step. CSV: optional column ts (ISO 8601 with a UTC offset, evenly spaced; else steps start one "
    "step from now), then per metric either one column <metric> (the median; quantiles spread by --spread) or "
    "quantile columns <metric>@<q> in increasing order (e.g. requests_per_second@0.1, @0.5, @0.9). JSON: "
    "{start, step_seconds, metrics, quantiles, values} with values shaped [step][metric][quantile] "
    f"(prescale.forecast.Forecast.to_dict). Values: finite, 0 to {MAX_DEMAND:g}, not decreasing as the level "
    "rises."
)
MAX_FILE_BYTES = 16 * 2**20  # a week of one-minute steps of a dozen quantile columns is about 2 MiB
_OFFSET = r"(?:[zZ]|[+-]\d{2}(?::?\d{2})?)$"


def read_demand(path: Path, profile: AppProfile, *, start: pd.Timestamp, step_seconds: int, spread: float) -> Forecast:
    """A demand file (see ``DEMAND_HELP``) as a :class:`Forecast` of the profile's metrics."""
    text = _read_text(path)
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"demand file {path}: not valid JSON ({exc}); see `prescale plan --help`") from None
        return Forecast.from_dict(data, source=f"demand file {path}")
    frame = _read_csv(text, path)
    if "ts" in frame.columns:
        start, step_seconds = _steps(frame.pop("ts"), path, step_seconds)
    frame = frame.drop(columns=[c for c in ("step",) if c in frame.columns])
    return _frame_forecast(frame, profile, path=path, start=start, step_seconds=step_seconds, spread=spread)


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise UserError(f"demand file {path} not found (or not a file)")
    size = path.stat().st_size
    if size == 0:
        raise UserError(f"demand file {path} is empty (0 bytes); see `prescale plan --help` for the format")
    if size > MAX_FILE_BYTES:
        raise UserError(f"demand file {path} has {size:,} bytes, more than the {MAX_FILE_BYTES:,} accepted "
                        f"(at most {MAX_STEPS:,} steps)")
    raw = path.read_bytes()
    where = raw.find(b"\x00")  # NUL is valid UTF-8, but no text file holds one
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        where = exc.start if where < 0 else min(where, exc.start)
    if where >= 0:
        raise UserError(f"demand file {path} is not UTF-8 text (byte {where:,} is {raw[where:where + 1]!r}): is "
                        "it a binary file? Give a CSV or JSON file")
    return text


def _read_csv(text: str, path: Path) -> pd.DataFrame:
    """Every cell as a string (numbers are parsed later, so a bad one can be named), the header checked."""
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, header=None)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise UserError(f"demand file {path}: not a readable CSV ({str(exc).strip()})") from None
    header = [str(c).strip() for c in frame.iloc[0]]
    if len(set(header)) != len(header):
        twice = sorted({c for c in header if header.count(c) > 1})
        raise UserError(f"demand file {path}: column(s) {twice} appear more than once in the header")
    rows = frame.iloc[1:].reset_index(drop=True)
    rows.columns = header
    if rows.empty:
        raise UserError(f"demand file {path} has a header but no rows")
    if len(rows) > MAX_STEPS:
        raise UserError(f"demand file {path} has {len(rows):,} rows, more than the {MAX_STEPS:,} steps accepted")
    return rows


def _steps(raw: pd.Series, path: Path, default_step: int) -> tuple[pd.Timestamp, int]:
    """The first step and the step length from a ``ts`` column (one row: ``default_step``)."""
    text = raw.fillna("").astype(str).str.strip()
    ts = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
    bad = ts.isna() | ~text.str.contains(_OFFSET, regex=True)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise UserError(f"demand file {path}, row {row + 1}, column ts: {shown(text.iloc[row])} is not an ISO "
                        "8601 time with a UTC offset, e.g. 2026-03-02T10:00:00Z")
    if len(ts) == 1:
        return ts.iloc[0], default_step
    gaps = ts.diff().dt.total_seconds().to_numpy()[1:]
    step = gaps[0]
    if not (step >= 1 and step == int(step) and step <= MAX_STEP_SECONDS):
        raise UserError(f"demand file {path}, row 2, column ts: steps must be whole seconds from 1 to "
                        f"{MAX_STEP_SECONDS} apart and increasing, got {step:g} s after row 1")
    uneven = np.flatnonzero(gaps != step)
    if uneven.size:
        row = int(uneven[0]) + 2
        raise UserError(f"demand file {path}, row {row}, column ts: {text.iloc[row - 1]} is {gaps[row - 2]:g} s "
                        f"after row {row - 1}, not {step:g} s: demand steps must be evenly spaced")
    return ts.iloc[0], int(step)


def _frame_forecast(
    frame: pd.DataFrame, profile: AppProfile, *, path: Path, start: pd.Timestamp, step_seconds: int, spread: float
) -> Forecast:
    metrics = list(profile.metric_names)
    source = f"demand file {path}"
    quantile_cols = _quantile_columns(frame.columns, path)
    if quantile_cols:
        levels = sorted({q for by_level in quantile_cols.values() for q in by_level})
        columns = [[_column_at(quantile_cols, m, q, frame, path) for q in levels] for m in metrics]
        values = np.stack([np.stack([_numbers(frame, c, path) for c in row], axis=1) for row in columns], axis=1)
        check_demand(values, source=source, cell=lambda t, m, k: f"row {t + 1}, column {columns[m][k]}")
        return Forecast(start, step_seconds, metrics, levels, values)
    missing = [m for m in metrics if m not in frame.columns]
    if missing:
        raise UserError(f"{source}: missing column(s) {missing} for app {profile.name!r}; have {list(frame.columns)}")
    median = np.stack([_numbers(frame, m, path) for m in metrics], axis=1)
    check_demand(median[:, :, None], source=source, cell=lambda t, m, _k: f"row {t + 1}, column {metrics[m]}")
    return Forecast.from_median(median, start=start, step_seconds=step_seconds, metrics=metrics, spread=spread)


def _quantile_columns(columns, path: Path) -> dict[str, dict[float, str]]:
    """``{metric: {level: column}}`` for the ``<metric>@<level>`` columns, levels checked and in order."""
    found: dict[str, dict[float, str]] = {}
    for column in (c for c in columns if "@" in c):
        metric, _, text = column.partition("@")
        try:
            level = float(text)
        except ValueError:
            level = math.nan
        if not 0 < level < 1:
            raise UserError(f"demand file {path}: column {shown(column)}: level {shown(text)} is not a number in "
                            f"(0, 1); name quantile columns <metric>@<level>, e.g. {metric or 'metric'}@0.9")
        by_level = found.setdefault(metric, {})
        if by_level and level <= max(by_level):
            before = by_level[max(by_level)]
            raise UserError(f"demand file {path}: column {column} comes after {before}: give each metric's "
                            "quantile columns once each, in increasing order of level")
        by_level[level] = column
    return found


def _column_at(found: dict[str, dict[float, str]], metric: str, level: float, frame: pd.DataFrame, path: Path) -> str:
    column = found.get(metric, {}).get(level)
    if column is None:
        raise UserError(f"demand file {path}: missing column {metric}@{level:g} (have {list(frame.columns)}); "
                        "every metric needs a column at every level used")
    return column


def _numbers(frame: pd.DataFrame, column: str, path: Path) -> np.ndarray:
    text = frame[column].fillna("").astype(str).str.strip()
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float)
    literal_nan = text.str.lower().isin(["nan", "+nan", "-nan"]).to_numpy()
    bad = np.isnan(values) & ~literal_nan  # a written NaN is a number that check_demand refuses by name
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise UserError(f"demand file {path}, row {row + 1}, column {column}: {shown(text.iloc[row])} is not a "
                        "number")
    return values


def check_reach(forecast: Forecast, catalog: Catalog, profile: AppProfile, *, source: str) -> None:
    """Refuse a demand that ends before any new node the app can use would be ready.

    The allocation counts the first step as one step ahead, so a node with lead time ``L`` serves from step
    ``k = ceil((L - step) / step)`` (``prescale/allocation/problem.py``) and the demand needs ``k + 1`` steps.
    Types the app cannot use (incompatible, quota 0) are left to the allocation, which explains them.
    """
    usable = [t for t in catalog if t.quota > 0 and profile.incompatibility(t) is None]
    if not usable:
        return
    fastest = min(usable, key=lambda t: t.lead_time_seconds)
    step = forecast.step_seconds
    need = max(math.ceil((fastest.lead_time_seconds - step) / step), 0) + 1
    if forecast.horizon < need:
        raise UserError(
            f"{source} covers {forecast.horizon} step(s) of {step} s, but the fastest type app {profile.name!r} "
            f"can use ({fastest.name}) takes {fastest.lead_time_seconds:g} s to serve: nothing new could be ready "
            f"within it. Give at least {need} steps of demand"
        )


def example_forecast(profile: AppProfile, *, start: pd.Timestamp) -> Forecast:
    """The profile's example demand: a linear ramp from base to peak with normal quantiles."""
    ex = profile.example_demand
    if ex is None:
        raise UserError(f"profile {profile.name!r} has no example_demand; pass --demand FILE")
    base = np.array([ex.base[m] for m in profile.metric_names])
    peak = np.array([ex.peak[m] for m in profile.metric_names])
    median = np.linspace(base, peak, ex.steps)
    return Forecast.from_median(
        median, start=start, step_seconds=ex.step_seconds, metrics=profile.metric_names, spread=ex.spread
    )
