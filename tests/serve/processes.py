"""What the serve tests share: free loopback ports, whether one still answers, the environment and `--json` reader.

`prescale serve --json` prints one JSON object once everything is up (pretty-printed, so it ends at
the first line that starts with ``}``) and then blocks; :func:`read_ready` reads just that object.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def serve_env(home: Path, **extra: str) -> dict[str, str]:
    """This process's environment without PREFECT_* (a test harness's API URL must not leak in), for ``home``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(extra, PRESCALE_HOME=str(home))
    return env


def read_ready(proc: subprocess.Popen, *, within: float) -> dict:
    """The JSON object `prescale serve --json` prints when ready; {} if the process ends or time runs out."""
    lines, deadline = [], time.monotonic() + within
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("}"):
            break
    return json.loads("".join(lines)) if lines else {}


def interrupt(proc: subprocess.Popen, *, within: float) -> int | None:
    """Ctrl-C ``proc`` if it still runs and wait ``within`` s (then kill it); its exit status (None: killed)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            return proc.wait(timeout=within)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
            return None
    return proc.returncode
