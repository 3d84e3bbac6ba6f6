"""`prescale demo --quick` end to end, as `make run` runs it (a child process, on the session's Prefect server):
the pipeline's results, the every-minute loop, and a console a newcomer can read."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.cells import cell_len

from prescale.ledger import Ledger

PRESCALE = str(Path(sys.executable).parent / "prescale")
APPS = {"web", "analytics", "inference", "transcoder"}
MAX_PROGRESS_LINES = 40  # the console before the final tables
WIDTH = 80


@pytest.fixture(scope="module")
def quick_demo(prefect_harness, tmp_path_factory):
    """One quick demo for the module: its home, its console and its result (``<home>/demo.json``)."""
    from prefect.settings import PREFECT_API_URL

    home = tmp_path_factory.mktemp("demo") / "home"
    # a wide terminal: the final tables must still fit 80 columns
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()), "PRESCALE_HOME": str(home),
           "COLUMNS": "200"}  # fmt: skip
    run = subprocess.run([PRESCALE, "demo", "--quick"], capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return home, run, json.loads((home / "demo.json").read_text())


def test_the_pipeline_ingests_trains_and_replays_every_app(quick_demo):
    _, _, result = quick_demo
    stored = {row["app"]: row for row in result["stored"]}
    assert set(stored) == APPS
    for rep in result["ingest"]:
        assert rep["accepted"] + rep["quarantined"] == rep["read"] > 0
    assert stored["web"]["rows"] == 20160
    assert stored["web"]["metrics"] == ["app.requests_per_s"]
    trained = {(m["app"], m["phase"]): m for m in result["train"]["models"]}
    assert {app for app, _ in trained} == APPS
    web = next(m for (app, _), m in trained.items() if app == "web" and m.get("champion"))
    assert web["scores"][web["champion"]]["mae"] > 0
    replays = {rep["app"]: rep for rep in result["replay"]}
    assert set(replays) == APPS
    for app, rep in replays.items():
        assert "error" not in rep, rep
        assert rep["profile"] == app
        assert set(rep["budget_costs"]) == {"predictive", "reactive", "static", "oracle", "aws", "crane"}
        bound = rep["oracle"]["lower_bound"]  # the LP bound under the oracle's zero-violation schedules
        assert 0 < bound <= rep["budget_costs"]["oracle"]["0"]
        for costs in rep["budget_costs"].values():  # nothing beats that bound at zero violations
            assert costs["0"] is None or costs["0"] >= bound * (1 - 1e-6)
        assert all(Path(f).stat().st_size > 0 for f in rep["files"].values())
        # the app's SLO, and its policy tuned before the window then run once over it (ex ante)
        assert rep["slo"]["violation_budget"] == 0.005
        ahead = rep["ex_ante"]
        assert ahead["policy"]["tuned"] and ahead["tuning"]["end"] < rep["window"]["start"]
        assert ahead["predictive"]["cost"] > 0 and ahead["reactive_default"]["cost"] > 0


def test_the_loop_ran_orchestrate_and_every_app_provisioned_or_migrated(quick_demo):
    home, _, result = quick_demo
    loop = result["loop"]
    assert loop["cycles"] >= 3 and loop["first"] < loop["last"]
    apps = {a["app"]: a for a in loop["apps"]}
    assert set(apps) == APPS
    for app, summary in apps.items():
        assert summary["decisions"] == loop["cycles"], app
        assert summary["provisioned"] or summary["migrated"], summary
        assert summary["booted"] and summary["booted"] >= 1, summary  # the simulated cluster's own record
        assert summary["cost_last"] > 0 and summary["demand_last"] > 0, summary
    ledger = Ledger(loop["ledger"])
    for app in APPS:  # the loop's decisions are in the ledger `prescale serve` reads, at the replayed instants
        rows = ledger.read(app, start=loop["first"])
        assert len(rows) == loop["cycles"] and set(rows["outcome"]) <= {"applied", "noop", "blocked"}, rows
    assert Path(loop["cluster"]).is_file() and Path(loop["cluster"]).is_relative_to(home)


def test_the_console_is_short_narrow_and_ends_with_the_next_steps(quick_demo):
    home, run, _ = quick_demo
    lines = run.stdout.splitlines()
    first_table = next(i for i, line in enumerate(lines) if line.startswith("data: the metrics store"))
    progress = [line for line in lines[:first_table] if line.strip()]
    assert len(progress) <= MAX_PROGRESS_LINES, "\n".join(progress)
    assert sum(line.startswith("✓") for line in progress) >= 6, "\n".join(progress)  # one line per stage
    assert not [line for line in lines if cell_len(line) > WIDTH], "lines wider than 80 columns"
    assert "INFO" not in run.stdout + run.stderr and not run.stderr.strip(), run.stderr[-2000:]
    assert "the every-minute loop" in run.stdout and "ex ante" in run.stdout
    tail = "\n".join(lines[-4:])
    assert "http://127.0.0.1:4200" in tail and "http://127.0.0.1:5000" in tail and "make serve" in tail
    log = home / "logs" / "demo.log"  # the flows' run logs went to a file instead
    text = log.read_text()
    assert "for flow 'orchestrate'" in text and "for flow 'train-forecasters'" in text
    assert str(log) in run.stdout


@pytest.fixture
def terminal_logger():
    """A logger, and the logging state `logs_to_file` changes, restored afterwards. The test adds the terminal
    handler: pytest swaps ``sys.stderr`` between a fixture's set-up and the test."""
    logger = logging.getLogger("prescale-test-terminal")
    logger.propagate, logger.level = False, logging.INFO
    root_handlers = list(logging.getLogger().handlers)
    yield logger
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    for lg in [logging.getLogger(), *logging.root.manager.loggerDict.values()]:
        if isinstance(lg, logging.Logger):
            for h in [h for h in lg.handlers if isinstance(h, logging.FileHandler) and h not in root_handlers]:
                lg.removeHandler(h)
                h.close()
    logging.captureWarnings(False)


