"""The LSTM candidate: a darts ``BlockRNNModel`` with an LSTM encoder and quantile outputs.

What goes in, per window with origin ``t`` (the newest row the model may use):

- the last ``L`` rows of every demand metric (the app's demand vector, so one
  model per (app, phase) and a multivariate output when there are several);
- calendar covariates for the ``H`` target rows: time of day and day of week as
  sine/cosine pairs (darts ``add_encoders``, so they are rebuilt for any series);
- lagged targets as future covariates: the same rows one day earlier
  (``seasonal_lag``) and one week earlier (``weekly_lag``), each the mean of the
  observed rows within ``lag_window`` of ``t + h - lag`` (:func:`lagged`; 0 = the
  single value), known at ``t`` because ``t + h - lag + lag_window <= t`` for
  ``h <= H`` and ``lag_window <= m - H`` (checked). ``LstmConfig.from_train`` turns the
  weekly one on only when the training rows span two weeks or more, and sets the
  window to 30 minutes each side: a single day-old value of a noisy series (a
  request count) carries that row's noise, the mean around it much less.

Transforms, all invertible so quantiles stay quantiles: min-max scaling from the
training rows, then darts' reversible instance norm (each window normalised by its
own mean and spread, the forecast de-normalised). ``log_target`` adds ``log1p``
first (the median commutes with any increasing map); it is off by default.

Measured on NASA 5-minute requests before settling (held-out MAE over SES's, the
best baseline there; one seed each, and seeds alone move it by about 1%): 2-hour
input 0.963; with ``log1p`` 0.990; without reversible norm 1.000; hidden 64
0.979; with yesterday's values 0.961; 4-hour input with them 0.952 (the
default); 8-hour 0.967; 1-hour 0.974; two layers with dropout 0.971; batch 32
0.963; learning-rate decay no change; three seeds averaged 0.950 at three times
the cost (not used). Through ``models.train`` (other split arithmetic, UTC
calendar), four seeds gave 0.962-0.977 (last step 0.946-0.976); adding last
week's values 0.960-0.962 (last step 0.940-0.949).

Later, through ``models.train`` (seeds 0-2, ratios of the LSTM alone to SES on the
*validation* windows, which is what chose them): the mean of three seeds' quantiles
0.932 at 5 minutes against 0.948 for one seed on average; lags averaged over
+-30 minutes 0.929 (three seeds), +-15 minutes kept beside the single values 0.933.
At 1 minute the averaged lags changed nothing measurable (0.9465 against 0.948 for
two seeds). All 62,000 one-minute training windows instead of the newest 20,000:
0.947 against 0.950 at three times the cost (not used). Rejected at 5 minutes with
three seeds: learning rate 1e-3 with patience 5, 0.934; ``log1p``, 0.944. :meth:`LstmCandidate.train` fits
``lstm_members`` networks (seeds ``seed, seed + 1, ...``), which ``models.train`` averages into the LSTM candidate.

Output: for every target row and metric the quantiles ``tau`` of a darts
``QuantileRegression`` likelihood, trained with the pinball loss
``sum_tau max(tau (y - q), (tau - 1)(y - q))``; the median is the point forecast.

Why a custom block module: darts' stock ``_BlockRNNModule`` reads output step
``k`` from the RNN state at input position ``L - H + k``, so the one-step forecast
ignores the newest ``H - 1`` observations (measured: 1.03 against 0.98 for ours). Ours
maps the final LSTM state (plus the target rows' covariates) to all ``H x M x Q``
outputs at once. It is still an LSTM inside darts' ``BlockRNNModel``.

Training is CPU-only and bounded: fixed seeds, ``torch`` threads set by the
caller, at most ``max_samples`` windows for one series (the newest), early stopping on
a validation tail, and the best epoch's weights are kept. darts' checkpoints go to
a fresh folder under ``scratch`` (the train task passes ``<home>/tmp/checkpoints``),
removed when ``fit`` returns or fails.

One model may be fitted on several panels at once (a *global* model, such as the
benchmark's per-VM series): each panel keeps its own scaling, chosen by ``part``.
A global fit's cost is bounded for the whole fit, not per series: one network
(``GLOBAL_MEMBERS``), ``GLOBAL_BUDGET_SERIES x max_samples`` windows in all, split
evenly across the series (at least two days of windows each), taken as day-long
pieces spread over each series' training span (:func:`training_windows`). Measured
on the 20 Azure V1 VMs (held-out MAE of the raw median against the former fit,
three networks on every window (5,550 a series): median ratio over the VMs, fit
CPU seconds on this 2-core host, 482 s before): 3,000 windows a series spread, one
network, 1.029 in 104 s (the default); all windows, one network in batches of 256,
1.017 in 206 s; 4,000 spread in batches of 256, 1.036 in 136 s; 2,000 spread, two
networks, 1.027 in 203 s; 1,000 spread, three networks, 1.054 in 221 s; the newest
1,000 only, three networks, 1.095 in 175 s. A global model wants windows more than
networks: what recovers the last 2-3% is the data, at twice the cost.

:class:`LstmCandidate` is a forecaster component (``component.py``, registered in
``components.py``); :class:`LstmConfig` holds no defaults of its own: they are
``TrainConfig``'s, resolved per step by :meth:`LstmConfig.from_train`.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from darts import TimeSeries
from darts.models import BlockRNNModel
from darts.models.forecasting.block_rnn_model import CustomBlockRNNModule
from darts.models.forecasting.pl_forecasting_module import PLModuleOutput, io_processor
from darts.utils.likelihood_models import QuantileRegression
from darts.utils.serialization import safe_globals
from pytorch_lightning.callbacks import EarlyStopping
from torch import nn

from models.component import Trained, TrainPart
from models.series import Panel, runs
from models.torch_inference import InputSpec, Request, forecast_request, predict_origins

if TYPE_CHECKING:
    from models.train import TrainConfig

LOG = logging.getLogger(__name__)
DARTS_FILE = "lstm.pt"
STATE_FILE = "lstm.json"
ADDED_LATER = {"lag_window": 0}  # LstmConfig fields that models saved before them lack, and what those did
# A global fit (over several series) is bounded, not per series (measured on the 20 Azure VMs: module docstring):
GLOBAL_BUDGET_SERIES = 3  # its training windows: as many as this many single-series fits' max_samples, split
GLOBAL_FLOOR_DAYS = 2.0  # but never fewer than this many days of windows per series
GLOBAL_MEMBERS = 1  # networks: one (lstm_members applies to single-series fits)


@dataclass(frozen=True, kw_only=True)
class LstmConfig:
    """Architecture and training budget of one network, resolved for one step (``TrainConfig.lstm`` builds it:
    the defaults live there, once). Saved with the model (``lstm.json``) and logged as its MLflow parameters."""

    input_steps: int
    horizon: int
    quantiles: tuple[float, ...]
    hidden_dim: int
    layers: int
    dropout: float
    epochs: int
    batch_size: int
    learning_rate: float
    patience: int
    max_samples: int
    seed: int
    log_target: bool
    seasonal_lag: bool
    weekly_lag: bool
    reversible_norm: bool = True  # not a setting: measured worse without (see the module docstring)
    season: int
    lag_window: int

    @classmethod
    def from_train(cls, config: TrainConfig, step_seconds: int, *, train_rows: int | None = None,
                   series: int = 1) -> LstmConfig:
        """``config``'s network at this step; the weekly lag only with two weeks of training rows or more.

        ``series``: how many panels the fit is global over. Over several, each keeps its share of
        ``GLOBAL_BUDGET_SERIES x max_samples`` windows (:func:`samples_per_series`).
        """
        inputs, horizon = config.steps(step_seconds)
        season = max(1, round(86_400 / step_seconds))
        weekly = config.weekly_lag and train_rows is not None and train_rows >= 14 * season
        window = max(0, min(round(config.lag_window_minutes * 60 / step_seconds), season - horizon))
        return cls(
            input_steps=inputs, horizon=horizon, quantiles=config.quantiles, hidden_dim=config.hidden_dim,
            layers=config.layers, dropout=config.dropout, epochs=config.epochs, batch_size=config.batch_size,
            learning_rate=config.learning_rate, patience=config.patience,
            max_samples=samples_per_series(config.max_samples, series=series, season=season),
            seed=config.seed, log_target=config.log_target, seasonal_lag=config.seasonal_lag, weekly_lag=weekly,
            season=season, lag_window=window,
        )


def day_sin(index: pd.DatetimeIndex) -> np.ndarray:
    return np.sin(2 * np.pi * _day_fraction(index))


def day_cos(index: pd.DatetimeIndex) -> np.ndarray:
    return np.cos(2 * np.pi * _day_fraction(index))


def week_sin(index: pd.DatetimeIndex) -> np.ndarray:
    return np.sin(2 * np.pi * (index.dayofweek + _day_fraction(index)) / 7)


def week_cos(index: pd.DatetimeIndex) -> np.ndarray:
    return np.cos(2 * np.pi * (index.dayofweek + _day_fraction(index)) / 7)


def _day_fraction(index: pd.DatetimeIndex) -> np.ndarray:
    return np.asarray((index.hour * 3600 + index.minute * 60 + index.second) / 86_400.0)


class LastStateLSTM(CustomBlockRNNModule):
    """LSTM encoder; its final state and the target rows' covariates -> all H x M x Q outputs."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.rnn = nn.LSTM(
            self.input_size, self.hidden_dim, self.num_layers, batch_first=True,
            dropout=self.dropout if self.num_layers > 1 else 0.0,
        )
        width = self.hidden_dim + self.future_cov_dim * self.output_chunk_length
        self.fc = nn.Linear(width, self.output_chunk_length * self.target_size * self.nr_params)

    @io_processor
    def forward(self, x_in):
        x_past = x_in.concatenate_past_features()
        batch = x_past.shape[0]
        _, (hidden, _) = self.rnn(x_past)
        features = hidden[-1]
        if x_in.future_covariates is not None:
            features = torch.cat([features, x_in.future_covariates.reshape(batch, -1)], dim=1)
        out = self.fc(features)
        return PLModuleOutput(out.view(batch, self.output_chunk_length, self.target_size, self.nr_params))


