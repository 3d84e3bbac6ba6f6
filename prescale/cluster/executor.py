"""Carrying a ``Plan`` out: one algorithm for every backend, over a small ``Driver`` interface.

A backend supplies the writes (``set_nodes``: an app's claim on a pool; ``set_replicas``: an app's replicas
on a pool; ``cleanup``: remove an app's emptied workload), ``observe()``, and its clock (``now``, ``wait``:
real time for Kubernetes, virtual time for the simulated cluster, so tests and replays never sleep).

Per step, in order:

1. **guard** (break steps only): wait until removing the step's ready replicas keeps the app's serving
   capacity at or above ``floor = min(serving at the start, serving of the target)`` per metric, and a
   release only frees nodes with no replicas of the app left on them;
2. **write** the desired value (idempotent: writing the same value twice is harmless);
3. **wait** until the cluster shows the step done: provision - the pool settled and all its nodes ready;
   start - the replicas available; drain - the extra replicas gone; release - the pool shrunk. A drain to
   zero then removes the empty workload.

A step not done within its deadline (the guard included) triggers a **rollback** to the last checkpoint,
itself a make-before-break plan (``plan.restore_plan``), run once without a further rollback. An API that
keeps failing (``ClusterError`` after the backend's retries) stops the plan where it is, without a
rollback that could only fail the same way: each write is one object, claims live on the objects, so the
state left is consistent and the next run's plan (from ``observe()``) picks up from it.

Serving capacity is measured on every observation; the report keeps its start, its lowest point and its
end, so a caller can check the invariant without trusting the steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

from prescale.cluster.plan import Placement, Plan, PlanStep, Target, at_least, restore_plan
from prescale.cluster.protocol import ApplyReport, ClusterError, ClusterState, StepOutcome


class Driver(Protocol):
    """What a backend provides to the executor."""

    def observe(self) -> ClusterState: ...

    def set_nodes(self, app: str, place: Placement, nodes: int, *, spot: int = 0) -> None: ...

    def set_replicas(self, app: str, place: Placement, replicas: int) -> None: ...

    def cleanup(self, app: str, place: Placement) -> None: ...

    def now(self) -> float: ...

    def wait(self, seconds: float) -> None: ...


@dataclass
class _Run:
    """Mutable bookkeeping of one ``execute`` call."""

    plan: Plan
    driver: Driver
    poll_seconds: float
    floor: tuple[float, ...] = ()
    start: tuple[float, ...] = ()
    lowest: list[float] = field(default_factory=list)
    last: tuple[float, ...] = ()
    outcomes: list[StepOutcome] = field(default_factory=list)

    def observe(self) -> ClusterState:
        state = self.driver.observe()
        now = state.serving(self.plan.app, self.plan.placements, len(self.plan.metrics))
        self.lowest = [min(a, b) for a, b in zip(self.lowest, now, strict=True)] if self.lowest else list(now)
        self.last = now
        return state


def execute(plan: Plan, driver: Driver, *, poll_seconds: float) -> ApplyReport:
    """Apply ``plan`` through ``driver`` (see the module docstring); never raises for a failing step."""
    started = driver.now()
    run = _Run(plan=plan, driver=driver, poll_seconds=poll_seconds)
    try:
        run.observe()
    except ClusterError as exc:
        return _report(run, "failed", f"could not observe the cluster: {exc}", started=started)
    run.start = run.last
    run.floor = tuple(min(a, b) for a, b in zip(run.start, plan.serving_after, strict=True))
    if plan.blocked:
        return _report(run, "blocked", "; ".join(plan.blocked), started=started)
    if not plan.steps:
        return _report(run, "noop", "nothing to change", started=started)
    checkpoint = _targets(plan.current)
    expected = _targets(plan.current)
    for step in plan.steps:
        outcome = _run_step(run, step, rollback=False)
        run.outcomes.append(outcome)
        if outcome.status == "failed":
            return _report(
                run, "failed", f"step {step.index} ({step.describe()}) failed: {outcome.detail}", started=started
            )
        if outcome.status != "done":
            return _rollback(run, step, outcome, checkpoint=checkpoint, started=started)
        expected[step.rtype] = _after(expected[step.rtype], step)
        if step.checkpoint:
            checkpoint = dict(expected)
    return _report(run, "applied", f"{len(plan.steps)} step(s) applied", started=started)


def _run_step(run: _Run, step: PlanStep, *, rollback: bool) -> StepOutcome:
    driver, place, app = run.driver, run.plan.placements[step.rtype], run.plan.app
    t0 = driver.now()
    try:
        if step.phase == "break":
            safe = _wait_for(run, lambda s: _guard(run, s, step), deadline=t0 + step.deadline_seconds)
            if safe is None:
                return _outcome(run, step, "refused", t0=t0, detail=_guard_detail(run, step), rollback=rollback)
        if step.unit == "nodes":
            target = run.plan.target.get(step.rtype)
            driver.set_nodes(app, place, step.after, spot=min(target.spot if target else 0, step.after))
        else:
            driver.set_replicas(app, place, step.after)
        done = _wait_for(run, lambda s: _done(s, app, step), deadline=t0 + step.deadline_seconds)
        if done is None:
            return _outcome(run, step, "timeout", t0=t0, detail=_timeout_detail(run, step), rollback=rollback)
        if step.after == 0 and step.phase == "break":
            driver.cleanup(app, place)  # idempotent: only removes a workload with no replicas
    except ClusterError as exc:
        return _outcome(run, step, "failed", t0=t0, detail=str(exc), rollback=rollback)
    return _outcome(run, step, "done", t0=t0, detail="", rollback=rollback)


def _rollback(
    run: _Run, step: PlanStep, outcome: StepOutcome, *, checkpoint: dict[str, Target], started: float
) -> ApplyReport:
    why = f"step {step.index} ({step.describe()}) {outcome.status}: {outcome.detail}"
    try:
        back = restore_plan(run.plan, run.observe().holdings(run.plan.app), checkpoint)
    except ClusterError as exc:
        return _report(run, "failed", f"{why}; could not observe the cluster to roll back: {exc}", started=started)
    for undo in back.steps:
        result = _run_step(run, replace(undo, index=len(run.outcomes)), rollback=True)
        run.outcomes.append(result)
        if result.status != "done":
            return _report(
                run, "failed", f"{why}; rollback incomplete at {undo.describe()}: {result.detail}", started=started
            )
    return _report(run, "rolled-back", f"{why}; rolled back to the last checkpoint", started=started)


# ------------------------------------------------------------------------------------------------ checks


def _done(state: ClusterState, app: str, step: PlanStep) -> bool:
    pool = state.pools.get(step.rtype)
    work = state.workload(app, step.rtype)
    if step.action == "provision":
        return (
            pool is not None and pool.claims.get(app, 0) == step.after and pool.settled and pool.ready >= pool.desired
        )
    if step.action == "release":
        return pool is None or (pool.claims.get(app, 0) == step.after and pool.settled and pool.current <= pool.desired)
    if step.action == "start":
        return work is not None and work.desired == step.after and work.settled and work.ready >= step.after
    return work is None or (work.desired == step.after and work.settled and work.current <= step.after)


def _guard(run: _Run, state: ClusterState, step: PlanStep) -> bool:
    """Does the break step keep serving capacity at or above the floor (and free only empty nodes)?"""
    app, place = run.plan.app, run.plan.placements[step.rtype]
    work = state.workload(app, step.rtype)
    if step.action == "release":
        return work is None or work.desired <= step.after * place.replicas_per_node
    ready = work.ready if work else 0
    lost = max(0, ready - min(ready, step.after))
    now = state.serving(app, run.plan.placements, len(run.plan.metrics))
    after = tuple(v - lost * per for v, per in zip(now, place.serves_per_replica, strict=True))
    return at_least(after, run.floor)


def _guard_detail(run: _Run, step: PlanStep) -> str:
    floor = ", ".join(f"{m}={v:g}" for m, v in zip(run.plan.metrics, run.floor, strict=True))
    now = ", ".join(f"{m}={v:g}" for m, v in zip(run.plan.metrics, run.last, strict=True))
    return (
        f"refused for {step.deadline_seconds:g} s: it would take serving capacity ({now}) below the floor "
        f"({floor}), or free nodes still running replicas"
    )


def _timeout_detail(run: _Run, step: PlanStep) -> str:
    return f"not done within {step.deadline_seconds:g} s (rollout deadline)"


def _wait_for(run: _Run, check: Callable[[ClusterState], bool], *, deadline: float) -> ClusterState | None:
    while True:
        state = run.observe()
        if check(state):
            return state
        if run.driver.now() >= deadline:
            return None
        run.driver.wait(min(run.poll_seconds, deadline - run.driver.now()))


# ----------------------------------------------------------------------------------------------- helpers


def _targets(current: dict[str, Target]) -> dict[str, Target]:
    return {k: Target(v.nodes, v.replicas) for k, v in current.items()}


def _after(before: Target, step: PlanStep) -> Target:
    if step.unit == "nodes":
        return Target(step.after, before.replicas)
    return Target(before.nodes, step.after)


def _outcome(run: _Run, step: PlanStep, status: str, *, t0: float, detail: str, rollback: bool) -> StepOutcome:
    return StepOutcome(step=step, status=status, seconds=run.driver.now() - t0, detail=detail, rollback=rollback)


def _report(run: _Run, status: str, detail: str, *, started: float) -> ApplyReport:
    width = len(run.plan.metrics)
    start = run.start or tuple([0.0] * width)
    return ApplyReport(
        app=run.plan.app,
        status=status,
        outcomes=tuple(run.outcomes),
        detail=detail,
        metrics=run.plan.metrics,
        floor=run.floor or start,
        serving_start=start,
        serving_min=tuple(run.lowest) if run.lowest else start,
        serving_end=run.last or start,
        started_at=started,
        finished_at=run.driver.now(),
    )
