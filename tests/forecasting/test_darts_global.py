"""The optional global darts candidates (TiDE, N-HiTS, TSMixer): one fit over two panels, each kept in its scale;
quantiles at the configured (asymmetric) levels, in order and monotone; no peeking; save/load and pickling."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from models.component import TrainPart
from models.darts_global import DartsGlobal, NHitsCandidate, TideCandidate, TsMixerCandidate
from models.series import Panel
from tests.forecasting.conftest import DAY, daily_panel, tiny_config

QS = (0.05, 0.1, 0.5, 0.9, 0.95, 0.99, 0.995)  # not symmetric around 0.5: darts' likelihood alone refuses it
CLASSES = [pytest.param(TideCandidate, id="tide"), pytest.param(NHitsCandidate, id="nhits"),
           pytest.param(TsMixerCandidate, id="tsmixer")]


def _config():
    return tiny_config(input_minutes=120, quantiles=QS, max_samples=600, epochs=2, lag_window_minutes=10)


def _panels() -> tuple[Panel, Panel]:
    small, large = daily_panel(2.5, seed=1), daily_panel(2.5, seed=2)
    return small, Panel(large.index, large.values * 100, large.metrics, large.step_seconds)


@pytest.fixture(scope="module", params=CLASSES)
def fitted(request):
    panels = _panels()
    parts = [TrainPart(p, 2 * DAY - 40, 2 * DAY + 20) for p in panels]
    trained = request.param.train(parts, _config())
    assert all(not isinstance(t, str) for t in trained), trained
    (model,) = trained[0].members
    assert trained[1].members[0] is model  # one global model
    return panels, model


ORIGINS = np.arange(2 * DAY + 40, 2 * DAY + 60)


def test_quantiles_at_the_configured_levels_in_order_and_in_each_panels_scale(fitted):
    (small, large), model = fitted
    q_small = model.predict_at(small, ORIGINS, part=0)
    q_large = model.predict_at(large, ORIGINS, part=1)
    assert q_small.shape == (len(ORIGINS), 3, 1, len(QS))
    assert np.isfinite(q_small).all() and (np.diff(q_small, axis=-1) >= 0).all()
    assert 3 < np.median(q_small[..., QS.index(0.5)]) < 20
    assert 50 < np.median(q_large[..., QS.index(0.5)]) / np.median(q_small[..., QS.index(0.5)]) < 200


def test_a_forecast_uses_no_row_after_its_origin(fitted):
    (small, _), model = fitted
    origin = int(ORIGINS[5])
    before = model.predict_at(small, np.array([origin]))
    values = small.values.copy()
    values[origin + 1:] *= 50.0
    changed = Panel(small.index, values, small.metrics, small.step_seconds)
    np.testing.assert_allclose(model.predict_at(changed, np.array([origin])), before, rtol=1e-5)
    # and the forecast after a cut panel is the backtest from its last row
    np.testing.assert_allclose(model.forecast(small.head(origin + 1)), before[0], rtol=1e-4, atol=1e-4)


def test_save_load_and_pickle_round_trips(fitted, tmp_path):
    (small, _), model = fitted
    model.save(tmp_path / "m")
    again = type(model).load(tmp_path / "m")
    assert again.config == model.config
    np.testing.assert_allclose(again.forecast(small), model.forecast(small), rtol=1e-5)
    copied = pickle.loads(pickle.dumps(model))
    np.testing.assert_allclose(copied.predict_at(small, ORIGINS[:3]), model.predict_at(small, ORIGINS[:3]),
                               rtol=1e-5)


def test_they_are_optional_learned_and_a_panel_too_short_is_a_reason():
    short = daily_panel(0.1)
    for cls in (TideCandidate, NHitsCandidate, TsMixerCandidate):
        assert issubclass(cls, DartsGlobal) and cls.optional and cls.learned
        (reason,) = cls.train([TrainPart(short, 20, 25)], _config())
        assert isinstance(reason, str) and "rows long" in reason
