"""Reasons, in words, for what the allocation did not do.

Every catalog type that ends up with no nodes gets one reason, starting with its category:

* ``incompatible: ...``  the app cannot run there (kind, FPGA bitstream, replica size, serves nothing);
* ``over quota: ...``    the type's quota is 0;
* ``lead time: ...``     a node would not be ready within the horizon, or is slower than the types chosen
  at a time when the early steps decide;
* ``excluded: ...``      the winning trial did not allow the type's kind (a mix with it scored worse);
* ``dominated on cost: ...`` serving the demand with it costs more than the chosen mix, per unit of
  demand or once whole nodes, churn and boot time are counted.

The first two (and "lead time" beyond the horizon) are decided by the filters before the search
(``problem.build_problem``); the rest compare the type with the chosen mix on one scale: the hourly cost of
covering the peak demand to cover, ``c[i] * max_m (peak[m] / a[i,m])``, continuous (per unit) or in whole
nodes. This is an explanation, not a proof: the exact cause of a MIP's choice is the whole LP, and a
short sentence per type is what an operator can act on.

``status_and_explanation`` says whether the demand is covered and, when it is not (or the problem is
infeasible), which constraint binds: lead time, quota, ``max_nodes``, or the penalty being lower than
the cost of covering the rest.
"""

from __future__ import annotations

import numpy as np

from prescale.allocation.problem import Evaluation, Knobs, Problem, Solution


def infeasibility(problem: Problem) -> str | None:
    """Why no allocation can satisfy the hard constraints, or ``None`` when one can."""
    upper_total = int(problem.upper.sum())
    if problem.min_nodes > upper_total:
        usable = {problem.names[i]: int(problem.upper[i]) for i in np.flatnonzero(problem.upper)}
        return (
            f"infeasible: min_nodes is {problem.min_nodes} but compatible types allow only {upper_total} "
            f"node(s) within quota ({_fmt_counts(usable) or 'none'}); lower min_nodes or raise a quota"
        )
    peak = problem.demand(problem.settings.covered_quantile).max(axis=0)
    if upper_total == 0 and peak.any():
        reasons = sorted({r.split(":")[0] for r in problem.rejected.values()})
        return (
            f"infeasible: no resource type can serve app {problem.app!r} (every type rejected: "
            f"{', '.join(reasons)}); see `rejected` for each type"
        )
    return None


def rejected_reasons(problem: Problem, solution: Solution, knobs: Knobs) -> dict[str, str]:
    """type -> reason for every type with no nodes in ``solution`` (catalog order)."""
    x = solution.nodes
    chosen = np.flatnonzero(x)
    peak = problem.demand(problem.settings.covered_quantile).max(axis=0)
    mix_cost = _mix_cost(problem, solution, peak)
    out: dict[str, str] = {}
    for i, name in enumerate(problem.names):
        if x[i] > 0:
            continue
        if name in problem.rejected:
            out[name] = problem.rejected[name]
            continue
        out[name] = _reason(problem, i, chosen=chosen, peak=peak, mix_cost=mix_cost, knobs=knobs)
    return out


def _reason(problem: Problem, i: int, *, chosen: np.ndarray, peak: np.ndarray, mix_cost: float, knobs: Knobs) -> str:
    rtype = problem.types[i]
    if not peak.any():
        return "dominated on cost: there is no demand to cover, so no node pays for itself"
    per_unit = _cover_cost(problem, i, peak, whole=False)
    if per_unit > mix_cost * (1 + 1e-6):
        return f"dominated on cost: covering the peak with {rtype.name} alone costs ${per_unit:,.2f}/h, " + (
            f"the chosen mix ${mix_cost:,.2f}/h"
        )
    fastest = chosen[np.argmin(problem.ready[chosen])] if len(chosen) else None
    if fastest is not None and problem.ready[i] > problem.ready[fastest]:
        return (
            f"lead time: a node takes {rtype.lead_time_seconds:g} s (serves from step {problem.ready[i]}), "
            f"{problem.types[fastest].name} takes {problem.types[fastest].lead_time_seconds:g} s; "
            f"the demand before it is ready decides"
        )
    if knobs.kinds is not None and rtype.kind not in knobs.kinds:
        return f"excluded: the best trial did not allow kind {rtype.kind} (mixes with it scored worse)"
    whole = _cover_cost(problem, i, peak, whole=True)
    if whole > mix_cost * (1 + 1e-6):
        return (
            f"dominated on cost: in whole nodes covering the peak with {rtype.name} costs ${whole:,.2f}/h, "
            f"the chosen mix ${mix_cost:,.2f}/h"
        )
    if problem.current.any():
        return "dominated on cost: switching running nodes to it costs more (churn, boot, overlap) than it saves"
    return "dominated on cost: no cheaper once spot prices, lead time and whole nodes are counted"


