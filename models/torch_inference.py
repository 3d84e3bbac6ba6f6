"""Trainer-free inference for the darts torch components (the LSTM, TiDE, N-HiTS, TSMixer).

darts' ``predict`` wraps the inputs in ``TimeSeries``, runs its encoders, builds a dataset and a data loader and
drives a Lightning trainer for every call: about 200 ms per app forecast in the orchestrate cycle, for a network
whose forward pass takes a fraction of a millisecond. This module builds the same tensors darts would, from the
panel's arrays, and calls the network (the darts ``PLForecastingModule``) directly under
``torch.inference_mode()``, so many windows (a replay's origins, or a cycle's apps) go through one forward pass.

What darts feeds a network for a window with origin ``t`` (the newest row it may use), read from darts 0.48
(``TorchInferenceDataset``, ``SequentialEncoder``, ``PLForecastingModule._get_batch_prediction``), with
``n = output_chunk_length = H`` so nothing is auto-regressive:

- ``past_target``: the scaled target rows ``t-L+1 .. t`` ``(B, L, M)``, float32;
- future covariates (``spec.calendar == "future"``: the LSTM, TiDE, TSMixer) over rows ``t-L+1 .. t+H``: the
  user's columns first (the lagged targets, :func:`lag_values`), then the encoders' in the order given
  (``day_sin, day_cos, week_sin, week_cos``, :func:`calendar`); rows ``t-L+1 .. t`` are
  ``historic_future_covariates``, rows ``t+1 .. t+H`` ``future_covariates``;
- past covariates (``"past"``: N-HiTS) over the input rows only: the calendar;
- no static covariates; the module in eval mode; the output ``(B, H, M, Q')`` flattened to ``(B, H, M * Q')``
  metric-major, which is what ``QuantileRegression.predict_likelihood_parameters`` returns.

The lagged covariates of a darts series are computed over the series' rows plus ``H`` and their gaps filled
forwards, then backwards, then with 0.5, within that frame (``lstm.lag_covariates``). :func:`frame_inputs` does
the same over a frame, so a replay's windows (frames: the observed runs) and a live forecast (frame: the last
``L`` rows) get exactly what darts gave them. ``tests/models/test_fast_inference.py`` holds this path to darts'
``predict`` and historical forecasts within 1e-5.

Batching: windows of one network are concatenated along the batch axis (:func:`run`); darts' reversible instance
norm is per window, so a window's output does not depend on its batch. The norm keeps its statistics on the
module between the forward pass and its inverse, so each network is run under its own lock (two threads
forecasting with one loaded model must not interleave).

Deliberately not here: scaling (``lstm.Scaling``), unpacking the quantiles (``lstm.unpack_quantiles``), which
components run (``forecaster.forecast_many``).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from darts.utils.data.torch_datasets.utils import PLModuleInput
from numpy.lib.stride_tricks import sliding_window_view

from models.series import runs

NS = 1_000_000_000
DAY_SECONDS = 86_400
EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday = 0, as pandas' dayofweek)
BATCH = 2048  # windows per forward pass in a backtest (memory stays small: B x L x features float32)


@dataclass(frozen=True)
class InputSpec:
    """What a network reads besides its target rows (see the module docstring)."""

    input_steps: int
    horizon: int
    lags: tuple[int, ...]  # rows back of the lagged-target future covariates (empty: none)
    lag_window: int  # half-width of the mean around each lagged row
    calendar: str  # "future": target rows' calendar as future covariates; "past": input rows' as past covariates


@dataclass
class Windows:
    """The network inputs of ``B`` windows (float32, C-contiguous)."""

    past_target: np.ndarray  # (B, L, M)
    past_covariates: np.ndarray | None  # (B, L, Cp)
    historic_future: np.ndarray | None  # (B, L, Cf)
    future: np.ndarray | None  # (B, H, Cf)

    def __len__(self) -> int:
        return len(self.past_target)

    @staticmethod
    def concat(parts: Sequence[Windows]) -> Windows:
        def cat(name: str) -> np.ndarray | None:
            arrays = [getattr(p, name) for p in parts]
            return None if arrays[0] is None else np.concatenate(arrays)

        return Windows(cat("past_target"), cat("past_covariates"), cat("historic_future"), cat("future"))

    def rows(self, start: int, stop: int) -> Windows:
        def cut(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[start:stop]

        return Windows(self.past_target[start:stop], cut(self.past_covariates), cut(self.historic_future),
                       cut(self.future))


def calendar(stamps_ns: np.ndarray) -> np.ndarray:
    """``(n, 4)`` float64: ``lstm.day_sin, day_cos, week_sin, week_cos`` of naive-UTC stamps (int64 ns), with the
    same arithmetic, so the values are identical (without building a ``DatetimeIndex``)."""
    seconds = np.asarray(stamps_ns, dtype=np.int64) // NS
    fraction = (seconds % DAY_SECONDS) / 86_400.0
    weekday = (seconds // DAY_SECONDS + EPOCH_WEEKDAY) % 7
    week = 2 * np.pi * (weekday + fraction) / 7
    return np.stack([np.sin(2 * np.pi * fraction), np.cos(2 * np.pi * fraction), np.sin(week), np.cos(week)],
                    axis=1)


def lag_values(z: np.ndarray, start: int, stop: int, lags: Sequence[int], *, window: int) -> np.ndarray:
    """``lstm.lagged(z, arange(start, stop), lags, window=window)`` gap-filled as ``lstm.lag_covariates`` fills
    a frame (forwards, backwards, then 0.5): ``(stop - start, len(lags) * M)`` float64.

    The centred mean is taken over the needed rows only (a sliding window over ``z`` padded with NaN), not the
    whole panel.
    """
    n, m = z.shape
    blocks = []
    for lag in lags:
        src = np.arange(start, stop) - lag
        inside = (src >= 0) & (src < n)
        lo, hi = int(np.clip(src.min(), 0, n)), int(np.clip(src.max() + 1, 0, n))
        block = np.full((stop - start, m), np.nan)
        if hi > lo:
            padded = np.full((hi - lo + 2 * window, m), np.nan)
            a, b = max(0, lo - window), min(n, hi + window)
            padded[a - (lo - window): b - (lo - window)] = z[a:b]
            spans = sliding_window_view(padded, 2 * window + 1, axis=0)  # (hi - lo, M, 2w + 1)
            counts = (~np.isnan(spans)).sum(axis=2)
            with np.errstate(invalid="ignore", divide="ignore"):
                means = np.where(counts > 0, np.nansum(spans, axis=2) / counts, np.nan)
            block[inside] = means[src[inside] - lo]
        blocks.append(block)
    values = np.concatenate(blocks, axis=1)
    if np.isnan(values).any():
        values = pd.DataFrame(values).ffill().bfill().fillna(0.5).to_numpy()
    return values


def frame_inputs(z: np.ndarray, first_ns: int, step_ns: int, spec: InputSpec, *, frame: tuple[int, int],
                 origins: np.ndarray) -> Windows:
    """The windows of ``origins`` (rows of ``z``, the scaled panel) inside the frame of rows ``[a, b)``.

    The frame is what darts saw as one series (its covariates span ``[a, b + H)``); every origin must have its
    input rows inside it: ``a + L - 1 <= t <= b - 1``. ``first_ns``: the naive-UTC stamp of row ``a``.
    """
    a, b = frame
    L, H = spec.input_steps, spec.horizon
    origins = np.asarray(origins, dtype=np.int64)
    if len(origins) and (origins.min() < a + L - 1 or origins.max() > b - 1):
        raise ValueError(f"origins {origins.min()}..{origins.max()} need their {L} input rows inside the frame "
                         f"of rows {a}..{b - 1}")
    starts = origins - (L - 1) - a  # first input row of each window, relative to the frame
    target = sliding_window_view(z[a:b].astype(np.float32), L, axis=0).transpose(0, 2, 1)
    past_target = np.ascontiguousarray(target[starts])
    stamps = first_ns + step_ns * np.arange(b + H - a, dtype=np.int64)
    cal = calendar(stamps).astype(np.float32)
    if spec.calendar == "past":
        covs = sliding_window_view(cal[: b - a], L, axis=0).transpose(0, 2, 1)
        return Windows(past_target, np.ascontiguousarray(covs[starts]), None, None)
    future = cal
    if spec.lags:
        lagged = lag_values(z, a, b + H, spec.lags, window=spec.lag_window).astype(np.float32)
        future = np.concatenate([lagged, cal], axis=1)
    spans = sliding_window_view(future, L + H, axis=0).transpose(0, 2, 1)[starts]  # (B, L + H, Cf)
    return Windows(past_target, None, np.ascontiguousarray(spans[:, :L]), np.ascontiguousarray(spans[:, L:]))


@dataclass
class Request:
    """One component's forecast, waiting for its forward pass: ``finish`` turns the network's outputs for
    ``windows`` (``(B, H, M * Q')``, from :func:`run`) into the component's quantiles."""

    net: torch.nn.Module
    windows: Windows
    finish: Callable[[np.ndarray], np.ndarray]

    def result(self) -> np.ndarray:
        return self.finish(run(self.net, self.windows))


def tail_inputs(z: np.ndarray, *, last_ns: int, step_ns: int, spec: InputSpec) -> Windows:
    """The one window after the last row of ``z`` (a panel's scaled tail holding at least ``L`` rows and the
    rows its lags read back), as darts' ``predict`` on a series of the last ``L`` rows sees it.
    ``last_ns``: the naive-UTC stamp of the last row."""
    T, L = len(z), spec.input_steps
    return frame_inputs(z, last_ns - (L - 1) * step_ns, step_ns, spec, frame=(T - L, T), origins=np.array([T - 1]))


def backtest(net: torch.nn.Module, z: np.ndarray, *, stamps_ns: np.ndarray, step_ns: int, observed: np.ndarray,
             spec: InputSpec, origins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The network's outputs from every origin whose input and target rows are observed (darts' historical
    forecasts over the observed runs, ``overlap_end=False``): ``(outputs (W', H, M * Q'), positions in origins)``.

    As ``lstm.LstmCandidate.predict_at`` gave them through darts: the runs of observed rows within
    ``[min(origins) - L + 1, max(origins) + H]`` at least ``L + H`` rows long are the series (each a frame);
    an origin gets a forecast when its input rows and its target rows lie in one of them.
    """
    L, H = spec.input_steps, spec.horizon
    origins = np.asarray(origins, dtype=np.int64)
    lo, hi = max(0, int(origins.min()) - L + 1), min(len(z), int(origins.max()) + H + 1)
    parts, positions = [], []
    for a, b in runs(observed[lo:hi]):
        a, b = a + lo, b + lo
        if b - a < L + H:
            continue
        inside = np.flatnonzero((origins >= a + L - 1) & (origins <= b - 1 - H))
        if len(inside):
            parts.append(frame_inputs(z, int(stamps_ns[a]), step_ns, spec, frame=(a, b), origins=origins[inside]))
            positions.append(inside)
    if not parts:
        return np.empty((0, H, 0), dtype=np.float32), np.empty(0, dtype=np.int64)
    return run(net, Windows.concat(parts)), np.concatenate(positions)


def predict_origins(net: torch.nn.Module, panel, scaling, origins: np.ndarray, *, spec: InputSpec,
                    quantiles: Sequence[float], unpack: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """A direct-path candidate's ``predict_at``: quantiles ``(W, H, M, Q)`` from each origin in batched passes
    (:func:`backtest`), NaN where an origin has no observed window; ``unpack`` turns the network's outputs
    ``(W', H, M * Q')`` into ``(W', H, M, Q)`` in scaled units, ``scaling`` maps them back."""
    out = np.full((len(origins), spec.horizon, len(panel.metrics), len(quantiles)), np.nan)
    if len(origins) == 0:
        return out
    values, positions = backtest(net, scaling.forward(panel.values), stamps_ns=panel.index.as_unit("ns").asi8,
                                 step_ns=panel.step_seconds * NS, observed=panel.observed, spec=spec,
                                 origins=np.asarray(origins))  # fmt: skip
    if len(positions):
        out[positions] = unpack(values)
    return scaling.inverse(out, axis=2)


def forecast_request(net: torch.nn.Module, panel, scaling, *, history: int, spec: InputSpec,
                     unpack: Callable[[np.ndarray], np.ndarray]) -> Request:
    """A direct-path candidate's ``forecast_request``: the one window after the panel's last row (reading the
    last ``history`` rows plus the lag window), finished as :func:`predict_origins` finishes its windows."""
    first = max(0, len(panel) - history - spec.lag_window)  # the rows the window and its lags read
    windows = tail_inputs(scaling.forward(panel.values[first:]), last_ns=int(panel.index[-1].value),
                          step_ns=panel.step_seconds * NS, spec=spec)
    return Request(net, windows, lambda out: scaling.inverse(unpack(out), axis=2)[0])


def run_requests(requests: Sequence[Request]) -> list[np.ndarray | Exception]:
    """Every request's component quantiles (its ``finish`` of its outputs), in order, or its exception.

    Requests of one network (the same module object) share one forward pass: their windows are concatenated,
    run, and split back. Should a shared pass fail, its requests are run one by one, so only the one at fault
    carries the error.
    """
    groups: dict[int, list[int]] = {}
    for i, request in enumerate(requests):
        groups.setdefault(id(request.net), []).append(i)
    out: list[np.ndarray | Exception] = [None] * len(requests)  # type: ignore[list-item]
    for members in groups.values():
        try:
            outputs = run(requests[members[0]].net, Windows.concat([requests[i].windows for i in members]))
        except Exception:  # noqa: BLE001 - isolated below, one request at a time
            outputs = None
        offset = 0
        for i in members:
            n = len(requests[i].windows)
            try:
                own = outputs[offset:offset + n] if outputs is not None else run(requests[i].net, requests[i].windows)
                out[i] = requests[i].finish(own)
            except Exception as exc:  # noqa: BLE001 - returned: the caller records it for this request only
                out[i] = exc
            offset += n
    return out


_LOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def _lock(net: torch.nn.Module) -> threading.Lock:
    with _LOCKS_GUARD:
        lock = _LOCKS.get(net)
        if lock is None:
            lock = _LOCKS[net] = threading.Lock()
        return lock


def run(net: torch.nn.Module, windows: Windows, *, batch: int = BATCH) -> np.ndarray:
    """The network's likelihood parameters for every window: ``(B, H, M * Q')`` float32, as darts' ``predict``
    with ``predict_likelihood_parameters=True`` gives them (``QuantileRegression``: the raw quantile outputs)."""
    out = []
    with _lock(net), torch.inference_mode():
        if net.training:  # darts' Lightning predict runs the module in eval mode (no dropout)
            net.eval()
        for start in range(0, len(windows), batch):
            w = windows.rows(start, start + batch)
            x = PLModuleInput(past_target=_tensor(w.past_target), past_covariates=_tensor(w.past_covariates),
                              historic_future_covariates=_tensor(w.historic_future),
                              future_covariates=_tensor(w.future), static_covariates=None)
            prediction = net(x).prediction  # (B, H, M, Q')
            out.append(prediction.reshape(prediction.shape[0], prediction.shape[1], -1).numpy())
    if not out:
        return np.empty((0, 0, 0), dtype=np.float32)
    return np.concatenate(out)


def _tensor(a: np.ndarray | None) -> torch.Tensor | None:
    return None if a is None else torch.from_numpy(np.ascontiguousarray(a))
