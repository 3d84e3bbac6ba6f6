"""Ledgers and phase reports on every backend: a local folder and S3 (moto's server over real HTTP).

The S3 fixtures are the metrics store's (tests/metrics/conftest.py): one moto server,
credentials and region in the environment per test, the endpoint in the URI, one
bucket per test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.metrics.conftest import s3, s3_env, s3_uri  # noqa: F401 - the shared moto S3 fixtures

BACKENDS = ["local", "s3"]


@pytest.fixture(params=BACKENDS)
def root(request, tmp_path) -> Path | str:
    """A fresh, empty location for a ledger or phase reports, once per backend."""
    if request.param == "local":
        return tmp_path / "where"
    server = request.getfixturevalue("s3_env")
    return s3_uri(server, server.create_bucket(), "prescale/where")
