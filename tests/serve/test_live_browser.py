"""`prescale serve --live` seen as a user sees it: the every-minute loop decides, and the two UIs render.

On a temporary home: train and register forecasters the cheapest honest way (the bundled traces
ingested, then the `train-forecasters` flow with the small preset on three days, one process), start
`prescale serve --live` on free ports (the real Prometheus where installed, else the replay source),
wait for two completed `orchestrate-every-minute` runs, read their cycle artifacts through Prefect's
REST API and require a decision for every played app that is neither skipped nor failed. Then headless
Chromium (Debian's `chromium`) renders the Prefect deployments page and an MLflow model version page:
a screenshot of each into the test's folder, and the rendered DOM must hold the deployments' names
and the model's name and version. Ctrl-C (SIGINT) must stop it all with exit status 0.

Runs in the normal suite (marker `browser`); skipped without chromium unless
PRESCALE_REQUIRE_COMPONENTS=1 (CI installs it).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.serve.processes import free_port, interrupt, port_open, read_ready, serve_env
from tests.support import need_component

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
PRESCALE = str(Path(PYTHON).parent / "prescale")
DEPLOYMENTS = ("ingest-every-minute", "orchestrate-every-minute", "train-daily")

# Ingest the manifest's traces, then train and register with the small preset on 3 days of history: what
# `prescale demo --quick` does before its replays, without them (about a minute instead of three).
TRAIN = """
from flows.ingest import ingest_metrics
from flows.train import train_forecasters
from prescale.demo import load_manifest

for entry in load_manifest().apps:
    ingest_metrics(path=str(entry.file), app=entry.app, mapping=str(entry.mapping) if entry.mapping else None)
report = train_forecasters(preset="small", history_days=3.0)
print("registered:", [(m.app, m.phase, m.version) for m in report.models if not m.skipped])
"""

pytestmark = pytest.mark.browser


def _orchestrate_runs(api: str) -> list[dict]:
    query = {"deployments": {"name": {"any_": ["orchestrate-every-minute"]}}, "sort": "EXPECTED_START_TIME_ASC"}
    return httpx.post(f"{api}/flow_runs/filter", json=query, timeout=10).raise_for_status().json()


def _wait_completed(api: str, count: int, *, within: float) -> list[dict]:
    deadline = time.monotonic() + within
    runs: list[dict] = []
    while time.monotonic() < deadline:
        runs = _orchestrate_runs(api)
        broken = [r for r in runs if r["state_type"] in {"FAILED", "CRASHED"}]
        assert not broken, f"orchestrate runs failed: {[(r['name'], r['state']['message']) for r in broken]}"
        done = [r for r in runs if r["state_type"] == "COMPLETED"]
        if len(done) >= count:
            return done
        time.sleep(3)
    pytest.fail(f"fewer than {count} completed orchestrate runs after {within:.0f} s: "
                f"{[(r['name'], r['state_type']) for r in runs]}")  # fmt: skip


def _cycle_rows(markdown: str) -> dict[str, dict[str, str]]:
    """Per app, the cells of the cycle table (the artifact's first table with `app` and `outcome` columns)."""
    lines = [line.strip() for line in markdown.splitlines()]
    for i, line in enumerate(lines):
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("|") and "app" in cells and "outcome" in cells:
            rows = {}
            for body in lines[i + 2:]:
                if not body.startswith("|"):
                    break
                values = [c.strip() for c in body.strip("|").split("|")]
                rows[values[cells.index("app")]] = dict(zip(cells, values, strict=False))
            return rows
    return {}


def _chromium(url: str, png: Path, profile: Path) -> str:
    """Render ``url`` headless: a 1400x900 screenshot to ``png``; the DOM after the scripts ran."""
    done = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
         f"--screenshot={png}", "--window-size=1400,900", "--virtual-time-budget=15000", "--dump-dom", url],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert png.stat().st_size > 10_000, f"{png} is nearly empty"
    return done.stdout


