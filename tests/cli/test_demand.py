"""Demand files for `prescale plan` / `apply`, `--current`, and the console filter for user errors (no CLI start).

The command-line runs of the same rules (exit code 2, no traceback, nothing written) are in test_bad_input.py.
"""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cli.commands.common import UserError, printable, quiet_flow_errors
from cli.commands.demand import check_reach, read_demand
from cli.commands.plan import MAX_CURRENT_NODES, parse_current
from prescale.catalog import load_catalog, resolve_profile
from prescale.forecast import Forecast, ForecastError

REPO = Path(__file__).resolve().parents[2]
WEB = resolve_profile("web", REPO / "infra" / "apps")
CATALOG = load_catalog(REPO / "infra" / "catalog.yaml")
NOW = pd.Timestamp("2026-03-02T10:00:00Z")
Q = "ts,requests_per_second@0.1,requests_per_second@0.9,connections@0.1,connections@0.9\n"


def read(tmp_path: Path, content: str | bytes, name: str = "demand.csv") -> Forecast:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return read_demand(path, WEB, start=NOW, step_seconds=60, spread=0.15)


REFUSED = [
    pytest.param(b"", "is empty (0 bytes)", id="empty"),
    pytest.param(bytes(range(256)), "is not UTF-8 text (byte 0 is b'\\x00'): is it a binary file?", id="binary"),
    pytest.param(b"requests_per_second,connections\n1,2\xff\n", "is not UTF-8 text (byte 35 is b'\\xff')",
                 id="latin-1"),
    pytest.param("a,b\n1,2,3\n", "not a readable CSV (Error tokenizing data", id="ragged-row"),
    pytest.param("requests_per_second,connections\n", "has a header but no rows", id="header-only"),
    pytest.param("connections,connections\n1,2\n", "column(s) ['connections'] appear more than once", id="dup-column"),
    pytest.param("requests_per_second\n1\n", "missing column(s) ['connections'] for app 'web'", id="missing-metric"),
    pytest.param("requests_per_second,connections\n1,x\n", "row 1, column connections: 'x' is not a number",
                 id="not-a-number"),
    pytest.param("requests_per_second,connections\n1,2\n3,\n", "row 2, column connections: '' is not a number",
                 id="empty-cell"),
    pytest.param("requests_per_second,connections\n-100,5\n", "row 1, column requests_per_second: -100.0 is negative",
                 id="negative"),
    pytest.param("requests_per_second,connections\n1e308,5\n", "1e+308 is above the largest demand accepted",
                 id="huge"),
    pytest.param("requests_per_second,connections\nNaN,5\n", "nan is not a finite number", id="nan"),
    pytest.param("requests_per_second,connections\ninf,5\n", "inf is not a finite number", id="inf"),
    pytest.param("ts,requests_per_second,connections\nnotatime,1,2\n", "row 1, column ts: 'notatime' is not an ISO "
                 "8601 time with a UTC offset", id="bad-ts"),
    pytest.param("ts,requests_per_second,connections\n2026-03-02T10:00:00,1,2\n", "'2026-03-02T10:00:00' is not an "
                 "ISO 8601 time with a UTC offset", id="ts-without-offset"),
    pytest.param("ts,requests_per_second,connections\n2026-03-02T10:00:00Z,1,2\n2026-03-02T10:00:00Z,1,2\n",
                 "steps must be whole seconds from 1 to 86400 apart and increasing, got 0 s", id="ts-repeated"),
    pytest.param("ts,requests_per_second,connections\n2026-03-02T10:01:00Z,1,2\n2026-03-02T10:00:00Z,1,2\n",
                 "got -60 s", id="ts-backwards"),
    pytest.param("ts,requests_per_second,connections\n2026-03-02T10:00:00Z,1,2\n2026-03-02T10:01:00Z,1,2\n"
                 "2026-03-02T10:03:00Z,1,2\n", "row 3, column ts: 2026-03-02T10:03:00Z is 120 s after row 2, not 60 s",
                 id="ts-uneven"),
    pytest.param("requests_per_second@abc,connections@0.5\n1,2\n", "column 'requests_per_second@abc': level 'abc' is "
                 "not a number in (0, 1)", id="level-not-a-number"),
    pytest.param("requests_per_second@1.5,connections@1.5\n1,2\n", "level '1.5' is not a number in (0, 1)",
                 id="level-above-1"),
    pytest.param("requests_per_second@0.9,requests_per_second@0.1\n1,2\n", "column requests_per_second@0.1 comes "
                 "after requests_per_second@0.9: give each metric's quantile columns once each, in increasing order",
                 id="levels-out-of-order"),
    pytest.param("requests_per_second@0.5,requests_per_second@0.50\n1,2\n", "comes after requests_per_second@0.5",
                 id="level-twice"),
    pytest.param(Q + "2026-03-02T10:00:00Z,10,9,1,2\n", "row 1, column requests_per_second@0.9: 9 is below 10 at "
                 "row 1, column requests_per_second@0.1: quantiles must not decrease", id="crossed-values"),
    pytest.param("requests_per_second@0.1,requests_per_second@0.9,connections@0.9\n1,2,3\n",
                 "missing column connections@0.1", id="level-missing-for-a-metric"),
]


