"""The backtest's results table in Markdown, from the ``prescale backtest --json`` object.

One row per policy (its headline setting and scores, its cost at each violation budget), then how
predictive compares at equal budgets with each other policy (reactive, static and the published references,
AWS predictive scaling and Crane's EHPA, when they ran), the SLO's ex-ante run, then the pictures: each given
image (a URI, ``data:image/png;base64,...`` from the task layer, which reads and shrinks the PNGs) under a
caption, and the full-size files' paths. Pure text: the task layer publishes it as a Prefect artifact.
"""

from __future__ import annotations

from typing import Any

from prescale.replay.policies import REFERENCES

CAPTIONS = {
    "demand": "Demand and the forecast band over the scored window",
    "capacity": "Capacity by kind under each policy's headline setting, against demand",
    "frontier": "Cost against violations: each policy's frontier",
    "cumulative_cost": "Cumulative cost of each policy's headline setting",
}


def markdown(summary: dict[str, Any], files: dict[str, str] | None = None,
             images: dict[str, str] | None = None) -> str:
    """The results table: headline scores and the cost at each violation budget, per policy; then ``images``
    (name -> image URI, in the order given) and the ``files``' paths."""
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
        cheaper = ", ".join(f"{_pct(v)} cheaper than {key.removeprefix('vs_')}" for key, v in c.items()
                            if key.startswith("vs_"))
        lines.append(f"- budget {budget}: {cheaper}, {_pct(c.get('over_oracle'))} above the oracle")
    lines += ["", *slo_lines(summary)]
    if images:
        lines += ["", "## Pictures", ""]
        for name, uri in images.items():
            lines += [f"**{CAPTIONS.get(name, name)}**", "", f"![{name}]({uri})", ""]
    if files:
        lines += ["", "Full-size files (on the machine that ran the backtest): "
                  + ", ".join(f"`{path}`" for path in files.values())]
    return "\n".join(lines)


def slo_lines(summary: dict[str, Any]) -> list[str]:
    """The app's SLO and the ex-ante comparison (``slo``, ``ex_ante`` of the summary), as sentences."""
    slo, ahead = summary.get("slo") or {}, summary.get("ex_ante")
    budget = slo.get("violation_budget")
    head = f"SLO: capacity may fall short on at most {budget:.2%} of minutes." if budget is not None else "SLO: -"
    if not ahead:
        return [f"{head} {slo.get('note', '')}".strip()]
    ours, policy, default = ahead["predictive"], ahead["policy"], ahead.get("reactive_default") or {}
    tuning = ahead.get("tuning", {})
    return [
        head,
        f"Ex ante (tuned on {tuning.get('steps', '?')} steps before the window in {tuning.get('seconds', '?')} s, "
        f"nothing chosen with hindsight): prescale ran the {policy['rule']} rule at {policy['setting']}, "
        f"{ours['violation_share']:.2%} of minutes short, cost {_fmt(ours['cost'])}; reactive at the same "
        f"violations {_fmt(ahead.get('reactive_at_same_violations'))} ({_pct(ahead.get('vs_reactive_same'))} "
        f"saved), reactive at the HPA default {_fmt(default.get('cost'))} with "
        f"{default.get('violation_share', 0):.2%} short ({_pct(ahead.get('vs_reactive_default'))} saved)."
        + "".join(f" {name} at the same violations {_fmt(ahead.get(f'{name}_at_same_violations'))} "
                  f"({_pct(ahead.get(f'vs_{name}_same'))} saved)." for name in REFERENCES
                  if f"vs_{name}_same" in ahead),
        *(f"- {reason}" for reason in policy.get("reasons", [])),
    ]


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:,.2f}" if isinstance(value, float) else str(value)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1%}"
