"""Split a raw batch of metric rows into accepted rows and quarantined rows.

Data moves through three steps, each vectorised over the whole batch:

1. **parse** (:func:`normalise`): raw columns, which may be strings, numbers or
   already-typed arrays, become the canonical dtypes (``app``/``metric``/``phase``
   categorical, ``ts`` UTC nanoseconds, ``value`` float64). What cannot be parsed
   becomes missing, and the parse step remembers why (``bad_timestamp``,
   ``bad_type``, ``missing_value``, ``nan_value``...), because after parsing a
   missing value no longer says whether it was empty, ``NaN`` or ``"abc"``.
2. **check** (:func:`split`): pandera runs :data:`schema.ROW_SCHEMA` lazily over
   the parsed frame; every failure case names its check, and each check is named
   after the reason it yields. A row gets the first reason in :data:`REASONS` order.
3. **dedupe**: among rows with no reason, a later row with the same
   ``(app, ts, metric)`` as an earlier one is a ``duplicate_key``.

The result keeps the invariant ``accepted + quarantined == read`` for every
batch; :class:`ValidationResult` checks it on construction, so a bug here fails
loudly instead of losing rows. File-level problems (missing columns, an empty or
unreadable file) are not row problems: they raise :class:`MetricsInputError` and
nothing is written.

This module does no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pandera.errors as pa_errors

from prescale.metrics.schema import REQUIRED_COLUMNS, ROW_SCHEMA

# Reason code -> human explanation. Order is priority: a row failing several checks
# is quarantined with the first that applies.
REASONS: dict[str, str] = {
    "excluded": "excluded by the column mapping (a known gap or a flagged outage; see the mapping's rule)",
    "missing_app": "no app name: give --app or map an app column",
    "invalid_app_name": "app is not a valid Kubernetes name (lower-case alphanumerics and '-', at most 63)",
    "bad_timestamp": "timestamp could not be parsed: use ISO 8601 with a UTC offset, or epoch seconds",
    "missing_metric": "metric name is empty",
    "unknown_metric": "metric is neither a known metric nor an app metric named 'app.<snake_case>'",
    "missing_value": "value is empty",
    "bad_type": "value is not a number",
    "nan_value": "value is NaN",
    "infinite_value": "value is infinite",
    "negative_value": "value is below the metric's minimum (metrics here cannot be negative)",
    "out_of_range": "value is above the metric's maximum (percentages are at most 100)",
    "invalid_phase": "phase label is not a valid name (lower-case alphanumerics, '-' and '_')",
    "duplicate_key": "(app, ts, metric) repeats an earlier row of the same batch",
}
_PRIORITY = {reason: rank for rank, reason in enumerate(REASONS)}
_CODES = np.array(list(REASONS), dtype=object)
OK = len(REASONS)  # rank of "no reason": rows keep the lowest rank they were marked with
_NULL_REASON = {"app": "missing_app", "metric": "missing_metric", "ts": "bad_timestamp", "value": "missing_value"}
KEY = ["app", "ts", "metric"]


class MetricsInputError(ValueError):
    """The input as a whole is unusable (no row can be judged): nothing is written."""


@dataclass
class ValidationResult:
    """Accepted rows in canonical dtypes, and rejected rows with their reason."""

    accepted: pd.DataFrame
    quarantined: pd.DataFrame
    read: int
    reasons: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.accepted) + len(self.quarantined) != self.read:
            raise RuntimeError(
                f"validation lost rows: {len(self.accepted)} accepted + {len(self.quarantined)} quarantined "
                f"!= {self.read} read"
            )


def check_columns(columns: list[str] | pd.Index, *, have_app: bool) -> None:
    """Raise a clear error when a required column is missing."""
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if not have_app and "app" not in columns:
        missing.append("app")
    if missing:
        raise MetricsInputError(
            f"missing column(s) {missing}; found {list(columns)}. The canonical format has columns "
            "ts, app, metric, value[, phase] (app may be omitted when --app is given); "
            "other layouts need a column mapping (--mapping FILE)."
        )


def _as_category(values: pd.Series) -> pd.Series:
    if isinstance(values.dtype, pd.CategoricalDtype):
        return values
    cat = values.astype("category")
    if cat.cat.categories.dtype != object:  # numbers or other dtypes used as names
        cat = cat.cat.rename_categories([str(c) for c in cat.cat.categories])
    blank = [c for c in cat.cat.categories if isinstance(c, str) and c.strip() == ""]
    return cat.cat.remove_categories(blank) if blank else cat


def _parse_ts(raw: pd.Series, reasons: np.ndarray) -> pd.Series:
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        ts = raw.dt.tz_convert("UTC")
    elif pd.api.types.is_datetime64_dtype(raw.dtype):
        ts = raw.dt.tz_localize("UTC")  # tz-naive timestamps from a typed source are taken as UTC
    elif pd.api.types.is_numeric_dtype(raw.dtype):
        ts = pd.to_datetime(raw.astype("float64"), unit="s", utc=True, errors="coerce")
    else:
        ts = _parse_ts_strings(raw.astype("string"))
    ts = ts.astype("datetime64[ns, UTC]")
    _mark(reasons, ts.isna().to_numpy(), "bad_timestamp")
    return ts


def _parse_ts_strings(text: pd.Series) -> pd.Series:
    numeric = pd.to_numeric(text, errors="coerce")
    ts = pd.to_datetime(numeric, unit="s", utc=True, errors="coerce")
    rest = numeric.isna() & text.notna()
    if rest.any():
        parsed = pd.to_datetime(text[rest], format="ISO8601", utc=True, errors="coerce")
        naive = ~text[rest].str.contains(r"(?:Z|[+-]\d\d:?\d\d)$", regex=True, na=False)
        parsed[naive.to_numpy()] = pd.NaT  # an instant without an offset is ambiguous
        ts = ts.astype("datetime64[ns, UTC]")
        ts[rest] = parsed
    return ts


def _parse_value(raw: pd.Series, reasons: np.ndarray) -> pd.Series:
    if pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype):
        value = raw.astype("float64")
        _mark(reasons, value.isna().to_numpy(), "nan_value")
        return value
    text = raw.astype("string").str.strip()
    value = pd.to_numeric(text, errors="coerce").astype("float64")
    empty = (text.isna() | (text == "")).to_numpy(dtype=bool, na_value=True)
    nan_literal = text.str.lower().isin(["nan", "-nan", "+nan"]).to_numpy(dtype=bool, na_value=False)
    _mark(reasons, empty, "missing_value")
    _mark(reasons, nan_literal, "nan_value")
    _mark(reasons, value.isna().to_numpy() & ~empty & ~nan_literal, "bad_type")
    return value


def _mark(ranks: np.ndarray, mask: np.ndarray, reason: str) -> None:
    """Give `reason` to rows in `mask` unless they already have a higher-priority one."""
    np.minimum(ranks, np.where(mask, _PRIORITY[reason], OK).astype(ranks.dtype), out=ranks)


def normalise(raw: pd.DataFrame, *, app: str | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """Parse raw columns to canonical dtypes; return the frame and per-row parse reasons."""
    check_columns(raw.columns, have_app=app is not None)
    reasons = np.full(len(raw), OK, dtype=np.int8)
    if "excluded" in raw.columns:
        _mark(reasons, raw["excluded"].to_numpy(dtype=bool), "excluded")
    if "value_missing" in raw.columns:  # typed readers know an empty cell from a NaN; pandas does not
        _mark(reasons, raw["value_missing"].to_numpy(dtype=bool), "missing_value")
    apps = raw["app"] if "app" in raw.columns else pd.Series(app, index=raw.index, dtype="string")
    if app is not None and "app" in raw.columns:
        apps = apps.astype("string").replace("", pd.NA).fillna(app)
    frame = pd.DataFrame(
        {
            "app": _as_category(apps),
            "ts": _parse_ts(raw["ts"], reasons),
            "metric": _as_category(raw["metric"]),
            "value": _parse_value(raw["value"], reasons),
        },
        index=pd.RangeIndex(len(raw)),
    )
    if "phase" in raw.columns:
        frame["phase"] = _as_category(raw["phase"])
    return frame, reasons


def _apply_schema(frame: pd.DataFrame, reasons: np.ndarray) -> None:
    try:
        ROW_SCHEMA.validate(frame, lazy=True)
    except pa_errors.SchemaErrors as errors:
        cases = errors.failure_cases
        cases = cases[cases["index"].notna()]
        for (check, column), group in cases.groupby(["check", "column"], dropna=False, sort=False):
            reason = _reason_for(str(check), column)
            mask = np.zeros(len(frame), dtype=bool)
            mask[group["index"].astype("int64").to_numpy()] = True
            if check == "not_nullable":
                mask &= reasons == OK  # the parse step already said why most values are missing
            _mark(reasons, mask, reason)


def _reason_for(check: str, column: object) -> str:
    if check in _PRIORITY:
        return check
    if check == "not_nullable" and column in _NULL_REASON:
        return _NULL_REASON[column]
    raise RuntimeError(f"unexpected pandera failure {check!r} on column {column!r}: no quarantine reason maps to it")


def split(raw: pd.DataFrame, *, app: str | None = None) -> ValidationResult:
    """Validate a raw batch; every input row ends up accepted or quarantined."""
    frame, reasons = normalise(raw, app=app)
    _apply_schema(frame, reasons)
    clean = reasons == OK
    dup = _duplicated(frame.loc[clean])
    reasons[np.flatnonzero(clean)[dup]] = _PRIORITY["duplicate_key"]
    bad = reasons != OK
    accepted = frame.loc[~bad].reset_index(drop=True)
    quarantined = _quarantine_rows(raw, reasons, bad)
    counts = quarantined["reason"].value_counts().to_dict() if len(quarantined) else {}
    return ValidationResult(accepted=accepted, quarantined=quarantined, read=len(raw), reasons=counts)


def _duplicated(frame: pd.DataFrame) -> np.ndarray:
    """Rows whose (app, ts, metric) appeared earlier, via one int64 key per row.

    The key packs the factorised timestamp with the app and metric category codes;
    hashing one integer column is several times faster than pandas' multi-column
    ``duplicated`` on millions of rows.
    """
    if frame.empty:
        return np.zeros(0, dtype=bool)
    ts_code, _ = pd.factorize(frame["ts"])
    app_code = frame["app"].cat.codes.to_numpy().astype(np.int64)
    metric_code = frame["metric"].cat.codes.to_numpy().astype(np.int64)
    n_app, n_metric = len(frame["app"].cat.categories) + 1, len(frame["metric"].cat.categories) + 1
    key = (ts_code.astype(np.int64) * n_app + app_code) * n_metric + metric_code
    return pd.Series(key).duplicated(keep="first").to_numpy()


def _quarantine_rows(raw: pd.DataFrame, reasons: np.ndarray, bad: np.ndarray) -> pd.DataFrame:
    """Rejected rows exactly as read (as text), with their source row and reason."""
    rows = np.flatnonzero(bad)
    out = pd.DataFrame({"source_row": rows.astype("int64")})
    for column in ("app", "ts", "metric", "value", "phase"):
        if column in raw.columns:
            out[column] = raw[column].iloc[rows].astype("string").to_numpy()
        else:
            out[column] = pd.array([None] * len(rows), dtype="string")
    out["reason"] = pd.array(_CODES[reasons[rows]], dtype="string")
    out["detail"] = out["reason"].map(REASONS)
    return out
