"""Fixtures of the cluster tests, and the opt-in real-cluster marker.

Tests marked ``real_cluster`` are deselected unless the marker expression names them
(``pytest -m real_cluster``); they then need ``KUBECONFIG`` pointing at an API server the tests may play
the controllers on (see ``rig.py``). Everything else runs against kmock's emulator on 127.0.0.1 or the
simulated cluster.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from prescale.catalog import load_catalog, load_profile
from tests.cluster.rig import emulated_rig, real_rig
from tests.support import need_component

REPO = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "real_cluster" in (config.getoption("markexpr") or ""):
        return
    chosen = [i for i in items if i.get_closest_marker("real_cluster") is None]
    dropped = [i for i in items if i.get_closest_marker("real_cluster") is not None]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = chosen


@pytest.fixture(scope="session")
def catalog():
    return load_catalog(REPO / "infra" / "catalog.yaml")


@pytest.fixture(scope="session")
def profile():
    return load_profile(REPO / "infra" / "apps" / "inference.yaml")


@pytest.fixture(
    params=[
        pytest.param("emulated", id="kmock"),
        pytest.param("real", id="real-cluster", marks=pytest.mark.real_cluster),
    ]
)
def rig(request, catalog, profile):
    """A Kubernetes rig: kmock's emulator, or (``-m real_cluster``) the cluster in KUBECONFIG."""
    if request.param == "emulated":
        with emulated_rig(catalog, profile) as built:
            yield built
        return
    kubeconfig = os.environ.get("KUBECONFIG", "")
    if not kubeconfig or not Path(kubeconfig).is_file():
        need_component("a Kubernetes API server", "set KUBECONFIG to run the real_cluster tests")
    with real_rig(catalog, profile, kubeconfig) as built:
        yield built


@pytest.fixture
def emulated(catalog, profile):
    """A rig on kmock's emulator only (fault injection needs it)."""
    with emulated_rig(catalog, profile) as built:
        yield built
