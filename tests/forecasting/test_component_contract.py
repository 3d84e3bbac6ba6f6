"""The forecaster component contract, run on every registered component (``models.components``).

A component that passes can be trained, scored, saved, loaded and served like the others: each
test below is one promise of ``models.component.Component``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from models.component import Trained, TrainPart
from models.components import COMPONENTS, component_folder, load_component
from models.series import Panel
from tests.forecasting.conftest import DAY, daily_panel, tiny_config

CONFIG = tiny_config()
HORIZON = CONFIG.steps(300)[1]
METRICS = ("cpu_cores", "memory_gib")
# eight days: the weekly-seeded Holt-Winters sees the same first week from every origin of the last day
PANEL = daily_panel(8.0, seed=5, metrics=METRICS)
PART = TrainPart(PANEL, 6 * DAY, 7 * DAY)
ORIGINS = np.arange(7 * DAY, 8 * DAY - HORIZON, 17)


def _tail(panel: Panel, rows: int) -> Panel:
    return replace(panel, index=panel.index[-rows:], values=panel.values[-rows:])


@pytest.fixture(scope="module", params=list(COMPONENTS))
def trained(request) -> tuple[str, Trained]:
    (fitted,) = COMPONENTS[request.param].train([PART], CONFIG)
    assert isinstance(fitted, Trained), f"{request.param} could not train: {fitted}"
    return request.param, fitted


def test_training_gives_members_of_the_registered_kind(trained):
    name, fitted = trained
    assert fitted.members and all(m.name == name for m in fitted.members)
    assert fitted.seconds >= 0 and isinstance(fitted.params, dict)


def test_quantiles_at_every_origin_have_the_right_shape_and_order(trained):
    _, fitted = trained
    for member in fitted.members:
        q = member.predict_at(PANEL, ORIGINS)
        assert q.shape == (len(ORIGINS), HORIZON, len(METRICS), len(CONFIG.quantiles))
        assert np.isfinite(q).all() and (np.diff(q, axis=-1) >= -1e-9).all()
        median = q[..., CONFIG.quantiles.index(0.5)]
        assert 0.5 * np.nanmin(PANEL.values) < np.median(median) < 2 * np.nanmax(PANEL.values)


def test_forecast_after_the_last_row_is_the_quantiles_from_that_origin(trained):
    _, fitted = trained
    origin = int(ORIGINS[-1])
    for member in fitted.members:
        ahead = member.forecast(PANEL.head(origin + 1))
        assert ahead.shape == (HORIZON, len(METRICS), len(CONFIG.quantiles))
        np.testing.assert_allclose(ahead, member.predict_at(PANEL, np.array([origin]))[0], rtol=1e-4, atol=1e-4)


def test_history_needed_is_enough_to_forecast(trained):
    _, fitted = trained
    for member in fitted.members:
        rows = member.history_needed()
        assert 1 <= rows <= len(PANEL)
        assert np.isfinite(member.forecast(_tail(PANEL, rows))).all()


def test_save_and_load_through_the_registry_gives_the_same_quantiles(trained, tmp_path):
    name, fitted = trained
    for i, member in enumerate(fitted.members):
        folder = tmp_path / component_folder(i, member)
        folder.mkdir()
        member.save(folder)
        again = load_component(folder)
        assert type(again) is type(member) and again.name == name
        np.testing.assert_allclose(again.predict_at(PANEL, ORIGINS), member.predict_at(PANEL, ORIGINS), rtol=1e-5)
        np.testing.assert_allclose(again.forecast(PANEL), member.forecast(PANEL), rtol=1e-5)


@pytest.mark.parametrize("name", list(COMPONENTS))
def test_several_parts_train_together_and_each_keeps_its_scale(name):
    large = replace(PANEL, values=PANEL.values * 50)
    fitted = COMPONENTS[name].train([PART, TrainPart(large, 6 * DAY, 7 * DAY)], CONFIG)
    assert len(fitted) == 2 and all(isinstance(f, Trained) for f in fitted)
    medians = [np.median(fitted[i].members[0].predict_at(p, ORIGINS, part=i)[..., 2]) for i, p in enumerate(
        (PANEL, large))]
    assert 20 < medians[1] / medians[0] < 120


@pytest.mark.parametrize("name", list(COMPONENTS))
def test_a_part_too_short_to_train_on_gives_a_reason_not_an_exception(name):
    (fitted,) = COMPONENTS[name].train([TrainPart(PANEL, 2, 3)], CONFIG)
    assert isinstance(fitted, str) and fitted
