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
    "invalid_app_name": "app is not a valid Kubernetes Service name (RFC 1035: a lower-case letter, then "
    "lower-case alphanumerics and '-', at most 63)",
    "bad_timestamp": "timestamp could not be parsed: use ISO 8601 with a UTC offset, or epoch seconds "
    "(1973..2286; not milliseconds)",
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


# Epoch seconds are accepted only in this window (1973-03-03 .. 2286-11-20): a bare
# "20260101" or "2026" is a date typed wrongly, not an instant in 1970.
EPOCH_MIN, EPOCH_MAX = 1e8, 1e10
_NS_MIN, _NS_MAX = pd.Timestamp.min.tz_localize("UTC"), pd.Timestamp.max.tz_localize("UTC")


def _to_ns_utc(ts: pd.Series) -> pd.Series:
    """Cast to ``datetime64[ns, UTC]``; instants nanoseconds cannot hold (year 1600, 2300) become NaT."""
    if ts.dtype == "datetime64[ns, UTC]":
        return ts
    outside = ((ts < _NS_MIN) | (ts > _NS_MAX)).to_numpy(dtype=bool, na_value=False)
    if outside.any():
        ts = ts.copy()
        ts[outside] = pd.NaT
    return ts.astype("datetime64[ns, UTC]")


def _from_epoch(seconds: pd.Series) -> pd.Series:
    plausible = seconds.between(EPOCH_MIN, EPOCH_MAX)
    return pd.to_datetime(seconds.where(plausible), unit="s", utc=True, errors="coerce")


def _parse_ts(raw: pd.Series, reasons: np.ndarray) -> pd.Series:
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        ts = raw.dt.tz_convert("UTC")
    elif pd.api.types.is_datetime64_dtype(raw.dtype):
        ts = raw.dt.tz_localize("UTC")  # typed sources (Parquet timestamps without zone) store UTC
    elif pd.api.types.is_numeric_dtype(raw.dtype):
        ts = _from_epoch(raw.astype("float64"))
    else:
        ts = _parse_ts_strings(raw.astype("string").str.strip().str.replace(r"z$", "Z", regex=True))
    ts = _to_ns_utc(ts)
    _mark(reasons, ts.isna().to_numpy(), "bad_timestamp")
    return ts


def _parse_ts_strings(text: pd.Series) -> pd.Series:
    numeric = pd.to_numeric(text, errors="coerce")
    ts = _to_ns_utc(_from_epoch(numeric))
    rest = numeric.isna() & text.notna()
    if rest.any():
        parsed = _to_ns_utc(pd.to_datetime(text[rest], format="ISO8601", utc=True, errors="coerce"))
        naive = ~text[rest].str.contains(r"(?:[Zz]|[+-]\d\d(?::?\d\d)?)$", regex=True, na=False)
        parsed[naive.to_numpy()] = pd.NaT  # an instant without an offset is ambiguous
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
    if "value_unparsed" in raw.columns:  # mapped readers scale numbers and flag the text they could not parse
        _mark(reasons, raw["value_unparsed"].to_numpy(dtype=bool), "bad_type")
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
        for (check, column), group in cases.groupby(["check", "column"], dropna=False, sort=False):
            reason = _reason_for(str(check), column)
            mask = np.zeros(len(frame), dtype=bool)
            if group["index"].isna().any():
                raise RuntimeError(
                    f"pandera failed {check!r} on {column!r} for the whole frame, not per row"
                ) from errors
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
    quarantined = _quarantine_rows(raw, frame, reasons, bad)
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


QUARANTINE_COLUMNS = ("app", "raw_app", "ts", "metric", "value", "phase", "reason", "detail")


def _quarantine_rows(raw: pd.DataFrame, frame: pd.DataFrame, reasons: np.ndarray, bad: np.ndarray) -> pd.DataFrame:
    """Rejected rows as text: the app they count for, the raw cells, the reason and its explanation.

    ``app`` is the effective app (after ``--app`` filled an empty cell), ``raw_app``
    the cell as read. ``source_row`` is the row of the long batch (for a mapped
    file: row x metric, in mapping order). Every column but ``source_row`` is a
    string, so quarantine files of any batch read back together.
    """
    rows = np.flatnonzero(bad)
    out = pd.DataFrame({"source_row": rows.astype("int64")})
    out["app"] = frame["app"].iloc[rows].astype("string").to_numpy()
    out["raw_app"] = _text(raw, "app", rows)
    for column in ("ts", "metric", "value", "phase"):
        out[column] = _text(raw, column, rows)
    out["reason"] = pd.array(_CODES[reasons[rows]], dtype="string")
    detail = out["reason"].map(REASONS).astype("string")
    if "excluded_reason" in raw.columns:
        excluded = (out["reason"] == "excluded").to_numpy(dtype=bool, na_value=False)
        rule = _text(raw, "excluded_reason", rows)
        detail[excluded] = "excluded by the column mapping: " + pd.Series(rule, dtype="string")[excluded]
    out["detail"] = detail
    return out


def _text(raw: pd.DataFrame, column: str, rows: np.ndarray) -> np.ndarray:
    if column not in raw.columns:
        return pd.array([None] * len(rows), dtype="string")
    return raw[column].iloc[rows].astype("string").to_numpy()
