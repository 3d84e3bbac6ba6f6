"""The demo's inputs and outputs, without Prefect: the bundled-trace manifest and a store summary.

``data/demo.yaml`` lists which bundled trace becomes which app and through which
column mapping; :func:`load_manifest` validates it and resolves its paths.
:func:`summarise_store` describes what the store holds per app (rows, metrics,
time span), which is what the demo prints after ingesting.
"""

from __future__ import annotations

from pathlib import Path

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
