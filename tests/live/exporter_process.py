"""``python -m prescale.live.exporter`` as a real process on a free loopback port, and its exposition parsed back."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.metrics.prometheus_server import free_port

SAMPLE = re.compile(r'^prescale_live_value\{app="([^"]+)",metric="([^"]+)"\} (\S+)$')


def exporter_command(manifest: Path, port: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "prescale.live.exporter", "--manifest", str(manifest), "--port", str(port), *extra]


@contextlib.contextmanager
def running_exporter(manifest: Path, *extra: str, ready_within_s: float = 60.0) -> Iterator[str]:
    """The exporter's base url once ``/health`` answers 200; stopped (SIGTERM, then kill) on exit."""
    port = free_port()
    process = subprocess.Popen(exporter_command(manifest, port, *extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(process, url, ready_within_s)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


def _wait_healthy(process: subprocess.Popen, url: str, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the exporter exited with {process.returncode}: {process.stderr.read().decode()}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/health", timeout=1.0).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"the exporter at {url} was not healthy within {within_s}s")


def parse_exposition(text: str) -> dict[tuple[str, str], float]:
    """``{(app, metric): value}`` of every ``prescale_live_value`` sample; comments skipped, anything else refused."""
    samples = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        match = SAMPLE.match(line)
        if match is None:
            raise AssertionError(f"not a prescale_live_value sample: {line!r}")
        samples[(match[1], match[2])] = float(match[3])
    return samples
