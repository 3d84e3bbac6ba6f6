"""The pictures a reviewer looks at: forecast against actuals with the calibrated bands, the SLO frontier, the
orchestrate loop's recent decisions; and small copies of any PNG for embedding in a Prefect artifact.

:func:`forecast_png`: for the last ``days`` of the held-out tail, at the last horizon step (the hardest
one, ``H`` steps ahead), one panel per metric: the actual series, the median
forecast made ``H`` steps earlier, and the 80% and 90% calibrated intervals.
:func:`frontier_png`: the before-use SLO tuning's trials, cost against violation share, with the budget and
the chosen knobs (``prescale.slo.tuning``).
:func:`decisions_png`: per app, the demand the loop observed and the capacity it decided over the last hours
(from the ledger), with a tick at every decision whose plan changed nodes.
:func:`shrink_png` and :func:`data_uri`: a PNG made small enough to travel inside a Markdown artifact (Prefect's
UI, old and new, renders ``![](data:image/png;base64,...)``; a file on the worker's disk is out of a browser's
reach). Resized, then cut to a small palette by Pillow (matplotlib's own image dependency): a backtest's
noisy 1,150-px capacity plot goes from 270 KB to about 45 KB at 600 px and 32 colours.
Matplotlib's non-interactive Agg backend; all return PNG bytes or text (no files, no MLflow).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping

import numpy as np
import pandas as pd

from prescale.slo.policy import SloPolicy


def forecast_png(
    *,
    index: pd.DatetimeIndex,
    origins: np.ndarray,
    actual: np.ndarray,
    quantiles: np.ndarray,
    levels: tuple[float, ...],
    metrics: tuple[str, ...],
    title: str,
    days: float = 3.0,
) -> bytes:
    """PNG of the last-step forecasts ``quantiles[w, -1, m, :]`` against ``actual[w, -1, m]``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    horizon = actual.shape[1]
    times = index[origins + horizon]
    keep = times >= times[-1] - pd.Timedelta(days=days) if len(times) else np.zeros(0, dtype=bool)
    fig, axes = plt.subplots(len(metrics), 1, figsize=(11, 3.2 * len(metrics)), squeeze=False, sharex=True)
    for m, (ax, name) in enumerate(zip(axes[:, 0], metrics, strict=True)):
        q = quantiles[keep, -1, m, :]
        t = times[keep]
        for low, high, alpha in ((0.05, 0.95, 0.18), (0.1, 0.9, 0.3)):
            if low in levels and high in levels:
                ax.fill_between(t, q[:, levels.index(low)], q[:, levels.index(high)], alpha=alpha, color="tab:blue",
                                linewidth=0, label=f"{round((high - low) * 100)}% interval")
        ax.plot(t, q[:, levels.index(0.5)], color="tab:blue", linewidth=1.0, label="median forecast")
        ax.plot(t, actual[keep, -1, m], color="black", linewidth=0.7, label="actual")
        ax.set_ylabel(name)
        ax.legend(loc="upper left", fontsize=8, ncol=4)
    axes[0, 0].set_title(title, fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


def frontier_png(policy: SloPolicy, *, title: str) -> bytes:
    """PNG of the tuning's cost-of-SLO curve: every trial's violation share (x, %) against its cost (y).

    Predictive and reactive trials in two colours, those over the budget hollow; the budget as a vertical
    line; the chosen point (the policy's rule and setting) as a star.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for rule, colour in (("predictive", "tab:blue"), ("reactive", "tab:orange")):
        points = [p for p in policy.frontier if p.rule == rule]
        for feasible in (True, False):
            shown = [p for p in points if p.feasible == feasible]
            if shown:
                ax.scatter([100 * p.violation_share for p in shown], [p.cost for p in shown], s=28,
                           facecolors=colour if feasible else "none", edgecolors=colour,
                           label=f"{rule}{'' if feasible else ' (over budget)'}")
    ax.axvline(100 * policy.violation_budget, color="black", linestyle="--", linewidth=1.0,
               label=f"budget {policy.violation_budget:.2%}")
    chosen = _chosen(policy)
    if chosen is not None:
        ax.scatter([100 * chosen[0]], [chosen[1]], marker="*", s=260, color="tab:red", zorder=5,
                   label=f"chosen: {policy.rule} {policy.setting}")
    ax.set_xlabel("violation share (% of scored minutes demand exceeded capacity)")
    ax.set_ylabel("cost over the stretch (USD)")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


def _chosen(policy: SloPolicy) -> tuple[float, float] | None:
    """(violation share, cost) of the chosen knobs: their frontier point, else the tuning's summary."""
    for p in policy.frontier:
        if p.rule == policy.rule and p.setting == policy.setting:
            return p.violation_share, p.cost
    tuning = policy.tuning
    if "violation_share" in tuning and "cost" in tuning:
        return float(tuning["violation_share"]), float(tuning["cost"])
    return None


def decisions_png(recent: Mapping[str, pd.DataFrame], *, title: str) -> bytes:
    """PNG of the loop's recent decisions, one small panel per app.

    ``recent[app]`` holds one row per decision, oldest first: ``ts``, ``demand`` (observed, NaN when none),
    ``capacity`` (what the decided allocation serves, same metric), ``changed`` (the plan had steps), and
    ``metric`` (the profile metric shown). Demand as a line, capacity as a step line, changes as ticks.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    apps = list(recent)
    if not apps:
        raise ValueError("decisions_png needs at least one app's decisions, got none")
    fig, axes = plt.subplots(len(apps), 1, figsize=(7.5, 1.6 * len(apps) + 0.5), squeeze=False)
    for ax, app in zip(axes[:, 0], apps, strict=True):
        frame = recent[app]
        ax.plot(frame["ts"], frame["demand"], color="black", linewidth=0.8, label="observed demand")
        ax.step(frame["ts"], frame["capacity"], where="post", color="tab:blue", linewidth=1.0,
                label="decided capacity")
        for ts in frame.loc[frame["changed"], "ts"]:
            ax.axvline(ts, color="tab:orange", linewidth=0.6, alpha=0.6)
        metric = frame["metric"].iloc[-1] if len(frame) else ""
        ax.set_ylabel(f"{app}\n{metric}", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.set_ylim(bottom=0)
    axes[0, 0].legend(loc="upper left", fontsize=7, ncol=2)
    axes[0, 0].set_title(title + " (orange: a plan changed nodes)", fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=72)
    plt.close(fig)
    return buffer.getvalue()


def shrink_png(png: bytes, *, max_bytes: int = 40_000, widths: tuple[int, ...] = (720, 600, 480, 360),
               colors: int = 32) -> bytes:
    """A smaller copy of ``png`` for embedding: at the first of ``widths`` (never wider than the original) whose
    ``colors``-colour palette PNG fits in ``max_bytes``, else at the last width tried."""
    from PIL import Image

    if max_bytes <= 0:
        raise ValueError(f"max_bytes must be > 0, got {max_bytes}")
    image = Image.open(io.BytesIO(png)).convert("RGB")
    width, height = image.size
    out = png
    for target in sorted({min(w, width) for w in widths}, reverse=True):
        small = image.resize((target, max(1, round(height * target / width))), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        small.quantize(colors=colors, method=Image.Quantize.MEDIANCUT).save(buffer, format="PNG", optimize=True)
        out = buffer.getvalue()
        if len(out) <= max_bytes:
            break
    return out


def data_uri(png: bytes) -> str:
    """``png`` as a ``data:image/png;base64,...`` URI (for a Markdown image)."""
    if png[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"not a PNG: it starts with {png[:8]!r}")
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
