"""Helpers shared by the sub-commands: settings, JSON output, user errors."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console

from prescale.runtime import prepare_environment
from prescale.settings import Settings, load_settings

console = Console(stderr=False)
err_console = Console(stderr=True)

EXIT_USER_ERROR = 2


class UserError(Exception):
    """Bad input from the user: printed plainly, exit code 2, no trace."""


def settings_for_command() -> Settings:
    settings = load_settings()
    prepare_environment(settings)
    return settings


def emit_json(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")


def run_guarded(action: Callable[[], None], *, as_json: bool, user_errors: tuple[type[Exception], ...]) -> None:
    """Run a command body; user errors become a clear message and exit code 2."""
    try:
        action()
    except (UserError, *user_errors) as exc:
        if as_json:
            emit_json({"error": str(exc), "type": type(exc).__name__})
        else:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(EXIT_USER_ERROR) from None  # the message says it all; no chained trace