# what a saved model may unpickle besides darts' own (darts refuses anything else)
SAFE_GLOBALS = [LastStateLSTM, day_sin, day_cos, week_sin, week_cos]


@dataclass
class Scaling:
    """Per-panel invertible transform: optional log1p, then min-max to [0, 1]."""

    log: list[bool]
    low: list[float]
    high: list[float]

    @staticmethod
    def fit(train: np.ndarray, *, log_target: bool) -> Scaling:
        log = [bool(log_target and np.nanmin(train[:, m]) >= 0) for m in range(train.shape[1])]
        z = Scaling(log, [0.0] * train.shape[1], [1.0] * train.shape[1]).forward(train, scale=False)
        low, high = np.nanmin(z, axis=0), np.nanmax(z, axis=0)
        high = np.where(high - low < 1e-9, low + 1.0, high)
        return Scaling(log, low.tolist(), high.tolist())

    def forward(self, values: np.ndarray, *, scale: bool = True) -> np.ndarray:
        z = values.astype(np.float64).copy()
        for m, is_log in enumerate(self.log):
            if is_log:
                z[..., m] = np.log1p(np.maximum(z[..., m], 0.0))
        if scale:
            z = (z - np.asarray(self.low)) / (np.asarray(self.high) - np.asarray(self.low))
        return z

    def inverse(self, z: np.ndarray, *, axis: int) -> np.ndarray:
        """Undo :meth:`forward` along the metric ``axis`` of ``z``."""
        shape = [1] * z.ndim
        shape[axis] = -1
        low, high = np.reshape(self.low, shape), np.reshape(self.high, shape)
        values = z * (high - low) + low
        for m, is_log in enumerate(self.log):
            if is_log:
                sl = [slice(None)] * z.ndim
                sl[axis] = m
                values[tuple(sl)] = np.expm1(values[tuple(sl)])
        return values


