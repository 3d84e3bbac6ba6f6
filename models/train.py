"""Training one (app, phase): split, fit every candidate, backtest, calibrate, score, rank.

**Split** (by time, per panel of ``T`` rows)::

    [ train ................ | validation | held-out tail ]
      0                   train_stop   val_stop         T

The held-out tail is the last ``holdout_fraction`` of the rows, the validation
part the ``validation_fraction`` before it. Training rows fit the parameters
(LSTM weights, smoothing constants). Validation rows early-stop the LSTM, choose
the ensemble weights and start the conformal calibration. The tail only scores.

**Windows.** Rolling origins at every row of the tail (stride 1): origin ``t``,
input ``t-L+1..t``, targets ``t+1..t+H``, ``H`` the production horizon (default
15 minutes at the data's step). Only windows fully observed are used, and the
same windows score every candidate (``series.valid_origins``).

**Candidates.** The four baselines (``baselines.py``), the LSTM (``lstm.py``: the
mean of ``lstm_members`` networks' quantiles, seeds ``seed, seed + 1, ...``, which
cuts the seed-to-seed spread of about 1% in MAE) and,
when enabled, an ensemble ``lstm+<b>`` of the LSTM and the baseline ``b`` that did
best on validation, with per-step weights ``w_h`` in {0, 0.05, .., 1} minimising the
validation MASE of ``w_h f_lstm + (1 - w_h) f_b``. Each candidate's raw quantiles
are calibrated (``conformal.py``), then scored (``scoring.py``).

**Ranking.** The best candidate has the lowest MASE on the tail (ties: the
simpler one, baselines before the LSTM). A baseline winning is an honest result.

Bad input never raises out of :func:`train_panels`: a panel that cannot be
trained (too short, constant, too gappy) comes back with ``skipped`` set to the
reason, so a flow over many apps carries on with the others.

This module reads no settings and does no I/O of its own: the caller passes a
:class:`TrainConfig` (see :func:`TrainConfig.from_settings`), the panels and the
``scratch`` folder where darts keeps the LSTM's checkpoints while it fits.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.baselines import BASELINES, BaselineError, available_baselines
from models.conformal import calibrate
from models.forecaster import Forecaster
from models.lstm import LstmCandidate, LstmConfig, TrainPart
from models.scoring import Scores, persistence_scale, score
from models.series import Panel, runs, valid_origins, windows

BASELINE_ORDER = ("persistence", "seasonal_naive", "ses", "holt_winters")

PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    # tests and the demo: a tiny network, a couple of epochs, few samples
    "small": {"hidden_dim": 8, "epochs": 3, "patience": 1, "max_samples": 1_500, "batch_size": 64,
              "baseline_fit_days": 3.0, "lstm_members": 1},
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training needs; horizons and windows in minutes, converted per panel step."""

    horizon_minutes: float = 15.0
    input_minutes: float = 240.0
    max_input_steps: int = 64
    quantiles: tuple[float, ...] = (0.05, 0.1, 0.5, 0.9, 0.95)
    holdout_fraction: float = 0.2
    validation_fraction: float = 0.1
    min_holdout_windows: int = 12
    max_gap_fraction: float = 0.5
    max_fill_steps: int = 3
    hidden_dim: int = 32
    layers: int = 1
    dropout: float = 0.0
    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 3e-3
    patience: int = 3
    max_samples: int = 20_000
    log_target: bool = False
    seasonal_lag: bool = True
    weekly_lag: bool = True
    lag_window_minutes: float = 30.0
    baseline_fit_days: float = 14.0
    ensemble: bool = True
    conformal_lr: float = 0.1
    seed: int = 0
    lstm_members: int = 3
    threads: int = 1

    @staticmethod
    def preset(name: str, **overrides: Any) -> TrainConfig:
        """The defaults, then the named preset, then ``overrides``."""
        return replace(TrainConfig(), **{**PRESETS[_known(name)], **overrides})

    @staticmethod
    def from_settings(forecast: Any, *, preset: str | None = None) -> TrainConfig:
        """Build from a ``ForecastSettings`` group; the preset (``preset`` or the group's own) wins."""
        fields = {k: getattr(forecast, k) for k in TrainConfig.__dataclass_fields__ if hasattr(forecast, k)}
        if "quantiles" in fields:
            fields["quantiles"] = tuple(sorted(float(q) for q in fields["quantiles"]))
        name = preset or getattr(forecast, "preset", "default")
        return replace(TrainConfig(**fields), **PRESETS[_known(name)])

    def steps(self, step_seconds: int) -> tuple[int, int]:
        """``(L, H)``: input window and horizon in rows of ``step_seconds``."""
        horizon = max(1, round(self.horizon_minutes * 60 / step_seconds))
        inputs = max(2 * horizon, min(self.max_input_steps, round(self.input_minutes * 60 / step_seconds)))
        return inputs, horizon

    def lstm(self, step_seconds: int, *, train_rows: int | None = None) -> LstmConfig:
        """The LSTM's configuration at this step; the weekly lag only with two weeks of training rows or more."""
        inputs, horizon = self.steps(step_seconds)
        season = max(1, round(86_400 / step_seconds))
        weekly = self.weekly_lag and train_rows is not None and train_rows >= 14 * season
        window = max(0, min(round(self.lag_window_minutes * 60 / step_seconds), season - horizon))
        return LstmConfig(
            input_steps=inputs, horizon=horizon, quantiles=self.quantiles, hidden_dim=self.hidden_dim,
            layers=self.layers, dropout=self.dropout, epochs=self.epochs, batch_size=self.batch_size,
            learning_rate=self.learning_rate, patience=self.patience, max_samples=self.max_samples,
            seed=self.seed, log_target=self.log_target, seasonal_lag=self.seasonal_lag, weekly_lag=weekly,
            season=season, lag_window=window,
        )


