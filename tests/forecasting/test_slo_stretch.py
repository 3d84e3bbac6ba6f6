"""The SLO tuning stretch of a real (tiny) training: rows, units, and which forecast each replayed row gets."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

from models.slo_stretch import stretch_input
from prescale.catalog import load_catalog, load_profile
from prescale.settings import load_settings

WEB = Path(__file__).resolve().parents[2] / "infra" / "apps" / "web.yaml"
SCALE = 100.0  # requests per second per stored cpu core, in the test profile
SHORT = 600.0  # scored minutes asked for: the 4-day fixture's tail is 0.8 days


def svc_profile(folder: Path, *, source: str | None = "cpu_cores", name: str = "svc"):
    """``web``'s profile as app ``name``, its requests/s read from ``source`` x 100 (connections: no source)."""
    data = yaml.safe_load(WEB.read_text())
    data["name"] = name
    data["metrics"][0]["source"] = source
    data["metrics"][0]["source_scale"] = SCALE
    if source is None:
        del data["metrics"][0]["source"]
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_profile(path)


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(load_settings().search.catalog)


@pytest.fixture
def profile(tmp_path):
    return svc_profile(tmp_path)


def coded(result):
    """``result`` with the best candidate's forecasts replaced by ``origin * 1000 + step * 10 + quantile index``:
    every value says where it came from."""
    best = result.candidates[result.best]
    W, H, M, Q = best.test_quantiles.shape
    origins = result.split.test_origins
    values = (origins[:, None, None, None] * 1000.0 + np.arange(H)[None, :, None, None] * 10.0
              + np.arange(Q)[None, None, None, :]) * np.ones((W, H, M, Q))
    return replace(result, candidates={**result.candidates, result.best: replace(best, test_quantiles=values)})


def test_the_stretch_is_the_tail_after_the_first_origin_in_the_profiles_units(trained, profile, catalog):
    built = stretch_input(trained, profile, catalog, min_scored_minutes=SHORT)
    assert not isinstance(built, str), built
    inp, fleet = built
    first = int(trained.split.test_origins[0]) + 1
    panel = trained.panel
    assert inp.index.equals(panel.index[first:])
    assert inp.metrics == ("requests_per_second", "connections")
    np.testing.assert_allclose(inp.demand[:, 0], panel.values[first:, 0] * SCALE)
    assert (inp.demand[:, 1] == 0).all()  # no source: covered at zero, as the loop does
    np.testing.assert_allclose(inp.history_peak, [np.nanmax(panel.values[:first, 0]) * SCALE, 0.0])
    warm = math.ceil(max(3600.0, 2 * float(fleet.lead_seconds.max())) / panel.step_seconds)
    assert inp.start == warm and inp.step_seconds == panel.step_seconds
    best = trained.candidates[trained.best]
    assert inp.quantiles == tuple(best.forecaster.quantiles)
    assert fleet.app == "svc" and fleet.step_seconds == panel.step_seconds
    # the real calibrated forecasts, scaled like the demand: the one made at origin r - 1 decides row r
    origins = trained.split.test_origins
    np.testing.assert_allclose(inp.forecast[origins + 1 - first, :, 0, :], best.test_quantiles[:, :, 0, :] * SCALE)
    assert (inp.forecast[origins + 1 - first, :, 1, :] == 0).all()


def test_row_r_gets_the_forecast_made_at_origin_r_minus_1_and_nan_where_there_is_none(trained, profile, catalog):
    result = coded(trained)
    split = result.split
    keep = np.ones(len(split.test_origins), dtype=bool)
    keep[10:15] = False  # a hole in the origins, as a gap in the data leaves
    best = result.candidates[result.best]
    holed = replace(result, split=replace(split, test_origins=split.test_origins[keep]),
                    candidates={**result.candidates,
                                result.best: replace(best, test_quantiles=best.test_quantiles[keep])})
    inp, _ = stretch_input(holed, profile, catalog, min_scored_minutes=SHORT)
    first = int(split.test_origins[0]) + 1
    H, Q = inp.forecast.shape[1], inp.forecast.shape[3]
    with_forecast = np.isfinite(inp.forecast).all(axis=(1, 2, 3))
    rows = first + np.flatnonzero(with_forecast)
    assert set(rows - 1) == set(split.test_origins[keep].tolist())
    for r in rows[[0, 9, 10, -1]]:
        expected = ((r - 1) * 1000.0 + np.arange(H)[:, None] * 10.0 + np.arange(Q)[None, :]) * SCALE
        np.testing.assert_allclose(inp.forecast[r - first, :, 0, :], expected)
    missing = first + np.flatnonzero(~with_forecast)
    assert set((missing - 1).tolist()) >= set(split.test_origins[~keep].tolist())
    # the last origin is H rows before the end (its targets end at the last row); the rows after it have none
    assert with_forecast[-H] and np.isnan(inp.forecast[-(H - 1):]).all()


@pytest.mark.parametrize(
    ("source", "min_scored", "expected"),
    [
        pytest.param("app.requests_per_s", SHORT, "no metric of profile 'svc' has a source among the trained",
                     id="source-not-trained"),
        pytest.param(None, SHORT, "declared sources: none", id="no-source-at-all"),
        pytest.param("cpu_cores", 1440.0, "too short to tune on", id="tail-shorter-than-a-day"),
    ],
)
def test_a_stretch_that_cannot_be_built_says_why(trained, catalog, tmp_path, source, min_scored, expected):
    reason = stretch_input(trained, svc_profile(tmp_path, source=source), catalog, min_scored_minutes=min_scored)
    assert isinstance(reason, str) and expected in reason


def test_a_skipped_training_has_no_stretch(trained, profile, catalog):
    skipped = replace(trained, split=None, candidates={}, best=None, skipped="too little history")
    assert stretch_input(skipped, profile, catalog) == "no trained candidate (too little history)"


def test_the_stretch_tunes_a_policy_within_the_budget(trained, profile, catalog):
    from prescale.slo.tuning import tune

    inp, fleet = stretch_input(trained, profile, catalog, min_scored_minutes=SHORT)
    tuned = tune(inp, fleet, 0.02, trials=6, reactive_trials=4, timeout_seconds=30)
    policy = tuned.policy
    assert policy.tuned and policy.violation_budget == 0.02 and len(policy.frontier) == 10
    assert policy.tuning["steps"] == len(inp.index) - inp.start
    assert policy.tuning["violation_share"] <= 0.02 or "not reached" in " ".join(policy.reasons)
