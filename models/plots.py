"""The picture a reviewer looks at: forecast against actuals, with the calibrated bands.

For the last ``days`` of the held-out tail, at the last horizon step (the hardest
one, ``H`` steps ahead), one panel per metric: the actual series, the median
forecast made ``H`` steps earlier, and the 80% and 90% calibrated intervals.
Matplotlib's non-interactive Agg backend; returns PNG bytes (no files, no MLflow).
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd


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
