"""The promotion rule, as a table."""

from __future__ import annotations

import pytest

from models.promotion import CHALLENGER, CHAMPION, describe, judge
from models.scoring import Scores


def _scores(mase: float) -> Scores:
    return Scores(mae=mase, mae_last=mase, mase=mase, smape=1.0, pinball=0.1, coverage_80=0.8, coverage_90=0.9,
                  coverage_80_raw=0.7, coverage_90_raw=0.85, windows=10)


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


def test_description_shows_the_verdict_and_every_candidate():
    verdict = judge(_scores(1.2), _scores(1.0), margin=0.02)
    scores = {"lstm": _scores(1.2).headline(), "ses": _scores(1.3).headline()}
    text = describe(verdict, candidate="lstm", scores=scores, champion_version="3",
                    window={"train_start": "a", "train_end": "b", "test_start": "c", "test_end": "d"})
    assert "kept as `challenger`" in text and "v3" in text
    assert "| lstm |" in text and "| ses |" in text
