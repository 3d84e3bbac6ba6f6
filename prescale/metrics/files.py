"""Read metrics files (CSV or Parquet) into raw rows, directly or through a column mapping.

Two ways in:

- **Canonical** files (no mapping) are long format: ``ts`` (ISO 8601 with an
  offset, or epoch seconds), ``app`` (optional when the caller gives one),
  ``metric``, ``value``, optional ``phase``. They are read with pyarrow's
  multithreaded CSV reader straight into typed columns; only when a column does
  not convert (a value ``"abc"``, a timestamp without offset...) is the file read
  again as text, so the row-level validation can say which rows were wrong.
- **Mapped** files (``--mapping FILE``, a YAML :class:`ColumnMapping`) are any table with
  one row per instant: the mapping says where time comes from (a column, an index
  column, or the row order from a start instant), which columns are which metrics
  (wide to long, with a unit scale), or that every column is one app (the Azure
  per-VM layout), and which rows to exclude with a reason (a known gap stored as
  zeros, a flagged outage). Mappings for the shared traces ship in
  ``infra/mappings/``.

The output is always a raw frame ``app, ts, metric, value[, phase][, excluded]``
for ``validation.split``; nothing is dropped here. A file that cannot be read at
all (empty, truncated, not CSV/Parquet, missing columns) raises
:class:`MetricsInputError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from prescale.metrics.validation import MetricsInputError, check_columns

_DICT = pa.dictionary(pa.int32(), pa.string())
_CANONICAL_TYPES = {
    "ts": pa.timestamp("ns", tz="UTC"),
    "app": _DICT,
    "metric": _DICT,
    "value": pa.float64(),
    "phase": _DICT,
}


class TimestampSpec(BaseModel):
    """Where each row's instant comes from."""

    model_config = ConfigDict(extra="forbid")

    column: str | None = Field(default=None, description="Column holding the time; omit to use the row order.")
    unit: Literal["iso", "s", "ms", "index"] = Field(
        default="iso", description="iso: text timestamps; s/ms: epoch (or offsets from `start`); index: step counter."
    )
    timezone: str | None = Field(
        default=None, description="UTC offset or zone for text timestamps that carry none, e.g. '-04:00'."
    )
    start: str | None = Field(default=None, description="Instant of row 0 / index `index_origin` / offset 0.")
    step_seconds: float | None = Field(default=None, gt=0, description="Seconds between steps (index or row order).")
    index_origin: int = Field(default=0, description="Index value that maps to `start`.")

    @model_validator(mode="after")
    def _check(self) -> TimestampSpec:
        synthetic = self.column is None or self.unit == "index"
        if synthetic and (self.start is None or self.step_seconds is None):
            raise ValueError("timestamps from the row order or an index column need both `start` and `step_seconds`")
        if self.start is not None:
            aware_instant(self.start, "timestamp.start")
        if self.timezone is not None:
            _check_timezone(self.timezone)
        return self


def aware_instant(text: str, where: str) -> pd.Timestamp:
    """Parse a mapping's instant; it must carry a UTC offset (or Z)."""
    try:
        instant = pd.Timestamp(text)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{where}: {text!r} is not an ISO 8601 instant") from exc
    if instant.tzinfo is None:
        raise ValueError(f"{where}: {text!r} has no UTC offset; write e.g. {text}Z or {text}-04:00")
    return instant.tz_convert("UTC")


def _check_timezone(timezone: str) -> None:
    try:
        if timezone[:1] in "+-":
            pd.Timestamp("2000-01-01T00:00:00" + timezone)
        else:
            pd.Timestamp("2000-01-01").tz_localize(timezone)
    except Exception as exc:  # noqa: BLE001 - pandas raises several types for a bad zone
        raise ValueError(
            f"timestamp.timezone: {timezone!r} is neither a UTC offset like '-04:00' nor a zone name"
        ) from exc


class MetricColumn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    column: str
    scale: float = Field(default=1.0, description="Multiply the column by this to get the metric's unit.")


