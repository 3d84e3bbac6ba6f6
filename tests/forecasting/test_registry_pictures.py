"""Every model version shows its pictures: the forecast plot and the SLO frontier, on a real MLflow server.

The version's run holds ``forecast.png`` and (with a tuned policy) ``slo/frontier.png``, and the version's
description ends with both as Markdown images whose relative ``get-artifact`` URLs the MLflow UI loads: here
they are fetched over HTTP from ``mlflow server`` (proxied artifacts, SQLite), as the UI's page would.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from models.registry import Registry, model_name
from tests.forecasting import test_slo_registry
from tests.forecasting.conftest import tiny_config

PHASE = "default"
policy = test_slo_registry.policy  # the fixture: a policy tuned on the fixture training's held-out tail
PNG = b"\x89PNG\r\n\x1a\n"
IMAGE = re.compile(r"!\[[^\]]*\]\((get-artifact\?path=([^&)]+)&run_uuid=([0-9a-f]+))\)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``mlflow server`` on loopback: SQLite store, artifacts proxied from a local folder."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
         "--artifacts-destination", str(folder / "artifacts")],
        env=env, stdout=subprocess.DEVNULL, stderr=(folder / "server.log").open("wb"),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log = (folder / "server.log").read_text()[-2000:]
                    raise RuntimeError(f"mlflow server did not start: {log}") from None
                time.sleep(1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture
def registry(server) -> Registry:
    return Registry(server)


def _images(registry: Registry, app: str, version: str) -> dict[str, tuple[str, str]]:
    """artifact path -> (the description's relative URL, its run) of each picture on the version's page."""
    mv = registry.client.get_model_version(model_name(app, PHASE), version)
    found = {path.replace("%2F", "/"): (url, run) for url, path, run in IMAGE.findall(mv.description or "")}
    assert all(run == mv.run_id for _, run in found.values()), (found, mv.run_id)
    return found


def _served(server: str, url: str) -> bytes:
    with urllib.request.urlopen(f"{server}/{url}", timeout=30) as response:
        return response.read()


def test_a_version_shows_its_forecast_and_frontier_served_by_the_mlflow_ui(server, registry, trained, policy):
    published = registry.publish(trained, app="pictures-tuned", phase=PHASE, config=tiny_config(), margin=0.02,
                                 slo=policy)
    images = _images(registry, "pictures-tuned", published.version)
    assert set(images) == {"forecast.png", "slo/frontier.png"}
    for url, _ in images.values():
        assert _served(server, url)[:8] == PNG


def test_a_policy_attached_later_adds_the_frontier_to_the_version_page(server, registry, trained, policy):
    first = registry.publish(trained, app="pictures-later", phase=PHASE, config=tiny_config(), margin=0.02)
    assert set(_images(registry, "pictures-later", first.version)) == {"forecast.png"}  # untuned: no frontier
    again = registry.publish(trained, app="pictures-later", phase=PHASE, config=tiny_config(), margin=0.02,
                             slo=policy)  # the same session: the same version, now with its policy
    assert again.version == first.version
    images = _images(registry, "pictures-later", first.version)
    assert set(images) == {"forecast.png", "slo/frontier.png"}
    assert _served(server, images["slo/frontier.png"][0])[:8] == PNG
    description = registry.client.get_model_version(model_name("pictures-later", PHASE), first.version).description
    assert description.count("slo%2Ffrontier.png") == 1


def test_version_links_open_the_page_and_the_plots_on_the_server(server, registry, trained, policy):
    from models.registry import version_links
    from tasks.train import PhaseOutcome, summary_markdown

    published = registry.publish(trained, app="pictures-links", phase=PHASE, config=tiny_config(), margin=0.02,
                                 slo=policy)
    run_id = registry.client.get_model_version(published.model, published.version).run_id
    links = version_links(server, published.model, published.version, run_id, frontier=True)
    assert set(links) == {"page", "forecast", "frontier"}
    for name in ("forecast", "frontier"):
        with urllib.request.urlopen(links[name], timeout=30) as response:
            assert response.read()[:8] == PNG
    with urllib.request.urlopen(links["page"], timeout=30) as response:
        assert response.status == 200  # the UI's page (the fragment is the UI's own route)
    assert version_links("sqlite:///x.db", published.model, published.version, run_id, frontier=True) == {}
    outcome = PhaseOutcome(app="pictures-links", phase=PHASE, best="holt_winters", version=published.version,
                           reason="first model", links=links)
    text = summary_markdown([outcome], {})
    assert f"]({links['page']})" in text and f"]({links['forecast']})" in text and f"]({links['frontier']})" in text
    assert "shown on its page in the MLflow UI" not in summary_markdown([PhaseOutcome(app="a", phase=PHASE,
                                                                                      links=links)], {})
    assert "shown on its page in the MLflow UI" in summary_markdown([PhaseOutcome(app="a", phase=PHASE)], {})