class LstmCandidate:
    """Fit, backtest and forecast with the darts LSTM; save to and load from a folder (a forecaster component)."""

    name: ClassVar[str] = "lstm"
    learned: ClassVar[bool] = True

    def __init__(self, config: LstmConfig, *, scratch: Path | None = None) -> None:
        self.config = config
        self.scratch = scratch  # where fit's checkpoints and unpickled files go (None: the system temp dir)
        self.model = None
        self.scalings: list[Scaling] = []
        self.epochs_trained = 0
        self.train_seconds = 0.0
        self._predictor: pl.Trainer | None = None  # reused across forecasts: see _predict_trainer
        self._predict_lock = threading.Lock()

    # Pickled between processes (Dask workers, train -> publish): darts drops a torch model's weights when
    # pickled, so a trained model travels as the files `save` writes; the lock and trainer are rebuilt.
    def __getstate__(self) -> dict:
        return pickled_state(self, transient=("_predictor", "_predict_lock"))

    def __setstate__(self, state: dict) -> None:
        restore_pickled(self, state, LstmCandidate.load)
        self._predictor, self._predict_lock = None, threading.Lock()

    # -- building darts objects ----------------------------------------------------
    def _darts_model(self, *, with_validation: bool, work_dir: str, callbacks: Sequence[pl.Callback]):
        c = self.config
        stopping = [EarlyStopping(monitor="val_loss", patience=c.patience, min_delta=1e-5)] if with_validation else []
        return BlockRNNModel(
            model=LastStateLSTM,
            input_chunk_length=c.input_steps,
            output_chunk_length=c.horizon,
            hidden_dim=c.hidden_dim,
            n_rnn_layers=c.layers,
            dropout=c.dropout,
            likelihood=QuantileRegression(list(likelihood_levels(c.quantiles))),
            use_reversible_instance_norm=c.reversible_norm,
            add_encoders={"custom": {"future": [day_sin, day_cos, week_sin, week_cos]}},
            batch_size=c.batch_size,
            n_epochs=c.epochs,
            optimizer_kwargs={"lr": c.learning_rate},
            random_state=c.seed,
            save_checkpoints=with_validation,
            force_reset=True,
            model_name=f"prescale-lstm-{id(self)}",
            work_dir=work_dir,
            pl_trainer_kwargs={
                "accelerator": "cpu",
                "enable_progress_bar": False,
                "enable_model_summary": False,
                "logger": False,
                "callbacks": [*stopping, *callbacks],
                "deterministic": True,
            },
        )

    def _series(self, panel: Panel, scaling: Scaling, start: int, stop: int) -> list:
        """Contiguous observed runs of rows ``[start, stop)`` long enough for one window, as darts series."""
        return observed_series(panel, scaling, start, stop, min_rows=self.config.input_steps + self.config.horizon)

    def lags(self) -> list[int]:
        """Rows back of the lagged-target covariates: a day (``seasonal_lag``), a week (``weekly_lag``)."""
        c = self.config
        return [days * c.season for days, on in ((1, c.seasonal_lag), (7, c.weekly_lag)) if on]

    def _covariates(self, panel: Panel, scaling: Scaling, series: list) -> list | None:
        """Lagged-target future covariates of each series (:func:`lag_covariates`; ``None`` without lags)."""
        return lag_covariates(panel, scaling, series, lags=self.lags(), window=self.config.lag_window,
                              horizon=self.config.horizon)

    # -- the component protocol (component.py) ------------------------------------------
    @classmethod
    def train(cls, parts: Sequence[TrainPart], config: TrainConfig, *,
              scratch: Path | None = None) -> list[Trained | str]:
        """One global fit over every part (:meth:`fit_members`); a failure skips the LSTM, not the panels."""
        try:
            members = cls.fit_members(parts, config, scratch=scratch)
        except (ValueError, RuntimeError) as exc:
            return [f"training failed: {exc}"] * len(parts)
        params = {"epochs_trained": [m.epochs_trained for m in members], **members[0].params(),
                  "networks": len(members)}
        return [Trained(list(members), params, sum(m.train_seconds for m in members)) for _ in parts]

    @classmethod
    def fit_members(cls, parts: Sequence[TrainPart], config: TrainConfig, *,
                    scratch: Path | None = None) -> list[LstmCandidate]:
        """The LSTM candidate's networks: one configuration, seeds ``seed, seed + 1, ...``; ``lstm_members`` of them
        for one series, ``GLOBAL_MEMBERS`` for a global fit."""
        lstm_config = LstmConfig.from_train(config, parts[0].panel.step_seconds,
                                            train_rows=min(p.train_stop for p in parts), series=len(parts))
        members = config.lstm_members if len(parts) == 1 else min(config.lstm_members, GLOBAL_MEMBERS)
        return [cls(replace(lstm_config, seed=lstm_config.seed + i), scratch=scratch).fit(parts)
                for i in range(max(1, members))]

    def params(self) -> dict[str, Any]:
        """The configuration as MLflow parameters (tuples as lists)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self.config).items()}

    def history_needed(self) -> int:
        """The input window, plus the longest lag its covariates read back."""
        return self.config.input_steps + max(self.lags(), default=0)

    # -- fit -----------------------------------------------------------------------
    def fit(self, parts: Sequence[TrainPart], *, callbacks: Sequence[pl.Callback] = ()) -> LstmCandidate:
        """Train on every part's training rows; early-stop on its validation rows. ``callbacks``: Lightning
        callbacks added to darts' trainer (a progress reporter, or a test's fault)."""
        c = self.config
        started = time.perf_counter()
        if self.lags() and c.lag_window > min(self.lags()) - c.horizon:
            raise ValueError(
                f"lag_window {c.lag_window} rows reaches past the origin: with a lag of {min(self.lags())} rows "
                f"and a horizon of {c.horizon}, it must be at most {min(self.lags()) - c.horizon}"
            )
        self.scalings = [Scaling.fit(p.panel.values[: p.train_stop], log_target=c.log_target) for p in parts]
        train, val, train_cov, val_cov = [], [], [], []
        for part, scaling in zip(parts, self.scalings, strict=True):
            series = training_windows(self._series(part.panel, scaling, 0, part.train_stop), c.max_samples, c,
                                      spread=len(parts) > 1)
            held = self._series(part.panel, scaling, max(0, part.train_stop - c.input_steps), part.val_stop)
            train += series
            val += held
            if self.lags():
                train_cov += self._covariates(part.panel, scaling, series)
                val_cov += self._covariates(part.panel, scaling, held)
        if not train:
            raise ValueError(
                f"no stretch of training data is {c.input_steps + c.horizon} rows long "
                f"(input window {c.input_steps} + horizon {c.horizon}): give more history or a shorter input window"
            )
        # darts writes the best and last epochs' checkpoints under work_dir while it fits and reads the best one
        # back at the end (load_best): after that the trainer holds the weights, so the folder goes, also on error
        with tempfile.TemporaryDirectory(prefix="lstm-", dir=_scratch_root(self.scratch)) as work_dir:
            self.model = self._darts_model(with_validation=bool(val), work_dir=work_dir, callbacks=callbacks)
            with _quiet():
                self.model.fit(
                    train,
                    future_covariates=train_cov or None,
                    val_series=val or None,
                    val_future_covariates=val_cov or None,
                    verbose=False,
                    load_best=bool(val),
                    dataloader_kwargs={"num_workers": 0},
                )
        self.epochs_trained = int(self.model.trainer.current_epoch)
        self.train_seconds = time.perf_counter() - started
        return self

    # -- predict -------------------------------------------------------------------
    # The network is called directly (``torch_inference``: the tensors darts would build, no Lightning trainer);
    # ``predict_at_darts`` and ``forecast_darts`` are darts' own path, kept as the reference the tests hold it to.
    def input_spec(self) -> InputSpec:
        """What the network reads: the input window, the lagged targets and the target rows' calendar."""
        c = self.config
        return InputSpec(input_steps=c.input_steps, horizon=c.horizon, lags=tuple(self.lags()),
                         lag_window=c.lag_window, calendar="future")

    def predict_at(self, panel: Panel, origins: np.ndarray, *, part: int = 0) -> np.ndarray:
        """Quantile forecasts ``(W, H, M, Q)`` from each origin (each must start a valid window; others are NaN),
        all in batched forward passes."""
        return predict_origins(self.model.model, panel, self.scalings[part], origins, spec=self.input_spec(),
                               quantiles=self.config.quantiles, unpack=lambda v: self._unpack(v, panel.metrics))

    def forecast(self, panel: Panel, *, part: int = 0) -> np.ndarray:
        """Quantiles ``(H, M, Q)`` for the rows after the panel's last row (which must end L observed rows)."""
        return self.forecast_request(panel, part=part).result()

    def forecast_request(self, panel: Panel, *, part: int = 0) -> Request:
        """:meth:`forecast` before its forward pass, so a caller can batch it with others
        (``forecaster.forecast_many``); raises ``ValueError`` for a history it cannot forecast from."""
        self._check_history(panel)
        metrics = panel.metrics
        return forecast_request(self.model.model, panel, self.scalings[part], history=self.history_needed(),
                                spec=self.input_spec(), unpack=lambda v: self._unpack(v, metrics))

    def _check_history(self, panel: Panel) -> None:
        c = self.config
        tail = panel.values[-c.input_steps :]
        if len(tail) < c.input_steps or np.isnan(tail).any():
            raise ValueError(
                f"the LSTM needs the last {c.input_steps} rows observed for every metric; "
                f"got {len(tail)} rows with {int(np.isnan(tail).any(axis=1).sum())} incomplete"
            )
        need = self.history_needed()
        if len(panel) < need:
            raise ValueError(
                f"the LSTM reads past days' values as covariates: give at least {need} rows (the longest lag "
                f"{max(self.lags(), default=0)} plus the input window {c.input_steps}), got {len(panel)}"
            )

    def predict_at_darts(self, panel: Panel, origins: np.ndarray, *, part: int = 0) -> np.ndarray:
        """:meth:`predict_at` through darts' historical forecasts (the reference for the direct path)."""
        c = self.config
        scaling = self.scalings[part]
        out = np.full((len(origins), c.horizon, len(panel.metrics), len(c.quantiles)), np.nan)
        if len(origins) == 0:
            return out
        series = self._series(panel, scaling, max(0, int(origins.min()) - c.input_steps + 1),
                              min(len(panel), int(origins.max()) + c.horizon + 1))
        covs = self._covariates(panel, scaling, series)
        values, starts = backtest_values(self.model, series, future=covs, horizon=c.horizon)
        position = {ts: i for i, ts in enumerate(_naive(panel.index[origins + 1]))}
        for v, start in zip(values, starts, strict=True):
            i = position.get(pd.Timestamp(start))
            if i is not None:
                out[i] = self._unpack(v, panel.metrics)
        return scaling.inverse(out, axis=2)

    def forecast_darts(self, panel: Panel, *, part: int = 0) -> np.ndarray:
        """:meth:`forecast` through darts' ``predict`` (the reference for the direct path)."""
        self._check_history(panel)
        c = self.config
        scaling = self.scalings[part]
        rows = slice(len(panel) - c.input_steps, len(panel))
        series = TimeSeries.from_times_and_values(
            _naive(panel.index[rows]), scaling.forward(panel.values)[rows].astype(np.float32),
            columns=list(panel.metrics),
        )
        covs = self._covariates(panel, scaling, [series])
        with _quiet(), self._predict_lock:
            pred = self.model.predict(c.horizon, series=series, future_covariates=covs[0] if covs else None,
                                      trainer=self._predict_trainer(), predict_likelihood_parameters=True,
                                      verbose=False, show_warnings=False)
        return scaling.inverse(self._unpack(pred.values(), panel.metrics)[None], axis=2)[0]

    def _predict_trainer(self) -> pl.Trainer:
        """One Lightning trainer for every forecast of this model: building one per call (what darts does
        without it) scans the installed packages' entry points, about 25 ms of a 35 ms forecast."""
        if self._predictor is None:
            params = {k: v for k, v in self.model.trainer_params.items() if k != "callbacks"}
            self._predictor = pl.Trainer(**{**params, "logger": False, "enable_progress_bar": False,
                                            "enable_model_summary": False, "enable_checkpointing": False})
        return self._predictor

    def _unpack(self, values: np.ndarray, metrics: Sequence[str]) -> np.ndarray:
        """darts' ``(H, M*Q')`` likelihood-parameter columns (metric-major) -> ``(H, M, Q)``, sorted in q."""
        return unpack_quantiles(values, len(metrics), self.config.quantiles)

    # -- persistence -----------------------------------------------------------------
    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save(str(folder / DARTS_FILE))
        state = {"config": asdict(self.config), "scalings": [asdict(s) for s in self.scalings],
                 "epochs_trained": self.epochs_trained, "train_seconds": self.train_seconds}
        (folder / STATE_FILE).write_text(json.dumps(state, indent=1))

    @classmethod
    def load(cls, folder: Path) -> LstmCandidate:
        state = json.loads((folder / STATE_FILE).read_text())
        config = {**ADDED_LATER, **state["config"]}
        config["quantiles"] = tuple(config["quantiles"])
        candidate = cls(LstmConfig(**config))
        with _quiet(), safe_globals(SAFE_GLOBALS):
            candidate.model = BlockRNNModel.load(str(folder / DARTS_FILE), map_location="cpu")
            candidate.model.trainer_params.update({"logger": False, "enable_progress_bar": False})
        candidate.scalings = [Scaling(**s) for s in state["scalings"]]
        candidate.epochs_trained = state["epochs_trained"]
        candidate.train_seconds = state["train_seconds"]
        return candidate


