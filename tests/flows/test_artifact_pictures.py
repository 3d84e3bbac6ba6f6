"""The pictures in the Prefect artifacts, read back from Prefect's real API server.

The backtest's artifact embeds its four plots as small PNGs (data URIs, which Prefect's UI renders); the
orchestrate cycle's artifact embeds a picture of the last hours from the ledger on every tenth minute and
says which run holds the newest one on the others.
"""

from __future__ import annotations

import asyncio
import base64
import re

import numpy as np
import pandas as pd
import pytest

from tests.flows.test_backtest_flow import SWEEP, _metrics_file

DATA_URI = re.compile(r"!\[([^\]]*)\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)")
PNG = b"\x89PNG\r\n\x1a\n"


async def _artifacts(key: str, flow_run_id=None):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    runs = ArtifactFilterFlowRunId(any_=[flow_run_id]) if flow_run_id else None
    async with get_client() as client:
        return await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]),
                                                                          flow_run_id=runs))


def _embedded(markdown: str) -> dict[str, bytes]:
    return {name: base64.b64decode(data) for name, data in DATA_URI.findall(markdown)}


def test_the_backtest_artifact_embeds_its_four_plots_small(prefect_harness, prescale_home, tmp_path, monkeypatch):
    for key, value in SWEEP.items():
        monkeypatch.setenv(key, value)
    from flows.backtest import backtest
    from flows.ingest import ingest_metrics
    from tasks.backtest import EMBED_MAX_BYTES

    ingest_metrics(path=str(_metrics_file(tmp_path)))
    state = backtest(app="shop", profile="web", days=1.0, policies=["reactive", "static"], return_state=True)
    [artifact] = asyncio.run(_artifacts("backtest-results", state.state_details.flow_run_id))
    images = _embedded(artifact.data)
    assert list(images) == ["demand", "capacity", "frontier", "cumulative_cost"]
    for name, png in images.items():
        assert png[:8] == PNG and 0 < len(png) <= EMBED_MAX_BYTES, (name, len(png))
    assert len(artifact.data) < 4 * EMBED_MAX_BYTES * 4 / 3 + 10_000  # the table plus four shrunk plots
    assert "| reactive |" in artifact.data and "Full-size files" in artifact.data


def _ledger_rows(app: str, end: pd.Timestamp, *, hours: float = 3.0):
    """A decision per minute up to ``end``: demand on a slow wave, a node more every 40 minutes, one skip."""
    from prescale.ledger import LedgerRow

    rng = np.random.default_rng(7)
    rows = []
    for i, ts in enumerate(pd.date_range(end=end, periods=int(hours * 60), freq="1min")):
        nodes = 2 + i // 40
        rows.append(LedgerRow(
            decided_at=ts, app=app, phase="default", mode="predictive", why="test", champion_version="1",
            covered_quantile=0.9, cost_per_hour=0.1 * nodes, outcome="skipped" if i == 5 else "applied",
            observed={"requests_per_second": 60.0 * nodes * (0.7 + 0.1 * rng.random())},
            allocation={} if i == 5 else {"m7i.xlarge": nodes},
            plan=[{"action": "provision"}] if i and i % 40 == 0 else [],
        ))
    return rows


@pytest.fixture
def web_ledger(prescale_home):
    from prescale.ledger import Ledger
    from prescale.settings import load_settings

    settings = load_settings()
    end = pd.Timestamp("2026-03-02 12:10", tz="UTC")
    rows = _ledger_rows("web", end)
    Ledger(settings.orchestrate.ledger).append(rows)
    return settings, rows


def _publish(decided, settings):
    from prefect import flow

    from tasks.orchestrate import publish_artifact

    @flow(name="publish-cycle")
    def publish():
        publish_artifact(decided, settings)

    state = publish(return_state=True)
    [artifact] = asyncio.run(_artifacts("orchestrate-cycle", state.state_details.flow_run_id))
    return artifact.data


def test_the_cycle_artifact_embeds_the_recent_decisions_every_tenth_minute(prefect_harness, web_ledger):
    from prescale.cycle import Decided
    from tasks.orchestrate import PICTURE_MAX_BYTES

    settings, rows = web_ledger
    on_the_tenth = _publish([Decided("web", rows[-1])], settings)  # decided at 12:10
    [png] = _embedded(on_the_tenth).values()
    assert png[:8] == PNG and len(png) <= PICTURE_MAX_BYTES
    assert "(redrawn every 10 minutes):" in on_the_tenth and "| web |" in on_the_tenth
    assert on_the_tenth.index("data:image/png") < on_the_tenth.index("| web |")  # the picture above the table

    later = rows[-1].__class__(**{**rows[-1].__dict__, "decided_at": rows[-1].decided_at + pd.Timedelta(minutes=3)})
    between = _publish([Decided("web", later)], settings)  # 12:13: no picture, the way to the newest one
    assert _embedded(between) == {} and "the newest is in the run at 2026-03-02 12:10 UTC" in between


def test_demand_and_capacity_read_back_from_the_ledger(web_ledger):
    from prescale.catalog import load_catalog, resolve_profile
    from prescale.fleet import build_fleet
    from prescale.ledger import Ledger
    from tasks.orchestrate import demand_and_capacity

    settings, rows = web_ledger
    fleet = build_fleet(load_catalog(settings.search.catalog), resolve_profile("web", settings.search.profiles),
                        step_seconds=60)
    frame = demand_and_capacity(Ledger(settings.orchestrate.ledger).read("web"), fleet)
    one = fleet.capacity(fleet.counts({"m7i.xlarge": 1}))[0]
    assert frame["metric"].iloc[0] == "requests_per_second"
    assert frame["capacity"].iloc[0] == pytest.approx(2 * one)  # two nodes decided
    assert np.isnan(frame["capacity"].iloc[5])  # the skipped minute decided nothing
    assert frame["demand"].iloc[0] == pytest.approx(rows[0].observed["requests_per_second"])
    assert frame["changed"].sum() == sum(1 for r in rows if r.plan)
