"""PNG plots of a backtest: demand and forecast band, capacity by kind, the frontiers, cumulative cost.

All plots read a :class:`~prescale.replay.engine.BacktestResult` and show the scored window only, on the
first demand metric of the profile (the one the profile's throughput is written for). Each policy is drawn
at its headline setting (the cheapest one within the 0.5% violation budget, else its fewest violations).
Matplotlib's ``Agg`` backend: no display needed. ``write_plots`` returns the paths it wrote.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from prescale.replay.engine import BacktestResult  # noqa: E402

COLORS = {"predictive": "tab:blue", "reactive": "tab:orange", "static": "tab:gray", "oracle": "tab:green",
          "aws": "tab:purple", "crane": "tab:brown"}  # the published references (issue 20)
KIND_COLORS = {"cpu-vm": "#4c72b0", "gpu-vm": "#55a868", "fpga": "#c44e52", "bare-metal": "#8172b2"}


def write_plots(result: BacktestResult, folder: Path) -> dict[str, str]:
    """Write the four PNGs into ``folder``; returns name -> path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, draw in (
        ("demand", plot_demand),
        ("capacity", plot_capacity),
        ("frontier", plot_frontiers),
        ("cumulative_cost", plot_cumulative_cost),
    ):
        fig = draw(result)
        path = folder / f"{name}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        out[name] = str(path)
    return out


def _scored(result: BacktestResult):
    inp = result.inp
    return inp.index[inp.start :], inp.demand[inp.start :, 0]


def plot_demand(result: BacktestResult):
    """Demand, and the forecast made one fast-tier lead time earlier (median and the q0.1-q0.9 band)."""
    inp = result.inp
    index, demand = _scored(result)
    fig, ax = plt.subplots(figsize=(12, 4))
    ax.plot(index, demand, color="black", lw=0.7, label="demand")
    if inp.forecast is not None:
        lead = min(int(result.fleet.fast.ready), inp.forecast.shape[1] - 1)
        steps = np.arange(inp.start, len(inp.index))
        made = steps - lead
        ok = made >= 0
        quantiles = [0.1, 0.5, 0.9]
        band = {q: np.full(len(steps), np.nan) for q in quantiles}
        for q in quantiles:
            path = inp.covered(q)[:, lead, 0]
            band[q][ok] = path[made[ok]]
        label = f"forecast q0.1-q0.9 ({lead} steps ahead)"
        ax.fill_between(index, band[0.1], band[0.9], color="tab:blue", alpha=0.25, label=label)
        ax.plot(index, band[0.5], color="tab:blue", lw=0.7, label="forecast median")
    ax.set_ylabel(inp.metrics[0])
    ax.set_title(f"{inp.app}: demand and forecast")
    ax.legend(loc="upper right", fontsize=8)
    return fig


def plot_capacity(result: BacktestResult):
    """Serving capacity by resource kind over time, one panel per policy (headline setting)."""
    fleet = result.fleet
    index, demand = _scored(result)
    names = [n for n in result.policies if result.policies[n].series]
    fig, axes = plt.subplots(len(names) or 1, 1, figsize=(12, 2.6 * max(1, len(names))), sharex=True, squeeze=False)
    for ax, name in zip(axes[:, 0], names, strict=False):
        policy = result.policies[name]
        setting, series = next(iter(policy.series.items()))
        ready = series.ready[result.inp.start :]
        kinds = [k for k in KIND_COLORS if k in fleet.kinds]
        layers = [ready[:, fleet.kind_mask((k,))] @ fleet.served[fleet.kind_mask((k,)), 0] for k in kinds]
        ax.stackplot(index, *layers, labels=kinds, colors=[KIND_COLORS[k] for k in kinds], alpha=0.8, step="post")
        ax.plot(index, demand, color="black", lw=0.6, label="demand")
        ax.set_title(f"{name} ({setting})", fontsize=9)
        ax.set_ylabel(result.inp.metrics[0], fontsize=8)
        ax.legend(loc="upper right", fontsize=7)
    return fig


def plot_frontiers(result: BacktestResult):
    """Cost against violation minutes for every swept setting; lines join each policy's Pareto points."""
    fig, ax = plt.subplots(figsize=(8, 5))
    scored_minutes = None
    for name, policy in result.policies.items():
        pts = policy.points
        if not pts:
            continue
        scored_minutes = pts[0].score.scored_minutes
        x = [p.score.slo_violation_minutes for p in pts]
        y = [p.score.cost for p in pts]
        ax.scatter(x, y, s=14, color=COLORS.get(name), alpha=0.5)
        front = sorted((p for p in policy.frontier() if p["pareto"]), key=lambda p: p["slo_violation_minutes"])
        ax.plot([p["slo_violation_minutes"] for p in front], [p["cost"] for p in front], marker="o", ms=4,
                color=COLORS.get(name), label=name)
    if scored_minutes:
        for label, share in result.budgets.items():
            if share > 0:
                ax.axvline(share * scored_minutes, color="red", ls="--", lw=0.8, label=f"budget {label}")
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlim(left=-0.3)
    ax.set_xlabel("SLO violation minutes")
    ax.set_ylabel("cost (USD)")
    ax.set_title(f"{result.inp.app}: cost against violations")
    ax.legend(fontsize=8)
    return fig


def plot_cumulative_cost(result: BacktestResult):
    """Cumulative USD over the window, each policy at its headline setting."""
    fleet = result.fleet
    index, _ = _scored(result)
    fig, ax = plt.subplots(figsize=(12, 4))
    for name, policy in result.policies.items():
        if not policy.series:
            continue
        setting, series = next(iter(policy.series.items()))
        cost = np.cumsum(series.cost_per_step(fleet)[result.inp.start :])
        ax.plot(index, cost, color=COLORS.get(name), label=f"{name} ({setting})")
    ax.set_ylabel("USD")
    ax.set_title(f"{result.inp.app}: cumulative cost")
    ax.legend(fontsize=8)
    return fig
