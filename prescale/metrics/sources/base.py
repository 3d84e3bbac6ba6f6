"""What every metrics source is: a :class:`Source` that reads a :class:`RawBatch`, optionally over a :class:`Window`.

A source is built from two things (:meth:`Source.build`): the *options* of one read (where to
read: a file and its mapping, a queries file...), a plain dict as a flow parameter or the command
line gives it, checked against the source's pydantic ``Options`` model; and the settings tree, from
which it takes its own group (``ingest`` for files, ``prometheus`` for Prometheus). Building does
no I/O: every failure that touches the outside world happens in :meth:`Source.read`, the one step
the ingest task retries.

:meth:`Source.read` returns rows as read (nothing validated, nothing dropped) and a batch id
derived from what was read, so a repeated read of the same data yields the same id and storing it
again is a no-op. A *live* source (Prometheus, and the replay of a trace as if live) is read one
window at a time, the flow asking for the last minutes; a finite dataset (a file) is read whole,
with no window.

What a source does not do: validate rows (``validation.py``), write anything (``store.py``), or
read settings on its own (they are passed to :meth:`Source.build`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

import pandas as pd
from pydantic import BaseModel, ValidationError

from prescale.metrics.validation import MetricsInputError

if TYPE_CHECKING:
    from prescale.settings import Settings


@dataclass
class RawBatch:
    """Rows as read, before validation, and the id that makes their storage idempotent.

    ``source`` says in words where the rows came from (the file, or the server and window): the
    report's ``source`` and the store's record of the batch.
    """

    rows: pd.DataFrame
    batch_id: str
    source: str
    app: str | None = None


@dataclass(frozen=True)
class Window:
    """The instants ``[start, end]`` a live source is asked for; both time-zone aware."""

    start: datetime
    end: datetime

    @classmethod
    def last(cls, minutes: float, *, end: datetime) -> Window:
        """The ``minutes`` before ``end``."""
        return cls(start=end - timedelta(minutes=minutes), end=end)


class Source(Protocol):
    """One place metrics come from (registered in ``prescale.metrics.sources``)."""

    name: ClassVar[str]  # the key in the registry and the flow's `source` parameter
    live: ClassVar[bool]  # read a window at a time (True), or whole (False)

    @classmethod
    def build(cls, options: Mapping[str, Any], settings: Settings) -> Source:
        """The source these options name, with its settings group; no I/O. Bad options: MetricsInputError."""
        ...

    def read(self, window: Window | None) -> RawBatch:
        """Every row the source holds (in ``window``, for a live source), and the batch's stable id."""
        ...


OptionsT = TypeVar("OptionsT", bound=BaseModel)


def parse_options(source: str, model: type[OptionsT], options: Mapping[str, Any]) -> OptionsT:
    """``options`` checked against the source's options model; a user error names the source and each problem."""
    try:
        return model.model_validate(dict(options))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or '(options)'}: {error['msg']}" for error in exc.errors()
        )
        allowed = ", ".join(model.model_fields)
        raise MetricsInputError(
            f"bad options for the {source!r} metrics source ({problems}); it takes: {allowed}"
        ) from None


def require_window(source: str, window: Window | None) -> Window:
    """A live source's window, or a user error saying one is needed."""
    if window is None:
        raise MetricsInputError(f"the {source!r} metrics source is read a window at a time: give a start and an end")
    return window
