"""Optional global candidates from darts: TiDE, N-HiTS and TSMixer, each one network over every panel at once.

Issue 18 asks for candidates that learn across the series of a fleet and compete with the LSTM on the same
score. Each class here wraps one darts torch model (:class:`TideCandidate` ``tide``: ``TiDEModel``;
:class:`NHitsCandidate` ``nhits``: ``NHiTSModel``; :class:`TsMixerCandidate` ``tsmixer``: ``TSMixerModel``)
behind the component protocol (``component.py``). They are ``optional``: ``models.train`` fits them only when
named in ``TrainConfig.extra_candidates``, since each costs a network's training.

How data moves, the same as the LSTM's (``lstm.py``, whose helpers this module reuses):

- ``train`` fits ONE model on the training rows of every part (a list of darts series, one per observed
  run), each part min-max scaled by its own training rows (``lstm.Scaling``; ``part`` picks it back), then
  darts' reversible instance norm per window;
- inputs: the last ``L`` rows of every metric; calendar covariates (time of day, day of week, sine/cosine,
  darts ``add_encoders`` so any series rebuilds them): of the target rows for TiDE and TSMixer (future
  covariates), of the input rows for N-HiTS (past covariates only in darts). TiDE and TSMixer also read the
  LSTM's lagged targets of the target rows (a day and, with two weeks of training rows, a week earlier, each
  averaged over +-``lag_window_minutes``: ``lstm.lag_covariates``); N-HiTS cannot take future covariates;
- output: the quantiles of a darts ``QuantileRegression`` likelihood (pinball loss) at
  ``lstm.likelihood_levels(config.quantiles)`` (darts wants them symmetric), returned at ``config.quantiles``
  in that order, sorted so they are monotone;
- budget: the LSTM's global budget (``lstm.samples_per_series``: ``max_samples`` for one series, a bounded
  total split across several, in day-long pieces spread over each training span: ``lstm.training_windows``),
  up to ``epochs`` epochs,
  early stopping on the parts' validation rows with the best epoch's weights kept; CPU, the caller's
  torch threads, fixed seed. darts' checkpoints live in a fresh folder under ``scratch``, removed after;
- ``predict_at`` and ``forecast`` call the network directly, every origin of a panel in batched passes
  (``torch_inference``: the tensors darts' ``predict`` would build, no Lightning trainer); ``predict_at_darts``
  and ``forecast_darts`` keep darts' own path as the reference.

Measured (held-out MAE of the raw median, fit seconds on this 2-core host, on the series of
``benchmarks/forecast.py``): on the 20 Azure V1 VMs, one global fit each, the median over the VMs of the
MAE ratio to the global LSTM is 1.07 (TiDE, 36 s), 1.03 (N-HiTS, 141 s), 1.09 (TSMixer, 62 s; the LSTM
102 s), and to SES 0.985 / 0.953 / 1.043 (the LSTM 0.976); on NASA 5-minute, MAE 35.35 (TiDE, 19 s),
35.98 (N-HiTS, 18 s), 35.65 (TSMixer, 17 s) against SES 36.62 and the LSTM's 34.61 (three networks). They
stop early (4-15 epochs) and do not beat the LSTM on these data: hence optional.

The networks are kept small for a 2-core host (widths from ``TrainConfig.hidden_dim``); ``MODEL_KWARGS``
in each class says how. Deliberately not here: registration (``components.py``), blends, calibration.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd
from darts.models import NHiTSModel, TiDEModel, TSMixerModel
from darts.utils.likelihood_models import QuantileRegression
from darts.utils.serialization import safe_globals
from pytorch_lightning.callbacks import EarlyStopping

from models.component import Trained, TrainPart
from models.lstm import (
    SAFE_GLOBALS,
    Scaling,
    _naive,
    _quiet,
    _scratch_root,
    backtest_values,
    day_cos,
    day_sin,
    lag_covariates,
    likelihood_levels,
    observed_series,
    pickled_state,
    restore_pickled,
    samples_per_series,
    training_windows,
    unpack_quantiles,
    week_cos,
    week_sin,
)
from models.series import Panel
from models.torch_inference import InputSpec, Request, forecast_request, predict_origins

if TYPE_CHECKING:
    from models.train import TrainConfig

DARTS_FILE = "model.pt"
STATE_FILE = "state.json"
CALENDAR = [day_sin, day_cos, week_sin, week_cos]


@dataclass(frozen=True, kw_only=True)
class GlobalConfig:
    """One fit's shape and budget, resolved for one step from ``TrainConfig`` (no defaults of its own).
    ``max_samples`` is per series (already split across the fit's series). Saved with the model."""

    input_steps: int
    horizon: int
    quantiles: tuple[float, ...]
    width: int
    epochs: int
    batch_size: int
    learning_rate: float
    patience: int
    max_samples: int
    seed: int
    lags: tuple[int, ...]  # rows back of the lagged-target future covariates (empty: none)
    lag_window: int
    season: int  # rows a day

    @classmethod
    def from_train(cls, config: TrainConfig, step_seconds: int, *, series: int, train_rows: int,
                   future: bool) -> GlobalConfig:
        """``future``: the model takes future covariates (then the LSTM's lags, as ``LstmConfig.from_train``)."""
        inputs, horizon = config.steps(step_seconds)
        season = max(1, round(86_400 / step_seconds))
        lags = [days * season for days, on in ((1, config.seasonal_lag), (7, config.weekly_lag and
                                                                          train_rows >= 14 * season)) if on]
        window = max(0, min(round(config.lag_window_minutes * 60 / step_seconds), season - horizon))
        return cls(input_steps=inputs, horizon=horizon, quantiles=tuple(config.quantiles), width=config.hidden_dim,
                   epochs=config.epochs, batch_size=config.batch_size, learning_rate=config.learning_rate,
                   patience=config.patience, seed=config.seed,
                   max_samples=samples_per_series(config.max_samples, series=series, season=season),
                   lags=tuple(lags) if future else (), lag_window=window if future else 0, season=season)


class DartsGlobal:
    """A darts torch model fitted on every part at once (see the module docstring); subclasses name the model."""

    name: ClassVar[str]
    learned: ClassVar[bool] = True
    optional: ClassVar[bool] = True
    darts_class: ClassVar[type]
    calendar: ClassVar[str]  # "future": the target rows' calendar; "past": the input rows'

    def __init__(self, config: GlobalConfig, *, scratch: Path | None = None) -> None:
        self.config = config
        self.scratch = scratch
        self.model = None
        self.scalings: list[Scaling] = []
        self.epochs_trained = 0
        self.train_seconds = 0.0

    @classmethod
    def model_kwargs(cls, c: GlobalConfig) -> dict[str, Any]:
        """The architecture's own arguments (sizes) for this config."""
        raise NotImplementedError(f"{cls.__name__} must say its darts model's sizes")

    # Pickled between processes (Dask workers, train -> publish): a fitted model travels as the files `save`
    # writes (lstm.pickled_state, as LstmCandidate does).
    def __getstate__(self) -> dict:
        return pickled_state(self)

    def __setstate__(self, state: dict) -> None:
        restore_pickled(self, state, type(self).load, darts_file=DARTS_FILE)

    # -- the component protocol -----------------------------------------------------------------
    @classmethod
    def train(cls, parts: Sequence[TrainPart], config: TrainConfig, *,
              scratch: Path | None = None) -> list[Trained | str]:
        """One global fit over every part; a failure skips this candidate on every part, with the reason."""
        gc = GlobalConfig.from_train(config, parts[0].panel.step_seconds, series=len(parts),
                                     train_rows=min(p.train_stop for p in parts), future=cls.calendar == "future")
        try:
            model = cls(gc, scratch=scratch).fit(parts)
        except (ValueError, RuntimeError) as exc:
            return [f"training failed: {exc}"] * len(parts)
        params = {**model.params(), "epochs_trained": model.epochs_trained, "series": len(parts)}
        return [Trained([model], params, model.train_seconds) for _ in parts]

    def params(self) -> dict[str, Any]:
        return {"model": self.darts_class.__name__,
                **{k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self.config).items()}}

    def history_needed(self) -> int:
        """The input window, plus the longest lag its covariates read back."""
        return self.config.input_steps + max(self.config.lags, default=0)

    def _covariates(self, panel: Panel, scaling: Scaling, series: list) -> list | None:
        c = self.config
        return lag_covariates(panel, scaling, series, lags=c.lags, window=c.lag_window, horizon=c.horizon)

    def fit(self, parts: Sequence[TrainPart]) -> DartsGlobal:
        """Train on every part's training rows (the newest ``max_samples`` windows of each), early-stop on
        their validation rows."""
        c = self.config
        started = time.perf_counter()
        window = c.input_steps + c.horizon
        self.scalings = [Scaling.fit(p.panel.values[: p.train_stop], log_target=False) for p in parts]
        train, val, train_cov, val_cov = [], [], [], []
        for part, scaling in zip(parts, self.scalings, strict=True):
            fit_rows = training_windows(observed_series(part.panel, scaling, 0, part.train_stop, min_rows=window),
                                        c.max_samples, c, spread=len(parts) > 1)
            held = observed_series(part.panel, scaling, max(0, part.train_stop - c.input_steps), part.val_stop,
                                   min_rows=window)
            train, val = train + fit_rows, val + held
            if c.lags:
                train_cov += self._covariates(part.panel, scaling, fit_rows)
                val_cov += self._covariates(part.panel, scaling, held)
        if not train:
            raise ValueError(f"no stretch of training data is {window} rows long (input window {c.input_steps} "
                             f"+ horizon {c.horizon}): give more history or a shorter input window")
        with tempfile.TemporaryDirectory(prefix=f"{self.name}-", dir=_scratch_root(self.scratch)) as work_dir:
            self.model = self._darts_model(with_validation=bool(val), work_dir=work_dir)
            with _quiet():
                self.model.fit(train, future_covariates=train_cov or None, val_series=val or None,
                               val_future_covariates=val_cov or None, verbose=False, load_best=bool(val),
                               dataloader_kwargs={"num_workers": 0})
        self.epochs_trained = int(self.model.trainer.current_epoch)
        self.train_seconds = time.perf_counter() - started
        return self

    def _darts_model(self, *, with_validation: bool, work_dir: str):
        c = self.config
        stopping = [EarlyStopping(monitor="val_loss", patience=c.patience, min_delta=1e-5)] if with_validation else []
        return self.darts_class(
            input_chunk_length=c.input_steps,
            output_chunk_length=c.horizon,
            likelihood=QuantileRegression(list(likelihood_levels(c.quantiles))),
            use_reversible_instance_norm=True,
            add_encoders={"custom": {self.calendar: CALENDAR}},
            batch_size=c.batch_size,
            n_epochs=c.epochs,
            optimizer_kwargs={"lr": c.learning_rate},
            random_state=c.seed,
            save_checkpoints=with_validation,
            force_reset=True,
            model_name=f"prescale-{self.name}-{id(self)}",
            work_dir=work_dir,
            pl_trainer_kwargs={"accelerator": "cpu", "enable_progress_bar": False, "enable_model_summary": False,
                               "logger": False, "callbacks": stopping, "deterministic": True},
            **self.model_kwargs(c),
        )

    # The network is called directly (``torch_inference``, as the LSTM does); ``predict_at_darts`` and
    # ``forecast_darts`` are darts' own path, kept as the reference the tests hold it to.
    def input_spec(self) -> InputSpec:
        c = self.config
        return InputSpec(input_steps=c.input_steps, horizon=c.horizon, lags=tuple(c.lags), lag_window=c.lag_window,
                         calendar=self.calendar)

    def predict_at(self, panel: Panel, origins: np.ndarray, *, part: int = 0) -> np.ndarray:
        """Quantiles ``(W, H, M, Q)`` from each origin (each must start a valid window), in batched passes."""
        quantiles, metrics = self.config.quantiles, len(panel.metrics)
        return predict_origins(self.model.model, panel, self.scalings[part], origins, spec=self.input_spec(),
                               quantiles=quantiles, unpack=lambda v: unpack_quantiles(v, metrics, quantiles))

    def forecast(self, panel: Panel, *, part: int = 0) -> np.ndarray:
        """Quantiles ``(H, M, Q)`` for the rows after the panel's last row (which must end L observed rows)."""
        return self.forecast_request(panel, part=part).result()

    def forecast_request(self, panel: Panel, *, part: int = 0) -> Request:
        """:meth:`forecast` before its forward pass (for ``forecaster.forecast_many``'s batches)."""
        self._check_history(panel)
        quantiles, metrics = self.config.quantiles, len(panel.metrics)
        return forecast_request(self.model.model, panel, self.scalings[part], history=self.history_needed(),
                                spec=self.input_spec(), unpack=lambda v: unpack_quantiles(v, metrics, quantiles))

    def _check_history(self, panel: Panel) -> None:
        c = self.config
        tail = panel.values[-c.input_steps:]
        if len(tail) < c.input_steps or np.isnan(tail).any():
            raise ValueError(f"{self.name} needs the last {c.input_steps} rows observed for every metric; got "
                             f"{len(tail)} rows with {int(np.isnan(tail).any(axis=1).sum())} incomplete")
        if len(panel) < self.history_needed():
            raise ValueError(f"{self.name} reads past days' values as covariates: give at least "
                             f"{self.history_needed()} rows, got {len(panel)}")

    def predict_at_darts(self, panel: Panel, origins: np.ndarray, *, part: int = 0) -> np.ndarray:
        """:meth:`predict_at` through darts' historical forecasts (the reference for the direct path)."""
        c = self.config
        scaling = self.scalings[part]
        out = np.full((len(origins), c.horizon, len(panel.metrics), len(c.quantiles)), np.nan)
        if len(origins) == 0:
            return out
        series = observed_series(panel, scaling, max(0, int(origins.min()) - c.input_steps + 1),
                                 min(len(panel), int(origins.max()) + c.horizon + 1),
                                 min_rows=c.input_steps + c.horizon)
        values, starts = backtest_values(self.model, series, future=self._covariates(panel, scaling, series),
                                         horizon=c.horizon)
        position = {ts: i for i, ts in enumerate(_naive(panel.index[origins + 1]))}
        for v, start in zip(values, starts, strict=True):
            i = position.get(pd.Timestamp(start))
            if i is not None:
                out[i] = unpack_quantiles(v, len(panel.metrics), c.quantiles)
        return scaling.inverse(out, axis=2)

    def forecast_darts(self, panel: Panel, *, part: int = 0) -> np.ndarray:
        """:meth:`forecast` through darts' ``predict`` (the reference for the direct path)."""
        self._check_history(panel)
        c = self.config
        scaling = self.scalings[part]
        series = observed_series(panel, scaling, len(panel) - c.input_steps, len(panel), min_rows=c.input_steps)
        covs = self._covariates(panel, scaling, series)
        with _quiet():
            pred = self.model.predict(c.horizon, series=series[0], future_covariates=covs[0] if covs else None,
                                      predict_likelihood_parameters=True, verbose=False, show_warnings=False)
        return scaling.inverse(unpack_quantiles(pred.values(), len(panel.metrics), c.quantiles)[None], axis=2)[0]

    # -- persistence ---------------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save(str(folder / DARTS_FILE))
        state = {"name": self.name, "config": asdict(self.config), "scalings": [asdict(s) for s in self.scalings],
                 "epochs_trained": self.epochs_trained, "train_seconds": self.train_seconds}
        (folder / STATE_FILE).write_text(json.dumps(state, indent=1))

    @classmethod
    def load(cls, folder: Path) -> DartsGlobal:
        state = json.loads((folder / STATE_FILE).read_text())
        if state.get("name") != cls.name:
            raise ValueError(f"{folder} holds a {state.get('name')!r} model, not {cls.name!r}")
        config = state["config"]
        candidate = cls(GlobalConfig(**{**config, "quantiles": tuple(config["quantiles"]),
                                        "lags": tuple(config["lags"])}))
        with _quiet(), safe_globals(SAFE_GLOBALS):
            candidate.model = cls.darts_class.load(str(folder / DARTS_FILE), map_location="cpu")
            candidate.model.trainer_params.update({"logger": False, "enable_progress_bar": False})
        candidate.scalings = [Scaling(**s) for s in state["scalings"]]
        candidate.epochs_trained = state["epochs_trained"]
        candidate.train_seconds = state["train_seconds"]
        return candidate


