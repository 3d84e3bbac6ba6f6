"""The demo's inputs and outputs, without Prefect: the bundled-trace manifest, a store summary, its progress.

``data/demo.yaml`` lists which bundled trace becomes which app and through which
column mapping; :func:`load_manifest` validates it and resolves its paths.
:func:`summarise_store` describes what the store holds per app (rows, metrics,
time span), which is what the demo prints after ingesting.

Progress: the demo flow says what it is doing through :func:`stage` (``with stage("training") as s:
... s.done = "trained 4 apps"``) and :func:`step` (a finer "cycle 3/10" within a stage). Whoever runs the
flow chooses where that goes with :func:`reporting_to` (the command line: a spinner and one line per
finished stage with its duration); by default it goes nowhere, the flow's own logs being the record.
A process-wide hook rather than a flow parameter: a reporter is not data Prefect can store with the run.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from prescale.metrics.store import MetricsStore
from prescale.metrics.validation import MetricsInputError
from prescale.names import AppName

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MANIFEST = REPO_ROOT / "data" / "demo.yaml"


class DemoApp(BaseModel):
    model_config = ConfigDict(extra="forbid")

    app: str
    file: Path
    mapping: Path | None = None

    @field_validator("app")
    @classmethod
    def _valid_app(cls, app: str) -> AppName:
        return AppName(app)  # it becomes store folders, ledger keys and Kubernetes names


class DemoManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    apps: list[DemoApp]


def load_manifest(path: Path = DEFAULT_MANIFEST) -> DemoManifest:
    """Read the manifest; relative paths are resolved against its folder and must exist."""
    path = Path(path)
    try:
        manifest = DemoManifest.model_validate(yaml.safe_load(path.read_text()) or {})
    except (OSError, UnicodeDecodeError, yaml.YAMLError, ValidationError) as exc:
        raise MetricsInputError(f"invalid demo manifest {path}: {exc}") from exc
    for entry in manifest.apps:
        entry.file = (path.parent / entry.file).resolve()
        entry.mapping = (path.parent / entry.mapping).resolve() if entry.mapping else None
        for needed in (entry.file, entry.mapping):
            if needed is not None and not needed.exists():
                raise MetricsInputError(f"demo manifest {path} names {needed}, which does not exist")
    return manifest


def summarise_store(store: MetricsStore, apps: list[str] | None = None) -> list[dict]:
    """Per app: rows, metrics, first and last instant, partitions on disk."""
    summary = []
    for app in apps or store.apps():
        rows = store.read(app)
        if rows.empty:
            continue
        summary.append(
            {
                "app": app,
                "rows": len(rows),
                "metrics": sorted(rows["metric"].unique()),
                "first": rows["ts"].min().isoformat(),
                "last": rows["ts"].max().isoformat(),
                "partitions": len(store.dates(app)),
            }
        )
    return summary


class Progress(Protocol):
    """Where the demo's stages are reported (the command line implements it with rich)."""

    def begin(self, doing: str) -> None:
        """A stage starts (``doing``: "training forecasters")."""

    def update(self, doing: str) -> None:
        """The running stage is now at ``doing`` ("orchestrate run 3/10")."""

    def end(self, done: str, seconds: float, *, ok: bool = True) -> None:
        """The stage ended; ``done`` says what it did ("trained 4 apps"), ``seconds`` how long it took, ``ok``
        whether it ended without an error."""


class _Silent:
    def begin(self, doing: str) -> None:
        pass

    def update(self, doing: str) -> None:
        pass

    def end(self, done: str, seconds: float, *, ok: bool = True) -> None:
        pass


_reporters: list[Progress] = [_Silent()]


@contextmanager
def reporting_to(progress: Progress) -> Iterator[Progress]:
    """Send the demo's progress to ``progress`` for the duration of the block."""
    _reporters.append(progress)
    try:
        yield progress
    finally:
        _reporters.remove(progress)


@dataclass
class Stage:
    """What a running stage will report when it ends (``done``; its ``doing`` text until set)."""

    doing: str
    done: str = ""


@contextmanager
def stage(doing: str) -> Iterator[Stage]:
    """Report a stage's start, then its ``done`` text and duration when the block ends (on an error: that it
    failed, and the error goes on)."""
    reporter, started, current = _reporters[-1], time.perf_counter(), Stage(doing)
    reporter.begin(doing)
    try:
        yield current
    except BaseException:
        reporter.end(f"{doing}: failed", time.perf_counter() - started, ok=False)
        raise
    reporter.end(current.done or doing, time.perf_counter() - started)


def step(doing: str) -> None:
    """Say where the running stage is."""
    _reporters[-1].update(doing)
