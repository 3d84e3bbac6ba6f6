"""``fracast`` (PyPI, 0.1.0): a small pre-trained forecaster used zero-shot, its weights inside the wheel.

Fracast-0 (``fracast.FracastModel.from_pretrained()`` with no argument loads the bundled weights; nothing is
downloaded, and this module never passes a repository id) reads up to ``W = 2048`` rows of one series (fewer
are padded and masked; missing values are masked too, so gaps need no filling), normalises each context by its
own min and max, and emits the quantiles ``0.1, 0.2, ..., 0.9`` of the next 48 steps (longer horizons roll
on from its median). Each metric is forecast on its own (the model's channels are independent).

Mapping to ``config.quantiles``: the emitted levels are first sorted (they are not always monotone); a level
inside ``[0.1, 0.9]`` is interpolated linearly; a level outside is extrapolated with a normal tail from the
median, ``q_tau = q_0.5 + (q_0.9 - q_0.5) z_tau / z_0.9`` (``z`` the standard normal quantile; ``q_0.1`` below
the median), so the tails reach 0.995 and stay monotone. The conformal step (``conformal.py``) calibrates every
level afterwards, which corrects a tail lighter or heavier than normal.

Not learned (``learned = False``): ``train`` fits nothing, it records the horizon and levels and checks the
training rows (at least ``MIN_CONTEXT`` observed) and that the weights are installed; the part's index is
ignored (each context is normalised on its own). ``predict_at`` runs one batched CPU pass per metric over all
origins (``torch.inference_mode`` inside ``fracast``; ``threads`` torch threads), each origin's context being
the ``W`` rows up to it and nothing after.

Cost: the network's compute is over its full 2,048-row window whatever the context, about 0.1-0.15 s per
origin and metric on one thread of this 2-core machine, so a 90,000-row panel's 27,000 validation and
held-out origins take about an hour. That is why the component is ``optional``: ``train_panels`` fits it only
when ``"fracast"`` is in ``TrainConfig.extra_candidates`` (as ``benchmarks/forecast.py`` may ask).

Out of sample? fracast's pre-training data include the Alibaba, Azure and Google cluster traces, so its scores
on those benchmark series are not out-of-sample; the NASA web-server trace is (and so is any app's own data).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from scipy.stats import norm

from models.component import Trained, TrainPart
from models.series import Panel

if TYPE_CHECKING:
    from models.train import TrainConfig

STATE_FILE = "fracast.json"
CONTEXT = 2048  # Fracast-0's window (its config.json "W")
MIN_CONTEXT = 64  # observed training rows asked for (the model itself accepts 8)
BATCH = 128  # contexts per forward pass
MIN_FINITE = 8  # fracast's own minimum of observed values per context


class FracastUnavailable(RuntimeError):
    """The ``fracast`` package or its bundled weights are not installed."""


@lru_cache(maxsize=1)
def load_model() -> Any:
    """The bundled Fracast-0 (loaded once per process); never a download."""
    try:
        import fracast
    except ImportError as exc:
        raise FracastUnavailable(f"the fracast package is not installed ({exc}); pip install fracast==0.1.0") \
            from exc
    weights = Path(fracast.__file__).parent / "weights"
    missing = [f for f in ("config.json", "model.int8.safetensors", "w8_manifest.json") if not (weights / f).exists()]
    if missing:
        raise FracastUnavailable(f"fracast's bundled weights are missing from {weights}: {missing}")
    return fracast.FracastModel.from_pretrained(None, weights="w8", device="cpu")


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, count))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def to_levels(native: np.ndarray, native_levels: Sequence[float], levels: Sequence[float]) -> np.ndarray:
    """``native (..., K)`` quantiles at ``native_levels`` -> ``(..., Q)`` at ``levels`` (see the module docstring)."""
    q = np.sort(native, axis=-1)
    nat = np.asarray(native_levels, dtype=np.float64)

    def inside(tau: float) -> np.ndarray:
        i = int(np.clip(np.searchsorted(nat, tau) - 1, 0, len(nat) - 2))
        frac = (tau - nat[i]) / (nat[i + 1] - nat[i])
        return q[..., i] + frac * (q[..., i + 1] - q[..., i])

    mid = inside(0.5)
    out = []
    for tau in levels:
        if tau < nat[0]:
            out.append(mid + (q[..., 0] - mid) * norm.ppf(tau) / norm.ppf(nat[0]))
        elif tau > nat[-1]:
            out.append(mid + (q[..., -1] - mid) * norm.ppf(tau) / norm.ppf(nat[-1]))
        else:
            out.append(inside(tau))
    return np.stack(out, axis=-1)


@dataclass
class Fracast:
    name: ClassVar[str] = "fracast"
    learned: ClassVar[bool] = False
    optional: ClassVar[bool] = True  # 0.1 s per origin and metric: trained only when asked (module docstring)
    horizon: int
    quantiles: tuple[float, ...]
    threads: int = 1

    @classmethod
    def train(cls, parts: Sequence[TrainPart], config: TrainConfig, *,
              scratch: Path | None = None) -> list[Trained | str]:
        try:
            load_model()
        except FracastUnavailable as exc:
            return [str(exc)] * len(parts)
        return [cls._check(part, config) for part in parts]

    @classmethod
    def _check(cls, part: TrainPart, config: TrainConfig) -> Trained | str:
        observed = int(part.panel.observed[: part.train_stop].sum())
        if observed < MIN_CONTEXT:
            return f"needs {MIN_CONTEXT} observed training rows of context, got {observed}"
        started = time.perf_counter()
        model = cls(config.steps(part.panel.step_seconds)[1], tuple(config.quantiles), config.threads)
        return Trained([model], {"context": CONTEXT, "weights": "fracast-0 w8 (bundled)"},
                       time.perf_counter() - started)

    def predict_at(self, panel: Panel, origins: np.ndarray, *, part: int = 0) -> np.ndarray:
        origins = np.asarray(origins, dtype=np.int64)
        model = load_model()
        out = np.empty((len(origins), self.horizon, panel.values.shape[1], len(self.quantiles)))
        steps = origins[:, None] + np.arange(1 - CONTEXT, 1)[None, :]  # each origin's window, rows <= origin
        with torch_threads(self.threads):
            for col in range(panel.values.shape[1]):
                padded = np.concatenate([np.full(CONTEXT, np.nan), panel.values[:, col]])
                for first in range(0, len(origins), BATCH):
                    context = padded[steps[first: first + BATCH] + CONTEXT].astype(np.float32)
                    short = np.isfinite(context).sum(axis=1) < MIN_FINITE
                    if short.any():  # fracast refuses a context with fewer than 8 values: hold the last one
                        context[short, -MIN_FINITE:] = _last_value(context[short])[:, None]
                    native = model.forecast_batch(context, horizon=self.horizon)  # (b, H, K)
                    out[first: first + BATCH, :, col] = to_levels(native.astype(np.float64), model.quantiles,
                                                                  self.quantiles)
        return out

    def forecast(self, panel: Panel, *, part: int = 0) -> np.ndarray:
        return self.predict_at(panel, np.array([len(panel) - 1]))[0]

    def history_needed(self) -> int:
        return CONTEXT

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / STATE_FILE).write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, folder: Path) -> Fracast:
        state = json.loads((folder / STATE_FILE).read_text())
        return cls(state["horizon"], tuple(state["quantiles"]), state.get("threads", 1))


def _last_value(context: np.ndarray) -> np.ndarray:
    """Each row's last finite value (0 for a row with none)."""
    finite = np.isfinite(context)
    last = np.where(finite.any(axis=1), context.shape[1] - 1 - np.argmax(finite[:, ::-1], axis=1), -1)
    return np.where(last >= 0, context[np.arange(len(context)), np.maximum(last, 0)], 0.0).astype(np.float32)


__all__ = ["Fracast", "FracastUnavailable", "load_model", "to_levels"]