def test_logs_go_to_the_file_and_only_errors_to_the_terminal(terminal_logger, tmp_path, capsys):
    from cli.runtime import logs_to_file

    logger, handler = terminal_logger, logging.StreamHandler(sys.stderr)
    logger.addHandler(handler)
    log = tmp_path / "logs" / "demo.log"
    with logs_to_file(log):
        logger.info("a run log line")
        try:
            raise ValueError("deep inside")
        except ValueError:
            logger.exception("a task failed")
        print("a library printing to stderr", file=sys.stderr)
    assert handler.level == 40  # the terminal keeps errors only
    text = log.read_text()
    assert "a run log line" in text and "a library printing to stderr" in text
    assert "a task failed" in text and "Traceback" in text and "deep inside" in text
    terminal = capsys.readouterr().err
    assert "a run log line" not in terminal and "Traceback" not in terminal
    assert terminal.strip() == f"a task failed (traceback in {log})"  # one line


def test_verbose_leaves_the_logs_on_the_terminal(terminal_logger, tmp_path):
    from cli.runtime import logs_to_file

    logger, handler = terminal_logger, logging.StreamHandler(sys.stderr)
    logger.addHandler(handler)
    with logs_to_file(tmp_path / "demo.log", verbose=True) as where:
        logger.info("shown")
    assert where is None and handler.level == 0 and not (tmp_path / "demo.log").exists()


def test_progress_prints_one_line_per_stage_and_closes_the_wait_for_prefect():
    import io

    from rich.console import Console

    from cli.commands.common import ConsoleProgress
    from prescale.demo import reporting_to, stage, step

    out = Console(file=io.StringIO(), width=80)  # not a terminal: no spinner, the lines only
    progress = ConsoleProgress(out)
    with reporting_to(progress):
        progress.waiting("starting Prefect", "Prefect ready")
        with stage("training") as now:
            step("training web")
            now.done = "trained 4 apps"
        with pytest.raises(RuntimeError), stage("replaying"):
            raise RuntimeError("boom")
    lines = out.file.getvalue().splitlines()
    assert [line.rsplit(" (", 1)[0] for line in lines] == ["✓ Prefect ready", "✓ trained 4 apps",
                                                          "✗ replaying: failed"]  # fmt: skip
    assert all(line.endswith(" s)") for line in lines)