def lag_covariates(panel: Panel, scaling: Scaling, series: list, *, lags: Sequence[int], window: int,
                   horizon: int) -> list | None:
    """Lagged-target future covariates spanning each series plus the horizon (``None`` without lags).

    Row ``t`` holds the (scaled) values around rows ``t - lag`` (see :func:`lagged`): known at any
    origin, since every lag is longer than the horizon plus the smoothing half-width. Missing source
    rows take the nearest value of the same window.
    """
    if not lags:
        return None
    z = scaling.forward(panel.values)
    out = []
    for s in series:
        start = panel.index.get_loc(s.start_time().tz_localize("UTC"))
        rows = np.arange(start, start + len(s) + horizon)  # the last rows may lie past the panel's end
        values = lagged(z, rows, lags, window=window)
        values = pd.DataFrame(values).ffill().bfill().fillna(0.5).to_numpy()
        index = pd.date_range(panel.index[start], periods=len(rows), freq=f"{panel.step_seconds}s")
        columns = [f"lag{lag}_{m}" for lag in lags for m in panel.metrics]
        out.append(TimeSeries.from_times_and_values(_naive(index), values.astype(np.float32), columns=columns))
    return out


def observed_series(panel: Panel, scaling: Scaling, start: int, stop: int, *, min_rows: int) -> list:
    """The contiguous observed runs of rows ``[start, stop)`` at least ``min_rows`` long, scaled, as darts series."""
    z = scaling.forward(panel.values)
    out = []
    for a, b in runs(panel.observed[start:stop]):
        if b - a >= min_rows:
            rows = slice(start + a, start + b)
            out.append(TimeSeries.from_times_and_values(_naive(panel.index[rows]), z[rows].astype(np.float32),
                                                        columns=list(panel.metrics)))
    return out


