"""Ledgers and phase reports on every backend: a local folder and S3 (moto's server over real HTTP).

The S3 fixtures are the metrics store's (tests/metrics/conftest.py): one moto server,
credentials and region in the environment per test, the endpoint in the URI, one
bucket per test. :func:`planned` decides one app with the settings' catalog, hold window
and margin, guardrails and covers, as the ``plan-app`` task does (the quantile and headroom
come from the app's SLO policy).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from prescale.catalog import load_catalog
from prescale.cluster import guardrails_from
from prescale.cycle import ClusterView, Decided, Gathered, plan_app
from prescale.replay.covers import shared_covers
from prescale.settings import Settings
from tests.metrics.conftest import s3, s3_env, s3_uri  # noqa: F401 - the shared moto S3 fixtures

BACKENDS = ["local", "s3"]


@pytest.fixture(params=BACKENDS)
def root(request, tmp_path) -> Path | str:
    """A fresh, empty location for a ledger or phase reports, once per backend."""
    if request.param == "local":
        return tmp_path / "where"
    server = request.getfixturevalue("s3_env")
    return s3_uri(server, server.create_bucket(), "prescale/where")


def planned(gathered: Gathered, view: ClusterView, settings: Settings) -> Decided:
    """``prescale.cycle.plan_app`` on the settings' catalog, hold window, margin, guardrails and cover solver."""
    return plan_app(gathered, view, catalog=load_catalog(settings.search.catalog),
                    hold_minutes=settings.replay.hold_minutes, margin=settings.replay.consolidation_margin,
                    guardrails=guardrails_from(settings.cluster),
                    covers=shared_covers(settings.replay.cover_resolution))  # fmt: skip
