"""The linear allocation problem as a mixed-integer program, solved by HiGHS through ``scipy.optimize.milp``.

This is the exact reference (tests and benchmarks measure the search's optimality gap against it, and
``solver: milp`` selects it) and also each search trial's inner solve, with a looser MIP gap. The maths is in
``problem.py``; this module only lays it out. Variable blocks, in column order::

    y[n]  on-demand nodes (integer)     z[n]  spot nodes (integer)
    add[n], rem[n]  additions / removals (continuous: integral at the optimum since x and x0 are)
    u[T*M]  uncovered demand            e[T*M]  capacity of removed nodes already drained
    g[L]  binary, "still draining at ready level l" (levels: the distinct ready steps 1..T-1)
    p[L]  on-demand price of removed nodes billed during level l
    b[.]  binary per type that runs now and could grow: 1 if it grows (then it is not also shrunk)

Rows::

    y + z - add + rem = x0                          (link)          y + z <= U             (quota)
    add[i] <= Ua[i] g[l(i)]                         (drain after the last addition)
    g[l+1] <= g[l]                                  (levels drain in order)
    Σ a[i,m] [t >= k[i]] add[i] - e + u >= D - Σ a[i,m] x0[i]        (cover, per t, m)
    e[t,m] >= Σ a[i,m] rem[i] - Mcap[m] g[l*(t)]    (removed capacity counts once drained; l*(t): first level > t)
    p[l] >= Σ c[i] rem[i] - Mc (1 - g[l])           (overlap billing)
    add[i] <= Ua[i] b[i],  rem[i] <= x0[i] (1 - b[i])   (a type grows or shrinks, not both: otherwise a
                                                     node added and one removed would bridge a lead time
                                                     the answer, a count per type, cannot express)
    min_nodes <= Σ (y + z) <= max_nodes             Σ c[i] ((1 - σ) z[i] - σ y[i]) <= 0   (spot share)

``e``, ``g`` and ``p`` exist only when something runs now (otherwise nothing can be removed). The objective
is the linear one of ``problem.py`` with the trial's churn weight on the one-off terms. Binary drain levels
rather than a free drain step keep the program linear; a drain can only happen at a ready step, which is
where the last addition of a type becomes ready anyway.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_array

from prescale.allocation.problem import Knobs, Problem, Solution

# Feasibility jump costs ~10-100 ms per solve here and rarely finds what the root heuristics miss (measured on
# 30-type instances: same answers, 10-30% less CPU without it).
HIGHS_OPTIONS: dict[str, object] = {"presolve": True, "mip_heuristic_run_feasibility_jump": False}


@dataclass(frozen=True, eq=False)
class MilpResult:
    """What one solve returned: a solution (None when there is none) and HiGHS's status in words."""

    solution: Solution | None
    status: str  # "optimal", "time limit", "infeasible", "error"
    objective: float | None
    message: str


class _Rows:
    """Sparse rows appended block by block: ``lb <= A x <= ub``."""

    def __init__(self) -> None:
        self.r: list[np.ndarray] = []
        self.c: list[np.ndarray] = []
        self.v: list[np.ndarray] = []
        self.lb: list[np.ndarray] = []
        self.ub: list[np.ndarray] = []
        self.count = 0

    def add(self, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, lb: object, ub: object) -> None:
        """``rows`` are local (0..k-1) to this block; ``lb`` and ``ub`` broadcast to its k rows."""
        rows = np.asarray(rows, dtype=int)
        k = int(rows.max()) + 1 if rows.size else 0
        self.r.append(rows + self.count)
        self.c.append(np.asarray(cols, dtype=int))
        self.v.append(np.asarray(vals, dtype=float))
        self.lb.append(np.broadcast_to(np.asarray(lb, dtype=float), (k,)))
        self.ub.append(np.broadcast_to(np.asarray(ub, dtype=float), (k,)))
        self.count += k

    def constraint(self, n_cols: int) -> LinearConstraint:
        a = coo_array((np.concatenate(self.v), (np.concatenate(self.r), np.concatenate(self.c))), (self.count, n_cols))
        return LinearConstraint(a.tocsr(), np.concatenate(self.lb), np.concatenate(self.ub))