def _known(preset: str) -> str:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    return preset


@dataclass(frozen=True)
class Split:
    train_stop: int
    val_stop: int
    val_origins: np.ndarray
    test_origins: np.ndarray


@dataclass
class CandidateResult:
    """One candidate on one panel: scores, timing and what is needed to deploy or plot it."""

    name: str
    scores: Scores
    train_seconds: float
    forecaster: Forecaster
    test_quantiles: np.ndarray  # calibrated (W, H, M, Q), for plots
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class PanelResult:
    """The outcome of training one panel (one app's phase, or one series of a benchmark)."""

    key: str
    panel: Panel
    split: Split | None
    candidates: dict[str, CandidateResult]
    best: str | None
    skipped: str | None = None
    unavailable: dict[str, str] = field(default_factory=dict)  # candidate -> why it did not run

    def actual(self) -> np.ndarray:
        """Outcomes of the held-out windows ``(W, H, M)``."""
        if self.split is None or not self.candidates:
            return np.empty((0, 0, len(self.panel.metrics)))
        horizon = next(iter(self.candidates.values())).forecaster.horizon
        return windows(self.panel.values, self.split.test_origins, horizon)

    def scores(self) -> dict[str, dict[str, Any]]:
        return {name: c.scores.headline() for name, c in self.candidates.items()}


Progress = Callable[[str], None]


# -- checks -----------------------------------------------------------------------------------

def check_panel(panel: Panel, config: TrainConfig) -> str | None:
    """Why ``panel`` cannot be trained, or None. The reasons name the numbers and what to do."""
    inputs, horizon = config.steps(panel.step_seconds)
    observed = panel.observed
    n_obs = int(observed.sum())
    need = math.ceil((inputs + horizon + config.min_holdout_windows) / max(config.holdout_fraction, 1e-9))
    if n_obs == 0:
        return "no observed rows"
    if n_obs < need:
        return (f"too little history: {n_obs} observed rows at {panel.step_seconds} s, need at least {need} "
                f"(input window {inputs} + horizon {horizon} + {config.min_holdout_windows} held-out windows, "
                f"held-out share {config.holdout_fraction}); collect more data or use a shorter input window")
    gap_share = 1.0 - n_obs / len(panel)
    if gap_share > config.max_gap_fraction:
        return (f"too gappy: {gap_share:.0%} of the rows are missing (limit {config.max_gap_fraction:.0%}); "
                f"check the metrics source")
    values = panel.values[observed]
    constant = {m: float(values[0, i]) for i, m in enumerate(panel.metrics) if np.nanstd(values[:, i]) < 1e-12}
    if constant:
        shown = ", ".join(f"{m} = {v:g}" for m, v in constant.items())
        return (f"constant series: {shown} throughout; a forecast would be that constant, nothing to learn "
                f"(leave the metric out with --metric, or check the source)")
    longest = max((b - a for a, b in runs(observed)), default=0)
    if longest < inputs + horizon:
        return (f"no gap-free stretch is long enough: longest {longest} rows, one window needs "
                f"{inputs + horizon} (input {inputs} + horizon {horizon})")
    return None


