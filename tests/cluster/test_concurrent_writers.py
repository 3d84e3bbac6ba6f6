"""Two writers of one simulated cluster, at the same time, on different apps: neither loses the other's update.

The issue's target: 20 runs of two concurrent ``apply`` on different apps, both kept every time. Each writer
is a process of its own (``writers.py``) doing what ``prescale apply`` does; a barrier starts both in every
round, and after the round the state file must hold both apps' claims of that round. Then the same with two
real ``prescale apply`` programs.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

from tests.cluster.writers import RTYPE, nodes_in_round, writer

APPS = ("web", "analytics")
ROUNDS = 20
PRESCALE = str(Path(sys.executable).parent / "prescale")


def claims(state: Path) -> dict[str, int]:
    return json.loads(state.read_text())["world"]["claims"].get(RTYPE, {})


def test_twenty_rounds_of_two_concurrent_writers_keep_both_apps(tmp_path):
    state = tmp_path / "cluster" / "state.json"
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(len(APPS) + 1, timeout=120), ctx.Queue()
    procs = [ctx.Process(target=writer, args=(state, app, ROUNDS, barrier, results)) for app in APPS]
    for p in procs:
        p.start()
    lost, statuses = [], []
    try:
        for round_ in range(ROUNDS):
            barrier.wait()  # both writers start
            barrier.wait()  # both writers are done
            statuses += [results.get(timeout=10) for _ in APPS]
            want = {app: nodes_in_round(app, round_) for app in APPS}
            if claims(state) != want:
                lost.append((round_, claims(state), want))
    finally:
        barrier.abort()
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    assert {s for _, _, s in statuses} == {"applied"}, statuses
    assert lost == [], f"{len(lost)} of {ROUNDS} rounds lost an update: {lost}"


def test_two_concurrent_prescale_apply_programs_keep_both_apps(tmp_path):
    home = tmp_path / "home"
    env = {**os.environ, "PRESCALE_HOME": str(home), "PRESCALE_SEARCH__SOLVER": "milp"}
    runs = [
        subprocess.Popen(
            [PRESCALE, "apply", "--app", app, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        for app in APPS
    ]
    outputs = [run.communicate(timeout=300) for run in runs]
    for run, (out, err) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, err.decode()
        assert json.loads(out)["status"] == "applied"
    world = json.loads((home / "cluster" / "state.json").read_text())["world"]
    held = {app for per_type in world["claims"].values() for app, n in per_type.items() if n}
    assert held == set(APPS)