def backtest_values(model, series: list, *, future: list | None = None,
                    horizon: int) -> tuple[list[np.ndarray], list]:
    """Every forecast of every window of ``series`` by a fitted darts torch ``model``: ``(H, M*Q)`` arrays of
    its likelihood parameters and their first timestamps.

    darts' optimised historical forecasts, minus the wrapping of each forecast in a ``TimeSeries``
    (that wrapping took 3.5 ms per window: a minute for a month of one-minute data). Uses darts'
    internal helpers; if they move, falls back to the public ``historical_forecasts``.
    """
    h = horizon
    covs = future
    with _quiet():
        try:
            from darts.utils.historical_forecasts.optimized_historical_forecasts_torch import (
                _create_dataset_bounds,
            )
            from darts.utils.historical_forecasts.utils import _process_historical_forecast_input

            series, past, future = _process_historical_forecast_input(
                model=model, series=series, past_covariates=None, future_covariates=covs,
                forecast_horizon=h,
            )
            bounds, _ = _create_dataset_bounds(
                model=model, series=series, past_covariates=past, future_covariates=future, start=None,
                start_format="value", forecast_horizon=h, stride=1, overlap_end=False, show_warnings=False,
            )
            dataset = model._build_inference_dataset(
                n=h, series=series, past_covariates=past, future_covariates=future, stride=1, bounds=bounds
            )
            values, _, starts = model.predict_from_dataset(
                n=h, dataset=dataset, predict_likelihood_parameters=True, values_only=True, verbose=False
            )
            return [v[..., 0] for v in values], list(starts)
        except (ImportError, AttributeError, TypeError):  # darts moved its internals: the slow, public way
            forecasts = model.historical_forecasts(
                series, future_covariates=covs, forecast_horizon=h, stride=1, retrain=False,
                last_points_only=False, predict_likelihood_parameters=True, show_warnings=False, verbose=False,
            )
    if series and not isinstance(forecasts[0], list):
        forecasts = [forecasts]
    flat = [f for per_series in forecasts for f in per_series]
    return [f.values() for f in flat], [f.start_time() for f in flat]