@pytest.mark.parametrize(("content", "message"), REFUSED)
def test_bad_demand_files_are_refused_naming_file_row_column_and_value(tmp_path, content, message):
    with pytest.raises((UserError, ForecastError), match=re.escape(f"demand file {tmp_path / 'demand.csv'}")) as bad:
        read(tmp_path, content)
    assert message in str(bad.value)


JSON = [
    pytest.param("{not json", "not valid JSON (Expecting property name", id="unparsable"),
    pytest.param('{"start": "2026-03-02T10:00:00Z", "step_seconds": 60, "metrics": ["requests_per_second", '
                 '"connections"], "quantiles": [0.5], "values": [[[1], [-2]]]}',
                 "values[0][1][0] (metric 'connections', level 0.5): -2.0 is negative", id="negative"),
]


@pytest.mark.parametrize(("content", "message"), JSON)
def test_a_json_demand_file_is_checked_like_a_csv(tmp_path, content, message):
    with pytest.raises((UserError, ForecastError), match=re.escape(f"demand file {tmp_path / 'demand.json'}")) as bad:
        read(tmp_path, content, "demand.json")
    assert message in str(bad.value)


def test_a_good_quantile_file_gives_its_start_step_and_levels(tmp_path):
    rows = [f"2026-03-02T11:{m:02d}:00+01:00,{m},{m + 1},{10 * m},{10 * m}" for m in range(0, 10, 5)]
    forecast = read(tmp_path, Q + "\n".join(rows) + "\n")
    assert forecast.start == pd.Timestamp("2026-03-02T10:00:00Z") and forecast.step_seconds == 300
    assert forecast.quantiles == [0.1, 0.9] and forecast.horizon == 2
    np.testing.assert_array_equal(forecast.values[1], [[5.0, 6.0], [50.0, 50.0]])


def test_zero_demand_and_a_written_step_column_are_fine(tmp_path):
    forecast = read(tmp_path, "step,requests_per_second,connections\n0,0,0\n1,0,0\n")
    assert forecast.horizon == 2 and float(forecast.quantile(0.9).max()) == 0.0


def _steps(n: int, step_seconds: int = 60) -> Forecast:
    return Forecast.from_median(np.ones((n, 2)), start=NOW, step_seconds=step_seconds, metrics=WEB.metric_names)


REACH = [
    pytest.param(1, 60, "covers 1 step(s) of 60 s, but the fastest type app 'web' can use (c7g.2xlarge) takes 75 s "
                 "to serve: nothing new could be ready within it. Give at least 2 steps", id="one-minute-step"),
    pytest.param(2, 60, None, id="two-minute-steps"),
    pytest.param(1, 300, None, id="one-five-minute-step"),
]