class TideCandidate(DartsGlobal):
    """darts ``TiDEModel`` (an MLP encoder-decoder with the target rows' calendar)."""

    name: ClassVar[str] = "tide"
    darts_class: ClassVar[type] = TiDEModel
    calendar: ClassVar[str] = "future"

    @classmethod
    def model_kwargs(cls, c: GlobalConfig) -> dict[str, Any]:
        return {"hidden_size": 2 * c.width, "num_encoder_layers": 1, "num_decoder_layers": 1,
                "decoder_output_dim": 8, "temporal_decoder_hidden": c.width // 2, "dropout": 0.1}


class NHitsCandidate(DartsGlobal):
    """darts ``NHiTSModel`` (hierarchical interpolation stacks; the input rows' calendar)."""

    name: ClassVar[str] = "nhits"
    darts_class: ClassVar[type] = NHiTSModel
    calendar: ClassVar[str] = "past"

    @classmethod
    def model_kwargs(cls, c: GlobalConfig) -> dict[str, Any]:
        return {"num_stacks": 3, "num_blocks": 1, "num_layers": 2, "layer_widths": 4 * c.width, "dropout": 0.1}


class TsMixerCandidate(DartsGlobal):
    """darts ``TSMixerModel`` (time- and feature-mixing MLPs with the target rows' calendar)."""

    name: ClassVar[str] = "tsmixer"
    darts_class: ClassVar[type] = TSMixerModel
    calendar: ClassVar[str] = "future"

    @classmethod
    def model_kwargs(cls, c: GlobalConfig) -> dict[str, Any]:
        return {"hidden_size": c.width, "ff_size": 2 * c.width, "num_blocks": 2, "dropout": 0.1}
