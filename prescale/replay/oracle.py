r"""The oracle: the exact minimum-cost schedule that serves every observed step of the window, given lead times.

It knows the whole window's demand ``d[s, m]`` in advance, so it is the floor no policy can beat at zero
violations. Variables, for each type ``i`` it keeps (see *pruning*) and each scored step ``s = 0..T-1``::

    y[i, s]  integer, 0 <= y <= quota[i]   nodes of type i serving during step s
    b[i, s]  >= 0  (s >= 1)                nodes of type i that start serving at step s

Objective (USD; ``p[i]`` the price of one node for one step, ``r[i]`` its lead in steps)::

    minimise  Σ_i p[i] ( Σ_s y[i, s]  +  r[i] Σ_{s>=1} b[i, s] )

a node serving ``k`` steps after booting ``r`` costs ``k + r`` steps, exactly what the simulation bills;
subject to::

    Σ_i a[i, m] y[i, s] >= d[s, m]          every observed step s, every metric m   (zero violations)
    b[i, s] >= y[i, s] - y[i, s-1]          a node that starts serving was booted first
    Σ_i y[i, s] >= min_nodes

``b`` needs no integrality: at the optimum it is the positive part of an integer difference. Keeping a node
idle through a gap of ``g`` steps costs ``g p``, letting it go and booting another ``r p``: the program keeps
it exactly when ``g < r``, which is "keeps a node through idle gaps shorter than its lead time". The
nodes serving at step 0 are free of boot cost (every policy starts warm as well).

Pruning, exact: type ``i`` is dropped when another type ``j`` boots no slower, ``k = max_m ceil(a[i,m] /
a[j,m])`` nodes of ``j`` cost no more than one of ``i`` (so every ``i``-node can be replaced by ``k``
``j``-nodes over the same steps, booted later or at the same time, for no more money), and ``j``'s quota
can take the peak on its own plus ``k`` times the ``i``-nodes a schedule could use (no optimal schedule runs more
nodes of a type than cover the peak on their own, so the replacement never hits a quota).

How it is solved, and how exact that is. A week at one-minute steps with a dozen types is a MILP of ~250,000
integer variables that HiGHS (``scipy.optimize.milp``) does not close in minutes (measured: one day of the
analytics profile, 11 types, was still 66% from its bound after 60 s). So:

1. the LP relaxation over every pruned type gives a *lower bound* on any zero-violation schedule's cost
   (``bound``) and the types it uses;
2. the MILP runs on the types the LP uses plus the caller's ``candidates`` (the types of the cheapest covers
   of the window's demand levels, which supply the small nodes that fill rounding gaps);
3. in chunks of ``chunk_steps`` steps (plus an overlap of at least twice the slowest lead, so a chunk sees
   the demand its boots must prepare for), each chunk starting from the nodes the previous one left serving,
   each solved to ``gap`` within its share of ``time_limit``; only the first ``chunk_steps`` of each are kept.

The schedule is feasible (zero violations) by construction; ``gap`` reports ``1 - bound / cost``, the
proven distance to the true optimum (an over-estimate: the LP bound ignores whole nodes), and the message
the worst chunk's own MIP gap. Missing demand (gaps) is not covered.

Kept solves (``cache``): the schedule depends only on the fleet, the demand and the solver's options, and a
week of one-minute steps takes HiGHS tens of seconds, so a benchmark that replays the same window again (a
policy change, a rerun) can keep each solve in a folder: a ``.npz`` named by a SHA-256 of every input and of
this module's source, so a change to the formulation is never answered from an old solve."""

from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_array, csr_array, vstack

from prescale.fleet import Fleet
from prescale.replay.simulate import Series


@dataclass(frozen=True, eq=False)
class OracleResult:
    """The oracle's schedule as a :class:`Series`, with what HiGHS proved about it."""

    series: Series | None
    status: str  # "optimal" (within gap of the LP bound), "feasible", "infeasible", "error"
    gap: float | None  # 1 - bound / cost: proven distance to the optimum (over-estimated)
    bound: float | None  # USD, the LP relaxation: a lower bound on any zero-violation schedule's cost
    seconds: float
    kept: tuple[str, ...]  # types left after pruning
    message: str = ""