class AppsFromColumns(BaseModel):
    """Every data column is one app (e.g. one Azure VM per column).

    Data columns are all columns except the time column, the columns that exclude
    rules read, and those listed in ``skip``.
    """

    model_config = ConfigDict(extra="forbid")

    metric: str
    name: str = Field(default="{app}-{n:03d}", description="App name template: {app} is --app, {n} the column number.")
    scale: float = 1.0
    skip: list[str] = Field(default_factory=list, description="Columns that are not apps.")

    @model_validator(mode="after")
    def _check(self) -> AppsFromColumns:
        try:
            self.name.format(app="app", n=0, column="c")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"apps_from_columns.name: {self.name!r} may use only {{app}}, {{n}} and {{column}}"
            ) from exc
        return self


class ExcludeRule(BaseModel):
    """Rows to quarantine as `excluded`, with the reason shown to the operator."""

    model_config = ConfigDict(extra="forbid")

    reason: str
    column: str | None = None
    equals: float | str | None = None
    start: str | None = Field(default=None, alias="from")
    end: str | None = Field(default=None, alias="to")

    @model_validator(mode="after")
    def _check(self) -> ExcludeRule:
        if self.column is None and self.start is None and self.end is None:
            raise ValueError(f"exclude rule {self.reason!r} names neither a column nor a from/to window")
        if (self.column is None) != (self.equals is None):
            raise ValueError(f"exclude rule {self.reason!r}: give `column` and `equals` together")
        for bound, where in ((self.start, "from"), (self.end, "to")):
            if bound is not None:
                aware_instant(bound, f"exclude rule {self.reason!r} `{where}`")
        return self


class ColumnMapping(BaseModel):
    """How a non-canonical table becomes metric rows."""

    model_config = ConfigDict(extra="forbid")

    description: str = ""
    attribution: str = ""
    format: Literal["csv", "parquet"] | None = None
    timestamp: TimestampSpec
    app: str | None = Field(default=None, description="App name for every row (else --app).")
    app_column: str | None = None
    phase_column: str | None = None
    metrics: dict[str, MetricColumn] = Field(default_factory=dict)
    apps_from_columns: AppsFromColumns | None = None
    exclude: list[ExcludeRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> ColumnMapping:
        if bool(self.metrics) == bool(self.apps_from_columns):
            raise ValueError("give exactly one of `metrics` (wide to long) and `apps_from_columns`")
        return self


def load_mapping(path: Path) -> ColumnMapping:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise MetricsInputError(f"mapping {path} is not UTF-8 text (a binary file?): give a YAML mapping") from None
    except (OSError, yaml.YAMLError) as exc:
        raise MetricsInputError(f"cannot read mapping {path}: {exc}") from exc
    try:
        return ColumnMapping.model_validate(data or {})
    except (ValidationError, ValueError) as exc:
        raise MetricsInputError(f"invalid mapping {path}:\n{exc}") from exc


def _file_format(path: Path, declared: str | None) -> str:
    if declared:
        return declared
    suffix = path.suffix.lower()
    if suffix in {".parquet", ".pq"}:
        return "parquet"
    if suffix in {".csv", ".txt", ".gz"}:
        return "csv"
    raise MetricsInputError(f"cannot tell the format of {path} from its suffix {suffix!r}: use .csv or .parquet")


def _check_not_empty(path: Path) -> None:
    if not path.exists():
        raise MetricsInputError(f"no such file: {path}")
    if not path.is_file():
        raise MetricsInputError(f"{path} is not a file")
    if path.stat().st_size == 0:
        raise MetricsInputError(f"{path} is empty (0 bytes): nothing to ingest")


def _read_csv(path: Path, *, column_types=None, as_text=False, block_size_mib=64) -> pa.Table:
    convert = pacsv.ConvertOptions(
        column_types=column_types or {},
        null_values=[""],  # only an empty cell is missing; "NaN" is a value (quarantined as nan_value)
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
    )
    if as_text:
        convert.column_types = {c: pa.string() for c in _csv_header(path)}
    read = pacsv.ReadOptions(block_size=block_size_mib << 20)
    return pacsv.read_csv(path, read_options=read, convert_options=convert)


def _csv_header(path: Path) -> list[str]:
    """Column names from the first block only (a streaming reader, not the whole file)."""
    try:
        with pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 20)) as reader:
            names = reader.schema.names
    except UnicodeDecodeError:
        raise MetricsInputError(f"cannot read {path} as csv: its header is not UTF-8 text (a binary file?)") from None
    except (pa.ArrowException, OSError) as exc:
        raise MetricsInputError(f"cannot read {path} as csv: truncated or malformed ({exc})") from exc
    _unique_columns(path, names)
    return names


