"""The backtest's results table in Markdown, from the ``prescale backtest --json`` object.

One row per policy (its headline setting and scores, its cost at each violation budget), then how
predictive compares at equal budgets. Pure text: the task layer publishes it as a Prefect artifact.
"""

from __future__ import annotations

from typing import Any


def markdown(summary: dict[str, Any], files: dict[str, str] | None = None) -> str:
    """The results table: headline scores and the cost at each violation budget, per policy."""
    window = summary["window"]
    budgets = list(next(iter(summary["budget_costs"].values()), {}).keys())
    lines = [
        f"# Backtest: {summary['app']} (profile {summary['profile']})", "",
        f"Window {window['start']} .. {window['end']}, {window['scored_steps']} steps of {window['step_seconds']} s; "
        f"demand from `{summary['source'].get('demand', {}).get('metric')}`, forecaster "
        f"`{summary['source'].get('forecaster', '-')}`.", "",
        "| policy | setting | cost USD | violation min | slack | migrations | "
        + " | ".join(f"cost at {b}" for b in budgets) + " |",
        "|---|---|---:|---:|---:|---:|" + "---:|" * len(budgets),
    ]
    for name, p in summary["policies"].items():
        costs = summary["budget_costs"].get(name, {})
        cells = " | ".join(_fmt(costs.get(b)) for b in budgets)
        lines.append(f"| {name} | {p.get('setting')} | {_fmt(p.get('cost'))} | {_fmt(p.get('slo_violation_minutes'))} "
                     f"| {_fmt(p.get('slack'))} | {p.get('migrations')} | {cells} |")
    lines += ["", "Predictive against the others at equal violation budgets:", ""]
    for budget, c in summary["comparison"].items():
        lines.append(f"- budget {budget}: {_pct(c.get('vs_reactive'))} cheaper than reactive, "
                     f"{_pct(c.get('vs_static'))} cheaper than static, {_pct(c.get('over_oracle'))} above the oracle")
    if files:
        lines += ["", "Files: " + ", ".join(f"`{path}`" for path in files.values())]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:,.2f}" if isinstance(value, float) else str(value)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1%}"
