"""The bundled traces played as live demand: a real instant maps to a trace instant, and its rows come out shifted.

:meth:`LiveTraces.from_manifest` reads every entry of a demo manifest (``data/demo.yaml``) once,
through the file source and the entry's column mapping, so the rows are what
:class:`~prescale.metrics.sources.file.FileSource` returns (canonical columns and the per-row flags
validation reads), typed: ``ts`` as instants, ``value`` as floats (a dirty file's text that is not a
number becomes NaN flagged ``value_unparsed``). An entry that cannot be played (a missing file, a
missing time column, an unreadable file, no rows, a row without an instant, a single instant)
raises :class:`~prescale.metrics.validation.MetricsInputError` naming the file.
After that nothing touches the disk: :meth:`~LiveTraces.rows` and :meth:`~LiveTraces.at` are pure
functions of their arguments, the traces and ``(speed, epoch)``, so every process playing the same
manifest with the same ``(speed, epoch)`` sees the same demand at the same instant (the exporter,
the replay source, a test).

The time mapping, per trace
---------------------------
Let ``step`` be the trace's own step (its most common spacing: 1 min for NASA, 5 min for the
others), ``a`` its first instant and ``b = last instant + step`` its end, so the trace covers
``[a, b)`` and spans ``b - a``. The trace loops over its last ``L`` of data, ``[b - L, b)``, where

- ``L`` is the span floored to whole weeks when the trace spans at least a week;
- otherwise the span floored to whole days: the time of day is kept, the weekday is **not**;
- otherwise (under a day) the whole span: neither the weekday nor the time of day is kept.

At speed 1 a real instant ``t`` plays the trace instant::

    tau(t) = (b - L) + ((t - (b - L)) mod L)

so ``tau(t) = t (mod L)``, and since ``L`` is a whole number of weeks, ``tau(t) = t (mod 1 week)``:
the weekday and the UTC time of day are kept, and a model trained on the original trace's
calendar still sees the same calendar. The shift ``t - tau(t)`` is a whole number of loops.

At speed ``s`` (any ``s > 0`` but 1 needs ``epoch``, the instant playing started, so that every
process maps time identically)::

    tau(t) = (b - L) + ((tau_1(epoch) - (b - L) + s * (t - epoch)) mod L)

i.e. playing starts where speed 1 would be at ``epoch`` and runs ``s`` times faster; a speed of 1
with an epoch is the same mapping as without one. A trace row at instant ``x`` plays at every real
``t`` with ``tau(t) = x``: at speed 1 every ``x + k * L``; at speed ``s`` every
``epoch + (x - tau_1(epoch) + k * L) / s`` (rounded to the nanosecond), so rows keep the trace's
own step divided by ``s`` (a 5-minute trace at speed 1 gives a row every 5 minutes; :meth:`at`
gives the latest).

What this module does not do: validate rows (validation quarantines what it must, as for any
file), serve them (``exporter.py``) or write them in a wire format (``openmetrics.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from prescale.demo import DEFAULT_MANIFEST, load_manifest
from prescale.metrics.sources.file import FileSource
from prescale.metrics.store import batch_id_for
from prescale.metrics.validation import MetricsInputError, normalise

WEEK_NS = 7 * 86_400 * 10**9
DAY_NS = 86_400 * 10**9
FLAGS = ("value_missing", "value_unparsed", "excluded")  # the file source's per-row flags, validation's input


@dataclass(frozen=True)
class Clock:
    """How real time maps to a position in a loop: ``u(t) = u_epoch + speed * (t - epoch)`` nanoseconds.

    ``epoch`` and the times are Unix nanoseconds; ``u_epoch`` is the loop position at ``epoch``
    (speed 1 without an epoch uses ``epoch = loop start``, so ``u_epoch = 0``).
    """

    epoch_ns: int
    u_epoch_ns: int
    speed: float

    def position(self, t_ns: int) -> float | int:
        """``u(t)``: exact integer arithmetic at speed 1 (Unix nanoseconds exceed a float's 53 bits)."""
        if self.speed == 1.0:
            return self.u_epoch_ns + (t_ns - self.epoch_ns)
        return self.u_epoch_ns + self.speed * (t_ns - self.epoch_ns)

    def play_times(self, unwrapped: np.ndarray) -> np.ndarray:
        """The real instants (Unix ns) at which the loop positions ``unwrapped`` (``o + k * L``) play."""
        relative = unwrapped - self.u_epoch_ns
        if self.speed == 1.0:
            return self.epoch_ns + relative
        return self.epoch_ns + np.round(relative / self.speed).astype(np.int64)


@dataclass(frozen=True)
class Trace:
    """One app's trace: its rows, where its loop lies, and the rows of the loop as offsets into it."""

    app: str
    file: Path
    step_ns: int
    first_ns: int
    end_ns: int  # last instant + step
    loop_ns: int  # L
    offsets: np.ndarray  # loop rows' ts - (end - L), ascending
    loop_rows: pd.DataFrame  # the rows in [end - L, end), in the order of `offsets`
    batch_id: str  # the file source's batch id: content, app and mapping

    @property
    def loop_start_ns(self) -> int:
        return self.end_ns - self.loop_ns

    def clock(self, speed: float, epoch: datetime | None) -> Clock:
        if epoch is None:
            return Clock(self.loop_start_ns, 0, speed)
        epoch_ns = _ns(epoch)
        return Clock(epoch_ns, (epoch_ns - self.loop_start_ns) % self.loop_ns, speed)

    def keeps(self) -> str:
        if self.loop_ns % WEEK_NS == 0:
            return "weekday and time of day"
        return "time of day (not the weekday)" if self.loop_ns % DAY_NS == 0 else "neither weekday nor time of day"


class LiveTraces:
    """Every app of a manifest, read once, played as live demand at ``speed`` from ``epoch``."""

    def __init__(self, traces: list[Trace], *, speed: float = 1.0, epoch: datetime | None = None) -> None:
        _check_speed(speed, epoch)
        self.speed, self.epoch = float(speed), epoch
        self._traces = traces
        self._clocks = [trace.clock(self.speed, epoch) for trace in traces]

    @classmethod
    def from_manifest(
        cls, manifest: Path = DEFAULT_MANIFEST, *, speed: float = 1.0, epoch: datetime | None = None
    ) -> LiveTraces:
        """Read every entry of ``manifest`` through the file source; an unplayable entry names its file."""
        _check_speed(speed, epoch)
        entries = load_manifest(Path(manifest)).apps
        return cls([_read_trace(entry.app, entry.file, entry.mapping) for entry in entries], speed=speed, epoch=epoch)

    @property
    def apps(self) -> list[str]:
        return [str(trace.app) for trace in self._traces]

    @property
    def metrics(self) -> dict[str, list[str]]:
        """Per app, the metrics its trace plays, sorted."""
        return {str(trace.app): sorted(map(str, trace.loop_rows["metric"].unique())) for trace in self._traces}

    @property
    def identity(self) -> str:
        """A digest of what is played (every file's content, app and mapping) and how (speed, epoch)."""
        epoch = "" if self.epoch is None else pd.Timestamp(self.epoch).isoformat()
        return batch_id_for(*(trace.batch_id for trace in self._traces), repr(self.speed), epoch)

    def rows(self, start: datetime, end: datetime) -> pd.DataFrame:
        """Every app's rows playing in ``[start, end)``, ``ts`` the real instant; sorted by app, ts, metric."""
        start_ns, end_ns = _ns(start, "start"), _ns(end, "end")
        if start_ns > end_ns:
            raise ValueError(f"start ({start.isoformat()}) is after end ({end.isoformat()}): swap them")
        frames = [_window_rows(t, c, start_ns, end_ns) for t, c in zip(self._traces, self._clocks, strict=True)]
        return _sorted(frames)

    def at(self, t: datetime) -> pd.DataFrame:
        """The latest row per (app, metric) playing at or before ``t``: what an exporter serves at ``t``."""
        t_ns = _ns(t, "t")
        return _sorted(
            [_latest_rows(trace, clock, t_ns) for trace, clock in zip(self._traces, self._clocks, strict=True)]
        )

    def describe(self, at: datetime | None = None) -> list[dict]:
        """Per app, for start-up messages: the file, the trace's span, the loop, and the shift at ``at`` (now)."""
        at_ns = _ns(at or datetime.now(UTC), "at")
        described = []
        for trace, clock in zip(self._traces, self._clocks, strict=True):
            tau_ns = trace.loop_start_ns + int(clock.position(at_ns)) % trace.loop_ns
            described.append(
                {
                    "app": trace.app,
                    "file": str(trace.file),
                    "trace_start": _datetime(trace.first_ns),
                    "trace_end": _datetime(trace.end_ns),
                    "step": timedelta(microseconds=trace.step_ns // 1000),
                    "loop": timedelta(microseconds=trace.loop_ns // 1000),
                    "keeps": trace.keeps(),
                    "playing": _datetime(tau_ns),
                    "shift": timedelta(microseconds=(at_ns - tau_ns) // 1000),
                }
            )
        return described


# --- reading ------------------------------------------------------------------------------------------------------


def _read_trace(app: str, file: Path, mapping: Path | None) -> Trace:
    try:
        batch = FileSource(file, app=app, mapping=mapping).read()
    except MetricsInputError as exc:  # the file source's message may not name the file (a missing column)
        raise exc if str(file) in str(exc) else MetricsInputError(f"{file} (app {app!r}): {exc}") from exc
    if batch.rows.empty:
        raise MetricsInputError(f"{file} (app {app!r}) has no rows to play")
    rows = _typed(batch.rows, file, app)
    instants = np.unique(_ts_ns(rows["ts"]))
    if len(instants) < 2:
        raise MetricsInputError(f"{file} (app {app!r}) holds a single instant: a trace needs two to have a step")
    step_ns = _most_common(np.diff(instants))
    first_ns, end_ns = int(instants[0]), int(instants[-1]) + step_ns
    loop_ns = _loop_length(end_ns - first_ns)
    ts_ns = _ts_ns(rows["ts"])
    in_loop = rows[ts_ns >= end_ns - loop_ns]
    order = np.argsort(_ts_ns(in_loop["ts"]), kind="stable")
    loop_rows = in_loop.iloc[order].reset_index(drop=True)
    offsets = _ts_ns(loop_rows["ts"]) - (end_ns - loop_ns)
    return Trace(app, file, step_ns, first_ns, end_ns, loop_ns, offsets, loop_rows, batch.batch_id)


def _typed(raw: pd.DataFrame, file: Path, app: str) -> pd.DataFrame:
    """The file source's rows with ``ts`` as instants, ``value`` as floats and every flag column present.

    A typed (clean) file comes that way already; a dirty one is read as text, so its instants are
    parsed as validation parses them, and a value that is not a number becomes NaN flagged
    ``value_unparsed`` (an empty one ``value_missing``): validation still quarantines them with their
    reasons, and no text reaches the wire. A row without an instant cannot be played at any time.
    """
    rows = raw.copy()
    ts = normalise(raw[["ts"]].assign(app=app, metric="", value=0.0))[0]["ts"]
    if ts.isna().any():
        bad = raw["ts"][ts.isna().to_numpy()]
        raise MetricsInputError(
            f"{file} (app {app!r}) has {len(bad)} row(s) without a readable instant (first: {bad.iloc[0]!r}): "
            "a trace to play needs every row's time, as ISO 8601 with a UTC offset or epoch seconds"
        )
    rows["ts"] = ts.to_numpy()
    for flag in FLAGS:
        rows[flag] = rows[flag].fillna(False).astype(bool) if flag in rows.columns else False
    if not pd.api.types.is_float_dtype(rows["value"].dtype):
        text = rows["value"].astype("string").str.strip()
        value = pd.to_numeric(text, errors="coerce").astype("float64")
        empty = (text.isna() | (text == "")).to_numpy(dtype=bool, na_value=True)
        nan_literal = text.str.lower().isin(["nan", "-nan", "+nan"]).to_numpy(dtype=bool, na_value=False)
        rows["value"] = value
        rows["value_missing"] |= empty
        rows["value_unparsed"] |= value.isna().to_numpy() & ~empty & ~nan_literal
    return rows


def _most_common(gaps: np.ndarray) -> int:
    values, counts = np.unique(gaps, return_counts=True)
    return int(values[np.argmax(counts)])


def _loop_length(span_ns: int) -> int:
    """The span floored to whole weeks, else to whole days, else the span itself (see the module docstring)."""
    for unit in (WEEK_NS, DAY_NS):
        if span_ns >= unit:
            return span_ns // unit * unit
    return span_ns


def _check_speed(speed: float, epoch: datetime | None) -> None:
    if not (isinstance(speed, int | float) and math.isfinite(speed) and speed > 0):
        raise MetricsInputError(f"speed ({speed!r}) must be a positive number, e.g. 1 (real time) or 60")
    if speed != 1 and epoch is None:
        raise MetricsInputError(
            f"speed {speed:g} needs an epoch, the instant playing started (e.g. --epoch 2026-01-01T00:00:00Z), "
            "so that every process plays the same trace instant at the same real instant"
        )
    if epoch is not None:
        _ns(epoch, "epoch")


# --- playing ------------------------------------------------------------------------------------------------------


def _window_rows(trace: Trace, clock: Clock, start_ns: int, end_ns: int) -> pd.DataFrame:
    """The loop rows playing in ``[start_ns, end_ns)``: candidates per loop round by position, then exact by time."""
    u0, u1 = clock.position(start_ns), clock.position(end_ns)
    margin = 0 if clock.speed == 1.0 else 1 + clock.speed  # float rounding at the edges; the time filter is exact
    length, indices, rounds = trace.loop_ns, [], []
    for k in range(math.floor((u0 - margin) / length), math.floor((u1 + margin) / length) + 1):
        lo = np.searchsorted(trace.offsets, u0 - margin - k * length, side="left")
        hi = np.searchsorted(trace.offsets, u1 + margin - k * length, side="left")
        indices.append(np.arange(lo, hi))
        rounds.append(np.full(hi - lo, k, dtype=np.int64))
    index, k = np.concatenate(indices), np.concatenate(rounds)
    played = clock.play_times(trace.offsets[index] + k * length)
    keep = (played >= start_ns) & (played < end_ns)
    return _shifted(trace.loop_rows, index[keep], played[keep])


def _latest_rows(trace: Trace, clock: Clock, t_ns: int) -> pd.DataFrame:
    """Per metric, the loop row whose latest play time is at or before ``t_ns``."""
    u = clock.position(t_ns)
    length = trace.loop_ns
    k = math.floor(u / length)
    picked, times = [], []
    for positions in trace.loop_rows.groupby("metric", sort=True).indices.values():
        offsets = trace.offsets[positions]
        i = int(np.searchsorted(offsets, u - k * length, side="right")) - 1
        index, round_ = (i, k) if i >= 0 else (len(offsets) - 1, k - 1)
        played = int(clock.play_times(np.array([offsets[index] + round_ * length]))[0])
        if played > t_ns:  # float rounding put it a nanosecond late: the one before is the latest
            index, round_ = (index - 1, round_) if index > 0 else (len(offsets) - 1, round_ - 1)
            played = int(clock.play_times(np.array([offsets[index] + round_ * length]))[0])
        picked.append(positions[index])
        times.append(played)
    return _shifted(trace.loop_rows, np.array(picked, dtype=np.int64), np.array(times, dtype=np.int64))


def _shifted(loop_rows: pd.DataFrame, index: np.ndarray, played_ns: np.ndarray) -> pd.DataFrame:
    rows = loop_rows.iloc[index].reset_index(drop=True)
    rows["ts"] = pd.to_datetime(played_ns, unit="ns", utc=True)
    return rows


def _sorted(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frame = pd.concat(frames, ignore_index=True)
    return frame.sort_values(["app", "ts", "metric"], kind="stable", ignore_index=True)


def _ns(moment: datetime, name: str = "epoch") -> int:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise MetricsInputError(f"{name} ({moment.isoformat()}) has no time zone: pass an aware datetime, e.g. in UTC")
    return pd.Timestamp(moment).as_unit("ns").value


def _ts_ns(ts: pd.Series) -> np.ndarray:
    """Unix nanoseconds of a datetime64[ns, UTC] column."""
    return pd.DatetimeIndex(ts).asi8


def _datetime(ns: int) -> datetime:
    return pd.Timestamp(ns, unit="ns", tz=UTC).to_pydatetime()
