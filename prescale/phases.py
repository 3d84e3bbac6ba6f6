"""Phases: the regimes of an app that deserve their own forecaster.

An app may behave differently in different periods: a batch window and an
interactive one, a training phase (GPUs busy) and a serving phase (requests
busy). One model per phase forecasts each regime better than one model that
averages them. This module says which rows belong to which phase.

**Given labels win.** When the metric rows carry a ``phase`` label, that is the
answer: rows without one inherit the label before them (the first rows the
first label).

**Otherwise, detection** from the app's own multi-metric behaviour:

1. Features per row: for each metric the trailing median over ``window`` rows
   (its level), centred by its median, divided by its inter-quartile range and
   clipped to +-10 (robust to bursts). Regimes that differ only in burstiness,
   not in level, are therefore not told apart.
2. k-means for ``k = 2 .. max_phases`` (k-means++ seeding, fixed seed, a few
   restarts) on those features; the mean silhouette (``(b - a) / max(a, b)``,
   ``a`` the mean distance to the own cluster, ``b`` to the nearest other) scores
   each ``k``. The best ``k`` is kept only if its silhouette is at least
   ``min_silhouette`` (0.7): well-separated regimes, not a continuum cut in
   pieces (one Gaussian cloud cut in two scores about 0.55-0.6, a sine's levels
   about 0.65; regimes that really differ score 0.8 and more).
3. Minimum length: every run shorter than ``min_steps`` rows joins the phase
   before it (the first run, the one after), so a phase is never a blip.
4. The daily season is not a phase. When the labels follow the clock (the
   hour of the day, or of the week with two weeks of data, predicts them out of
   sample, from the other days or weeks, with Cohen's kappa ``>= max_daily_kappa``;
   at least two days of data), the "phases" are day and night (or weekday and
   weekend) of one regime, which the forecasters model with calendar covariates:
   one phase it is.
   Splitting them would only cut the training data into pieces.

An app with one regime has one phase, ``default``; that is a valid answer.

**Stable ids across retrains.** Detected phases are named ``p0, p1, ...`` in
order of their mean level of the first metric. With the previous report, each
new phase takes the id of the previous phase whose level vector is closest (a
minimum-cost one-to-one matching, distances in units of each metric's spread);
a phase with no counterpart gets the next unused id. So yesterday's ``p1`` model
keeps serving today's ``p1`` regime.

:func:`current_phase` classifies the newest rows with the stored centroids, for
the orchestrator. Everything here is pure: frames and reports in, labels and
reports out; no clock, no I/O, no settings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

DEFAULT_PHASE = "default"
CLIP = 10.0  # standardised features are clipped to +-CLIP


@dataclass(frozen=True)
class PhaseConfig:
    """Knobs of phase detection, in rows of the data's step."""

    window: int = 12
    max_phases: int = 4
    min_steps: int = 48
    min_silhouette: float = 0.7
    max_daily_kappa: float = 0.5
    sample: int = 2_000
    seed: int = 0


@dataclass(frozen=True)
class PhaseInfo:
    """One phase as found: where, how much, what it looks like."""

    id: str
    rows: int
    runs: int
    share: float
    level: dict[str, float]  # mean of each metric in the phase
    centroid: list[float] = field(default_factory=list)  # in standardised feature space (detected only)


@dataclass(frozen=True)
class PhaseReport:
    """What was found and why; JSON-friendly (``to_dict``/``from_dict``)."""

    method: str  # "labels", "detected" or "single"
    phases: tuple[PhaseInfo, ...]
    reason: str
    metrics: tuple[str, ...] = ()
    window: int = 0
    center: list[float] = field(default_factory=list)
    scale: list[float] = field(default_factory=list)
    silhouette: float | None = None
    daily_kappa: float | None = None

    @property
    def ids(self) -> list[str]:
        return [p.id for p in self.phases]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> PhaseReport:
        phases = tuple(PhaseInfo(**p) for p in data["phases"])
        return PhaseReport(**{**data, "phases": phases, "metrics": tuple(data.get("metrics", ()))})


# -- entry point -------------------------------------------------------------------------------

def assign_phases(
    wide: pd.DataFrame,
    *,
    labels: pd.Series | None = None,
    config: PhaseConfig | None = None,
    previous: PhaseReport | None = None,
) -> tuple[np.ndarray, PhaseReport]:
    """Phase id of every row of ``wide`` (time x metric, regular grid), and the report.

    ``labels`` (aligned with ``wide``'s index, missing allowed) are used when any is present.
    """
    config = config or PhaseConfig()
    if labels is not None and labels.notna().any():
        return _from_labels(wide, labels)
    return detect_phases(wide, config=config, previous=previous)


