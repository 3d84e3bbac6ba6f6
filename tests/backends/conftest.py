"""The production backends for one test module: PostgreSQL, an S3 store, and `prescale serve`'s servers on them.

``postgres`` is a throwaway PostgreSQL on loopback with the databases ``mlflow``
and ``prefect`` (tests/backends/postgres.py); ``s3`` is moto's S3 server with one
bucket (tests/s3.py). ``plane`` starts Prefect's and MLflow's servers through
:func:`cli.services.start_servers`, the code `prescale serve` runs, with the
backend settings pointed at them, and keeps the progress lines it printed.
Starting both servers with their migrations takes 20-40 s here, so it is done
once per module.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.backends.postgres import Postgres, postgres_server
from tests.s3 import S3Server, s3_server

ARTIFACT_PREFIX = "mlflow"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class BackendRig:
    """What a test needs to reach the running servers and look behind them."""

    postgres: Postgres
    s3: S3Server
    bucket: str
    home: Path
    settings: object  # prescale.settings.Settings
    plane: object  # cli.services.ControlPlane
    progress: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    with postgres_server("mlflow", "prefect") as server:
        yield server


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        yield server


@pytest.fixture(scope="module")
def backends(postgres, s3, tmp_path_factory) -> Iterator[BackendRig]:
    from cli.services import start_servers, stop
    from prescale.settings import load_settings

    bucket = s3.create_bucket()
    home = tmp_path_factory.mktemp("backends") / "home"
    settings = load_settings(
        home=home,
        serve={
            "prefect_port": free_port(),
            "mlflow_port": free_port(),
            "startup_timeout_seconds": 180,
            "prefect_database_url": postgres.url("prefect", driver="postgresql+asyncpg"),
            "mlflow_backend_store_uri": postgres.url("mlflow"),
            "mlflow_artifacts_destination": f"s3://{bucket}/{ARTIFACT_PREFIX}",
            "s3_endpoint_url": s3.endpoint_url,
        },
    )
    progress: list[str] = []
    # AWS credentials reach MLflow's server the standard way: the environment it inherits.
    credentials = {k: v for k, v in s3.env().items() if k.startswith("AWS_") and k != "AWS_ENDPOINT_URL_S3"}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in credentials.items():
            patch.setenv(key, value)
        for key in [k for k in os.environ if k.startswith("MLFLOW_S3_")]:
            patch.delenv(key)  # the setting, not a stray variable, must carry the endpoint
        plane = start_servers(settings, progress=progress.append)
    try:
        yield BackendRig(postgres, s3, bucket, home, settings, plane, progress)
    finally:
        stop(plane.services)