@pytest.fixture
def trained_home(tmp_path) -> tuple[Path, dict[str, str]]:
    env = serve_env(tmp_path / "home")
    started = time.monotonic()
    done = subprocess.run([PYTHON, "-c", TRAIN], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    print(f"trained in {time.monotonic() - started:.0f} s")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "registered: [(" in done.stdout, done.stdout[-2000:]
    return tmp_path / "home", env


def test_serve_live_decides_every_minute_and_both_uis_render(trained_home, tmp_path):
    if shutil.which("chromium") is None:
        need_component("chromium", "the browser check renders the UIs in headless Chromium (apt install chromium)")
    home, env = trained_home
    ports = {name: free_port() for name in ("prefect", "mlflow", "prometheus", "exporter")}
    env.update(PRESCALE_SERVE__PREFECT_PORT=str(ports["prefect"]), PRESCALE_SERVE__MLFLOW_PORT=str(ports["mlflow"]))
    started = time.monotonic()
    proc = subprocess.Popen(
        [PRESCALE, "serve", "--live", "--json", "--prometheus-port", str(ports["prometheus"]),
         "--exporter-port", str(ports["exporter"])],
        cwd=REPO, env=env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        ready = read_ready(proc, within=300)
        assert ready.get("ready") is True, f"serve did not come up; logs in {home / 'logs'}"
        print(f"serve ready in {time.monotonic() - started:.0f} s")
        apps = {played["app"] for played in ready["live"]["playing"]}
        installed = shutil.which("prometheus") and shutil.which("promtool")
        assert ready["live"]["ingest_source"] == ("prometheus" if installed else "replay")

        api = ready["prefect_api"]
        completed = _wait_completed(api, 2, within=240)
        print(f"two completed orchestrate runs {time.monotonic() - started:.0f} s after serve started")
        query = {"artifacts": {"flow_run_id": {"any_": [r["id"] for r in completed[:2]]},
                               "key": {"any_": ["orchestrate-cycle"]}}}  # fmt: skip
        artifacts = httpx.post(f"{api}/artifacts/filter", json=query, timeout=10).raise_for_status().json()
        assert {a["flow_run_id"] for a in artifacts} == {r["id"] for r in completed[:2]}
        for artifact in artifacts:
            rows = _cycle_rows(artifact["data"])
            assert set(rows) == apps, f"decisions for {sorted(rows)}, apps played {sorted(apps)}"
            undecided = {app: row["outcome"] for app, row in rows.items() if row["outcome"] in {"skipped", "failed"}}
            assert not undecided, f"no decision for {undecided}: {artifact['data']}"

        dom = _chromium(f"{ready['prefect_ui']}/deployments", tmp_path / "prefect-deployments.png", tmp_path / "c1")
        for name in DEPLOYMENTS:
            assert name in dom, f"the deployments page does not show {name}"
        models = httpx.get(f"{ready['mlflow_ui']}/api/2.0/mlflow/registered-models/search",
                           timeout=10).raise_for_status().json()["registered_models"]  # fmt: skip
        model = sorted(models, key=lambda m: m["name"])[0]
        version = model["latest_versions"][0]["version"]
        dom = _chromium(f"{ready['mlflow_ui']}/#/models/{model['name']}/versions/{version}",
                        tmp_path / "mlflow-model-version.png", tmp_path / "c2")  # fmt: skip
        assert model["name"] in dom and f"Version {version}" in dom, "the model version page did not render"

        print(f"both pages rendered {time.monotonic() - started:.0f} s after serve started")
        assert interrupt(proc, within=120) == 0
        print(f"serve stopped {time.monotonic() - started:.0f} s after it started")
        for name, port in ports.items():
            assert not port_open(port), f"{name}'s port {port} still open after Ctrl-C"
    finally:
        interrupt(proc, within=120)
