"""The demo's phased app: `analytics` plays one Azure V1 VM that runs a batch job for days, then idles.

Through the product's own path (the manifest's file and mapping ingested into a store, the train
flow's phase split with the default settings), the bundled slice must give two phases that are
not the daily season, each with the rows training needs, so `prescale demo` registers a champion
per phase; and the orchestrator's phase of the newest rows must tell batch from idle, with a switch
in the slice's last day, so the demo's loop and the live loop both show one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.phase_panels import AppPhases, split_phases
from models.series import serving_phase
from models.train import TrainConfig, check_panel, split_panel
from prescale.catalog import load_profile
from prescale.demo import DEFAULT_MANIFEST, REPO_ROOT, load_manifest
from prescale.metrics.ingest import ingest
from prescale.metrics.sources import FileSource
from prescale.metrics.store import MetricsStore
from prescale.phases import PhaseConfig, PhaseReport
from prescale.settings import ForecastSettings

APP = "analytics"
DAY = 288  # 5-minute rows


@pytest.fixture(scope="module")
def rows(tmp_path_factory) -> pd.DataFrame:
    """The analytics entry of ``data/demo.yaml``, ingested as `prescale demo` ingests it."""
    (entry,) = [e for e in load_manifest(DEFAULT_MANIFEST).apps if e.app == APP]
    root = tmp_path_factory.mktemp("store")
    store = MetricsStore(root / "metrics", quarantine=root / "quarantine")
    report = ingest(FileSource(entry.file, app=APP, mapping=entry.mapping), store=store)
    assert report.quarantined == 0, report.quarantine_reasons
    return store.read(APP)


@pytest.fixture(scope="module")
def config() -> TrainConfig:
    return TrainConfig.from_settings(ForecastSettings(), preset="small")  # what the demo trains with


@pytest.fixture(scope="module")
def phases(rows, config) -> AppPhases:
    """The train flow's split (``label_phases``) with the default settings, over the whole slice."""
    return split_phases(APP, rows, config, min_phase_minutes=ForecastSettings().min_phase_minutes)


@pytest.fixture(scope="module")
def report(phases) -> PhaseReport:
    return PhaseReport.from_dict(phases.report)


def test_two_phases_are_found_and_they_are_not_the_daily_season(report):
    defaults = PhaseConfig()
    assert report.method == "detected", report.reason
    assert report.ids == ["p0", "p1"]
    assert report.silhouette >= 0.9 > defaults.min_silhouette  # 0.995: two levels, nothing in between
    assert report.daily_kappa is not None and report.daily_kappa < defaults.max_daily_kappa  # 0.0
    idle, batch = report.phases
    assert idle.level["app.scan_gbps"] < 50 < 500 < batch.level["app.scan_gbps"]  # ~37 and ~582 GB/s
    assert idle.runs >= 4 and batch.runs >= 4, "the batch job comes and goes, again and again"


def test_each_phase_has_the_rows_training_needs(phases, config):
    inputs, horizon = config.steps(300)
    need = int(np.ceil((inputs + horizon + config.min_holdout_windows) / config.holdout_fraction))
    for phase, panel in phases.panels.items():
        assert int(panel.observed.sum()) >= need, phase  # 1,209 and 2,823 rows; need 315
        split = split_panel(panel, config)
        assert not isinstance(split, str), f"{phase}: {split}"
        assert len(split.val_origins) > 0 and len(split.test_origins) >= config.min_holdout_windows


def test_each_phase_passes_the_training_checks(phases, config):
    assert {phase: check_panel(panel, config) for phase, panel in phases.panels.items()} == {"p0": None, "p1": None}


def test_the_played_loop_keeps_its_two_phases_when_retrained(rows, config):
    """Under `make serve` the daily retrain reads up to 30 days of the slice played in a 14-day loop: 21 of them
    see each hour of the week three times, two of them copies, and the phases are still no daily season."""
    looped = pd.concat([rows.assign(ts=rows["ts"] + k * pd.Timedelta(days=14)) for k in range(2)])
    played = looped[looped["ts"] >= looped["ts"].max() - pd.Timedelta(days=21)]
    report = PhaseReport.from_dict(split_phases(APP, played, config).report)
    assert report.method == "detected" and report.ids == ["p0", "p1"], report.reason
    assert report.daily_kappa < PhaseConfig().max_daily_kappa  # 0.38 out of sample; 0.79 the in-sample way


@pytest.mark.parametrize(
    ("at", "phase"),
    [
        pytest.param("2017-01-26T12:00:00Z", "p1", id="batch"),
        pytest.param("2017-01-27T12:00:00Z", "p0", id="idle"),
        pytest.param("2017-01-27T23:55:00Z", "p1", id="batch-again-at-the-end"),
    ],
)
def test_the_orchestrator_tells_the_phases_apart(rows, report, at, phase):
    newest = pd.Timestamp(at)
    recent = rows[(rows["ts"] > newest - pd.Timedelta(hours=8)) & (rows["ts"] <= newest)]
    assert serving_phase(recent, report) == phase


def test_the_last_days_switch_phase(phases):
    idle, batch = phases.panels["p0"].observed, phases.panels["p1"].observed
    assert batch[-2 * DAY:-DAY].all() and idle[-DAY + 3:].all(), "the batch the day before, idle on the last day"


def test_the_demand_is_at_the_profiles_scale(rows):
    peak = load_profile(REPO_ROOT / "infra" / "apps" / f"{APP}.yaml").example_demand.peak["scan_gbps"]
    scan = rows.loc[rows["metric"] == "app.scan_gbps", "value"]
    assert scan.quantile(0.99) == pytest.approx(peak, rel=0.01)  # p99 25.59 % x 23.45 = 600 GB/s


def test_the_slice_is_the_azure_trace_unchanged(traces):
    (entry,) = [e for e in load_manifest(DEFAULT_MANIFEST).apps if e.app == APP]
    slice_ = pd.read_csv(entry.file, dtype=str)
    vm = slice_.columns[1]
    full = pd.read_csv(traces / "azure_v1_pervm" / "microsoft_avg_100.csv", usecols=["step_5min", vm], dtype=str)
    original = full[full["step_5min"].astype(int).between(3745, 7776)].reset_index(drop=True)
    pd.testing.assert_frame_equal(slice_, original)
    assert Path(entry.file).name == "azure_v1_vm1555181_cpu_300s_14d.csv"
