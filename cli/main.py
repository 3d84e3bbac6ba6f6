"""The `prescale` command: a typer app whose sub-commands live in `cli/commands/`.

Each sub-command takes ``--json`` to print one machine-readable object. Settings
come from the environment (``PRESCALE_*``; see ``prescale/settings.py``) and
``PRESCALE_HOME`` relocates all local state. Exit codes: 0 ok, 1 unexpected
failure, 2 bad input (nothing was written): one line on stderr (or one JSON
object), no traceback unless ``prescale -v COMMAND`` asks for it. ``-v`` also puts the
flows' run logs back on the console where a command sends them to ``<home>/logs/``
(``prescale demo``).
"""

from __future__ import annotations

import importlib
import pkgutil

import typer

import cli.commands as commands_pkg
from cli.commands.common import set_verbose

app = typer.Typer(
    name="prescale",
    help="Predictive, heterogeneous autoscaling: forecast each app's demand per phase and provision the cheapest "
    "mix of CPU VMs, GPU VMs, FPGAs and bare metal ahead of it. State lives under PRESCALE_HOME (default ./.prescale).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_NOT_COMMANDS = {"common", "demand", "rule"}


@app.callback()
def _root(
    verbose: bool = typer.Option(
        False, "--verbose", "-v",
        help="Show the flows' run logs on the console (the demo otherwise writes them to <home>/logs/), and on "
        "bad input print the traceback too.",
    ),
) -> None:
    """Predictive, heterogeneous autoscaling (see README.md)."""
    set_verbose(verbose)


def _register_commands() -> None:
    """Import every module of `cli.commands` and let it add its command(s)."""
    for info in sorted(pkgutil.iter_modules(commands_pkg.__path__), key=lambda m: m.name):
        if info.name in _NOT_COMMANDS or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{commands_pkg.__name__}.{info.name}")
        module.register(app)


_register_commands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
