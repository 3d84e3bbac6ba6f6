"""Stores on every backend the store supports: a local folder and S3 (moto's server over real HTTP).

``s3`` is one moto server for the session (tests/s3.py); each test gets its own
bucket. Credentials and region reach pyarrow's S3 client the standard way, as
``AWS_*`` variables (set per test); the endpoint travels in the store's URI
(``?endpoint_override=``, what the ``store.endpoint_url`` setting produces), so no
process-wide ``AWS_ENDPOINT_URL_S3`` leaks into other tests.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from fnmatch import fnmatch
from pathlib import Path

import pytest

from prescale.metrics.location import with_endpoint
from prescale.metrics.store import MetricsStore
from tests.metrics.prometheus_server import PrometheusServer, binaries_present, running_prometheus
from tests.s3 import S3Server, s3_server
from tests.support import need_component

BACKENDS = ["local", "s3"]


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        yield server


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """A real Prometheus serving the known history of ``prometheus_server.SERIES`` (once per session)."""
    if not binaries_present():
        need_component("prometheus", "`prometheus` and `promtool` must be on PATH (Debian: apt-get install prometheus)")
    with running_prometheus(tmp_path_factory.mktemp("prometheus")) as server:
        yield server


@pytest.fixture
def s3_env(s3, monkeypatch) -> S3Server:
    """The moto server, with its credentials and region in the environment for this test."""
    env = s3.env()
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(key, env[key])
    for key in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    return s3


def s3_uri(s3: S3Server, bucket: str, path: str) -> str:
    """``s3://bucket/path`` pointed at the test server."""
    return with_endpoint(f"s3://{bucket}/{path}", s3.endpoint_url)


def make_store(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> MetricsStore:
    if backend == "local":
        return MetricsStore(tmp_path / "metrics", quarantine=tmp_path / "quarantine")
    s3 = request.getfixturevalue("s3_env")
    bucket = s3.create_bucket()
    return MetricsStore(s3_uri(s3, bucket, "prescale/metrics"), quarantine=s3_uri(s3, bucket, "prescale/quarantine"))


@pytest.fixture(params=BACKENDS)
def any_store(request, tmp_path) -> MetricsStore:
    """An empty store, once per backend."""
    return make_store(request.param, tmp_path, request)


def stored(store: MetricsStore, pattern: str = "*") -> list[str]:
    """Paths (relative to the root) of the files under the store's root that match `pattern`, on any backend."""
    where = store.location
    relative = (info.path[len(where.base) + 1 :] for info in where.files(recursive=True))
    return sorted(path for path in relative if fnmatch(path, pattern))


HOLD_LOCK = """
import sys
from prescale.metrics.location import Location
with Location.parse(sys.argv[1]).lock(sys.argv[2]):
    print("held", flush=True)
    sys.stdin.readline()
"""


@contextmanager
def lock_held_elsewhere(root: Path, name: str) -> Iterator[None]:
    """Another process holds the lock `name` of the local folder `root` until the block ends."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(root), name], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])  # fmt: skip
    try:
        assert proc.stdout.readline().strip() == "held"
        yield
    finally:
        proc.communicate("\n", timeout=30)


def blocked_until_released(root: Path, name: str, work) -> None:
    """Run `work()` while another process holds the lock; assert it waits for the release, then completes."""
    done = threading.Event()
    with lock_held_elsewhere(root, name):
        worker = threading.Thread(target=lambda: (work(), done.set()))
        worker.start()
        assert not done.wait(0.5), "the work ran while another process held the lock"
    worker.join(timeout=30)
    assert done.is_set(), "the work did not complete once the lock was released"
