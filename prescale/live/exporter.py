"""A loopback exporter of the played traces, for a real Prometheus to scrape: ``python -m prescale.live.exporter``.

::

    python -m prescale.live.exporter --manifest data/demo.yaml --host 127.0.0.1 --port 9469 [--speed S --epoch ISO]

At start it reads the manifest once (:meth:`LiveTraces.from_manifest`); an entry that cannot be
played stops it before it listens, with the file named on stderr and exit status 2 (so does a
speed other than 1 without an epoch). Then a stdlib :class:`~http.server.ThreadingHTTPServer`
answers

- ``GET /metrics``: the Prometheus text exposition of ``prescale_live_value{app, metric}`` at the
  instant playing now (:meth:`LiveTraces.at` of the wall clock), no timestamps: Prometheus stamps
  each scrape, so what it stores is what a live app would have reported at that scrape;
- ``GET /health``: 200.

Why not ``prometheus_client``: one gauge family written from a table is a dozen lines
(:func:`prescale.live.openmetrics.exposition`, shared with the OpenMetrics backfill writer), and
its custom-collector API would add a dependency for no behaviour we need.

It keeps no state beyond the traces: every scrape recomputes the played instant, so any number of
exporters (or a restart) with the same ``(manifest, speed, epoch)`` serve the same values.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from prescale.demo import DEFAULT_MANIFEST
from prescale.live.openmetrics import exposition
from prescale.live.player import LiveTraces
from prescale.metrics.validation import MetricsInputError

DEFAULT_PORT = 9469
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Clock = Callable[[], datetime]


def make_server(traces: LiveTraces, host: str, port: int, *, clock: Clock | None = None) -> ThreadingHTTPServer:
    """A server (bound, not yet serving) of ``traces`` at ``clock()`` (default: the wall clock, UTC)."""
    now = clock or (lambda: datetime.now(UTC))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._answer(200, exposition(traces.at(now())), CONTENT_TYPE)
            elif path == "/health":
                self._answer(200, "ok\n", "text/plain; charset=utf-8")
            else:
                self._answer(404, f"no {path} here: GET /metrics or /health\n", "text/plain; charset=utf-8")

        def _answer(self, status: int, text: str, content_type: str) -> None:
            body = text.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (base class signature)
            pass  # a scrape every few seconds is not news

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def _instant(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO instant, e.g. 2026-12-05T08:00:00Z") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m prescale.live.exporter", description="Serve the demo traces, played live, to Prometheus."
    )
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST, help="demo manifest (data/demo.yaml)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback by default)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port to listen on ({DEFAULT_PORT})")
    parser.add_argument("--speed", type=float, default=1.0, help="trace time per real time (1: real time)")
    parser.add_argument("--epoch", type=_instant, default=None, help="instant playing started (needed unless speed 1)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        traces = LiveTraces.from_manifest(args.manifest, speed=args.speed, epoch=args.epoch)
    except MetricsInputError as exc:
        print(f"prescale live exporter: cannot play {args.manifest}: {exc}", file=sys.stderr)
        return 2
    try:
        server = make_server(traces, args.host, args.port)
    except OSError as exc:
        print(f"prescale live exporter: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, _stop)
    host, port = server.server_address[:2]
    print(
        f"prescale live exporter: {', '.join(traces.apps)} at speed {args.speed:g} on http://{host}:{port}/metrics",
        flush=True,
    )
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # leaves serve_forever through main's clean shutdown


if __name__ == "__main__":
    sys.exit(main())
