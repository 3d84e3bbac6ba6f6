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

**Candidates.** Every registered component (``components.py``) trains on the
panels' training rows and becomes a candidate of the same name: the four baselines
(``baselines.py``) and the LSTM (``lstm.py``: the mean of ``lstm_members`` networks'
quantiles, seeds ``seed, seed + 1, ...``, which cuts the seed-to-seed spread of about
1% in MAE). When enabled, each learned candidate ``c`` (the LSTM) also competes as a
blend ``c+<b>`` with the simple candidate ``b`` that did best on validation, with
per-step weights ``w_h`` in {0, 0.05, .., 1} minimising the validation MASE of
``w_h f_c + (1 - w_h) f_b``. A component that cannot train on a panel says why
(``unavailable``). A component marked ``optional = True`` (a costly extra) trains only
when its name is in ``extra_candidates``. Each candidate's raw quantiles are calibrated
(``conformal.py``: per level, horizon step and hour-of-day bin of the target row,
``calibration_bins``), then scored (``scoring.py``).

**Ranking.** The best candidate has the lowest decision score on the tail (pinball
loss at 0.9/0.99/0.995 at the lead steps ``score_leads_minutes``, over the persistence
scale; MASE for a candidate without those levels). Ties: the simpler one, components
in their registration order, baselines before the LSTM, then blends. A baseline
winning is an honest result.

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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.component import Trained, TrainPart
from models.components import COMPONENTS
from models.conformal import calibrate, target_hours
from models.forecaster import Forecaster
from models.scoring import Scores, persistence_scale, score
from models.series import Panel, runs, valid_origins, windows

PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    # tests and the demo: a tiny network, a couple of epochs, few samples
    "small": {"hidden_dim": 8, "epochs": 3, "patience": 1, "max_samples": 1_500, "batch_size": 64,
              "baseline_fit_days": 3.0, "lstm_members": 1},
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training needs; horizons and windows in minutes, converted per panel step.

    The one place of the defaults: the LSTM's network and budget fields here are resolved per step by
    ``LstmConfig.from_train`` (``models.lstm``), the settings (``ForecastSettings``) override a subset,
    and a preset (``PRESETS``) overrides those.
    """

    horizon_minutes: float = 15.0
    input_minutes: float = 240.0
    max_input_steps: int = 64
    quantiles: tuple[float, ...] = (0.05, 0.1, 0.5, 0.9, 0.95, 0.99, 0.995)
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
    calibration_bins: int = 24  # hour-of-day Mondrian bins of the calibration (1: none); a divisor of 24
    score_leads_minutes: tuple[float, ...] = (1.0, 5.0, 15.0)  # the tiers' lead times the decision score judges
    extra_candidates: tuple[str, ...] = ()  # optional components (``optional = True``) to train as well
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
        for name in ("score_leads_minutes", "extra_candidates"):
            if name in fields:
                fields[name] = tuple(fields[name])
        name = preset or getattr(forecast, "preset", "default")
        return replace(TrainConfig(**fields), **PRESETS[_known(name)])

    def steps(self, step_seconds: int) -> tuple[int, int]:
        """``(L, H)``: input window and horizon in rows of ``step_seconds``."""
        horizon = max(1, round(self.horizon_minutes * 60 / step_seconds))
        inputs = max(2 * horizon, min(self.max_input_steps, round(self.input_minutes * 60 / step_seconds)))
        return inputs, horizon


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
    gap_share = panel.gap_share  # of the rows in scope: one phase's panel is not gappy where the others run
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
    """Train and score every registered component on every panel, and the blends.

    ``panels`` are ``(key, panel)`` pairs with the same metrics and step (one app's phase is one
    panel; the benchmark's per-VM series are twenty). Each component trains on all the panels at
    once (``Component.train``): the baselines fit one model per panel, the LSTM one global model.
    ``scratch``: the folder for the LSTM's checkpoints while it fits (each fit's own subfolder,
    removed after it); ``None``: the system temp dir.
    """
    say = progress or (lambda _msg: None)
    optional = sorted(n for n, c in COMPONENTS.items() if getattr(c, "optional", False))
    unknown = [n for n in config.extra_candidates if n not in optional]
    if unknown:
        raise ValueError(f"extra candidates {unknown} are not optional forecaster components; choose from {optional} "
                         f"(the others always train)")
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
    parts = [TrainPart(r.panel, s.train_stop, s.val_stop) for r, s in usable]
    trained = {}
    for name, component in COMPONENTS.items():
        if getattr(component, "optional", False) and name not in config.extra_candidates:
            continue
        say(f"{name}: training on {len(parts)} series")
        trained[name] = component.train(parts, config, scratch=scratch)
    for i, (result, split) in enumerate(usable):
        _evaluate_panel(result, split, config, {name: per_part[i] for name, per_part in trained.items()}, part=i)
    return results


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
    result: PanelResult, split: Split, config: TrainConfig, trained: dict[str, Trained | str], *, part: int,
) -> None:
    panel = result.panel
    horizon = config.steps(panel.step_seconds)[1]
    scale = persistence_scale(panel.values[: split.train_stop])
    actual_val = windows(panel.values, split.val_origins, horizon)
    actual_test = windows(panel.values, split.test_origins, horizon)
    hours_val = target_hours(panel.index, split.val_origins, horizon, panel.step_seconds)
    hours_test = target_hours(panel.index, split.test_origins, horizon, panel.step_seconds)
    raws: dict[str, _Raw] = {}
    for name, fitted in trained.items():
        if isinstance(fitted, str):
            result.unavailable[name] = fitted
        else:
            raws[name] = _backtest(fitted, panel, split, horizon=horizon, part=part)
    if config.ensemble:
        raws.update(_blends(raws, result, actual_val, scale, median=config.quantiles.index(0.5)))
    for name, raw in raws.items():
        cal = calibrate(raw_val=raw.val, actual_val=actual_val, raw_test=raw.test, actual_test=actual_test,
                        origins_test=split.test_origins, quantiles=config.quantiles, lr=config.conformal_lr,
                        bins=config.calibration_bins, hours_val=hours_val, hours_test=hours_test)
        scores = score(cal.quantiles, actual_test, quantiles=config.quantiles, scale=scale,
                       metrics=panel.metrics, raw=raw.test, step_seconds=panel.step_seconds,
                       leads_minutes=config.score_leads_minutes, hours=hours_test)
        forecaster = Forecaster(
            candidate=name, metrics=panel.metrics, step_seconds=panel.step_seconds, horizon=horizon,
            quantiles=config.quantiles, components=raw.components, weights=raw.weights, offsets=cal.offsets,
            part=part,
        )
        result.candidates[name] = CandidateResult(name, scores, raw.seconds, forecaster, cal.quantiles, raw.params)
    result.best = rank(result.candidates)


def _backtest(fitted: Trained, panel: Panel, split: Split, *, horizon: int, part: int) -> _Raw:
    """The mean of the members' quantiles from every validation and held-out origin; the time includes the fit."""
    started = time.perf_counter()
    members = fitted.members
    val = np.mean([m.predict_at(panel, split.val_origins, part=part) for m in members], axis=0)
    test = np.mean([m.predict_at(panel, split.test_origins, part=part) for m in members], axis=0)
    return _Raw(val, test, fitted.seconds + time.perf_counter() - started, list(members),
                np.full((len(members), horizon), 1.0 / len(members)), fitted.params)


