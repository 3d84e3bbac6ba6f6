"""The pictures a reviewer looks at: forecast against actuals with the calibrated bands, and the SLO frontier.

:func:`forecast_png`: for the last ``days`` of the held-out tail, at the last horizon step (the hardest
one, ``H`` steps ahead), one panel per metric: the actual series, the median
forecast made ``H`` steps earlier, and the 80% and 90% calibrated intervals.
:func:`frontier_png`: the before-use SLO tuning's trials, cost against violation share, with the budget and
the chosen knobs (``prescale.slo.tuning``).
Matplotlib's non-interactive Agg backend; both return PNG bytes (no files, no MLflow).
"""

from __future__ import annotations

import io

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
