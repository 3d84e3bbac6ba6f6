"""From settings to a backend: the one place that reads ``ClusterSettings`` (composition, not decisions).

``open_cluster`` returns the configured ``Cluster``: the simulated one from its state file (advanced to
``now``, the caller's wall clock, so a cluster left alone for an hour has lived that hour), or a
``KubernetesCluster`` from a kubeconfig or the pod's service account. ``guardrails_from`` turns the
settings into the ``Guardrails`` a plan is built with.
"""

from __future__ import annotations

from prescale.catalog import Catalog
from prescale.cluster.plan import Guardrails
from prescale.cluster.protocol import Cluster
from prescale.cluster.simulated import Faults, SimulatedCluster
from prescale.settings import ClusterSettings


def guardrails_from(settings: ClusterSettings) -> Guardrails:
    return Guardrails(
        max_step_nodes=settings.max_step_nodes,
        budget_per_hour=settings.budget_per_hour,
        min_nodes=settings.min_nodes_per_app,
        rollout_deadline_seconds=settings.rollout_deadline_seconds,
    )


def open_cluster(settings: ClusterSettings, catalog: Catalog, *, now: float | None = None) -> Cluster:
    """The configured backend (``settings.backend``)."""
    if settings.backend == "kubernetes":
        from prescale.cluster.kubernetes import KubeOptions, KubernetesCluster

        names = (
            "namespace",
            "pool_namespace",
            "capi_version",
            "fpga_resource",
            "retries",
            "backoff_seconds",
            "backoff_max_seconds",
            "request_timeout_seconds",
            "poll_seconds",
        )
        options = KubeOptions(**{n: getattr(settings, n) for n in names})
        return KubernetesCluster.connect(
            catalog, kubeconfig=settings.kubeconfig, context=settings.context, options=options
        )
    sim = settings.simulation
    faults = Faults(
        provision_failure_rate=sim.provision_failure_rate,
        spot_preemption_per_hour=sim.spot_preemption_per_hour,
        slow_start_probability=sim.slow_start_probability,
        slow_start_factor=sim.slow_start_factor,
    )
    if settings.state_file is None:
        raise ValueError("cluster.state_file is unset; load settings through prescale.settings.load_settings")
    return SimulatedCluster.open(
        settings.state_file,
        catalog,
        now=now,
        faults=faults,
        seed=sim.seed,
        pod_start_seconds=sim.pod_start_seconds,
        poll_seconds=settings.poll_seconds,
    )