@pytest.mark.parametrize(("steps", "step_seconds", "message"), REACH)
def test_demand_shorter_than_every_lead_time_is_refused_with_that_reason(steps, step_seconds, message):
    """A one-step file used to plan `{}` with a wrong "quota" explanation: every type failed the lead time."""
    if message is None:
        check_reach(_steps(steps, step_seconds), CATALOG, WEB, source="demand file d.csv")
        return
    with pytest.raises(UserError, match="^demand file d.csv " + re.escape(message)):
        check_reach(_steps(steps, step_seconds), CATALOG, WEB, source="demand file d.csv")


CURRENT = [
    pytest.param(["c7g.2xlarge"], "expected TYPE=N", id="no-count"),
    pytest.param(["c7g.2xlarge=-1"], "expected TYPE=N", id="negative"),
    pytest.param(["c7g.2xlarge=²"], "expected TYPE=N", id="unicode-digit"),
    pytest.param(["=3"], "expected TYPE=N", id="no-type"),
    pytest.param(["c7g.2xlarge=99999999999999999999"], "99999999999999999999 nodes of 'c7g.2xlarge' is more than "
                 "the 100,000 accepted per type", id="overflow"),
    pytest.param(["c7g.2xlarge=60000", "c7g.2xlarge=60000"], "120000 nodes", id="repeated-adds-up-past-the-bound"),
]


@pytest.mark.parametrize(("items", "message"), CURRENT)
def test_bad_current_nodes_are_refused(items, message):
    with pytest.raises(UserError, match=re.escape(message)):
        parse_current(items)


def test_current_nodes_add_up_to_the_bound():
    assert parse_current([" c7g.2xlarge = 4", "c7g.2xlarge=1"]) == {"c7g.2xlarge": 5}
    assert parse_current([f"m7i.xlarge={MAX_CURRENT_NODES}"]) == {"m7i.xlarge": MAX_CURRENT_NODES}


def _record(name: str, message: str, exc: BaseException | None = None) -> logging.LogRecord:
    info = (type(exc), exc, None) if exc else None
    return logging.LogRecord(name, logging.ERROR, __file__, 1, message, None, info)


CONSOLE = [
    pytest.param(_record("prefect.flow_runs", "Encountered exception during execution", UserError("bad file")),
                 False, id="user-error-traceback"),
    pytest.param(_record("prefect.task_runs", "Finished in state Failed('Task run encountered an exception "
                         "UserError: bad file')"), False, id="task-failed-on-user-error"),
    pytest.param(_record("prefect.flow_runs", "Finished in state Failed('Flow run encountered an exception: "
                         "UserError: bad file')"), False, id="flow-failed-on-user-error"),
    pytest.param(_record("prefect.flow_runs", "Encountered exception during execution", RuntimeError("disk")),
                 True, id="real-failure-kept"),
    pytest.param(_record("prefect.task_runs", "Finished in state Failed('Task run encountered an exception "
                         "OSError: disk full')"), True, id="real-failure-state-kept"),
    pytest.param(_record("myapp", "x", UserError("y")), True, id="other-loggers-untouched"),
]


@pytest.mark.parametrize(("record", "shown"), CONSOLE)
def test_the_console_hides_only_user_errors_of_prefect_runs_while_a_flow_runs(record, shown):
    """Prefect's console handler sits on the root logger; what it prints during and after the flow call."""
    out = io.StringIO()
    console = logging.StreamHandler(out)
    logging.getLogger().addHandler(console)
    try:
        with quiet_flow_errors(()):
            console.handle(record)
        assert bool(out.getvalue()) is shown
        console.handle(record)  # after the call: nothing is hidden any more
        assert record.getMessage() in out.getvalue()
    finally:
        logging.getLogger().removeHandler(console)


def test_messages_quoting_a_file_cannot_drive_the_terminal():
    assert printable("bad\x1b[2J value\x00\rhere\nnext line") == "bad\\x1b[2J value\\x00\\rhere\nnext line"