def likelihood_levels(quantiles: Sequence[float]) -> tuple[float, ...]:
    """The levels darts' ``QuantileRegression`` fits: ``quantiles``, their mirrors ``1 - tau`` and the median.

    darts requires levels symmetric around 0.5 (it raises on ``(.., 0.95, 0.99, 0.995)`` without ``0.005``
    and ``0.01``), so the network also learns the mirrored lower tail, which costs one output each and is
    dropped by :func:`unpack_quantiles`. A symmetric ``quantiles`` (what models saved before carry) is unchanged.
    """
    return tuple(sorted({round(float(q), 9) for q in quantiles} | {round(1.0 - float(q), 9) for q in quantiles}
                        | {0.5}))


def unpack_quantiles(values: np.ndarray, metrics: int, quantiles: Sequence[float]) -> np.ndarray:
    """darts' ``(..., M * Q')`` likelihood columns (metric-major, Q' = :func:`likelihood_levels`) ->
    ``(..., M, Q)`` with only ``quantiles``, in their order, sorted across levels (monotone)."""
    levels = likelihood_levels(quantiles)
    full = np.sort(values.reshape(*values.shape[:-1], metrics, len(levels)), axis=-1)
    return full[..., [levels.index(round(float(q), 9)) for q in quantiles]]


