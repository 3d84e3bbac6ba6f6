"""Bad input at the command line: exit code 2, one line naming the field and the value, no traceback, nothing
written. Each case is the real `prescale` program in a child process (what users run; a traceback would show).

The long tail of each rule is tested on the validators directly (test_demand.py, allocation/test_forecast.py,
allocation/test_catalog.py); here is one case per kind of input per command. `tests/hostile/` runs a wider
corpus against a seeded home.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PRESCALE = str(Path(sys.executable).parent / "prescale")
REPO = Path(__file__).resolve().parents[2]
BINARY = bytes(range(256)) * 4
DEMAND = "requests_per_second,connections\n"
CROSSED = json.dumps({"start": "2026-03-02T10:00:00Z", "step_seconds": 60, "quantiles": [0.1, 0.9],
                      "metrics": ["requests_per_second", "connections"], "values": [[[5, 4], [1, 2]]] * 3})


def run(*args: str, home: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PRESCALE_HOME": str(home), **(env or {})}
    return subprocess.run([PRESCALE, *args], capture_output=True, text=True, env=full_env, timeout=300)


def files_under(root: Path) -> dict[str, str]:
    """Every file under `root` and a digest of its bytes."""
    found = (p for p in root.rglob("*") if p.is_file()) if root.exists() else ()
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in found}


# (arguments with {work} for the case's scratch folder, files written there first, what the message says)
CASES = [
    pytest.param(("plan", "--app", "web", "--demand", "{work}/d.csv"), {"d.csv": DEMAND + "-100,5\n-100,5\n"},
                 "d.csv, row 1, column requests_per_second: -100.0 is negative", id="plan-negative-demand"),
    pytest.param(("plan", "--app", "web", "--demand", "{work}/d.csv"), {"d.csv": BINARY},
                 "d.csv is not UTF-8 text (byte 0 is b'\\x00'): is it a binary file?", id="plan-binary-demand"),
    pytest.param(("plan", "--app", "web", "--demand", "{work}/d.csv"), {"d.csv": DEMAND + "100,5\n"},
                 "d.csv covers 1 step(s) of 60 s, but the fastest type app 'web' can use (c7g.2xlarge) takes 75 s",
                 id="plan-one-step-demand"),
    pytest.param(("plan", "--app", "web", "--current", "c7g.2xlarge=99999999999999999999"), {},
                 "--current 'c7g.2xlarge=99999999999999999999': 99999999999999999999 nodes",
                 id="plan-current-overflow"),
    pytest.param(("apply", "--app", "Bad_App", "--profile", "web"), {}, "--app 'Bad_App' is not a valid",
                 id="apply-invalid-app"),
    pytest.param(("apply", "--app", "web", "--demand", "{work}/d.json"), {"d.json": CROSSED},
                 "values[0][0][1] (metric 'requests_per_second', level 0.9): 4 is below 5", id="apply-crossed-json"),
    pytest.param(("train", "--app", "../x"), {}, "--app '../x' is not a valid", id="train-traversal-app"),
    pytest.param(("backtest", "--app", "web", "--profile", "{work}/web"), {"web.yaml": (REPO / "infra/apps/web.yaml")
                 .read_bytes()}, "is not a valid", id="backtest-profile-path"),
    pytest.param(("backtest", "--app", "web", "--days", "1e308"), {}, "--days", id="backtest-days-overflow"),
    pytest.param(("ingest", "{work}/m.csv", "--app", "a" * 300), {"m.csv": "ts,metric,value\n"},
                 "(300 characters) is not a valid", id="ingest-long-app"),
]


@pytest.mark.parametrize(("args", "files", "message"), CASES)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, args, files, message):
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    for name, content in files.items():
        (work / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    result = run(*(a.replace("{work}", str(work)) for a in args), home=home)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert message in " ".join(result.stderr.split()), result.stderr  # click's own errors sit in a box
    assert files_under(home) == {}


def test_a_wrong_shaped_cluster_state_is_refused_and_kept(tmp_path):
    state = tmp_path / "home" / "cluster" / "state.json"
    state.parent.mkdir(parents=True)
    state.write_text('{"nodes": 5}')
    before = files_under(tmp_path / "home")
    result = run("apply", "--app", "web", "--json", home=tmp_path / "home")
    assert result.returncode == 2, result.stderr
    assert "state.json" in json.loads(result.stdout)["error"]
    assert "Traceback" not in result.stdout + result.stderr
    assert files_under(tmp_path / "home") == before


def test_a_bad_setting_is_bad_input_and_verbose_shows_the_traceback(tmp_path):
    env = {"PRESCALE_SERVE__PREFECT_PORT": "http"}
    quiet = run("serve", home=tmp_path / "home", env=env)
    assert quiet.returncode == 2
    assert quiet.stderr.strip().splitlines() == [
        "error: invalid settings: PRESCALE_SERVE__PREFECT_PORT: Input should be a valid integer, unable to parse "
        "string as an integer (got 'http')"
    ]
    loud = run("-v", "serve", home=tmp_path / "home", env=env)
    assert loud.returncode == 2 and "Traceback" in loud.stderr and "SettingsError" in loud.stderr


def test_a_bad_ingest_file_shows_no_prefect_traceback(prefect_harness, prescale_home, tmp_path):
    """The flow run's logger printed the exception's traceback on the console before our one line."""
    from prefect.settings import PREFECT_API_URL

    (tmp_path / "m.csv").write_bytes(BINARY)
    result = run("ingest", str(tmp_path / "m.csv"), "--app", "web", home=prescale_home,
                 env={"PREFECT_API_URL": str(PREFECT_API_URL.value())})
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "Encountered exception" not in result.stderr and "error: cannot read" in result.stderr
    assert "\x1b" not in result.stderr  # control bytes the message quotes from the file are escaped
    assert not [p for p in files_under(prescale_home) if p.startswith(("data", "quarantine"))]
