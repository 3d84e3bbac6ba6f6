"""The promotion rule, as a table."""

from __future__ import annotations

import pytest

from models.promotion import CHALLENGER, CHAMPION, describe, judge
from models.scoring import Scores


def _scores(mase: float, decision: float | None = None) -> Scores:
    return Scores(mae=mase, mae_last=mase, mase=mase, smape=1.0, pinball=0.1, coverage_80=0.8, coverage_90=0.9,
                  coverage_80_raw=0.7, coverage_90_raw=0.85, windows=10, decision=decision)


@pytest.mark.parametrize(
    ("new", "current", "margin", "promote"),
    [
        pytest.param(1.0, None, 0.02, True, id="no-champion-yet"),
        pytest.param(1.0, "it forecasts other metrics", 0.02, True, id="champion-incomparable"),
        pytest.param(0.90, 1.0, 0.02, True, id="clearly-better"),
        pytest.param(0.98, 1.0, 0.02, True, id="exactly-at-the-margin"),
        pytest.param(0.99, 1.0, 0.02, False, id="better-but-within-the-margin"),
        pytest.param(1.10, 1.0, 0.02, False, id="worse"),
        pytest.param(0.99, 1.0, 0.0, True, id="no-margin-any-gain"),
    ],
)
def test_judge(new, current, margin, promote):
    current_scores = _scores(current) if isinstance(current, float) else current
    verdict = judge(_scores(new), current_scores, margin=margin)
    assert verdict.promote is promote
    assert verdict.alias == (CHAMPION if promote else CHALLENGER)
    if isinstance(current, float):
        assert f"{current:.4f}" in verdict.reason


@pytest.mark.parametrize(
    ("new", "current", "promote", "yardstick"),
    [
        pytest.param((1.2, 0.50), (1.0, 0.60), True, "decision score", id="better-tail-worse-mase-promotes"),
        pytest.param((0.8, 0.60), (1.0, 0.50), False, "decision score", id="better-mase-worse-tail-stays"),
        pytest.param((0.8, 0.60), (1.0, None), True, "MASE", id="old-champion-without-tail-levels-mase"),
        pytest.param((1.2, None), (1.0, 0.50), False, "MASE", id="new-without-tail-levels-mase"),
    ],
)
def test_judge_uses_the_decision_score_and_mase_only_when_a_side_lacks_one(new, current, promote, yardstick):
    verdict = judge(_scores(*new), _scores(*current), margin=0.02)
    assert verdict.promote is promote and verdict.yardstick == yardstick
    assert verdict.reason.startswith(yardstick)
    assert f"MASE {new[0]:.4f} vs {current[0]:.4f}" in verdict.reason  # MASE stays reported
    assert verdict.new_mase == new[0] and verdict.champion_mase == current[0]


def test_description_shows_the_verdict_and_every_candidate():
    verdict = judge(_scores(1.2), _scores(1.0), margin=0.02)
    scores = {"lstm": _scores(1.2).headline(), "ses": _scores(1.3).headline()}
    text = describe(verdict, candidate="lstm", scores=scores, champion_version="3",
                    window={"train_start": "a", "train_end": "b", "test_start": "c", "test_end": "d"})
    assert "kept as `challenger`" in text and "v3" in text
    assert "| lstm |" in text and "| ses |" in text


def test_description_ranks_rows_by_the_decision_score_and_explains_it():
    verdict = judge(_scores(1.2, 0.4), _scores(1.0, 0.5), margin=0.02)
    scores = {"ses": _scores(0.9, 0.6).headline(), "lstm": _scores(1.2, 0.4).headline(),
              "old": _scores(0.5).headline()}
    text = describe(verdict, candidate="lstm", scores=scores, champion_version="3",
                    window={"train_start": "a", "train_end": "b", "test_start": "c", "test_end": "d"})
    assert "promoted to `champion`" in text and "decision score 0.4000 beats" in text
    assert "pinball loss at 0.9, 0.99 and 0.995" in text
    assert text.index("| lstm |") < text.index("| ses |") < text.index("| old |")