def _unique_columns(path: Path, names: list[str]) -> None:
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise MetricsInputError(f"{path} repeats column name(s) {repeated}: each column needs its own name")


def _read_table(path: Path, fmt: str, **csv_kwargs) -> pa.Table:
    _check_not_empty(path)
    try:
        if fmt == "parquet":
            return pq.read_table(path)
        return _read_csv(path, **csv_kwargs)
    except UnicodeDecodeError:
        raise MetricsInputError(f"cannot read {path} as {fmt}: not UTF-8 text (a binary file?)") from None
    except pa.ArrowInvalid as exc:
        raise MetricsInputError(f"cannot read {path} as {fmt}: the file is truncated or malformed ({exc})") from exc
    except (OSError, pa.ArrowException) as exc:
        raise MetricsInputError(f"cannot read {path} as {fmt}: {exc}") from exc


def _no_rows(path: Path, table: pa.Table) -> None:
    if table.num_rows == 0:
        raise MetricsInputError(f"{path} has a header but no rows: nothing to ingest")


def read_canonical(path: Path, *, app: str | None = None, block_size_mib: int = 64) -> pd.DataFrame:
    """Read a long-format metrics file; typed fast path, text fallback for dirty files."""
    path = Path(path)
    fmt = _file_format(path, None)
    if fmt == "csv":
        _check_not_empty(path)
        header = _csv_header(path)
        check_columns(header, have_app=app is not None)
        types = {c: t for c, t in _CANONICAL_TYPES.items() if c in header}
        try:
            table = _read_csv(path, column_types=types, block_size_mib=block_size_mib)
        except pa.ArrowInvalid as exc:
            if "conversion error" not in str(exc).lower():
                raise MetricsInputError(f"cannot read {path} as csv: truncated or malformed ({exc})") from exc
            table = _read_table(path, "csv", as_text=True, block_size_mib=block_size_mib)
    else:
        table = _read_table(path, fmt)
        check_columns(table.column_names, have_app=app is not None)
    _no_rows(path, table)
    keep = [c for c in ("app", "ts", "metric", "value", "phase") if c in table.column_names]
    frame = table.select(keep).to_pandas()
    if pa.types.is_floating(table.schema.field("value").type):
        frame["value_missing"] = _empty_cells(table["value"])
    return frame


def _empty_cells(column: pa.ChunkedArray) -> np.ndarray:
    """Cells that were empty in the file (null), as opposed to a literal NaN."""
    return pc.is_null(column, nan_is_null=False).to_numpy(zero_copy_only=False)


# -- mapped files ---------------------------------------------------------------