def split_panel(panel: Panel, config: TrainConfig) -> Split | str:
    """The time split and the windows; a reason string when a part has no window."""
    inputs, horizon = config.steps(panel.step_seconds)
    n = len(panel)
    val_stop = n - int(round(n * config.holdout_fraction))
    train_stop = val_stop - int(round(n * config.validation_fraction))
    observed = panel.observed
    test = valid_origins(observed, input_steps=inputs, horizon=horizon, first=val_stop - 1, last=n - 1)
    val = valid_origins(observed, input_steps=inputs, horizon=horizon, first=train_stop - 1,
                        last=val_stop - 1 - horizon)
    if len(test) < config.min_holdout_windows:
        return (f"the held-out tail ({n - val_stop} rows) has {len(test)} complete windows, need "
                f"{config.min_holdout_windows}: it is too gappy or too short")
    if len(val) == 0:
        return f"the validation part (rows {train_stop}..{val_stop}) has no complete window"
    if int(observed[:train_stop].sum()) < inputs + horizon:
        return f"the training part has {int(observed[:train_stop].sum())} observed rows, need {inputs + horizon}"
    return Split(train_stop, val_stop, val, test)


# -- the whole evaluation ----------------------------------------------------------------------

def train_panels(
    panels: Sequence[tuple[str, Panel]],
    config: TrainConfig,
    *,
    progress: Progress | None = None,
    scratch: Path | None = None,
) -> list[PanelResult]:
    """Train and score every candidate on every panel; one LSTM is fitted on all panels together.

    ``panels`` are ``(key, panel)`` pairs with the same metrics and step (one app's phase is one
    panel; the benchmark's per-VM series are twenty, and their LSTM is one global model).
    ``scratch``: the folder for the LSTM's checkpoints while it fits (each fit's own subfolder,
    removed after it); ``None``: the system temp dir.
    """
    say = progress or (lambda _msg: None)
    torch.set_num_threads(max(1, config.threads))
    results: list[PanelResult] = []
    usable: list[tuple[PanelResult, Split]] = []
    for key, panel in panels:
        reason = check_panel(panel, config)
        split = split_panel(panel, config) if reason is None else reason
        if isinstance(split, str):
            results.append(PanelResult(key, panel, None, {}, None, skipped=split))
            continue
        result = PanelResult(key, panel, split, {}, None)
        results.append(result)
        usable.append((result, split))
    if not usable:
        return results
    lstm, lstm_seconds, lstm_error = _fit_lstm(usable, config, say, scratch)
    for i, (result, split) in enumerate(usable):
        say(f"{result.key}: baselines")
        _evaluate_panel(result, split, config, lstm=lstm, lstm_part=i, lstm_seconds=lstm_seconds)
        if lstm_error:
            result.unavailable["lstm"] = lstm_error
    return results


def _fit_lstm(usable: list[tuple[PanelResult, Split]], config: TrainConfig, say: Progress, scratch: Path | None):
    step = usable[0][0].panel.step_seconds
    parts = [TrainPart(r.panel, s.train_stop, s.val_stop) for r, s in usable]
    say(f"lstm: fitting {config.lstm_members} network(s) on {len(parts)} series")
    try:
        members = fit_lstm_members(parts, config, step, scratch=scratch)
    except (ValueError, RuntimeError) as exc:  # a training failure skips the LSTM, not the phase
        return None, 0.0, f"training failed: {exc}"
    return members, sum(m.train_seconds for m in members), None


def fit_lstm_members(parts: Sequence[TrainPart], config: TrainConfig, step_seconds: int, *,
                     scratch: Path | None = None) -> list[LstmCandidate]:
    """The ``lstm_members`` networks of the LSTM candidate: one configuration, seeds ``seed, seed + 1, ...``."""
    lstm_config = config.lstm(step_seconds, train_rows=min(p.train_stop for p in parts))
    return [LstmCandidate(replace(lstm_config, seed=lstm_config.seed + i), scratch=scratch).fit(parts)
            for i in range(max(1, config.lstm_members))]


