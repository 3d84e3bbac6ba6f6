"""Helpers shared by the sub-commands: settings, JSON output, user errors.

A user error (bad input: :class:`UserError`, an invalid name, an invalid setting, and each command's own error
types) is printed as one line, or one JSON object with ``--json``, and ends the command with exit code 2; any
other exception is a failure and keeps its traceback (exit code 1). ``prescale -v COMMAND`` prints the
traceback of a user error too.

Commands that run a Prefect flow wrap the call in :func:`quiet_flow_errors`: Prefect's console handler would
otherwise print the user error's traceback from the flow run's log (``Encountered exception during
execution``) before our one line. Only the console is quieted, and only for those types: the records still
reach Prefect's API handler (the run's logs in the UI), and a real failure is printed as before.

:class:`ConsoleProgress` shows a long command's stages (``prescale.demo.Progress``): a transient spinner
while one runs, then one line with what it did and how long it took.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from cli.runtime import prepare_environment
from prescale.names import InvalidNameError
from prescale.settings import Settings, SettingsError, load_settings

console = Console(stderr=False)
err_console = Console(stderr=True)

EXIT_USER_ERROR = 2


class UserError(Exception):
    """Bad input from the user: printed plainly, exit code 2, no trace."""


# Bad input whatever the command: its own errors, an invalid name, a PRESCALE_* setting that does not validate.
ALWAYS_USER_ERRORS: tuple[type[Exception], ...] = (UserError, InvalidNameError, SettingsError)


def settings_for_command() -> Settings:
    settings = load_settings()
    prepare_environment(settings)
    return settings


def emit_json(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")


_options = {"verbose": False}  # set by the root command (cli/main.py) before a sub-command runs


def set_verbose(on: bool) -> None:
    _options["verbose"] = on


def verbose() -> bool:
    """Whether ``prescale -v`` was given (false outside a command line)."""
    return _options["verbose"]


class ConsoleProgress:
    """``prescale.demo.Progress`` on a rich console: a transient spinner while a stage runs (on a terminal,
    unless ``spinner`` is off: the logs are on the console then), and one ``✓ done (duration)`` line when it
    ends (``✗`` when it failed). The spinner leaves ``sys.stdout`` and ``sys.stderr`` alone (rich redirects
    them by default), so what libraries print keeps going where ``cli.runtime.logs_to_file`` sent it.

    :meth:`waiting` opens a stage that the next :meth:`begin` closes (Prefect starting its server before the
    flow's first stage, which only the flow's first step can tell)."""

    def __init__(self, out: Console, *, spinner: bool = True) -> None:
        self.out = out
        self.spinner = spinner and out.is_terminal
        self._live: Progress | None = None
        self._waiting: tuple[str, float] | None = None

    def waiting(self, doing: str, done: str) -> None:
        self.begin(doing)
        self._waiting = (done, time.perf_counter())

    def begin(self, doing: str) -> None:
        if self._waiting is not None:
            done, started = self._waiting
            self.end(done, time.perf_counter() - started)
        if self.spinner:
            self._live = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                                  console=self.out, transient=True, redirect_stdout=False,
                                  redirect_stderr=False)  # fmt: skip
            self._live.add_task(escape(doing))
            self._live.start()

    def update(self, doing: str) -> None:
        if self._live is not None:
            self._live.update(self._live.task_ids[0], description=escape(doing))

    def end(self, done: str, seconds: float, *, ok: bool = True) -> None:
        self._waiting = None
        if self._live is not None:
            self._live.stop()
            self._live = None
        mark = "[green]✓[/]" if ok else "[red]✗[/]"
        self.out.print(f"{mark} {escape(done)} [dim]({duration(seconds)})[/]", highlight=False)


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``."""
    seconds = round(seconds)
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60:02d} s"


def run_guarded(action: Callable[[], None], *, as_json: bool, user_errors: tuple[type[Exception], ...]) -> None:
    """Run a command body; user errors become a clear message and exit code 2."""
    try:
        action()
    except (*ALWAYS_USER_ERRORS, *user_errors) as exc:
        if verbose():
            traceback.print_exception(exc, file=sys.stderr)
        if as_json:
            emit_json({"error": str(exc), "type": type(exc).__name__})
        else:
            err_console.print(f"[bold red]error:[/] {escape(printable(str(exc)))}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_USER_ERROR) from None  # the message says it all; no chained trace


def printable(text: str) -> str:
    """``text`` with control characters other than newlines escaped (``\\x1b``): a message quoting a hostile
    file must not move the cursor, recolour or clear the user's terminal."""
    return "".join(c if c.isprintable() or c == "\n" else repr(c)[1:-1] for c in text)


class _HideUserErrors(logging.Filter):
    """Drops a Prefect run's console records about a user error: its logged traceback, and the task's and
    flow's ``Finished in state Failed('... encountered an exception <Type>: ...')`` lines."""

    def __init__(self, errors: tuple[type[Exception], ...]) -> None:
        super().__init__()
        self.errors = errors
        names = "|".join(sorted({re.escape(e.__name__) for e in errors}))
        self.state_line = re.compile(rf"encountered an exception:? (?:{names}):")

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("prefect"):
            return True
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, self.errors):
            return False
        return not self.state_line.search(record.getMessage())


@contextmanager
def quiet_flow_errors(user_errors: tuple[type[Exception], ...]) -> Iterator[None]:
    """Around a flow call, after Prefect is imported (its logging is configured then): see the module docstring."""
    if verbose():
        yield
        return
    hide = _HideUserErrors((*ALWAYS_USER_ERRORS, *user_errors))
    handlers = list(logging.getLogger().handlers)
    for handler in handlers:
        handler.addFilter(hide)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(hide)