def samples_per_series(max_samples: int, *, series: int, season: int) -> int:
    """Each series' share of a fit's training windows: ``max_samples`` for one series; over ``n`` series,
    ``min(n, GLOBAL_BUDGET_SERIES) x max_samples / n``, at least ``GLOBAL_FLOOR_DAYS`` of windows.

    So a global fit's cost stops growing with ``n`` past ``GLOBAL_BUDGET_SERIES`` series until the floor
    binds (a fleet of hundreds of short series still gets two days of each). Measured on the 20 Azure V1
    VMs (``benchmarks/forecast.py``): see the module docstring.
    """
    if series <= 1:
        return max_samples
    return max(math.ceil(max_samples * min(series, GLOBAL_BUDGET_SERIES) / series), round(GLOBAL_FLOOR_DAYS * season))


def lagged(values: np.ndarray, rows: np.ndarray, lags: Sequence[int], *, window: int = 0) -> np.ndarray:
    """``(len(rows), len(lags) * M)``: per lag, the mean of the observed ``values`` in rows
    ``r - lag - window .. r - lag + window`` for each ``r`` in ``rows`` (NaN where none is observed or
    ``r - lag`` lies outside ``values``). The window is centred: it reads up to ``r - lag + window``, so
    it is known at origin ``t`` for every ``r <= t + H`` when ``lag >= H + window``.
    """
    n = len(values)
    source = values
    if window > 0:
        source = pd.DataFrame(values).rolling(2 * window + 1, center=True, min_periods=1).mean().to_numpy()
    blocks = []
    for lag in lags:
        src = np.asarray(rows) - lag
        inside = (src >= 0) & (src < n)
        blocks.append(np.where(inside[:, None], source[np.clip(src, 0, n - 1)], np.nan))
    return np.concatenate(blocks, axis=1)


