"""The file source: one CSV or Parquet file, canonical or through a YAML column mapping, read whole.

Options: ``path`` (the file), ``app`` (the app of rows without one; with a one-app-per-column
mapping, the name prefix), ``mapping`` (a YAML :class:`~prescale.metrics.files.ColumnMapping`); from the
settings, ``ingest.block_size_mib``. The parsing is :mod:`prescale.metrics.files`; this module
adds the batch id: the file's content digest, the app and the mapping's bytes, so the same file
ingested twice (or a retried read) is one batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from prescale.metrics.files import load_mapping, read_canonical, read_mapped
from prescale.metrics.sources.base import RawBatch, Window, parse_options
from prescale.metrics.store import batch_id_for, file_digest
from prescale.metrics.validation import MetricsInputError
from prescale.names import AppName, InvalidNameError

if TYPE_CHECKING:
    from prescale.settings import Settings


class FileOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: Path = Field(description="CSV or Parquet file: canonical long format, or any table with a mapping.")
    app: str | None = Field(default=None, description="App of rows without one (one app per column: the prefix).")
    mapping: Path | None = Field(default=None, description="YAML column mapping (see infra/mappings/).")


@dataclass(frozen=True)
class FileSource:
    """A metrics file, read whole (a finite dataset: no window)."""

    path: Path
    app: str | None = None
    mapping: Path | None = None
    block_size_mib: int = 64

    name: ClassVar[str] = "file"
    live: ClassVar[bool] = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))
        if self.mapping is not None:
            object.__setattr__(self, "mapping", Path(self.mapping))

    @classmethod
    def build(cls, options: Mapping[str, Any], settings: Settings) -> FileSource:
        parsed = parse_options(cls.name, FileOptions, options)
        return cls(parsed.path, app=parsed.app, mapping=parsed.mapping, block_size_mib=settings.ingest.block_size_mib)

    def read(self, window: Window | None = None) -> RawBatch:
        """The whole file; a window is refused rather than ignored (a file is not read by the clock)."""
        if window is not None:
            raise MetricsInputError(f"the file source reads {self.path} whole: it takes no window")
        app = self._checked_app()
        with ThreadPoolExecutor(max_workers=1) as pool:
            digest = pool.submit(file_digest, self.path)  # hashing releases the GIL: overlap it with parsing
            if self.mapping is not None:
                rows = read_mapped(self.path, load_mapping(self.mapping), app=app)
                mapping_identity = self.mapping.read_bytes()
            else:
                rows = read_canonical(self.path, app=app, block_size_mib=self.block_size_mib)
                mapping_identity = b""
            batch_id = batch_id_for(digest.result(), app or "", mapping_identity)
        return RawBatch(rows=rows, batch_id=batch_id, source=str(self.path), app=app)

    def _checked_app(self) -> str | None:
        if self.app is None:
            return None
        try:
            return AppName(self.app, what="--app")
        except InvalidNameError as exc:
            raise MetricsInputError(f"{exc}; e.g. 'web' or 'video-api'") from None
