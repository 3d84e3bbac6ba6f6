"""The fault matrix: 409, 429, 500, a timeout and a never-ready rollout at each step of the CPU -> GPU migration.

The migration (4 x c7g.2xlarge -> 1 x g6.xlarge, ``rig.py``) writes, step by step: the GPU pool's claim
(provision), the GPU Deployment (start: a create), the CPU Deployment's ``/scale`` (drain), the CPU
Deployment's delete (cleanup, the end of a drain to zero) and the CPU pool's claim (release). Each fault
hits the first such write of the backend (matched by method, path and User-Agent):

* ``409``: a concurrent writer changes the object (or creates the name) first, so the write is stale;
* ``429``/``500``: answered before the write is stored; ``429`` carries ``Retry-After``;
* ``timeout``: the write is stored but the answer comes after the client gave up;
* ``never-ready``: the rollout never completes (nodes never boot, pods never become available, pods never
  terminate, nodes never go away), so the step's deadline passes and the plan rolls back.

``transient`` faults hit once (the retries absorb them: the plan applies); ``persistent`` ones hit every
attempt (the plan stops, failed, with a consistent state). After each case: the serving capacity the
controllers measured never went below the starting capacity, nothing is orphaned, and a rerun without the
fault converges to the target (and then stays put).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from prescale.cluster.kubernetes import workload_name
from tests.cluster.kube_api import Fault
from tests.cluster.rig import APP, CPU_POOL, GPU_POOL, START, TARGET, emulated_rig

CPU_WORKLOAD, GPU_WORKLOAD = workload_name(APP, CPU_POOL), workload_name(APP, GPU_POOL)


@dataclass(frozen=True)
class Write:
    action: str  # the plan step the write belongs to
    method: str
    path: str
    hold: str | None  # the controllers' hold that makes this step never complete


STEPS = {
    "provision": Write("provision", "PATCH", rf"/machinedeployments/{GPU_POOL}$", f"nodes-never-ready:{GPU_POOL}"),
    "start": Write("start", "POST", r"/namespaces/prescale/deployments$", f"pods-never-ready:{GPU_WORKLOAD}"),
    "drain": Write("drain", "PATCH", rf"/deployments/{CPU_WORKLOAD}/scale$", f"pods-never-removed:{CPU_WORKLOAD}"),
    "cleanup": Write("drain", "DELETE", rf"/deployments/{CPU_WORKLOAD}$", None),
    "release": Write("release", "PATCH", rf"/machinedeployments/{CPU_POOL}$", f"nodes-never-removed:{CPU_POOL}"),
}
FAULTS = {"409": {"conflict": True}, "429": {"status": 429}, "500": {"status": 500}, "timeout": {"delay": 0.8}}
# A persistent 409 on a create or a delete is not an error: the name exists (adopted) or it changed (left for
# the next run's plan, which removes it).
ABSORBED = {("start", "409"), ("cleanup", "409")}


def _cases():
    for step in STEPS:
        for fault in FAULTS:
            yield pytest.param(step, fault, False, "applied", id=f"{step}-{fault}-transient")
            status = "applied" if (step, fault) in ABSORBED else "failed"
            yield pytest.param(step, fault, True, status, id=f"{step}-{fault}-persistent")
        if STEPS[step].hold:
            yield pytest.param(step, "never-ready", False, "rolled-back", id=f"{step}-never-ready")


@pytest.fixture
def migrating(catalog, profile):
    """A rig running the starting allocation, with short client timeouts (the timeout faults cost wall time)."""
    with emulated_rig(catalog, profile, request_timeout=0.3, retries=3) as rig:
        assert rig.apply(START).status == "applied"
        yield rig


@pytest.mark.parametrize(("step", "fault", "persistent", "expected"), list(_cases()))
def test_fault_at_each_step(migrating, step, fault, persistent, expected):
    rig, write = migrating, STEPS[step]
    start, since = rig.serving_now(), rig.clock.now
    assert start == pytest.approx((4 * 13.2,)), "the starting allocation must serve before the migration"
    injected = None
    if fault == "never-ready":
        rig.controllers.holds.add(write.hold)
    else:
        injected = rig.api.add_fault(Fault(write.method, write.path, times=-1 if persistent else 1, **FAULTS[fault]))

    report = rig.apply(TARGET)

    assert report.status == expected, report.detail
    if injected is not None:
        assert injected.hits >= 1, "the fault never matched a request: the case tested nothing"
    if expected == "failed":
        assert report.outcomes[-1].step.action == write.action and report.outcomes[-1].status == "failed"
    if expected == "rolled-back":
        failing = next(o for o in report.outcomes if o.status != "done")
        assert failing.step.action == write.action and failing.status == "timeout"
        assert any(o.rollback for o in report.outcomes)
    assert rig.holds_ok(start, since), f"serving fell to {rig.lowest_since(since)} below {start}"
    assert rig.orphans() == []

    rig.api.clear_faults()
    rig.controllers.holds.clear()
    rerun = rig.apply(TARGET)
    assert rerun.ok, rerun.detail
    assert rig.converged(TARGET) == []
    rig.controllers.settle(rig.clock, seconds=300)
    assert rig.orphans(settled=True) == []
    assert rig.holds_ok(start, since), f"serving fell to {rig.lowest_since(since)} below {start}"
