"""Session-wide test setup: quiet Prefect and MLflow, one Prefect API server for all flow tests.

Environment variables are set before anything imports Prefect, so the whole
session uses a throwaway PREFECT_HOME and never touches the user's state.
`prefect_harness` starts Prefect's own API server once (15-25 s here) and every
flow test shares it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_SESSION_HOME = Path(tempfile.mkdtemp(prefix="prescale-tests-"))
os.environ.setdefault("PREFECT_HOME", str(_SESSION_HOME / "prefect"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_CLI_PROMPT", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PRESCALE_HOME", str(_SESSION_HOME / "home"))

REPO = Path(__file__).resolve().parents[1]
TRACES = REPO.parent / "shared" / "traces"


@pytest.fixture(scope="session")
def prefect_harness():
    """Prefect's real API server (SQLite), shared by every flow test of the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def prescale_home(tmp_path, monkeypatch) -> Path:
    """A fresh PRESCALE_HOME for one test (store, quarantine, registry under tmp_path)."""
    home = tmp_path / "home"
    monkeypatch.setenv("PRESCALE_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def traces() -> Path:
    """The shared real traces (../shared/traces); tests that need them fail loudly when absent."""
    if not TRACES.is_dir():
        from tests.support import need_component

        need_component("shared traces", f"expected the real traces at {TRACES}")
    return TRACES


def pytest_sessionfinish(session, exitstatus):
    """With PRESCALE_REQUIRE_COMPONENTS=1 (CI), any skipped test fails the run, whatever skipped it."""
    from tests.support import components_required

    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if components_required() and skipped and exitstatus == 0:
        reporter.write_line(f"{skipped} test(s) skipped while PRESCALE_REQUIRE_COMPONENTS=1: failing the run", red=True)
        session.exitstatus = 1
