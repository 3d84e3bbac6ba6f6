"""Process environment for the embedded defaults, set once at start-up by the CLI.

Prefect and MLflow read their configuration from environment variables when they
are imported. This module points them at the folders of :class:`Settings` (so
``PRESCALE_HOME`` relocates Prefect's SQLite database too) unless the user set
them explicitly, and turns off their telemetry and prompts. It imports neither.
"""

from __future__ import annotations

import os

from prescale.settings import Settings

QUIET_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_CLI_PROMPT": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    "DO_NOT_TRACK": "1",
}


def prepare_environment(settings: Settings) -> None:
    """Create the home folders and export the variables Prefect and MLflow read."""
    for folder in (settings.home, settings.prefect.home, settings.registry.artifacts):
        folder.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_HOME", str(settings.prefect.home))
    for key, value in QUIET_DEFAULTS.items():
        os.environ.setdefault(key, value)
