"""Training one panel: every candidate on the same windows, and bad input skipped with a reason."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from models.baselines import Persistence
from models.components import is_learned
from models.conformal import target_hours
from models.lstm import LstmCandidate, LstmConfig
from models.series import panel_from_wide
from models.train import TrainConfig, check_panel, rank, rescore, split_panel, train_panels
from tests.forecasting.conftest import DAY, daily_frame, daily_panel, tiny_config


def test_every_candidate_is_scored_on_the_same_windows(trained):
    assert trained.skipped is None
    names = set(trained.candidates)
    assert {"persistence", "seasonal_naive", "ses", "holt_winters", "lstm"} <= names
    # the ensemble competes, unless validation gave one member all the weight (and then it says so)
    assert any(n.startswith("lstm+") for n in names) or "all the weight" in trained.unavailable["ensemble"]
    windows = {c.scores.windows for c in trained.candidates.values()}
    assert windows == {len(trained.split.test_origins)}
    for c in trained.candidates.values():
        s = c.scores
        assert s.coverage_90 is not None and s.coverage_90_raw is not None
        assert 0 <= s.coverage_80 <= s.coverage_90 <= 1


def test_the_best_has_the_lowest_decision_score(trained):
    best = trained.best
    decisions = {n: c.scores.decision for n, c in trained.candidates.items()}
    assert None not in decisions.values()  # the default quantiles reach 0.995
    assert decisions[best] == min(decisions.values())


def test_every_candidate_is_calibrated_per_hour_bin_and_scored_at_each_lead(trained):
    config = tiny_config()
    assert config.quantiles == (0.05, 0.1, 0.5, 0.9, 0.95, 0.99, 0.995)
    for name, c in trained.candidates.items():
        assert c.forecaster.offsets.shape == (config.calibration_bins, 3, 1, len(config.quantiles)), name
        assert c.test_quantiles.shape[-1] == len(config.quantiles)
        assert {lead: v["step"] for lead, v in c.scores.tail.items()} == {"1m": 1, "5m": 1, "15m": 3}
        hours = set(target_hours(trained.panel.index, trained.split.test_origins, 3, 300).ravel().tolist())
        assert len(hours) < 24  # a tail under a day: the hours it does not reach have no coverage
        assert {h for h, v in enumerate(c.scores.hourly["0.99"]) if v is not None} == hours


def test_holt_winters_beats_persistence_on_a_daily_sine(trained):
    s = {n: c.scores for n, c in trained.candidates.items()}
    assert s["holt_winters"].mae < s["persistence"].mae


def test_the_split_keeps_the_held_out_tail_after_validation_after_training(trained):
    split = trained.split
    assert split.train_stop < split.val_stop
    assert split.val_origins.max() + 3 < split.val_stop <= split.test_origins.min() + 1


def test_ranking_breaks_ties_towards_the_simpler_candidate(trained):
    tied = {n: trained.candidates[n] for n in ("lstm", "ses")}
    lstm_scores = tied["lstm"].scores
    from dataclasses import replace

    tied["ses"] = replace(tied["ses"], scores=replace(tied["ses"].scores, decision=lstm_scores.decision))
    assert rank(tied) == "ses"
    tied["ses"] = replace(tied["ses"], scores=replace(tied["ses"].scores, decision=lstm_scores.decision + 1e-3,
                                                      mase=lstm_scores.mase / 2))
    assert rank(tied) == "lstm"  # a better MASE does not outrank a better decision score
    assert is_learned("lstm+ses") and is_learned("lstm") and not is_learned("ses")


def test_rescoring_the_winner_reproduces_its_scores(trained):
    best = trained.candidates[trained.best]
    again = rescore(best.forecaster, trained, tiny_config())
    assert again.mase == pytest.approx(best.scores.mase, rel=1e-6)
    assert again.decision == pytest.approx(best.scores.decision, rel=1e-6)
    assert again.hourly == best.scores.hourly


def test_rescoring_refuses_a_forecaster_of_other_metrics(trained):
    panel = daily_panel(4.0, seed=1, metrics=("memory_gib",))
    other = type(trained)(trained.key, panel, trained.split, {}, None)
    reason = rescore(trained.candidates[trained.best].forecaster, other, tiny_config())
    assert isinstance(reason, str) and "memory_gib" in reason


def _constant():
    frame = daily_frame(4.0)
    frame["cpu_cores"] = 3.0
    return panel_from_wide(frame)


def _mostly_missing():
    frame = daily_frame(4.0)
    frame.iloc[np.random.default_rng(0).random(len(frame)) < 0.7] = np.nan
    return panel_from_wide(frame, max_fill_steps=0)


def _chopped():
    frame = daily_frame(4.0)
    frame.iloc[::20] = np.nan  # a hole every 20 rows: no stretch holds input + horizon
    return panel_from_wide(frame, max_fill_steps=0)


def _gappy_tail():
    frame = daily_frame(4.0)
    frame.iloc[-int(0.2 * len(frame)) :: 10] = np.nan
    return panel_from_wide(frame, max_fill_steps=0)


@pytest.mark.parametrize(
    ("make", "words"),
    [
        pytest.param(lambda: daily_panel(0.3), "too little history", id="too-short"),
        pytest.param(_constant, "constant series", id="constant"),
        pytest.param(_mostly_missing, "too gappy", id="mostly-missing"),
        pytest.param(_chopped, "gap-free stretch", id="no-long-stretch"),
        pytest.param(_gappy_tail, "held-out tail", id="gappy-held-out-tail"),
    ],
)
def test_bad_input_is_skipped_with_a_reason(make, words):
    result = train_panels([("bad", make())], tiny_config())[0]
    assert result.skipped is not None and words in result.skipped
    assert result.candidates == {} and result.best is None


def test_a_bad_panel_does_not_stop_the_good_one():
    good, bad = daily_panel(4.0), daily_panel(0.3)
    results = train_panels([("good", good), ("bad", bad)], tiny_config(ensemble=False))
    assert results[0].best is not None and results[1].skipped


def test_nan_gaps_inside_training_are_trained_around_not_filled():
    frame = daily_frame(4.0)
    frame.iloc[300:400] = np.nan  # a 100-row outage in training
    panel = panel_from_wide(frame, max_fill_steps=3)
    assert np.isnan(panel.values[300:400]).all()
    assert check_panel(panel, tiny_config()) is None
    split = split_panel(panel, tiny_config())
    assert not isinstance(split, str)


def test_a_phase_is_not_gappy_where_the_other_phases_run():
    panel = panel_from_wide(daily_frame(10.0), max_fill_steps=0)
    phase = np.zeros(len(panel), dtype=bool)
    phase[DAY : 3 * DAY] = phase[-2 * DAY :] = True  # 40% of the rows, the held-out tail among them
    assert check_panel(panel.where(phase), tiny_config()) is None
    gappy = panel.where(phase).values.copy()
    gappy[np.flatnonzero(phase)[np.random.default_rng(0).random(phase.sum()) < 0.7]] = np.nan
    own_gaps = panel_from_wide(pd.DataFrame(gappy, index=panel.index, columns=list(panel.metrics)), max_fill_steps=0)
    assert "too gappy" in check_panel(own_gaps.where(phase), tiny_config())  # its own gaps still count
    assert "too gappy" in check_panel(own_gaps, tiny_config())  # and rows merely missing are gaps


def test_presets_are_named_and_unknown_ones_refused():
    assert TrainConfig.preset("small").hidden_dim < TrainConfig().hidden_dim
    with pytest.raises(ValueError, match="'huge'"):
        TrainConfig.preset("huge")
    assert TrainConfig().steps(300) == (48, 3)  # 4 hours at 5 minutes
    assert TrainConfig().steps(60) == (64, 15)  # capped at 64 rows
    assert DAY == 288


@pytest.mark.parametrize(
    ("days", "weekly"), [pytest.param(13, False, id="under-two-weeks"), pytest.param(14, True, id="two-weeks")]
)
def test_the_weekly_lag_needs_two_weeks_of_training_rows(days, weekly):
    config = LstmConfig.from_train(TrainConfig(), 300, train_rows=days * DAY)
    assert config.weekly_lag is weekly and config.seasonal_lag


def test_several_lstm_networks_are_averaged_and_deployed_together(tmp_path):
    from models.forecaster import Forecaster

    panel = daily_panel(4.0, seed=1)
    result = train_panels([("svc/default", panel)], tiny_config(lstm_members=2))[0]
    lstm = result.candidates["lstm"].forecaster
    assert [c.config.seed for c in lstm.components] == [0, 1]
    assert all(isinstance(c, LstmCandidate) for c in lstm.components)
    np.testing.assert_allclose(lstm.weights, 0.5)
    origins = result.split.test_origins[:5]
    members = [c.predict_at(panel, origins) for c in lstm.components]
    assert not np.allclose(members[0], members[1])  # two seeds, two networks
    np.testing.assert_allclose(lstm.raw(panel, origins), np.mean(members, axis=0), rtol=1e-6)
    for name, candidate in result.candidates.items():  # every blend's weights still sum to one per step
        np.testing.assert_allclose(candidate.forecaster.weights.sum(axis=0), 1.0, err_msg=name)
    again = Forecaster.load(lstm.save(tmp_path / "lstm"))
    history = pd.DataFrame(panel.values, index=panel.index, columns=list(panel.metrics))
    np.testing.assert_allclose(again.forecast(history).values, lstm.forecast(history).values, rtol=1e-5)


class _Extra(Persistence):
    """A costly extra stand-in: trained only when asked for."""

    name: ClassVar[str] = "extra"
    optional: ClassVar[bool] = True


@pytest.mark.parametrize(("extra", "trained_extra"), [pytest.param((), False, id="not-asked-for"),
                                                      pytest.param(("extra",), True, id="asked-for")])
def test_an_optional_component_trains_only_when_asked_for(monkeypatch, extra, trained_extra):
    monkeypatch.setattr("models.train.COMPONENTS", {"persistence": Persistence, "extra": _Extra})
    result = train_panels([("svc", daily_panel(4.0))], tiny_config(extra_candidates=extra))[0]
    assert ("extra" in result.candidates) is trained_extra
    assert "persistence" in result.candidates  # a component without the attribute always trains


def test_settings_carry_the_calibration_and_score_fields():
    from prescale.settings import ForecastSettings

    config = TrainConfig.from_settings(ForecastSettings(calibration_bins=6, score_leads_minutes=[2.0, 10.0]))
    assert config.calibration_bins == 6 and config.score_leads_minutes == (2.0, 10.0)
    assert config.quantiles == TrainConfig().quantiles and 0.995 in config.quantiles
    with pytest.raises(ValueError, match="calibration_bins 5 does not divide 24"):
        ForecastSettings(calibration_bins=5)


def test_an_unknown_extra_candidate_is_refused_with_the_optional_ones_named():
    with pytest.raises(ValueError, match="not optional forecaster components.*fracast"):
        train_panels([("x", daily_panel())], TrainConfig.preset("small", extra_candidates=("lstm", "nope")))