@dataclass
class _Raw:
    """A candidate's uncalibrated quantiles on the validation and held-out windows, and how it was made."""

    val: np.ndarray  # (Wv, H, M, Q)
    test: np.ndarray  # (W, H, M, Q)
    seconds: float
    components: list
    weights: np.ndarray  # (C, H)
    params: dict[str, Any]


def _evaluate_panel(
    result: PanelResult, split: Split, config: TrainConfig, *, lstm: list[LstmCandidate] | None, lstm_part: int,
    lstm_seconds: float,
) -> None:
    panel = result.panel
    horizon = config.steps(panel.step_seconds)[1]
    scale = persistence_scale(panel.values[: split.train_stop])
    actual_val = windows(panel.values, split.val_origins, horizon)
    actual_test = windows(panel.values, split.test_origins, horizon)
    raws = _baselines(result, split, config, horizon)
    if lstm is not None:
        params = {"epochs_trained": [m.epochs_trained for m in lstm], **_lstm_params(lstm[0].config),
                  "networks": len(lstm)}
        raws["lstm"] = _Raw(np.mean([m.predict(panel, split.val_origins, part=lstm_part) for m in lstm], axis=0),
                            np.mean([m.predict(panel, split.test_origins, part=lstm_part) for m in lstm], axis=0),
                            lstm_seconds, list(lstm), np.full((len(lstm), horizon), 1.0 / len(lstm)), params)
        if config.ensemble:
            ensemble = _ensemble(raws, actual_val, scale, median=config.quantiles.index(0.5))
            if isinstance(ensemble, str):
                result.unavailable["ensemble"] = ensemble
            else:
                raws.update(ensemble)
    for name, raw in raws.items():
        cal = calibrate(raw_val=raw.val, actual_val=actual_val, raw_test=raw.test, actual_test=actual_test,
                        origins_test=split.test_origins, quantiles=config.quantiles, lr=config.conformal_lr)
        scores = score(cal.quantiles, actual_test, quantiles=config.quantiles, scale=scale,
                       metrics=panel.metrics, raw=raw.test)
        forecaster = Forecaster(
            candidate=name, metrics=panel.metrics, step_seconds=panel.step_seconds, horizon=horizon,
            quantiles=config.quantiles, components=raw.components, weights=raw.weights, offsets=cal.offsets,
            lstm_part=lstm_part,
        )
        result.candidates[name] = CandidateResult(name, scores, raw.seconds, forecaster, cal.quantiles, raw.params)
    result.best = rank(result.candidates)


def _baselines(result: PanelResult, split: Split, config: TrainConfig, horizon: int) -> dict[str, _Raw]:
    """Fit every baseline the training rows support; the others go to ``result.unavailable`` with why."""
    panel = result.panel
    train = panel.values[: split.train_stop]
    names, result.unavailable = available_baselines(int(panel.observed[: split.train_stop].sum()),
                                                    season=panel.season, horizon=horizon)
    fit_steps = int(config.baseline_fit_days * panel.season)
    raws = {}
    for name in names:
        started = time.perf_counter()
        model = BASELINES[name](season=panel.season, horizon=horizon, quantiles=config.quantiles)
        try:
            model.fit(train, fit_steps=max(fit_steps, model.min_history() + horizon))
        except BaselineError as exc:
            result.unavailable[name] = str(exc)
            continue
        val = model.predict(panel.values, split.val_origins)
        test = model.predict(panel.values, split.test_origins)
        raws[name] = _Raw(val, test, time.perf_counter() - started, [model], np.ones((1, horizon)),
                          {"params": model.params})
    return raws


def _lstm_params(config: LstmConfig) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()}


