"""Small traces written for the live tests: each value is the trace instant itself, so a played row says what it plays.

:func:`clock_trace` writes a canonical CSV (``ts,app,metric,value``) whose value at each instant is
that instant in Unix seconds, and :func:`manifest` a demo manifest naming such files. Reading
``value`` back from a played row gives the trace instant it came from, which is what the time
mapping is about.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import yaml

STEP = timedelta(minutes=5)


def clock_trace(path: Path, *, app: str, start: datetime, span: timedelta, step: timedelta = STEP) -> Path:
    """A CSV with one row per ``step`` over ``[start, start + span)``, valued at its instant's Unix seconds."""
    count = int(span / step)
    lines = ["ts,app,metric,value"]
    for i in range(count):
        instant = start + i * step
        lines.append(f"{instant.isoformat()},{app},cpu_cores,{instant.timestamp():.0f}")
    path.write_text("\n".join(lines) + "\n")
    return path


def manifest(path: Path, entries: list[dict]) -> Path:
    """A demo manifest of ``entries`` (``app``, ``file`` and optionally ``mapping``)."""
    path.write_text(yaml.safe_dump({"apps": entries}))
    return path
