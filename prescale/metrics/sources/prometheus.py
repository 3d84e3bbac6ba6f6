"""The Prometheus source: every (app, metric) of a queries file over one window, by ``query_range``.

Options: ``config`` (the queries file, :func:`~prescale.metrics.prometheus.load_prometheus_config`);
from the settings, the ``prometheus`` group (url, step, chunking, timeout, retries, backoff). The
HTTP client is :mod:`prescale.metrics.prometheus`; this module aligns the window to whole steps and
derives the batch id from the url, the queries file's bytes and the aligned window, so two runs
asking for the same minutes are one batch (the second a no-op in the store).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from prescale.metrics.prometheus import fetch_range, load_prometheus_config
from prescale.metrics.sources.base import RawBatch, Window, parse_options, require_window
from prescale.metrics.store import batch_id_for

if TYPE_CHECKING:
    from prescale.settings import Settings


class PrometheusOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    config: Path = Field(description="Queries file: PromQL per app and metric (see infra/prometheus/).")


@dataclass(frozen=True)
class PrometheusSource:
    """A Prometheus server and the queries to ask it, read one window at a time."""

    config: Path
    url: str
    step_seconds: int = 60
    chunk_hours: float = 6.0
    timeout_seconds: float = 30.0
    retries: int = 3
    backoff_seconds: float = 0.5

    name: ClassVar[str] = "prometheus"
    live: ClassVar[bool] = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "config", Path(self.config))

    @classmethod
    def build(cls, options: Mapping[str, Any], settings: Settings) -> PrometheusSource:
        parsed, prom = parse_options(cls.name, PrometheusOptions, options), settings.prometheus
        return cls(
            parsed.config,
            url=prom.url,
            step_seconds=prom.step_seconds,
            chunk_hours=prom.chunk_hours,
            timeout_seconds=prom.timeout_seconds,
            retries=prom.retries,
            backoff_seconds=prom.backoff_seconds,
        )

    def read(self, window: Window | None) -> RawBatch:
        """Every configured (app, metric) over ``window`` floored to whole steps."""
        window = require_window(self.name, window)
        step = pd.Timedelta(seconds=self.step_seconds)
        start, end = pd.Timestamp(window.start).floor(step), pd.Timestamp(window.end).floor(step)
        rows = fetch_range(
            load_prometheus_config(self.config),
            url=self.url,
            start=start,
            end=end,
            step_seconds=self.step_seconds,
            chunk_hours=self.chunk_hours,
            timeout_seconds=self.timeout_seconds,
            retries=self.retries,
            backoff_seconds=self.backoff_seconds,
        )
        batch_id = batch_id_for("prometheus", self.url, self.config.read_bytes(), start.isoformat(), end.isoformat())
        return RawBatch(rows=rows, batch_id=batch_id, source=f"prometheus {self.url} [{start} .. {end}]")
