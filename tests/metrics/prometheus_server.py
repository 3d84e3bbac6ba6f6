"""A real Prometheus for tests, with known history, and a flaky proxy in front of it.

History is synthetic and deterministic: each :class:`Series` is a function of the
Unix time, sampled every minute over two days from a fixed :data:`ANCHOR` (a fixed
date, not "now", so values never depend on when the tests run; the 100-year
retention keeps it). :func:`openmetrics_text` writes the samples as OpenMetrics
(``# TYPE`` per family, one series after another, ``# EOF`` last), and
:func:`backfill` turns that text into TSDB blocks with ``promtool tsdb
create-blocks-from openmetrics`` before the server starts, so the server's head
block is empty and no block overlaps it. Values are written with ``repr`` (the
shortest text that reads back to the same float), so what Prometheus returns can
be compared exactly with what the function gave.

:class:`PrometheusServer` runs ``prometheus`` on a free loopback port and stops
it (terminate, wait, kill). :class:`FlakyProxy` is a tiny threaded HTTP server
that answers the first requests with a 5xx or hangs past the client's timeout,
then forwards to the real server; it counts the requests it saw.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from prescale.live.openmetrics import sample_value

ANCHOR = datetime(2024, 3, 1, tzinfo=UTC)
HISTORY = timedelta(days=2)
SAMPLE_SECONDS = 60
ANCHOR_S = int(ANCHOR.timestamp())
LAST_S = ANCHOR_S + int(HISTORY.total_seconds())
STEP_AT_S = ANCHOR_S + 30 * 3600  # the cpu series jumps by 1.5 cores here
DAY_S = 86_400


def cpu_cores(t: int) -> float:
    """A daily sine around 2 cores, plus a 1.5-core step 30 hours in."""
    return 2.0 + math.sin(2 * math.pi * (t - ANCHOR_S) / DAY_S) + (1.5 if t >= STEP_AT_S else 0.0)


def requests_a(t: int) -> float:
    return 100.0 + 40.0 * math.sin(2 * math.pi * (t - ANCHOR_S) / DAY_S)


def requests_b(t: int) -> float:
    return 50.0 + (t - ANCHOR_S) / 3600  # grows one request per second per hour


def memory_gib(t: int) -> float:
    return 4.0 + ((t - ANCHOR_S) // 3600 % 4) * 0.25  # a 4-hour staircase


ODD_CYCLE = (math.nan, math.inf, -math.inf, 1.25)


def odd_values(t: int) -> float:
    """NaN, +Inf, -Inf and a plain number, in turn, minute after minute."""
    return ODD_CYCLE[(t - ANCHOR_S) // SAMPLE_SECONDS % len(ODD_CYCLE)]


@dataclass(frozen=True)
class Series:
    name: str
    labels: dict[str, str]
    value: Callable[[int], float]


SERIES = (
    Series("prescale_test_cpu_cores", {"app": "web"}, cpu_cores),
    Series("prescale_test_requests", {"app": "web", "instance": "a"}, requests_a),
    Series("prescale_test_requests", {"app": "web", "instance": "b"}, requests_b),
    Series("prescale_test_memory_gib", {"app": "batch-jobs"}, memory_gib),
    Series("prescale_test_odd", {"app": "web"}, odd_values),
)


def sample_times() -> range:
    return range(ANCHOR_S, LAST_S + 1, SAMPLE_SECONDS)


def openmetrics_text(series: tuple[Series, ...] = SERIES, times: range | None = None) -> str:
    """OpenMetrics exposition of every series at every time; families stay contiguous."""
    times = sample_times() if times is None else times
    lines: list[str] = []
    for name in dict.fromkeys(s.name for s in series):
        lines.append(f"# TYPE {name} gauge")
        for s in (s for s in series if s.name == name):
            labels = ",".join(f'{key}="{value}"' for key, value in s.labels.items())
            lines.extend(f"{name}{{{labels}}} {sample_value(s.value(t))} {t}" for t in times)
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def binaries_present() -> bool:
    return shutil.which("prometheus") is not None and shutil.which("promtool") is not None


def backfill(data_dir: Path, text: str) -> None:
    """Write ``text`` as TSDB blocks into ``data_dir`` with promtool."""
    source = data_dir.parent / "backfill.om"
    source.write_text(text, encoding="utf-8")
    data_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["promtool", "tsdb", "create-blocks-from", "openmetrics", "--quiet", str(source), str(data_dir)],
        check=True,
        capture_output=True,
        text=True,
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PrometheusServer:
    """A `prometheus` process on loopback over a prepared TSDB folder."""

    workdir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "prometheus.log"

    def start(self, *, ready_within_s: float = 60.0) -> None:
        config = self.workdir / "prometheus.yml"
        config.write_text("global:\n  scrape_interval: 1m\n", encoding="utf-8")  # no scrape jobs: the head stays empty
        command = [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            "--storage.tsdb.retention.time=100y",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        self._wait_ready(ready_within_s)

    def _wait_ready(self, within_s: float) -> None:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.process.returncode}:\n{self._log_tail()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/-/ready", timeout=1.0).status_code == 200:
                    return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"prometheus was not ready within {within_s}s:\n{self._log_tail()}")

    def _log_tail(self) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)


@contextlib.contextmanager
def running_prometheus(workdir: Path) -> Iterator[PrometheusServer]:
    """Backfill :data:`SERIES` into ``workdir`` and serve it until the block exits."""
    backfill(workdir / "data", openmetrics_text())
    server = PrometheusServer(workdir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


class FlakyProxy:
    """Loopback HTTP server: the first ``failures`` requests fail (``mode``), later ones go to ``upstream``.

    ``mode`` is an HTTP status such as ``503`` (answered with a short body), or ``"hang"``:
    hold the request until the proxy closes, so the client's timeout fires.
    ``failures=None`` fails every request.
    """

    def __init__(self, upstream: str | None, *, failures: int | None, mode: int | str = 503) -> None:
        self.upstream, self.failures, self.mode = upstream, failures, mode
        self.requests = 0
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FlakyProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def _should_fail(self) -> bool:
        with self._lock:
            self.requests += 1
            return self.failures is None or self.requests <= self.failures

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if not proxy._should_fail():
                    self._forward(body)
                elif proxy.mode == "hang":
                    proxy._release.wait(timeout=30)
                else:
                    self._answer(int(proxy.mode), b"proxy says no", "text/plain")

            def _forward(self, body: bytes) -> None:
                headers = {"Content-Type": self.headers.get("Content-Type", "application/x-www-form-urlencoded")}
                upstream = httpx.post(proxy.upstream + self.path, content=body, headers=headers, timeout=30)
                self._answer(upstream.status_code, upstream.content, upstream.headers.get("Content-Type", ""))

            def _answer(self, status: int, body: bytes, content_type: str) -> None:
                with contextlib.suppress(OSError):  # the client may have given up already
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (base class signature)
                pass

        return Handler