def _ensemble(
    raws: dict[str, _Raw], actual_val: np.ndarray, scale: np.ndarray, *, median: int
) -> dict[str, _Raw] | str:
    """``lstm+<b>``: the LSTM and the validation-best baseline ``b``, per-step weights chosen on validation.

    Weight ``w_h`` of the LSTM at step ``h`` minimises the validation MASE of the blended median over
    ``w`` in {0, 0.05, ..., 1}; the blend of quantiles is the same weighted average. No ensemble when
    validation puts all the weight on one member at every step (it would only duplicate that member).
    """
    baselines = [n for n in raws if n in BASELINES]
    if not baselines or len(actual_val) == 0:
        return "no baseline or no validation window to blend with"

    def val_error(median_val: np.ndarray) -> np.ndarray:  # per step
        return (np.abs(median_val - actual_val).mean(axis=0) / scale).mean(axis=-1)

    partner = min(baselines, key=lambda n: float(val_error(raws[n].val[..., median]).mean()))
    lstm, base = raws["lstm"], raws[partner]
    grid = np.linspace(0.0, 1.0, 21)
    errors = np.stack([val_error(w * lstm.val[..., median] + (1 - w) * base.val[..., median]) for w in grid])
    w = grid[errors.argmin(axis=0)]  # (H,)
    if w.max() == 0.0 or w.min() == 1.0:  # all on one member: that member already competes as itself
        member = partner if w.max() == 0.0 else "lstm"
        return f"validation put all the weight on {member} at every step: no blend to add"
    weights = np.concatenate([lstm.weights * w, base.weights * (1.0 - w)])

    def blend(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return w[None, :, None, None] * a + (1.0 - w)[None, :, None, None] * b

    params = {"members": ["lstm", partner], "weights": np.stack([w, 1.0 - w]).tolist()}
    name = f"lstm+{partner}"
    return {name: _Raw(blend(lstm.val, base.val), blend(lstm.test, base.test), lstm.seconds + base.seconds,
                       lstm.components + base.components, weights, params)}


def rank(candidates: dict[str, CandidateResult]) -> str | None:
    """The lowest MASE; ties go to the simpler candidate (baselines in their order, then the LSTM)."""
    if not candidates:
        return None
    order = {name: i for i, name in enumerate(BASELINE_ORDER)}
    return min(candidates, key=lambda n: (round(candidates[n].scores.mase, 12), order.get(n, len(order)), n))


def is_lstm_based(name: str) -> bool:
    return name == "lstm" or name.startswith("lstm+")


def rescore(
    forecaster: Forecaster, result: PanelResult, config: TrainConfig
) -> Scores | str:
    """Score a (stored) forecaster on the same windows as ``result``, calibrated the same way.

    Returns the reason instead when it cannot be compared (other metrics, step or horizon).
    """
    panel, split = result.panel, result.split
    if split is None:
        return "no held-out windows"
    if tuple(forecaster.metrics) != tuple(panel.metrics):
        return f"it forecasts {list(forecaster.metrics)}, the data now has {list(panel.metrics)}"
    if forecaster.step_seconds != panel.step_seconds:
        return f"it was trained at a {forecaster.step_seconds} s step, the data is at {panel.step_seconds} s"
    horizon = config.steps(panel.step_seconds)[1]
    if forecaster.horizon != horizon or tuple(forecaster.quantiles) != tuple(config.quantiles):
        return f"its horizon/quantiles ({forecaster.horizon}, {forecaster.quantiles}) differ from this training's"
    raw_val = forecaster.raw(panel, split.val_origins)
    raw_test = forecaster.raw(panel, split.test_origins)
    actual_val = windows(panel.values, split.val_origins, horizon)
    actual_test = windows(panel.values, split.test_origins, horizon)
    ok_val = np.isfinite(raw_val).all(axis=(1, 2, 3))
    ok_test = np.isfinite(raw_test).all(axis=(1, 2, 3))
    if ok_test.sum() < config.min_holdout_windows:
        return f"it produced a forecast for only {int(ok_test.sum())} of {len(ok_test)} held-out windows"
    cal = calibrate(raw_val=raw_val[ok_val], actual_val=actual_val[ok_val], raw_test=raw_test[ok_test],
                    actual_test=actual_test[ok_test], origins_test=split.test_origins[ok_test],
                    quantiles=config.quantiles, lr=config.conformal_lr)
    scale = persistence_scale(panel.values[: split.train_stop])
    return score(cal.quantiles, actual_test[ok_test], quantiles=config.quantiles, scale=scale,
                 metrics=panel.metrics, raw=raw_test[ok_test])

