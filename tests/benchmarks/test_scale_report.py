"""benchmarks/scale.py's report: per-app CPU ms by stage from the cycle's rows, and the tables it writes."""

from __future__ import annotations

import json

import pytest

from benchmarks import scale


def _row(app: str, cpu: dict, *, duration_s: float = 0.004, outcome: str = "dry-run") -> dict:
    return {"app": app, "timing": json.dumps({"cpu_ms": cpu}), "duration_s": duration_s, "outcome": outcome}


def test_stage_figures_average_each_stage_over_the_apps_in_cycle_order():
    rows = [_row("a", {"decide": 4.0, "read": 2.0, "forecast": 6.0, "record": 1.0}, duration_s=0.004),
            _row("b", {"decide": 8.0, "read": 4.0, "forecast": 2.0, "record": 1.0}, duration_s=0.012),
            _row("c", {}, duration_s=0.0, outcome="failed")]  # fmt: skip
    figures = scale.stage_figures(rows)
    cpu = figures["cpu_ms_per_app"]
    assert list(cpu) == ["read", "forecast", "decide", "record", "total"]
    assert cpu["read"] == pytest.approx(2.0) and cpu["decide"] == pytest.approx(4.0)  # the failed row counts as 0
    assert cpu["total"] == pytest.approx(sum(v for k, v in cpu.items() if k != "total"))
    assert figures["decide_ms"] == {"p50": pytest.approx(8.0), "p95": pytest.approx(11.6)}  # failed rows left out


def test_the_markdown_reports_the_stages_and_the_failed_decisions(tmp_path, monkeypatch):
    monkeypatch.setattr(scale, "OUT", tmp_path)
    cycle = {"tasks": {"decide-apps": {"runs": 8, "sum_s": 30.0, "p95_s": 4.0}}, "modes": {"predictive": 999},
             "failed_count": 1, "decide_ms": {"p50": 5.0, "p95": 9.0},
             "cpu_ms_per_app": {"read": 3.0, "forecast": 4.0, "decide": 5.0, "total": 12.0}}  # fmt: skip
    results = {"machine": {"cpus": 2}, "train": [],
               "apps": [{"apps": 1000, "runner": "threads", "cold_cycle_s": 90.0, "warm_cycle_s": 40.0,
                         "warm_per_app_ms": 40.0, "self_peak_mib": 2000, "largest_child_peak_mib": 700,
                         "cycles": [cycle]}]}  # fmt: skip
    scale.write(results, name="scale-test")
    text = (tmp_path / "scale-test.md").read_text()
    assert "| 1000 | threads | 90.0 | 40.0 | 40.0 | 30.0 | 999 / 0 / 1 | 5.0 / 9.0 |" in text
    assert "| 1000 | threads | 3.0 | - | - | 4.0 | 5.0 | - | 12.0 |" in text
    assert json.loads((tmp_path / "scale-test.json").read_text())["apps"][0]["apps"] == 1000
