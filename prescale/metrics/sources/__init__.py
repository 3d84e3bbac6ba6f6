"""The metrics sources, one registry: what ``prescale ingest``, the ingest flow and its one read task offer.

:data:`SOURCES` maps a name to a :class:`~prescale.metrics.sources.base.Source` class; :func:`register`
adds one, :func:`build_source` makes one from its options and the settings. The flow
(``flows/ingest.py``) reads every source through the same task, retries and all, so a new source is
one new module here (an options model, a ``build`` and a ``read``) plus one ``register`` line below;
``tests/metrics/test_source_contract.py`` then holds it to the contract with the others.

Worked example, a JSON-lines file of canonical rows (``jsonl.py``)::

    class JsonLinesOptions(BaseModel):
        model_config = ConfigDict(extra="forbid")
        path: Path

    @dataclass(frozen=True)
    class JsonLinesSource:
        path: Path
        name: ClassVar[str] = "jsonl"
        live: ClassVar[bool] = False

        @classmethod
        def build(cls, options, settings):
            return cls(parse_options(cls.name, JsonLinesOptions, options).path)

        def read(self, window=None):
            if window is not None:
                raise MetricsInputError(f"the jsonl source reads {self.path} whole: it takes no window")
            try:
                rows = pd.read_json(self.path, lines=True, dtype={"value": "float64"})
            except (OSError, ValueError) as exc:
                raise MetricsInputError(f"cannot read {self.path} as JSON lines: {exc}") from exc
            rows["ts"] = pd.to_datetime(rows["ts"], utc=True, format="ISO8601")
            return RawBatch(rows, batch_id_for(file_digest(self.path)), source=str(self.path))

then ``from prescale.metrics.sources.jsonl import JsonLinesSource`` and ``register(JsonLinesSource)``
here; ``ingest_metrics(source="jsonl", options={"path": ...})`` reads it, and the contract test runs it
once its stager (a small file of good and bad rows) is in ``STAGERS``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from prescale.metrics.sources.base import RawBatch, Source, Window
from prescale.metrics.sources.file import FileSource
from prescale.metrics.sources.prometheus import PrometheusSource
from prescale.metrics.sources.replay import ReplaySource
from prescale.metrics.validation import MetricsInputError

if TYPE_CHECKING:
    from prescale.settings import Settings

SOURCES: dict[str, type[Source]] = {}


def register(source: type[Source]) -> type[Source]:
    """Add ``source`` to :data:`SOURCES` under its name (a second one of the same name is an error)."""
    if source.name in SOURCES:
        raise ValueError(f"a metrics source named {source.name!r} is already registered")
    SOURCES[source.name] = source
    return source


register(FileSource)
register(PrometheusSource)
register(ReplaySource)


def build_source(name: str, options: Mapping[str, Any], settings: Settings) -> Source:
    """The registered source ``name`` built from ``options`` and the settings; an unknown name is a user error."""
    if name not in SOURCES:
        raise MetricsInputError(f"no metrics source named {name!r}: use one of {', '.join(SOURCES)}")
    return SOURCES[name].build(options, settings)


__all__ = ["SOURCES", "FileSource", "PrometheusSource", "RawBatch", "Source", "Window", "build_source", "register"]
