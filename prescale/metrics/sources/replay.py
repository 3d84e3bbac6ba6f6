"""The replay source: the demo manifest's traces played as live demand, read one window at a time without Prometheus.

Options: ``manifest`` (a demo manifest, default ``data/demo.yaml``), ``speed`` (trace time per real
time, 1.0) and ``epoch`` (the instant playing started; needed unless the speed is 1). It reads what
:class:`~prescale.live.player.LiveTraces` plays in the window, the rows the live exporter would have
served to Prometheus over those minutes, with the trace's own flags, so validation quarantines
exactly what it would for the file. It is where ``prescale serve --live`` falls back when no
``prometheus`` binary is installed; the time mapping is stated in ``prescale/live/player.py``.

The window is half-open, ``[start, end)`` (a row at ``end`` belongs to the next minute's read).
The batch id is derived from what is played (every trace file's content, app and mapping, the speed
and epoch) and the window's ends, so re-reading the same window is one batch, a no-op in the store,
as for the Prometheus source. Building does no I/O; the traces are read on :meth:`ReplaySource.read`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PositiveFloat, model_validator

from prescale.demo import DEFAULT_MANIFEST
from prescale.metrics.sources.base import RawBatch, Window, parse_options, require_window
from prescale.metrics.store import batch_id_for

if TYPE_CHECKING:
    from prescale.settings import Settings


class ReplayOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    manifest: Path = Field(default=DEFAULT_MANIFEST, description="Demo manifest: app, trace file and mapping.")
    speed: PositiveFloat = Field(default=1.0, description="Trace time per real time; other than 1 needs an epoch.")
    epoch: AwareDatetime | None = Field(default=None, description="The instant playing started (ISO, with a zone).")

    @model_validator(mode="after")
    def _epoch_for_speed(self) -> ReplayOptions:
        if self.speed != 1 and self.epoch is None:
            raise ValueError(f"speed {self.speed:g} needs an epoch, the instant playing started (ISO, with a zone)")
        return self


@dataclass(frozen=True)
class ReplaySource:
    """The demo traces played live, read one window at a time."""

    manifest: Path = DEFAULT_MANIFEST
    speed: float = 1.0
    epoch: datetime | None = None

    name: ClassVar[str] = "replay"
    live: ClassVar[bool] = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "manifest", Path(self.manifest))

    @classmethod
    def build(cls, options: Mapping[str, Any], settings: Settings) -> ReplaySource:
        parsed = parse_options(cls.name, ReplayOptions, options)
        return cls(parsed.manifest, speed=parsed.speed, epoch=parsed.epoch)

    def read(self, window: Window | None) -> RawBatch:
        """The rows playing in ``[window.start, window.end)``, shifted to real time."""
        window = require_window(self.name, window)
        # Imported here: prescale.live reads traces through this package's file source, so a module-level
        # import would make `prescale.metrics.sources` and `prescale.live` import each other.
        from prescale.live.player import LiveTraces

        traces = LiveTraces.from_manifest(self.manifest, speed=self.speed, epoch=self.epoch)
        start, end = pd.Timestamp(window.start), pd.Timestamp(window.end)
        rows = traces.rows(window.start, window.end)
        batch_id = batch_id_for("replay", traces.identity, start.isoformat(), end.isoformat())
        return RawBatch(rows=rows, batch_id=batch_id, source=f"replay of {self.manifest} [{start} .. {end})")