def read_mapped(path: Path, mapping: ColumnMapping, *, app: str | None = None) -> pd.DataFrame:
    """Read any one-row-per-instant table through `mapping` into raw long rows."""
    path = Path(path)
    table = _read_table(path, _file_format(path, mapping.format), as_text=False)
    _no_rows(path, table)
    _unique_columns(path, table.column_names)
    frame = table.to_pandas()
    _require_columns(path, frame, mapping)
    empty = {name: _empty_cells(table[name]) for name in table.column_names}
    ts = _timestamps(frame, mapping.timestamp)
    excluded = _excluded(frame, ts, mapping.exclude)
    if mapping.apps_from_columns:
        return _apps_from_columns(
            frame,
            ts,
            excluded,
            empty,
            mapping.apps_from_columns,
            prefix=app or mapping.app,
            skip={
                mapping.timestamp.column,
                mapping.app_column,
                mapping.phase_column,
                *(r.column for r in mapping.exclude),
            },
        )
    return _wide_to_long(frame, ts, excluded, empty, mapping, app=app or mapping.app)


def _require_columns(path: Path, frame: pd.DataFrame, mapping: ColumnMapping) -> None:
    wanted = [mapping.timestamp.column, mapping.app_column, mapping.phase_column]
    wanted += [m.column for m in mapping.metrics.values()] + [r.column for r in mapping.exclude]
    missing = sorted({c for c in wanted if c and c not in frame.columns})
    if missing:
        raise MetricsInputError(f"{path} lacks column(s) {missing} named by the mapping; found {list(frame.columns)}")


_OFFSET = r"(?:[Zz]|[+-]\d\d(?::?\d\d)?)$"


def _timestamps(frame: pd.DataFrame, spec: TimestampSpec) -> pd.Series:
    """One UTC instant per row; NaT where a row's time cannot be parsed (validation then says why)."""
    if spec.column is None:
        return _from_steps(pd.Series(np.arange(len(frame), dtype="float64")), spec)
    raw = frame[spec.column]
    if spec.unit == "index":
        index = pd.to_numeric(raw, errors="coerce")
        return _from_steps((index - spec.index_origin).where(index == np.floor(index)), spec)
    if spec.unit in {"s", "ms"}:
        seconds = pd.to_numeric(raw, errors="coerce") / (1000.0 if spec.unit == "ms" else 1.0)
        origin = aware_instant(spec.start, "timestamp.start") if spec.start else pd.Timestamp(0, tz="UTC")
        return origin + pd.to_timedelta(seconds, unit="s")
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        return raw.dt.tz_convert("UTC")
    if pd.api.types.is_datetime64_dtype(raw.dtype):  # a typed column without zone: the mapping's zone, else UTC
        return raw.dt.tz_localize(spec.timezone or "UTC").dt.tz_convert("UTC")
    return _parse_text(raw.astype("string").str.strip(), spec.timezone)


def _from_steps(steps: pd.Series, spec: TimestampSpec) -> pd.Series:
    return aware_instant(spec.start, "timestamp.start") + pd.to_timedelta(steps * spec.step_seconds, unit="s")


def _parse_text(text: pd.Series, timezone: str | None) -> pd.Series:
    """Text with an offset is taken as written; text without one is read in `timezone`, or is NaT."""
    has_offset = text.str.contains(_OFFSET, regex=True, na=False).to_numpy()
    parts = [pd.to_datetime(text[has_offset], format="ISO8601", utc=True, errors="coerce")]
    if timezone is not None and (~has_offset).any():
        parts.append(_localise(text[~has_offset], timezone))
    else:
        parts.append(pd.Series(pd.NaT, index=text.index[~has_offset], dtype="datetime64[ns, UTC]"))
    return pd.concat(parts).sort_index()


def _localise(text: pd.Series, timezone: str) -> pd.Series:
    """Parse text timestamps without an offset as wall-clock time in `timezone`."""
    naive = pd.to_datetime(text, format="ISO8601", errors="coerce")
    if timezone[0] in "+-":
        return (naive - pd.Timestamp("2000-01-01T00:00:00" + timezone).utcoffset()).dt.tz_localize("UTC")
    return naive.dt.tz_localize(timezone, ambiguous="NaT", nonexistent="NaT").dt.tz_convert("UTC")