def _from_labels(wide: pd.DataFrame, labels: pd.Series) -> tuple[np.ndarray, PhaseReport]:
    filled = labels.reindex(wide.index).ffill().bfill().astype(str).to_numpy()
    infos = tuple(_info(wide, filled, pid) for pid in sorted(set(filled)))
    reason = f"the metrics carry phase labels: {len(infos)} phase(s)"
    return filled, PhaseReport("labels", infos, reason, tuple(map(str, wide.columns)))


# -- detection ---------------------------------------------------------------------------------

def features(wide: pd.DataFrame, window: int) -> pd.DataFrame:
    """Trailing level of every metric: the rolling median over ``window`` rows.

    A median on purpose: across a switch between two regimes a rolling mean passes
    through values neither regime has, and k-means then finds "the transitions" as
    a cluster of their own; a median jumps. Only levels: a roughness feature (a
    rolling spread) was tried and dropped, because inside each regime it is mostly
    noise, and noise features blur the separation the silhouette measures.
    """
    return wide.rolling(window, min_periods=max(2, window // 2)).median().add_suffix(":level")


def detect_phases(
    wide: pd.DataFrame, *, config: PhaseConfig, previous: PhaseReport | None = None
) -> tuple[np.ndarray, PhaseReport]:
    """Cluster rolling features into phases (see the module docstring); one phase when nothing is clear."""
    metrics = tuple(map(str, wide.columns))
    feats = features(wide, config.window)
    ok = feats.notna().all(axis=1).to_numpy()
    if ok.sum() < max(2 * config.min_steps, 10):
        return _single(wide, f"too few complete rows ({int(ok.sum())}) to look for phases", metrics)
    center = feats[ok].median().to_numpy()
    iqr = (feats[ok].quantile(0.75) - feats[ok].quantile(0.25)).to_numpy()
    scale = np.where(iqr > 1e-12, iqr, np.maximum(np.abs(center), 1.0))
    x = np.clip((feats[ok].to_numpy() - center) / scale, -CLIP, CLIP)
    rng = np.random.default_rng(config.seed)
    sample = x if len(x) <= config.sample else x[np.sort(rng.choice(len(x), config.sample, replace=False))]
    best_k, best_sil, best_centroids = 1, -1.0, None
    for k in range(2, config.max_phases + 1):
        centroids = kmeans(sample, k, seed=config.seed)
        sil = silhouette(sample, nearest(sample, centroids))
        if sil > best_sil:
            best_k, best_sil, best_centroids = k, sil, centroids
    if best_centroids is None or best_sil < config.min_silhouette:
        return _single(wide, f"no clear regimes: best silhouette {best_sil:.2f} (k={best_k}) < "
                             f"{config.min_silhouette}", metrics, silhouette=best_sil)
    raw = np.full(len(wide), -1)
    raw[ok] = nearest(x, best_centroids)
    raw = pd.Series(raw).replace(-1, np.nan).ffill().bfill().to_numpy().astype(int)
    smooth = enforce_min_length(raw, config.min_steps)
    present = sorted(set(smooth.tolist()))
    if len(present) < 2:
        return _single(wide, f"{best_k} clusters but only one lasts {config.min_steps} rows", metrics,
                       silhouette=best_sil)
    kappa = daily_kappa(wide.index, smooth)
    if kappa is not None and kappa >= config.max_daily_kappa:
        return _single(wide, f"the regimes follow the clock (time-of-day kappa {kappa:.2f} >= "
                             f"{config.max_daily_kappa}): daily season, one phase", metrics,
                       silhouette=best_sil, kappa=kappa)
    x_all = np.clip((feats.to_numpy() - center) / scale, -CLIP, CLIP)
    return _named(wide, smooth, x_all=x_all, ok=ok, center=center, scale=scale, config=config, previous=previous,
                  silhouette=best_sil, kappa=kappa)


def _named(wide, clusters, *, x_all, ok, center, scale, config, previous, silhouette, kappa):
    metrics = tuple(map(str, wide.columns))
    present = sorted(set(clusters.tolist()))
    levels = {c: wide.to_numpy()[clusters == c].astype(float) for c in present}
    level_vec = {c: np.nanmean(levels[c], axis=0) for c in present}
    ids = stable_ids(level_vec, wide, previous)
    labels = np.array([ids[c] for c in clusters], dtype=object)
    infos = []
    for c in sorted(present, key=lambda c: ids[c]):
        rows = ok & (clusters == c)
        centroid = np.nanmean(x_all[rows], axis=0) if rows.any() else np.zeros(x_all.shape[1])
        infos.append(_info(wide, labels, ids[c], centroid=centroid.tolist()))
    reason = f"{len(present)} regimes: silhouette {silhouette:.2f}, min length {config.min_steps} rows"
    report = PhaseReport("detected", tuple(infos), reason, metrics, config.window, center.tolist(),
                         scale.tolist(), float(silhouette), kappa)
    return labels.astype(str), report


def _single(wide: pd.DataFrame, reason: str, metrics: tuple[str, ...], *, silhouette: float | None = None,
            kappa: float | None = None) -> tuple[np.ndarray, PhaseReport]:
    labels = np.full(len(wide), DEFAULT_PHASE, dtype=object).astype(str)
    info = _info(wide, labels, DEFAULT_PHASE)
    return labels, PhaseReport("single", (info,), reason, metrics, silhouette=silhouette, daily_kappa=kappa)


def _info(wide: pd.DataFrame, labels: np.ndarray, pid: str, *, centroid: list[float] | None = None) -> PhaseInfo:
    mask = labels == pid
    level = {str(m): float(np.nanmean(wide[m].to_numpy()[mask])) if mask.any() else float("nan")
             for m in wide.columns}
    runs = int(np.sum(np.diff(np.concatenate([[0], mask.astype(np.int8)])) == 1))
    return PhaseInfo(pid, int(mask.sum()), runs, float(mask.mean()) if len(mask) else 0.0,
                     {k: _finite(v) for k, v in level.items()}, centroid or [])


def _finite(value: float) -> float:
    return round(value, 6) if np.isfinite(value) else 0.0


# -- building blocks ---------------------------------------------------------------------------

def kmeans(x: np.ndarray, k: int, *, seed: int, restarts: int = 4, iterations: int = 50) -> np.ndarray:
    """Lloyd's k-means with k-means++ seeding; the best of ``restarts`` by inertia. Returns centroids."""
    rng = np.random.default_rng(seed)
    best, best_inertia = None, np.inf
    for _ in range(restarts):
        centroids = _kmeans_pp(x, k, rng)
        for _ in range(iterations):
            assign = nearest(x, centroids)
            moved = np.array([x[assign == j].mean(axis=0) if (assign == j).any() else centroids[j]
                              for j in range(k)])
            if np.allclose(moved, centroids):
                break
            centroids = moved
        inertia = float(((x - centroids[nearest(x, centroids)]) ** 2).sum())
        if inertia < best_inertia:
            best, best_inertia = centroids, inertia
    return best


def _kmeans_pp(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    centroids = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        d2 = ((x[:, None, :] - np.array(centroids)[None]) ** 2).sum(-1).min(axis=1)
        total = d2.sum()
        pick = rng.integers(len(x)) if total <= 0 else rng.choice(len(x), p=d2 / total)
        centroids.append(x[pick])
    return np.array(centroids)


def nearest(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    return ((x[:, None, :] - centroids[None]) ** 2).sum(-1).argmin(axis=1)


def silhouette(x: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette width; -1 when there is only one cluster."""
    clusters = np.unique(labels)
    if len(clusters) < 2:
        return -1.0
    sq = (x**2).sum(axis=1)
    dist = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * (x @ x.T), 0.0))
    mean_to = np.stack([dist[:, labels == c].mean(axis=1) for c in clusters], axis=1)  # (n, k)
    own = np.searchsorted(clusters, labels)
    sizes = np.array([(labels == c).sum() for c in clusters])
    a = mean_to[np.arange(len(x)), own] * sizes[own] / np.maximum(sizes[own] - 1, 1)
    mean_to[np.arange(len(x)), own] = np.inf
    b = mean_to.min(axis=1)
    s = (b - a) / np.maximum(np.maximum(a, b), 1e-12)
    s[sizes[own] == 1] = 0.0
    return float(s.mean())


def enforce_min_length(labels: np.ndarray, min_steps: int) -> np.ndarray:
    """Merge every run shorter than ``min_steps`` into its predecessor (the first run: its successor)."""
    out = labels.copy()
    while True:
        starts = np.flatnonzero(np.concatenate([[True], out[1:] != out[:-1]]))
        stops = np.concatenate([starts[1:], [len(out)]])
        short = [(a, b) for a, b in zip(starts, stops, strict=True) if b - a < min_steps]
        if not short or len(starts) == 1:
            return out
        a, b = min(short, key=lambda r: r[1] - r[0])
        out[a:b] = out[a - 1] if a > 0 else out[b]


def daily_kappa(index: pd.DatetimeIndex, labels: np.ndarray) -> float | None:
    """Cohen's kappa of predicting the label from the clock, out of sample; None under two days of data.

    The clock is the hour of the week with two weeks of data or more (weekday and
    weekend differ), else the hour of the day. Its prediction for a row is the
    majority label of the row's clock slot on the *other* days (hour of the day) or
    weeks (hour of the week): the rows split into two folds by the parity of their
    day or week since the first row, and each fold is predicted from the other.
    Against chance: predicting the overall majority label everywhere.

    Why out of sample: a slot's majority over the rows it also scores fits them. With
    two or three weeks of data each hour of the week holds two or three rows, and any
    labels that come in runs of days look "predicted by the clock": a VM that runs a
    batch job for 2.4 days then idles for 0.9 day scored 0.73 in sample over 14.5
    days (the bundled analytics trace, looped), a daily season it is not.
    """
    if len(index) < 2 or (index[-1] - index[0]) < pd.Timedelta(days=2):
        return None
    labels = np.asarray(labels)
    majority = pd.Series(labels).value_counts(normalize=True).max()
    if majority >= 1.0:
        return None
    weekly = (index[-1] - index[0]) >= pd.Timedelta(days=14)
    clock = np.asarray(index.day_of_week * 24 + index.hour if weekly else index.hour)
    period = pd.Timedelta(weeks=1) if weekly else pd.Timedelta(days=1)
    fold = np.asarray((index - index[0]) // period) % 2
    hits = 0
    for held in (0, 1):
        fit, score = fold != held, fold == held
        if not score.any():
            continue
        frame = pd.DataFrame({"clock": clock[fit], "label": labels[fit]})
        by_slot = frame.groupby("clock")["label"].agg(lambda x: x.value_counts().index[0])
        fallback = frame["label"].value_counts().index[0]
        predicted = pd.Series(clock[score]).map(by_slot).fillna(fallback).to_numpy()
        hits += int((predicted == labels[score]).sum())
    accuracy = hits / len(labels)
    return max(-1.0, float((accuracy - majority) / (1.0 - majority)))  # worse than chance: floored at -1


def stable_ids(level: dict[int, np.ndarray], wide: pd.DataFrame, previous: PhaseReport | None) -> dict[int, str]:
    """Cluster -> phase id: matched to ``previous`` phases by level, else ordered by the first metric's level."""
    clusters = sorted(level, key=lambda c: (float(np.nan_to_num(level[c][0])), c))
    if previous is None or previous.method != "detected" or tuple(previous.metrics) != tuple(map(str, wide.columns)):
        return {c: f"p{i}" for i, c in enumerate(clusters)}
    spread = np.nanstd(wide.to_numpy(dtype=float), axis=0)
    spread = np.where(spread > 1e-12, spread, 1.0)
    old = [(p.id, np.array([p.level[m] for m in previous.metrics])) for p in previous.phases]
    cost = np.array([[np.sum(((level[c] - vec) / spread) ** 2) for _, vec in old] for c in clusters])
    rows, cols = linear_sum_assignment(cost)
    ids = {clusters[r]: old[c][0] for r, c in zip(rows, cols, strict=True)}
    used = {int(pid[1:]) for pid, _ in old if pid[1:].isdigit()}
    nxt = max(used, default=-1) + 1
    for c in clusters:
        if c not in ids:
            ids[c] = f"p{nxt}"
            nxt += 1
    return ids


# -- online ----------------------------------------------------------------------------------------

def current_phase(wide: pd.DataFrame, report: PhaseReport, *, labels: pd.Series | None = None) -> str:
    """The phase of the newest row: its label if labelled, else the nearest stored centroid."""
    if report.method == "labels":
        if labels is not None and labels.notna().any():
            return str(labels.dropna().iloc[-1])
        return report.phases[-1].id if len(report.phases) == 1 else report.ids[0]
    if report.method != "detected":
        return report.ids[0]
    feats = features(wide[list(report.metrics)], report.window).dropna()
    if feats.empty:
        raise ValueError(f"need at least {report.window} complete rows of {list(report.metrics)} to tell the phase")
    x = np.clip((feats.to_numpy()[-1] - np.asarray(report.center)) / np.asarray(report.scale), -CLIP, CLIP)
    centroids = np.array([p.centroid for p in report.phases])
    return report.phases[int(nearest(x[None], centroids)[0])].id
