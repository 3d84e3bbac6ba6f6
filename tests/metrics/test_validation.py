"""Validation keeps every row: accepted + quarantined == read, for any batch."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prescale.metrics.validation import REASONS, split

APPS = ["web", "api-2", "Bad_Name", "", None]
METRICS = ["cpu_cores", "gpu_util", "app.requests_per_s", "bogus", None]
VALUES = ["1.5", "0", "-2", "150", "NaN", "inf", "", "abc", None, "99.9"]
TIMES = [
    "2026-01-01T00:00:00Z",
    "2026-01-01T00:01:00+02:00",
    "1767225600",
    "nope",
    "2026-01-01T00:00:00",
    None,
    "2300-01-01T00:00:00Z",  # beyond what nanoseconds hold
    "99999999999",
    "20260101",  # a date typed as a number, not epoch seconds
]


@st.composite
def raw_batches(draw):
    n = draw(st.integers(min_value=0, max_value=40))
    pick = lambda options: draw(st.lists(st.sampled_from(options), min_size=n, max_size=n))  # noqa: E731
    return pd.DataFrame({"ts": pick(TIMES), "app": pick(APPS), "metric": pick(METRICS), "value": pick(VALUES)})


@settings(max_examples=60, deadline=None, derandomize=True)
@given(raw_batches())
def test_accepted_plus_quarantined_equals_read(raw):
    result = split(raw)
    assert len(result.accepted) + len(result.quarantined) == result.read == len(raw)
    assert sum(result.reasons.values()) == len(result.quarantined)
    assert set(result.reasons) <= set(REASONS)
    assert sorted(result.quarantined["source_row"]) == sorted(set(result.quarantined["source_row"]))
    accepted = result.accepted
    assert not accepted.duplicated(["app", "ts", "metric"]).any()
    assert np.isfinite(accepted["value"]).all()
    assert (accepted["value"] >= 0).all()


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        pytest.param("", "missing_value", id="empty"),
        pytest.param("NaN", "nan_value", id="nan"),
        pytest.param("1e999", "infinite_value", id="overflow-is-infinite"),
        pytest.param("12abc", "bad_type", id="text"),
        pytest.param("-0.001", "negative_value", id="negative"),
    ],
)
def test_value_reasons(value, reason):
    raw = pd.DataFrame({"ts": ["2026-01-01T00:00:00Z"], "app": ["web"], "metric": ["cpu_cores"], "value": [value]})
    assert split(raw).reasons == {reason: 1}


def test_first_reason_wins_by_priority():
    raw = pd.DataFrame({"ts": ["nope"], "app": ["Bad_Name"], "metric": ["bogus"], "value": ["abc"]})
    assert split(raw).reasons == {"invalid_app_name": 1}


def test_duplicate_only_counts_valid_rows():
    # the first row is invalid, so the second (same key) is the first valid one and is accepted
    raw = pd.DataFrame(
        {"ts": ["2026-01-01T00:00:00Z"] * 2, "app": ["web"] * 2, "metric": ["cpu_cores"] * 2, "value": ["x", "2"]}
    )
    result = split(raw)
    assert result.reasons == {"bad_type": 1}
    assert result.accepted["value"].tolist() == [2.0]


def test_typed_frames_pass_without_text_round_trip():
    raw = pd.DataFrame(
        {
            "ts": pd.date_range("2026-01-01", periods=3, freq="min", tz="UTC"),
            "app": pd.Categorical(["web"] * 3),
            "metric": pd.Categorical(["cpu_cores"] * 3),
            "value": [1.0, np.nan, 3.0],
        }
    )
    result = split(raw)
    assert result.reasons == {"nan_value": 1}
    assert result.accepted["ts"].dtype == "datetime64[ns, UTC]"


@pytest.mark.parametrize(
    "ts",
    [
        pytest.param("2300-01-01T00:00:00Z", id="year-2300"),
        pytest.param("1600-01-01T00:00:00Z", id="year-1600"),
        pytest.param("99999999999", id="epoch-beyond-2286"),
        pytest.param("20260101", id="date-as-number"),
        pytest.param("1e3", id="tiny-epoch"),
    ],
)
def test_implausible_instants_are_quarantined_not_fatal(ts):
    raw = pd.DataFrame(
        {"ts": [ts, "2026-01-01T00:00:00Z"], "app": ["web"] * 2, "metric": ["cpu_cores"] * 2, "value": ["1", "2"]}
    )
    result = split(raw)
    assert result.reasons == {"bad_timestamp": 1}
    assert result.accepted["value"].tolist() == [2.0]
