"""The bundled traces as live demand: played against the clock, exported to Prometheus, or read as a source.

- :mod:`prescale.live.player`: :class:`LiveTraces`, the manifest's traces read once and played
  shifted to the current time (the time mapping is stated there);
- :mod:`prescale.live.openmetrics`: the one gauge, ``prescale_live_value{app, metric}``, as
  OpenMetrics text for ``promtool tsdb create-blocks-from openmetrics``, as the Prometheus text an
  exporter serves, and the queries file :class:`~prescale.metrics.sources.prometheus.PrometheusSource`
  reads it with;
- :mod:`prescale.live.exporter`: ``python -m prescale.live.exporter``, a loopback HTTP exporter of
  the gauge at the current played instant, for a real Prometheus to scrape.

The ``replay`` metrics source (:mod:`prescale.metrics.sources.replay`) reads the same played rows
without Prometheus, for where it is not installed.
"""

from prescale.live.openmetrics import GAUGE, prometheus_queries, write_openmetrics, write_queries
from prescale.live.player import LiveTraces

__all__ = ["GAUGE", "LiveTraces", "prometheus_queries", "write_openmetrics", "write_queries"]