def solve(
    problem: Problem,
    knobs: Knobs,
    *,
    gap: float,
    time_limit: float | None = None,
    upper: np.ndarray | None = None,
) -> MilpResult:
    """Minimise the linear objective for the knobs' demand, kinds, spot share and churn weight."""
    model = _Model(problem, knobs, upper)
    options: dict[str, object] = {"disp": False, "mip_rel_gap": gap, **HIGHS_OPTIONS}
    if time_limit is not None:
        options["time_limit"] = max(time_limit, 0.001)
    with warnings.catch_warnings():  # scipy warns that it passes HIGHS_OPTIONS to HiGHS verbatim; it should
        warnings.simplefilter("ignore", RuntimeWarning)
        res = milp(
            model.cost,
            integrality=model.integrality,
            bounds=Bounds(model.lb, model.ub),
            constraints=model.rows.constraint(model.n_cols),
            options=options,
        )
    if res.x is None:
        status = "infeasible" if res.status == 2 else "time limit" if res.status == 1 else "error"
        return MilpResult(None, status, None, str(res.message))
    status = "optimal" if res.status == 0 else "time limit"
    return MilpResult(model.solution(res.x), status, float(res.fun), str(res.message))


@dataclass(frozen=True, eq=False)
class _Data:
    """The problem restricted to the types that matter (a quota above 0, or nodes running): HiGHS's presolve
    would drop the others too, but building and presolving them costs time on every trial."""

    idx: np.ndarray
    served: np.ndarray
    price: np.ndarray
    spot_price: np.ndarray
    lead: np.ndarray
    ready: np.ndarray
    current: np.ndarray
    upper: np.ndarray

    @classmethod
    def of(cls, problem: Problem, upper: np.ndarray) -> _Data:
        idx = np.flatnonzero((upper > 0) | (problem.current > 0))
        return cls(
            idx=idx,
            served=problem.served[idx],
            price=problem.price[idx],
            spot_price=problem.spot_price[idx],
            lead=problem.lead_seconds[idx],
            ready=problem.ready[idx],
            current=problem.current[idx],
            upper=upper[idx],
        )