def prune(fleet: Fleet, peak: np.ndarray) -> np.ndarray:
    """Mask of the types the oracle keeps (see the module docstring)."""
    keep = np.ones(fleet.n, dtype=bool)
    a, price, ready, quota = fleet.served, fleet.price, fleet.ready, fleet.quota
    for i in range(fleet.n):
        for j in range(fleet.n):
            if i == j or not keep[j] or ready[j] > ready[i]:
                continue
            k = _replacement(a[i], a[j])
            if k is None or k * price[j] > price[i] + 1e-12:
                continue
            tie = k == 1 and price[j] == price[i] and ready[j] == ready[i] and np.array_equal(a[i], a[j])
            if tie and j > i:
                continue  # identical types: keep the first
            alone_j, alone_i = _nodes_for(peak, a[j]), _nodes_for(peak, a[i])
            if alone_j is not None and quota[j] >= alone_j + k * min(quota[i], alone_i or 0):
                keep[i] = False
                break
    return keep


def _replacement(big: np.ndarray, small: np.ndarray) -> int | None:
    need = big > 0
    if (small[need] <= 0).any():
        return None
    return int(max(math.ceil(v - 1e-9) for v in (big[need] / small[need]).tolist())) if need.any() else 1


def _nodes_for(level: np.ndarray, size: np.ndarray) -> int | None:
    need = level > 0
    if (size[need] <= 0).any():
        return None
    return int(max([math.ceil(v - 1e-9) for v in (level[need] / size[need]).tolist()] or [0]))


def solve_oracle(
    fleet: Fleet,
    demand: np.ndarray,
    *,
    gap: float = 1e-3,
    time_limit: float = 120.0,
    chunk_steps: int = 360,
    candidates: np.ndarray | None = None,
    cache: Path | None = None,
) -> OracleResult:
    """The cheapest zero-violation schedule for ``demand`` ``(T, M)`` (NaN: not observed, not covered).

    ``candidates``: a mask of types worth trying (the caller's static covers of the window's demand levels);
    the LP relaxation's support is added, and the bound always comes from the LP over every pruned type.
    ``cache``: a folder of kept solves (see the module docstring); a solve found there is returned as it was
    (its ``seconds`` are the original solve's), a new one is written there.
    """
    if cache is None:
        return _solve(fleet, demand, gap=gap, time_limit=time_limit, chunk_steps=chunk_steps, candidates=candidates)
    path = Path(cache) / f"oracle-{_key(fleet, demand, gap, time_limit, chunk_steps, candidates)}.npz"
    if path.exists():
        return _load(fleet, path)
    result = _solve(fleet, demand, gap=gap, time_limit=time_limit, chunk_steps=chunk_steps, candidates=candidates)
    _keep(result, path)
    return result


def _solve(fleet: Fleet, demand: np.ndarray, *, gap: float, time_limit: float, chunk_steps: int,
           candidates: np.ndarray | None) -> OracleResult:
    started = time.perf_counter()
    demand = np.asarray(demand, dtype=float)
    observed = np.isfinite(demand).all(axis=1)
    if not observed.any():
        return OracleResult(None, "error", None, None, 0.0, (), "no observed demand in the window")
    peak = np.nanmax(np.where(observed[:, None], demand, np.nan), axis=0)
    pruned = np.flatnonzero(prune(fleet, np.nan_to_num(peak)))
    bound, support = _relaxation(fleet, pruned, demand, observed)
    if bound is None:
        return OracleResult(None, "infeasible", None, None, time.perf_counter() - started,
                            tuple(fleet.names[i] for i in pruned), "no schedule covers the demand within the quotas")
    keep = set(pruned[support].tolist())
    if candidates is not None:
        keep |= set(np.flatnonzero(candidates).tolist()) & set(pruned.tolist())
    idx = np.array(sorted(keep), dtype=int)
    y, worst, message = _chunked(fleet, idx, demand, observed, gap=gap, time_limit=time_limit, chunk=chunk_steps)
    seconds = time.perf_counter() - started
    kept = tuple(fleet.names[i] for i in idx)
    if y is None:
        return OracleResult(None, "error", None, bound, seconds, kept, message)
    series = _series(fleet, idx, y)
    cost = _objective(fleet, idx, y)
    proven = max(0.0, 1.0 - bound / cost) if cost > 0 else 0.0
    status = "optimal" if proven <= gap + 1e-9 else "feasible"
    return OracleResult(series, status, proven, bound, seconds, kept,
                        f"{message}; worst chunk gap {worst:.2%}; gap to the LP bound {proven:.2%}")


