"""Where phase reports live between the train and orchestrate flows: one small JSON file per app.

Training writes each app's :class:`~prescale.phases.PhaseReport` (as its dict) to
``<root>/<app>.json``; the orchestrate loop reads it back as a report
(:func:`load_report`) to tell the current phase, and the next training reads it to
keep phase ids stable. ``root`` is the
``forecast.phase_reports`` setting: a local folder (default ``<home>/phases``) or an
object-store URI (``s3://bucket/phases``), so that flow runs that share no disk
(one Kubernetes pod per flow run) still share the reports.

Both go through the metrics store's :class:`~prescale.metrics.location.Location`.
A report is written whole, never patched: locally to a hidden temporary file
(fsynced) renamed onto ``<app>.json``; on an object store as one PUT of the whole
object. Either way a reader sees the previous report or the new one, never a torn
file. The app name becomes the file name, so it is checked as an
:class:`~prescale.names.AppName` first (``../x`` raises ``InvalidNameError``).
"""

from __future__ import annotations

import json
import os
from typing import Any

from prescale.metrics.location import Location
from prescale.names import AppName
from prescale.phases import PhaseReport


def read_report(root: str | os.PathLike, app: str) -> dict[str, Any] | None:
    """The app's phase report as written by training, or None when there is none yet."""
    try:
        return json.loads(Location.parse(root).read_bytes(_name(app)))
    except FileNotFoundError:
        return None


def load_report(root: str | os.PathLike, app: str) -> PhaseReport | None:
    """The app's phase report as a :class:`~prescale.phases.PhaseReport`, or None when there is none yet."""
    data = read_report(root, app)
    return None if data is None else PhaseReport.from_dict(data)


def write_report(root: str | os.PathLike, app: str, report: dict[str, Any]) -> None:
    """Replace the app's phase report atomically (temp file and rename locally, one PUT on an object store)."""
    Location.parse(root).write_bytes(_name(app), json.dumps(report, indent=1).encode())


def _name(app: str) -> str:
    return f"{AppName(app)}.json"
