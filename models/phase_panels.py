"""One app's stored rows -> its demand panel, cut into one panel per phase (what training fits per phase).

How data moves: the store's long rows -> ``series.panel_from_long`` (a regular grid, short gaps
filled) -> the phase labels the rows carry (``series.phase_labels``) or, without them, detected
phases (``prescale.phases.assign_phases``: ids kept stable against the previous report) -> one
panel per phase, the other phases' rows set missing (a single phase keeps the whole panel).

Pure: the caller reads the rows and the previous report and keeps the new one
(``tasks/train.py``). A reason instead of an exception when the rows cannot make a panel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from models.series import Panel, SeriesError, panel_from_long, phase_labels
from models.train import TrainConfig
from prescale.phases import PhaseConfig, PhaseReport, assign_phases


@dataclass
class AppPhases:
    """One app's panel split into phases, or why it could not be."""

    app: str
    report: dict[str, Any] | None
    panels: dict[str, Panel] = field(default_factory=dict)
    skipped: str | None = None


def split_phases(
    app: str, rows: pd.DataFrame, config: TrainConfig, *, previous: dict[str, Any] | None = None,
    min_phase_minutes: float = 240.0, metrics: list[str] | None = None,
) -> AppPhases:
    """The app's panel per phase (see the module docstring); ``previous``: the last phase report, as a dict."""
    if rows.empty:
        return AppPhases(app, None, skipped="no metrics in the store for this app: ingest some first")
    try:
        panel = panel_from_long(rows, metrics=metrics, max_fill_steps=config.max_fill_steps)
    except SeriesError as exc:
        return AppPhases(app, None, skipped=str(exc))
    labels = phase_labels(rows, panel)
    phase_config = PhaseConfig(
        window=max(2, round(3600 / panel.step_seconds)),
        min_steps=max(2, round(min_phase_minutes * 60 / panel.step_seconds)),
        seed=config.seed,
    )
    old = PhaseReport.from_dict(previous) if previous else None
    ids, report = assign_phases(panel.to_frame(), labels=labels, config=phase_config, previous=old)
    panels = {pid: panel if len(report.phases) == 1 else panel.where(ids == pid) for pid in report.ids}
    return AppPhases(app, report.to_dict(), panels)