def training_windows(series: list, max_samples: int, config: Any, *, spread: bool) -> list:
    # config: an LstmConfig or darts_global.GlobalConfig (input_steps, horizon, season)
    """At most ``max_samples`` training windows of ``series`` (contiguous darts series, oldest first).

    One series' fit keeps the newest windows (:func:`_newest`). A global fit (``spread``), whose budget per
    series is small, keeps day-long pieces spread evenly over the whole training span instead: the newest
    1,000 windows alone (3.5 days at 5 minutes) cost the 20 Azure VMs 9.5% in MAE (median) against all of them.
    """
    window = config.input_steps + config.horizon
    counts = [max(0, len(s) - window + 1) for s in series]
    total = sum(counts)
    if not spread or total <= max_samples:
        return _newest(series, max_samples, config)
    pieces = max(1, math.ceil(max_samples / max(1, config.season)))
    size = max_samples // pieces
    wanted = []  # global window ranges [a, b), newest piece ending at the newest window
    for j in range(pieces):
        end = total - round(j * (total - size) / max(1, pieces - 1)) if pieces > 1 else total
        wanted.append((max(0, end - size), end))
    kept, offset = [], 0
    for s, n in zip(series, counts, strict=True):
        for a, b in sorted(wanted):
            lo, hi = max(a, offset), min(b, offset + n)
            if lo < hi:
                kept.append(s[lo - offset: hi - offset + window - 1])
        offset += n
    return kept


def _newest(series: list, max_samples: int, config: LstmConfig) -> list:
    """Keep the newest series (trimmed) so that at most ``max_samples`` training windows remain."""
    window = config.input_steps + config.horizon
    kept, budget = [], max_samples
    for s in reversed(series):
        if budget <= 0:
            break
        samples = len(s) - window + 1
        if samples > budget:
            s = s[-(budget + window - 1) :]
            samples = budget
        kept.append(s)
        budget -= samples
    return list(reversed(kept))


def _naive(index: pd.DatetimeIndex) -> pd.DatetimeIndex:
    """darts drops time zones (with a warning): hand it UTC wall time, with its frequency set."""
    naive = index.tz_convert("UTC").tz_localize(None) if index.tz is not None else index
    if naive.freq is None and len(naive) >= 2:
        naive = pd.DatetimeIndex(naive, freq=pd.tseries.frequencies.to_offset(naive[1] - naive[0]))
    return naive


def pickled_state(component: Any, *, transient: tuple[str, ...] = ()) -> dict:
    """A darts-backed component's pickle state: its attributes when unfitted, else the files ``save`` writes
    (darts drops a torch model's weights when pickled). ``transient`` attributes are left out."""
    if component.model is None:
        return {"unfitted": {k: v for k, v in component.__dict__.items() if k not in transient}}
    with tempfile.TemporaryDirectory(prefix="pickling-", dir=_scratch_root(component.scratch)) as tmp:
        component.save(Path(tmp))
        return {"files": {p.name: p.read_bytes() for p in Path(tmp).iterdir() if p.is_file()},
                "scratch": component.scratch}


def restore_pickled(component: Any, state: dict, load: Callable[[Path], Any], *, darts_file: str = DARTS_FILE) -> None:
    """The inverse of :func:`pickled_state`: the files go to a folder that lives as long as ``component``
    (darts reads the checkpoint again when the model is saved or shipped on without having been trained here)."""
    if "unfitted" in state:
        component.__dict__.update(state["unfitted"])
        return
    scratch = state.get("scratch")
    folder = Path(tempfile.mkdtemp(prefix="pickled-", dir=_scratch_root(scratch)))
    for name, data in state["files"].items():
        (folder / name).write_bytes(data)
    component.__dict__.update(load(folder).__dict__)
    component.scratch = scratch
    checkpoint = folder / f"{darts_file}.ckpt"
    if checkpoint.is_file():  # darts' load() leaves this unset, and save() then writes no weights
        component.model.load_ckpt_path = str(checkpoint)
    weakref.finalize(component, shutil.rmtree, str(folder), True)


def _scratch_root(scratch: Path | None) -> Path | None:
    """``scratch`` created if missing (``None``: let :mod:`tempfile` choose the system temp dir)."""
    if scratch is not None:
        Path(scratch).mkdir(parents=True, exist_ok=True)
    return scratch


class _quiet:
    """Silence Lightning's and darts' chatter (GPU probes, tips) during fit and predict."""

    names = ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric", "darts")

    def __enter__(self):
        self._levels = {n: logging.getLogger(n).level for n in self.names}
        for n in self.names:
            logging.getLogger(n).setLevel(logging.ERROR)
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.simplefilter("ignore")
        return self

    def __exit__(self, *exc):
        self._warnings.__exit__(*exc)
        for n, level in self._levels.items():
            logging.getLogger(n).setLevel(level)
        return False
