"""Process environment for the embedded defaults, set once at start-up by the CLI.

Prefect and MLflow read their configuration from environment variables when they
are imported. This module points them at the folders of :class:`Settings` (so
``PRESCALE_HOME`` relocates Prefect's SQLite database too) unless the user set
them explicitly, and turns off their telemetry and prompts. It imports neither.

:func:`logs_to_file` keeps a long command's console readable: once Prefect (and
whatever it configured) is imported, every log handler that writes to the terminal
keeps only errors, and everything goes to a file under ``<home>/logs/`` instead (run
logs, the temporary API server's start and stop lines, MLflow's messages, Python
warnings). An error still reaches the terminal, as one line that points at the file for
its traceback (a task that failed and was handled, e.g. a phase whose publication
failed and is reported as skipped, would otherwise print forty lines of traceback).
The records still reach Prefect's API handler, so the UI shows every run's logs as
before. Rejected: a generated ``PREFECT_LOGGING_SETTINGS_PATH`` file. It
covers Prefect's loggers only, while MLflow configures its own handler on import and
prints some messages straight to ``sys.stderr``.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr
from pathlib import Path

from prescale.settings import Settings

QUIET_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_CLI_PROMPT": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    "DO_NOT_TRACK": "1",
    # the temporary API server takes 12-20 s to answer on a busy 2-core machine; Prefect's default gives up at 20
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
}


def prepare_environment(settings: Settings) -> None:
    """Create the home folders and export the variables Prefect and MLflow read."""
    for folder in (settings.home, settings.prefect.home, settings.registry.artifacts):
        folder.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_HOME", str(settings.prefect.home))
    for key, value in QUIET_DEFAULTS.items():
        os.environ.setdefault(key, value)


def log_folder(settings: Settings) -> Path:
    """Where the commands that run flows write their logs: ``<home>/logs``."""
    return settings.home / "logs"


@contextmanager
def logs_to_file(path: Path, *, verbose: bool = False) -> Iterator[Path | None]:
    """Send the process's logs to ``path`` (appended) and keep only errors on the terminal (module docstring).

    Call it after importing the flows (Prefect configures its logging on import). The handler change lasts
    for the rest of the process (Prefect stops its temporary server, and logs it, at exit); ``sys.stderr``
    points at the file only inside the block, so errors printed after it reach the terminal. ``verbose``:
    change nothing (yields None).
    """
    if verbose:
        yield None
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s | %(levelname)-7s | %(name)s - %(message)s"))
    root = logging.getLogger()
    for logger in _loggers():
        terminal = [h for h in logger.handlers if _writes_to_terminal(h)]
        for h in terminal:
            h.setLevel(max(h.level, logging.ERROR))
            if logger is root and h.formatter is not None:
                handler.setFormatter(h.formatter)  # Prefect's: it names the flow and task runs
            h.setFormatter(_OneLine(h.formatter or logging.Formatter(), path))
        if terminal or logger is root:
            logger.addHandler(handler)
    logging.captureWarnings(True)
    with path.open("a", encoding="utf-8", buffering=1) as stream, redirect_stderr(stream):
        yield path


class _OneLine(logging.Formatter):
    """Another formatter's line without the traceback, which it says is in ``log``."""

    def __init__(self, inner: logging.Formatter, log: Path) -> None:
        super().__init__()
        self.inner, self.log = inner, log

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        if not any(saved):
            return self.inner.format(record)
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        try:
            return f"{self.inner.format(record)} (traceback in {self.log})"
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


def _loggers() -> list[logging.Logger]:
    """The root logger and every logger created so far."""
    made = [lg for lg in logging.root.manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    return [logging.getLogger(), *made]


def _writes_to_terminal(handler: logging.Handler) -> bool:
    return (isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)
            and getattr(handler, "stream", None) in (sys.__stderr__, sys.__stdout__, sys.stderr, sys.stdout))
