"""Cluster backends behind one protocol: ``observe()`` what runs, ``apply(plan)`` make-before-break.

* ``plan.py``: ``Plan``/``PlanStep`` and the pure ``make_plan`` (the diff from what runs to an allocation,
  with guardrails); ``protocol.py``: ``Cluster``, ``ClusterState``, ``ApplyReport``;
  ``executor.py``: the one algorithm that carries a plan out over a backend's small driver interface;
* ``simulated.py``: ``SimulatedCluster``, the embedded default (virtual time, faults, exact cost), kept in
  a state file (``statefile.py``: its schema, the writers' lock, atomic writes);
* ``kubernetes.py``: ``KubernetesCluster`` (Cluster API node pools, a Deployment per app and pool); the
  only module that imports the ``kubernetes`` client, imported lazily by ``connect.open_cluster``.
"""

from prescale.cluster.connect import guardrails_from, open_cluster
from prescale.cluster.plan import Guardrails, Holding, Placement, Plan, PlanError, PlanStep, Target, make_plan
from prescale.cluster.protocol import (
    ApplyReport,
    Cluster,
    ClusterError,
    ClusterState,
    ClusterUnavailable,
    PoolState,
    StepOutcome,
    WorkloadState,
)
from prescale.cluster.simulated import FaultEvent, Faults, SimulatedCluster

__all__ = [
    "ApplyReport",
    "Cluster",
    "ClusterError",
    "ClusterState",
    "ClusterUnavailable",
    "FaultEvent",
    "Faults",
    "Guardrails",
    "Holding",
    "Placement",
    "Plan",
    "PlanError",
    "PlanStep",
    "PoolState",
    "SimulatedCluster",
    "StepOutcome",
    "Target",
    "WorkloadState",
    "guardrails_from",
    "make_plan",
    "open_cluster",
]
