"""The predictive rule as a pure decision is the same rule: recorded real-trace replays reproduce to the bit.

``real_cases.json`` was recorded on the rule before it was split into ``prescale.decision.decide`` (the plan)
and the executor's act; every policy's cost, violation minutes, migrations, fallback steps and a digest of its
whole series must be unchanged (reactive and static too: the executor's act was rewritten on
``prescale.holding``).
"""

from __future__ import annotations

import json

import pytest

from tests.replay.real_cases import CASES, RECORDED, figures

RECORD = json.loads(RECORDED.read_text())


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in CASES])
def test_replays_of_real_traces_match_the_figures_recorded_before_the_split(case, traces):
    got = figures(case, traces)
    want = RECORD[case.name]
    assert sorted(got) == sorted(want)
    for setting, row in want.items():
        assert got[setting] == row, setting