def _blends(raws: dict[str, _Raw], result: PanelResult, actual_val: np.ndarray, scale: np.ndarray, *,
            median: int) -> dict[str, _Raw]:
    """One blend per learned candidate (:func:`_blend`); why not, under ``unavailable["ensemble"]``."""
    simple = [n for n in raws if not COMPONENTS[n].learned]
    blends, reasons = {}, []
    for learned in [n for n in raws if COMPONENTS[n].learned]:
        blend = _blend(raws, learned, simple, actual_val, scale, median=median)
        if isinstance(blend, str):
            reasons.append(blend)
        else:
            blends.update(blend)
    if reasons:
        result.unavailable["ensemble"] = "; ".join(reasons)
    return blends


def _blend(
    raws: dict[str, _Raw], learned: str, simple: list[str], actual_val: np.ndarray, scale: np.ndarray, *,
    median: int,
) -> dict[str, _Raw] | str:
    """``<learned>+<b>``: a learned candidate and the validation-best simple one ``b``, per-step weights chosen
    on validation.

    Weight ``w_h`` of the learned one at step ``h`` minimises the validation MASE of the blended median over
    ``w`` in {0, 0.05, ..., 1}; the blend of quantiles is the same weighted average. No blend when
    validation puts all the weight on one member at every step (it would only duplicate that member).
    """
    if not simple or len(actual_val) == 0:
        return "no baseline or no validation window to blend with"

    def val_error(median_val: np.ndarray) -> np.ndarray:  # per step
        return (np.abs(median_val - actual_val).mean(axis=0) / scale).mean(axis=-1)

    partner = min(simple, key=lambda n: float(val_error(raws[n].val[..., median]).mean()))
    first, base = raws[learned], raws[partner]
    grid = np.linspace(0.0, 1.0, 21)
    errors = np.stack([val_error(w * first.val[..., median] + (1 - w) * base.val[..., median]) for w in grid])
    w = grid[errors.argmin(axis=0)]  # (H,)
    if w.max() == 0.0 or w.min() == 1.0:  # all on one member: that member already competes as itself
        member = partner if w.max() == 0.0 else learned
        return f"validation put all the weight on {member} at every step: no blend to add"
    weights = np.concatenate([first.weights * w, base.weights * (1.0 - w)])

    def blend(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return w[None, :, None, None] * a + (1.0 - w)[None, :, None, None] * b

    params = {"members": [learned, partner], "weights": np.stack([w, 1.0 - w]).tolist()}
    name = f"{learned}+{partner}"
    return {name: _Raw(blend(first.val, base.val), blend(first.test, base.test), first.seconds + base.seconds,
                       first.components + base.components, weights, params)}


def rank(candidates: dict[str, CandidateResult]) -> str | None:
    """The lowest decision score (``Scores.rank_score``: MASE for a candidate without one); ties go to the
    simpler candidate (components in their registration order, then blends)."""
    if not candidates:
        return None
    order = {name: i for i, name in enumerate(COMPONENTS)}
    return min(candidates, key=lambda n: (round(candidates[n].scores.rank_score, 12), order.get(n, len(order)), n))


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
    hours_val = forecaster.target_hours(panel, split.val_origins)[ok_val]
    hours_test = forecaster.target_hours(panel, split.test_origins)[ok_test]
    cal = calibrate(raw_val=raw_val[ok_val], actual_val=actual_val[ok_val], raw_test=raw_test[ok_test],
                    actual_test=actual_test[ok_test], origins_test=split.test_origins[ok_test],
                    quantiles=config.quantiles, lr=config.conformal_lr, bins=config.calibration_bins,
                    hours_val=hours_val, hours_test=hours_test)
    scale = persistence_scale(panel.values[: split.train_stop])
    return score(cal.quantiles, actual_test[ok_test], quantiles=config.quantiles, scale=scale,
                 metrics=panel.metrics, raw=raw_test[ok_test], step_seconds=panel.step_seconds,
                 leads_minutes=config.score_leads_minutes, hours=hours_test)