class _Model:
    """Columns, bounds, objective and rows of one program (see the module docstring)."""

    def __init__(self, problem: Problem, knobs: Knobs, upper: np.ndarray | None) -> None:
        self.p = problem
        self.d = _Data.of(problem, problem.upper_for(knobs.kinds) if upper is None else upper)
        d = self.d
        n, T, M = len(d.idx), problem.horizon, len(problem.metrics)
        self.n, self.T, self.M = n, T, M
        self.U = d.upper
        self.removals = bool(d.current.sum() > 0)
        addable = (d.ready < T) & (d.current < self.U)
        self.add_ub = np.where(addable, np.maximum(self.U - d.current, 0), 0)
        self.levels = np.unique(d.ready[addable & (d.ready >= 1)]) if self.removals else np.array([], int)
        self.both = np.flatnonzero((self.add_ub > 0) & (d.current > 0))  # types that could be added and removed
        L = len(self.levels)
        sizes = {
            "y": n,
            "z": n,
            "add": n,
            "rem": n,
            "u": T * M,
            "e": T * M if self.removals else 0,
            "g": L,
            "p": L,
            "b": len(self.both),
        }
        self.at: dict[str, int] = {}
        offset = 0
        for name, size in sizes.items():
            self.at[name] = offset
            offset += size
        self.n_cols = offset
        self._columns(knobs)
        self.rows = _Rows()
        self._rows(knobs)

    def col(self, name: str, idx: np.ndarray | int) -> np.ndarray:
        return self.at[name] + np.asarray(idx)

    def _columns(self, knobs: Knobs) -> None:
        d, n, opts = self.d, self.n, self.p.settings
        spot_ok = ~np.isnan(d.spot_price) & (knobs.spot_share > 0)
        w = knobs.churn_weight / opts.amortize_hours
        self.lb = np.zeros(self.n_cols)
        self.ub = np.full(self.n_cols, np.inf)
        self.cost = np.zeros(self.n_cols)
        self.integrality = np.zeros(self.n_cols, dtype=np.uint8)
        blocks = {
            "y": (self.U, d.price),
            "z": (np.where(spot_ok, self.U, 0), np.nan_to_num(d.spot_price, nan=0.0)),
            "add": (self.add_ub, w * (opts.churn_cost + d.price * d.lead / 3600.0)),
            "rem": (d.current, np.full(n, w * opts.churn_cost)),
        }
        for name, (ub, cost) in blocks.items():
            sl = slice(self.at[name], self.at[name] + n)
            self.ub[sl], self.cost[sl] = ub, cost
        self.integrality[self.at["y"] : self.at["y"] + 2 * n] = 1
        u = slice(self.at["u"], self.at["u"] + self.T * self.M)
        self.cost[u] = np.tile(self.p.penalty / self.T, self.T)
        L = len(self.levels)
        g = slice(self.at["g"], self.at["g"] + L)
        self.ub[g], self.integrality[g] = 1, 1
        b = slice(self.at["b"], self.at["b"] + len(self.both))
        self.ub[b], self.integrality[b] = 1, 1
        durations = np.diff(np.concatenate([[0], self.levels])) * self.p.step_seconds / 3600.0
        self.cost[self.at["p"] : self.at["p"] + L] = w * durations

    def _rows(self, knobs: Knobs) -> None:
        d, p, n, rows = self.d, self.p, self.n, self.rows
        i = np.arange(n)
        ones = np.ones(n)
        # link: y + z - add + rem = x0
        cols = np.concatenate([self.col(b, i) for b in ("y", "z", "add", "rem")])
        rows.add(np.tile(i, 4), cols, np.concatenate([ones, ones, -ones, ones]), d.current, d.current)
        # quota: y + z <= U
        yz = np.concatenate([self.col("y", i), self.col("z", i)])
        rows.add(np.tile(i, 2), yz, np.ones(2 * n), np.zeros(n), self.U)
        self._cover_rows(knobs)
        if self.removals:
            self._drain_rows()
        if len(self.both):  # add[i] <= Ua[i] b[i] and rem[i] <= x0[i] (1 - b[i]): never both
            k, j = np.arange(len(self.both)), self.both
            cols = np.concatenate([self.col("add", j), self.col("b", k)])
            rows.add(np.tile(k, 2), cols, np.concatenate([np.ones(len(j)), -self.add_ub[j]]), -np.inf, 0.0)
            cols = np.concatenate([self.col("rem", j), self.col("b", k)])
            rows.add(np.tile(k, 2), cols, np.concatenate([np.ones(len(j)), d.current[j]]), -np.inf, d.current[j])
        # node count bounds
        hi = p.max_nodes if p.max_nodes is not None else np.inf
        rows.add(np.zeros(2 * n), yz, np.ones(2 * n), p.min_nodes, hi)
        if knobs.spot_share > 0 and self.ub[self.at["z"] : self.at["z"] + n].any():
            s = knobs.spot_share
            zy = np.concatenate([self.col("z", i), self.col("y", i)])
            rows.add(np.zeros(2 * n), zy, np.concatenate([(1 - s) * d.price, -s * d.price]), -np.inf, 0.0)

    def _cover_rows(self, knobs: Knobs) -> None:
        """``Σ a [t >= k] add - e + u >= D - cap0`` for every (t, m); row index ``t * M + m``."""
        d, T, M = self.d, self.T, self.M
        demand = self.p.demand(knobs.covered_quantile, knobs.headroom)
        cap0 = d.current @ d.served
        t_idx, i_idx = np.nonzero(np.arange(T)[:, None] >= d.ready[None, :])  # (t, i) pairs where i is ready
        keep = self.add_ub[i_idx] > 0
        t_rep, i_rep = np.repeat(t_idx[keep], M), np.repeat(i_idx[keep], M)
        m_rep = np.tile(np.arange(M), int(keep.sum()))
        vals = d.served[i_rep, m_rep]
        nz = vals != 0
        tm = np.arange(T * M)
        r = [t_rep[nz] * M + m_rep[nz], tm]
        c = [self.col("add", i_rep[nz]), self.col("u", tm)]
        v = [vals[nz], np.ones(T * M)]
        if self.removals:
            r.append(tm)
            c.append(self.col("e", tm))
            v.append(-np.ones(T * M))
        rhs = (demand - cap0[None, :]).ravel()
        self.rows.add(np.concatenate(r), np.concatenate(c), np.concatenate(v), rhs, np.full(T * M, np.inf))

    def _drain_rows(self) -> None:
        d, T, M, rows, levels = self.d, self.T, self.M, self.rows, self.levels
        L = len(levels)
        # add[i] <= Ua[i] g[l(i)] for types ready after step 0
        late = np.flatnonzero((self.add_ub > 0) & (d.ready >= 1))
        if len(late):
            k = np.arange(len(late))
            cols = np.concatenate([self.col("add", late), self.col("g", np.searchsorted(levels, d.ready[late]))])
            vals = np.concatenate([np.ones(len(late)), -self.add_ub[late].astype(float)])
            rows.add(np.tile(k, 2), cols, vals, np.full(len(late), -np.inf), np.zeros(len(late)))
        if L > 1:  # g[l+1] - g[l] <= 0
            k = np.arange(L - 1)
            cols = np.concatenate([self.col("g", k + 1), self.col("g", k)])
            rows.add(np.tile(k, 2), cols, np.concatenate([np.ones(L - 1), -np.ones(L - 1)]), -np.inf, np.zeros(L - 1))
        # e[t,m] - Σ a rem + Mcap[m] g[l*(t)] >= 0, row t * M + m
        running = np.flatnonzero(d.current > 0)
        big = np.maximum(d.current @ d.served, 1e-9)
        tm = np.arange(T * M)
        t_of, m_of = tm // M, tm % M
        r_rem = np.repeat(tm, len(running))
        i_rem = np.tile(running, T * M)
        v_rem = -d.served[i_rem, np.repeat(m_of, len(running))]
        first_after = np.searchsorted(levels, np.arange(T), side="right")[t_of]  # l*(t); == L when none
        has_g = first_after < L
        r = [tm, r_rem, tm[has_g]]
        c = [self.col("e", tm), self.col("rem", i_rem), self.col("g", first_after[has_g])]
        v = [np.ones(T * M), v_rem, big[m_of[has_g]]]
        rows.add(np.concatenate(r), np.concatenate(c), np.concatenate(v), np.zeros(T * M), np.full(T * M, np.inf))
        # p[l] - Σ c rem - Mc g[l] >= -Mc
        if L:
            big_c = max(float(d.price @ d.current), 1e-9)
            lv = np.arange(L)
            r = [lv, np.repeat(lv, len(running)), lv]
            c = [self.col("p", lv), self.col("rem", np.tile(running, L)), self.col("g", lv)]
            v = [np.ones(L), np.tile(-d.price[running], L), np.full(L, -big_c)]
            rows.add(np.concatenate(r), np.concatenate(c), np.concatenate(v), np.full(L, -big_c), np.full(L, np.inf))

    def solution(self, x: np.ndarray) -> Solution:
        n, full = self.n, self.p.n
        y = np.zeros(full, dtype=int)
        z = np.zeros(full, dtype=int)
        y[self.d.idx] = np.maximum(np.rint(x[self.at["y"] : self.at["y"] + n]), 0).astype(int)
        z[self.d.idx] = np.maximum(np.rint(x[self.at["z"] : self.at["z"] + n]), 0).astype(int)
        drain = None
        if len(self.levels):
            g = np.rint(x[self.at["g"] : self.at["g"] + len(self.levels)]).astype(bool)
            drain = int(self.levels[g].max()) if g.any() else 0
        return Solution(on_demand=y, spot=z, drain_step=drain)