def _cover_cost(problem: Problem, i: int, peak: np.ndarray, *, whole: bool) -> float:
    """USD/h to cover the peak with type ``i`` alone (ignoring its quota)."""
    need = np.divide(peak, problem.served[i], out=np.full_like(peak, np.inf), where=problem.served[i] > 0)
    need = np.where(peak > 0, need, 0.0)
    nodes = float(need.max()) if need.size else 0.0
    if whole:
        nodes = float(np.ceil(nodes - 1e-9))
    return nodes * float(problem.price[i]) if np.isfinite(nodes) else float("inf")


def _mix_cost(problem: Problem, solution: Solution, peak: np.ndarray) -> float:
    """The chosen mix's on-demand USD/h, scaled to exactly the peak (so it compares with ``_cover_cost``)."""
    cap = solution.nodes @ problem.served
    ratio = np.divide(cap, peak, out=np.full_like(cap, np.inf), where=peak > 0)
    scale = float(ratio.min()) if np.isfinite(ratio).any() else 0.0
    cost = float(problem.price @ solution.nodes)
    return cost / scale if scale > 0 else float("inf")


def status_and_explanation(problem: Problem, solution: Solution, evaluation: Evaluation) -> tuple[str, str]:
    """("covered" | "uncovered", one paragraph naming the binding constraint)."""
    q = problem.settings.covered_quantile
    uncovered = evaluation.uncovered
    steps = np.flatnonzero(uncovered.sum(axis=1) > 1e-9)
    bound = _bound_types(problem, solution)
    if not len(steps):
        tail = f"; at quota: {', '.join(bound)}" if bound else ""
        return "covered", f"covers the q{q:g} forecast at every step of the horizon{tail}"
    demand = problem.demand(q)
    share = float(uncovered.sum() / max(demand.sum(), 1e-12))
    head = f"leaves {share:.1%} of the q{q:g} demand uncovered at {len(steps)} of {problem.horizon} steps"
    return "uncovered", f"{head}: {_binding(problem, solution, steps, bound)}"


def _binding(problem: Problem, solution: Solution, steps: np.ndarray, bound: list[str]) -> str:
    usable = np.flatnonzero(problem.upper > 0)
    first_ready = int(problem.ready[usable].min()) if len(usable) else problem.horizon
    early = steps[steps < max(first_ready, 1)]
    if len(early) and len(early) == len(steps):
        fastest = problem.types[usable[np.argmin(problem.ready[usable])]] if len(usable) else None
        who = f"the fastest compatible type ({fastest.name}) takes {fastest.lead_time_seconds:g} s" if fastest else ""
        return (
            f"binding constraint: lead time; steps {_span(early)} come before any new node can serve "
            f"and what runs now is not enough; {who}"
        )
    demand = problem.demand(problem.settings.covered_quantile)
    full = problem.upper.astype(float) @ problem.served  # every node within quota
    short_at_quota = [t for t in steps if np.any(demand[t] > full + 1e-9)]
    if problem.max_nodes is not None and int(solution.nodes.sum()) >= problem.max_nodes:
        return f"binding constraint: max_nodes ({problem.max_nodes}) of the app profile"
    if short_at_quota:
        m = int(np.argmax((demand[short_at_quota] - full).max(axis=0)))
        return (
            f"binding constraint: quota; every compatible node within quota serves {full[m]:,.0f} "
            f"{problem.metrics[m]} but the demand reaches {demand[:, m].max():,.0f}"
            + (f" (at quota: {', '.join(bound)})" if bound else "")
        )
    return (
        "binding constraint: the penalty; covering the rest costs more than the penalty for leaving it "
        f"({', '.join(f'${p:.4g}/h per {m}' for p, m in zip(problem.penalty, problem.metrics, strict=True))}); "
        "raise penalty_multiple or penalty_per_unit to cover it"
    )


def _bound_types(problem: Problem, solution: Solution) -> list[str]:
    x = solution.nodes
    return [f"{problem.names[i]} {x[i]}/{problem.upper[i]}" for i in np.flatnonzero((x > 0) & (x >= problem.upper))]


def _span(steps: np.ndarray) -> str:
    return f"{steps[0]}" if len(steps) == 1 else f"{steps[0]}-{steps[-1]}"


def _fmt_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in counts.items())