def _excluded(frame: pd.DataFrame, ts: pd.Series, rules: list[ExcludeRule]) -> pd.Series:
    """The first matching rule's reason per row (missing where no rule matches)."""
    excluded = pd.Series(pd.NA, index=frame.index, dtype="string")
    for rule in rules:
        mask = np.ones(len(frame), dtype=bool)
        if rule.column is not None:
            column = frame[rule.column]
            target = rule.equals
            if pd.api.types.is_numeric_dtype(column.dtype) and isinstance(target, str):
                try:
                    target = float(target)
                except ValueError as exc:
                    raise MetricsInputError(
                        f"exclude rule {rule.reason!r}: column {rule.column!r} is numeric but `equals` is {target!r}"
                    ) from exc
            mask &= (column == target).to_numpy(dtype=bool, na_value=False)
        if rule.start is not None:
            mask &= (ts >= aware_instant(rule.start, "from")).to_numpy(dtype=bool, na_value=False)
        if rule.end is not None:
            mask &= (ts < aware_instant(rule.end, "to")).to_numpy(dtype=bool, na_value=False)
        excluded[mask & excluded.isna().to_numpy()] = rule.reason
    return excluded


def _scaled(column: pd.Series, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Numbers in the metric's unit, and where a non-empty cell was not a number (validation: bad_type)."""
    if pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column.dtype):
        return column.to_numpy(dtype="float64", na_value=np.nan) * scale, np.zeros(len(column), dtype=bool)
    text = column.astype("string").str.strip()
    numbers = pd.to_numeric(text, errors="coerce").astype("float64")
    nan_literal = text.str.lower().isin(["nan", "-nan", "+nan"]).to_numpy(dtype=bool, na_value=False)
    filled = (text.notna() & (text != "")).to_numpy(dtype=bool, na_value=False)
    unparsed = filled & numbers.isna().to_numpy() & ~nan_literal
    return numbers.to_numpy() * scale, unparsed


def _wide_to_long(frame, ts, excluded, empty, mapping: ColumnMapping, *, app: str | None) -> pd.DataFrame:
    pieces = []
    for metric, spec in mapping.metrics.items():
        values, unparsed = _scaled(frame[spec.column], spec.scale)
        piece = {
            "ts": ts,
            "metric": metric,
            "value": values,
            "value_missing": empty[spec.column],
            "value_unparsed": unparsed,
            "excluded": excluded.notna().to_numpy(),
            "excluded_reason": excluded,
        }
        if mapping.app_column:
            piece["app"] = frame[mapping.app_column]
        elif app is not None:
            piece["app"] = app
        if mapping.phase_column:
            piece["phase"] = frame[mapping.phase_column]
        pieces.append(pd.DataFrame(piece))
    return pd.concat(pieces, ignore_index=True)


def _apps_from_columns(frame, ts, excluded, empty, spec: AppsFromColumns, *, prefix: str | None, skip) -> pd.DataFrame:
    if prefix is None:
        raise MetricsInputError("this mapping makes one app per column: give --app as the app name prefix")
    columns = [c for c in frame.columns if c not in skip and c not in spec.skip]
    names = [spec.name.format(app=prefix, n=n, column=column) for n, column in enumerate(columns)]
    rows = len(frame)
    scaled = [_scaled(frame[c], spec.scale) for c in columns]
    return pd.DataFrame(
        {
            "app": pd.Categorical.from_codes(np.repeat(np.arange(len(names)), rows), categories=names),
            "ts": np.tile(ts.to_numpy(), len(columns)),
            "metric": pd.Categorical.from_codes(np.zeros(rows * len(columns), dtype=np.int8), [spec.metric]),
            "value": np.concatenate([values for values, _ in scaled]),
            "value_unparsed": np.concatenate([unparsed for _, unparsed in scaled]),
            "value_missing": np.concatenate([empty[c] for c in columns]),
            "excluded": np.tile(excluded.notna().to_numpy(), len(columns)),
            "excluded_reason": np.tile(excluded.to_numpy(dtype=object), len(columns)),
        }
    )