def _relaxation(fleet: Fleet, idx: np.ndarray, demand: np.ndarray, observed: np.ndarray):
    """The LP relaxation over ``idx``: a lower bound on the cost and which types it uses."""
    model = _build(fleet, idx, demand, observed)
    res = _milp(model, integral=False, options={"presolve": True})
    if res.x is None:
        return None, np.zeros(len(idx), dtype=bool)
    y = res.x[: len(idx) * len(demand)].reshape(len(idx), len(demand))
    return float(res.fun), y.max(axis=1) > 1e-6


def _chunked(fleet, idx, demand, observed, *, gap: float, time_limit: float, chunk: int):
    """Solve ``[s, s + chunk + overlap)`` at a time, keep the first ``chunk`` steps, carry the state on."""
    T = len(demand)
    overlap = max(2 * int(fleet.ready[idx].max()), chunk // 6, 1)
    n_chunks = max(1, -(-T // chunk))
    per_chunk = max(2.0, time_limit / n_chunks)
    parts, state, s, worst, statuses = [], None, 0, 0.0, set()
    while s < T:
        e = min(T, s + chunk + overlap)
        model = _build(fleet, idx, demand[s:e], observed[s:e], initial=state)
        res = _milp(model, integral=True, options={"mip_rel_gap": gap, "time_limit": per_chunk, "presolve": True})
        if res.x is None:
            return None, worst, f"chunk at step {s}: {res.message}"
        y = np.rint(res.x[: len(idx) * (e - s)]).reshape(len(idx), e - s).astype(int)
        take = e - s if e == T else min(chunk, e - s)
        parts.append(y[:, :take])
        state = y[:, take - 1]
        worst = max(worst, float(getattr(res, "mip_gap", 0.0) or 0.0))
        statuses.add("optimal" if res.status == 0 else "time limit")
        s += take
    return np.concatenate(parts, axis=1), worst, f"{n_chunks} chunk(s) of {chunk} steps ({', '.join(sorted(statuses))})"


def _milp(model: dict, *, integral: bool, options: dict):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        integrality = model["integrality"] if integral else np.zeros_like(model["integrality"])
        return milp(model["cost"], integrality=integrality, bounds=model["bounds"],
                    constraints=model["constraints"], options={"disp": False, **options})


def _objective(fleet: Fleet, idx: np.ndarray, y: np.ndarray) -> float:
    p, r = fleet.step_price[idx], fleet.ready[idx]
    boots = np.maximum(np.diff(y, axis=1), 0).sum(axis=1)
    return float((p[:, None] * y).sum() + (p * r * boots).sum())


def _build(
    fleet: Fleet, idx: np.ndarray, demand: np.ndarray, observed: np.ndarray, *, initial: np.ndarray | None = None
) -> dict:
    """Columns ``[y (k*T) | b (k*T)]``, type-major; rows: cover, boot, min nodes.

    ``initial``: nodes serving just before step 0 (a chunk after the first): ``b[i,0] >= y[i,0] - initial[i]``;
    without it step 0 is free of boot cost.
    """
    T, k, M = len(demand), len(idx), demand.shape[1]
    a, p, r, quota = fleet.served[idx], fleet.step_price[idx], fleet.ready[idx], fleet.quota[idx]
    ny = k * T
    cost = np.concatenate([np.repeat(p, T), np.repeat(p * r, T)])
    first = np.arange(k) * T  # b[i, 0] is not a boot: fixed to 0
    upper = np.concatenate([np.repeat(quota.astype(float), T), np.full(ny, np.inf)])
    upper[ny + first] = 0.0 if initial is None else np.inf
    integrality = np.concatenate([np.ones(ny, dtype=np.uint8), np.zeros(ny, dtype=np.uint8)])
    rows, lbs = [], []
    # cover: Σ_i a[i,m] y[i,s] >= d[s,m]
    steps = np.flatnonzero(observed)
    for m in range(M):
        users = np.flatnonzero(a[:, m] > 0)
        if not len(steps) or not (demand[steps, m] > 0).any():
            continue
        r_idx = np.repeat(np.arange(len(steps)), len(users))
        c_idx = (users[None, :] * T + steps[:, None]).ravel()
        vals = np.tile(a[users, m], len(steps))
        rows.append(csr_array(coo_array((vals, (r_idx, c_idx)), shape=(len(steps), 2 * ny))))
        lbs.append(demand[steps, m])
    # boots: b[i,s] - y[i,s] + y[i,s-1] >= 0 for s >= 1
    s = np.tile(np.arange(1, T), k)
    i = np.repeat(np.arange(k), T - 1)
    n_rows = len(s)
    rr = np.arange(n_rows)
    r_idx = np.concatenate([rr, rr, rr])
    c_idx = np.concatenate([ny + i * T + s, i * T + s, i * T + s - 1])
    vals = np.concatenate([np.ones(n_rows), -np.ones(n_rows), np.ones(n_rows)])
    rows.append(csr_array(coo_array((vals, (r_idx, c_idx)), shape=(n_rows, 2 * ny))))
    lbs.append(np.zeros(n_rows))
    if initial is not None:  # b[i,0] - y[i,0] >= -initial[i]
        rr = np.arange(k)
        c_idx = np.concatenate([ny + first, first])
        vals = np.concatenate([np.ones(k), -np.ones(k)])
        rows.append(csr_array(coo_array((vals, (np.concatenate([rr, rr]), c_idx)), shape=(k, 2 * ny))))
        lbs.append(-np.asarray(initial, dtype=float))
    if fleet.profile.min_nodes > 0:
        r_idx = np.tile(np.arange(T), k)
        c_idx = (np.arange(k)[:, None] * T + np.arange(T)[None, :]).ravel()
        rows.append(csr_array(coo_array((np.ones(k * T), (r_idx, c_idx)), shape=(T, 2 * ny))))
        lbs.append(np.full(T, float(fleet.profile.min_nodes)))
    matrix = vstack(rows).tocsr()
    lb = np.concatenate(lbs)
    constraints = LinearConstraint(matrix, lb, np.full(len(lb), np.inf))
    return {"cost": cost, "integrality": integrality, "bounds": Bounds(np.zeros(2 * ny), upper),
            "constraints": constraints}


def _series(fleet: Fleet, idx: np.ndarray, y: np.ndarray) -> Series:
    """Serving counts ``y`` ``(k, T)``; held = serving + booting (a node starting at s is held from s - r)."""
    T = y.shape[1]
    ready = np.zeros((T, fleet.n), dtype=int)
    ready[:, idx] = y.T
    boots = np.zeros((T, fleet.n), dtype=int)
    boots[1:, idx] = np.maximum(np.diff(y, axis=1), 0).T
    held = ready.copy()
    orders = np.zeros_like(ready)
    for col in np.flatnonzero(boots.any(axis=0)):
        r = int(fleet.ready[col])
        for s in np.flatnonzero(boots[:, col]):
            held[max(0, s - r) : s, col] += boots[s, col]
            orders[max(0, s - r), col] += boots[s, col]
    removals = np.zeros_like(ready)
    removals[1:] = np.maximum(-np.diff(ready, axis=0), 0)
    return Series(held=held, ready=ready, orders=orders, removals=removals)


def _key(fleet: Fleet, demand: np.ndarray, gap: float, time_limit: float, chunk_steps: int,
         candidates: np.ndarray | None) -> str:
    """SHA-256 of everything a solve depends on, and of this module's source."""
    digest = hashlib.sha256(Path(__file__).read_bytes())
    digest.update(json.dumps([fleet.names, fleet.profile.min_nodes, gap, time_limit, chunk_steps]).encode())
    for array in (fleet.served, fleet.step_price, fleet.ready, fleet.quota, np.asarray(demand, dtype=float),
                  np.zeros(0, dtype=bool) if candidates is None else np.asarray(candidates, dtype=bool)):
        digest.update(str(array.shape).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:32]


def _keep(result: OracleResult, path: Path) -> None:
    """Write a solve (its series and what HiGHS proved) to ``path``; a solve without a schedule is not kept."""
    if result.series is None:
        return
    meta = {"status": result.status, "gap": result.gap, "bound": result.bound, "seconds": result.seconds,
            "kept": list(result.kept), "message": result.message}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.npz")
    s = result.series
    np.savez(partial, held=s.held, ready=s.ready, orders=s.orders, removals=s.removals, meta=json.dumps(meta))
    partial.replace(path)  # a crash mid-write leaves no half file under the final name


def _load(fleet: Fleet, path: Path) -> OracleResult:
    with np.load(path) as data:
        meta = json.loads(str(data["meta"]))
        series = Series(held=data["held"], ready=data["ready"], orders=data["orders"], removals=data["removals"])
    if series.held.shape[1] != fleet.n:
        raise ValueError(f"{path}: a kept oracle solve for {series.held.shape[1]} types, the fleet has {fleet.n}")
    return OracleResult(series, meta["status"], meta["gap"], meta["bound"], meta["seconds"], tuple(meta["kept"]),
                        meta["message"] + " (kept solve)")
