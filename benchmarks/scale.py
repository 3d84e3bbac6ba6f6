"""Benchmark: the orchestrate cycle at 50-1,000 apps and training of many (app, phase) pairs, threads and Dask.

Setup per app count N, in a fresh ``PRESCALE_HOME`` under ``.prescale/bench-scale``:

* N apps, each a copy of one shipped profile in turn (web, inference, analytics, transcoder) whose demand
  metrics are bound to stored metrics (``source: app.d<k>``), so every app takes the predictive path;
* two days of 5-minute history per app from the Azure V1 per-VM CPU trace (VM column ``i mod 100``, scaled so
  its p99 is the profile's example peak), written through ``MetricsStore`` like the ingest flow does;
* a champion per app: at the first app count holding ``--train`` apps, that many (app, phase) pairs are
  trained by the ``train-forecasters`` flow on the selected runner (timed: the training figure), at the other
  counts one app per profile; every other app's registered model gets a version of the champion of a
  trained app of the same profile (the registry holds N models; each app loads its own).

Runners: ``threads`` (default), ``dask`` (a ``LocalCluster`` of 2 worker processes started for each flow
run, so every cycle starts cold), ``dask-cluster-N`` (one long-lived ``LocalCluster`` of N single-threaded
worker processes passed by address, as a deployment would use a standing cluster: the workers keep their
champion and ledger caches between cycles; ``dask-cluster`` is N = 2). The runner is swapped with
``flow.with_options``, so the comparison is of the runners alone; the flow sizes its chunks of apps from the
runner's workers. ``--runs 50:threads,1000:dask-cluster-2`` picks app-count and runner pairs explicitly.

Then the ``orchestrate`` flow runs ``--cycles`` times at the history's end plus one minute each (dry run:
decide and record, the simulated cluster is not applied to). Times come from Prefect: each flow run's
``total_run_time`` and the summed task-run times per task name, read from the API afterwards. The first cycle
loads every champion (cold); the later ones are the steady state a worker sees every minute. Memory is the
peak RSS of this process and of the largest child (Dask's worker processes). Per app and stage (read,
phase, health, forecast, decide, record) the CPU milliseconds the cycle's rows carry in ``timing`` (each
``decide-apps`` chunk's thread CPU per stage over its apps; the record step's over all apps), and the decide
step's wall time per app (each row's ``duration_s``): p50 and p95.

Writes ``benchmarks/results/scale.json`` and ``.md``. Run (tens of minutes at 1,000 apps):
``.venv/bin/python benchmarks/scale.py [--apps 50,100,500,1000] [--runners threads,dask] [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from prescale.metrics.store import MetricsStore  # noqa: E402 - after the environment above
from prescale.settings import RunnerSettings, load_settings  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]  # the checkout: its shipped profiles, the shared traces, results

TRACE = ROOT.parent / "shared" / "traces" / "azure_v1_pervm" / "microsoft_avg_100.csv"
TEMPLATES = ("web", "inference", "analytics", "transcoder")
WORK = ROOT / ".prescale" / "bench-scale"
OUT = ROOT / "benchmarks" / "results"
STEP = pd.Timedelta(minutes=5)
STAGES = ("read", "phase", "health", "forecast", "decide", "record")  # the rows' timing, in cycle order


def build(home: Path, n: int, days: float) -> pd.Timestamp:
    """Profiles, history and nothing else for N apps under ``home``; returns the instant after the history."""
    shutil.rmtree(home, ignore_errors=True)
    profiles = home / "profiles"
    profiles.mkdir(parents=True)
    os.environ["PRESCALE_HOME"] = str(home)
    os.environ["PRESCALE_SEARCH__PROFILES"] = str(profiles)
    trace = pd.read_csv(TRACE).drop(columns="step_5min")
    steps = int(days * 288)
    index = pd.date_range("2026-01-05", periods=steps, freq=STEP, tz="UTC")
    store = MetricsStore(load_settings().store.root)
    for i in range(n):
        app = app_name(i)
        spec = yaml.safe_load((ROOT / "infra" / "apps" / f"{TEMPLATES[i % 4]}.yaml").read_text())
        spec["name"] = app
        shape = trace.iloc[:steps, i % trace.shape[1]].to_numpy(float)
        shape = shape / max(np.percentile(shape, 99), 1e-9)
        frames = []
        for k, metric in enumerate(spec["metrics"]):
            metric["source"] = f"app.d{k}"
            metric.pop("source_scale", None)
            peak = float(spec["example_demand"]["peak"][metric["name"]])
            frames.append(pd.DataFrame({"ts": index, "metric": f"app.d{k}", "value": shape * peak}))
        (profiles / f"{app}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
        rows = pd.concat(frames, ignore_index=True).assign(app=app, phase="default")  # one phase per app
        store.write_batch(rows[["app", "ts", "metric", "value", "phase"]], batch_id=f"scale-{app}")
    return index[-1] + STEP


def app_name(i: int) -> str:
    return f"app-{i:04d}"


def train(apps: list[str], runner: RunnerSettings) -> dict:
    from flows.runners import task_runner
    from flows.train import train_forecasters

    started = time.perf_counter()
    report = train_forecasters.with_options(task_runner=task_runner(runner, threads=1))(apps=apps, preset="small")
    seconds = time.perf_counter() - started
    trained = [m for m in report.models if not m.skipped]
    return {"pairs": len(report.models), "trained": len(trained), "seconds": round(seconds, 1),
            "seconds_per_pair": round(seconds / max(len(report.models), 1), 2),
            "skipped": [f"{m.app}/{m.phase}: {m.skipped}" for m in report.models if m.skipped][:5]}


def share_champions(n: int, trained: int) -> float:
    """Register, for every untrained app, a version of a trained app's champion of the same profile."""
    from mlflow import MlflowClient

    from models.registry import model_name

    started = time.perf_counter()
    import mlflow

    uri = load_settings().registry.tracking_uri
    # MLflow resolves a version's `models:/m-...` source through the process-wide URIs, which may still name
    # an earlier run's registry (or none, when training ran on Dask workers): point them all at this run's
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    sources = {}
    for i in range(min(trained, n)):
        mv = client.get_model_version_by_alias(model_name(app_name(i), "default"), "champion")
        sources.setdefault(i % 4, (mv.source, mv.run_id))
    for i in range(trained, n):
        name = model_name(app_name(i), "default")
        if i % 4 not in sources:
            raise SystemExit(f"no trained champion of profile {TEMPLATES[i % 4]} to share with {app_name(i)}")
        source, run_id = sources[i % 4]
        if not client.search_registered_models(filter_string=f"name = '{name}'"):
            client.create_registered_model(name)
        version = client.create_model_version(name, source, run_id=run_id).version
        client.set_registered_model_alias(name, "champion", version)
    return time.perf_counter() - started


def cycles(apps: list[str], at: pd.Timestamp, count: int, runner: RunnerSettings) -> list[dict]:
    from flows.orchestrate import orchestrate
    from flows.runners import task_runner
    from tasks.orchestrate import forget_champions

    forget_champions()
    flow = orchestrate.with_options(task_runner=task_runner(runner, threads=load_settings().orchestrate.max_workers))
    out = []
    for c in range(count):
        started = time.perf_counter()
        state = flow(apps=apps, at=str(at + pd.Timedelta(minutes=c)), dry_run=True, return_state=True)
        wall = time.perf_counter() - started
        rows = state.result()
        modes = pd.Series([r["mode"] for r in rows]).value_counts().to_dict()
        failed = [f"{r['app']}: {r['error']}" for r in rows if r["outcome"] == "failed"]
        out.append({"cycle": c, "wall_s": round(wall, 2), **asyncio.run(_timings(state.state_details.flow_run_id)),
                    "modes": modes, "failed_count": len(failed), "failed": failed[:3], **stage_figures(rows)})
    return out


def stage_figures(rows: list[dict]) -> dict:
    """Per-app CPU ms by stage (the rows' ``timing``: each chunk's thread CPU per stage over its apps, and the
    record step's per app) and the decide step's wall time per app (``duration_s``, p50 and p95)."""
    timings = [json.loads(r["timing"]) if isinstance(r["timing"], str) else r["timing"] for r in rows]
    seen = {k for t in timings for k in t.get("cpu_ms", {})}
    stages = [k for k in STAGES if k in seen] + sorted(seen - set(STAGES))
    cpu = {k: round(float(np.mean([t.get("cpu_ms", {}).get(k, 0.0) for t in timings])), 2) for k in stages}
    decide = [1000 * r["duration_s"] for r in rows if r["outcome"] != "failed" and r["duration_s"]]
    return {"cpu_ms_per_app": {**cpu, "total": round(sum(cpu.values()), 2)},
            "decide_ms": {"p50": round(float(np.percentile(decide, 50)), 2) if decide else None,
                          "p95": round(float(np.percentile(decide, 95)), 2) if decide else None}}


async def _timings(flow_run_id) -> dict:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async with get_client() as client:
        run = await client.read_flow_run(flow_run_id)
        task_runs, page = [], 200  # the API serves at most 200 per call
        while True:
            batch = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                                                limit=page, offset=len(task_runs))
            task_runs += batch
            if len(batch) < page:
                break
    per_task: dict[str, list[float]] = {}
    for tr in task_runs:
        name = "decide-apps" if tr.name.startswith("decide-") else tr.name.rsplit("-", 1)[0]  # chunks: one name
        per_task.setdefault(name, []).append(tr.total_run_time.total_seconds())
    return {"flow_run_s": round(run.total_run_time.total_seconds(), 2),
            "tasks": {name: {"runs": len(v), "sum_s": round(sum(v), 2), "p95_s": round(float(np.percentile(v, 95)), 3)}
                      for name, v in sorted(per_task.items())}}


def rss_mib() -> dict:
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"self_peak_mib": round(me), "largest_child_peak_mib": round(kids)}


def prefect_server(home: Path):
    """A real Prefect API server (SQLite) for the whole run; its flow runs are where the timings come from."""
    import socket
    import subprocess

    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "PREFECT_HOME": str(home / "prefect")}
    log = (home / "prefect-server.log").open("w")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "prefect"), "server", "start", "--host",
                             "127.0.0.1", "--port", str(port)], env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                os.environ["PREFECT_API_URL"] = url
                return proc
        except httpx.HTTPError:
            time.sleep(1)
    proc.kill()
    raise SystemExit(f"Prefect server did not start; see {home / 'prefect-server.log'}")


def profile(home: Path, apps: int, name: str) -> None:
    """Where one warm cycle's per-app time goes: ``apps`` apps as one ``decide-apps`` chunk, in this process.

    Reuses a home the main run built (profiles, history, registry); runs the chunk once unprofiled (champions
    loaded, the ledger's recent rows cached), then once under cProfile, and reports the wall time per app,
    each stage's CPU per app from the rows' ``timing``, and the profile.
    """
    import cProfile
    import io
    import pstats

    from prefect.logging import disable_run_logger

    from tasks.orchestrate import decide_apps, observe

    os.environ["PRESCALE_HOME"] = str(home)
    os.environ["PRESCALE_SEARCH__PROFILES"] = str(home / "profiles")
    settings = load_settings()
    total = len(list((home / "profiles").glob("*.yaml")))
    names = [app_name(i) for i in range(apps)]
    at = MetricsStore(settings.store.root).read(names[0])["ts"].max() + STEP  # as the main run's first cycle
    with disable_run_logger():
        views = observe.fn(names, settings, at.timestamp())
        decide_apps.fn(names, views, at, settings)  # warm: champions loaded, caches filled
        prof = cProfile.Profile()
        started = time.perf_counter()
        prof.enable()
        decided = decide_apps.fn(names, views, at, settings)
        prof.disable()
        wall = time.perf_counter() - started
    stages: dict[str, list[float]] = {}
    for d in decided:
        for stage, ms in d.row.timing.get("cpu_ms", {}).items():
            stages.setdefault(stage, []).append(ms)
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(40)
    cpu = ", ".join(f"{k} {np.mean(v):.2f}" for k, v in stages.items())
    failed = sum(d.row.outcome == "failed" for d in decided)
    text = (f"# Where a warm orchestrate cycle's per-app time goes ({apps} of {total} apps, one chunk, profiled)\n\n"
            f"`python benchmarks/scale.py --profile {home} --profile-apps {apps}`. "
            f"Per app: {1000 * wall / apps:.1f} ms wall under cProfile (which adds overhead); "
            f"CPU ms by stage (the rows' timing, profiled too): {cpu}. "
            f"{failed} failed.\n\n"
            "```\n" + out.getvalue().strip() + "\n```\n")
    (OUT / f"{name}.md").write_text(text)
    print(text[:3000])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--apps", default="50,100,500,1000", help="Comma-separated app counts.")
    parser.add_argument("--runners", default="threads,dask-cluster-2,dask-cluster-4",
                        help="threads, dask (a LocalCluster per run), dask-cluster-N (one long-lived cluster of N "
                        "worker processes, by address; dask-cluster: 2).")
    parser.add_argument("--runs", default=None,
                        help="Explicit app-count:runner pairs instead of --apps x --runners, e.g. "
                        "50:threads,1000:threads,1000:dask-cluster-2.")
    parser.add_argument("--train", type=int, default=100,
                        help="(app, phase) pairs trained at the first app count >= this (4 at the others).")
    parser.add_argument("--cycles", type=int, default=2, help="Orchestrate cycles per app count and runner.")
    parser.add_argument("--days", type=float, default=2.0, help="Days of 5-minute history per app.")
    parser.add_argument("--quick", action="store_true", help="10 and 20 apps, 4 trained, 2 cycles, threads only.")
    parser.add_argument("--name", default=None, help="Results file name (default: scale, or scale-quick).")
    parser.add_argument("--profile", type=Path, default=None, metavar="HOME",
                        help="Profile a warm cycle's per-app work in a home a main run built, then exit.")
    parser.add_argument("--profile-apps", type=int, default=100, help="Apps profiled with --profile.")
    args = parser.parse_args()
    if args.profile:
        profile(args.profile, args.profile_apps, args.name or "scale-profile")
        return
    counts = [10, 20] if args.quick else [int(x) for x in args.apps.split(",")]
    runners = ["threads"] if args.quick else args.runners.split(",")
    pairs = [(n, r) for n in counts for r in runners]
    if args.runs:
        pairs = [(int(n), r) for n, _, r in (p.partition(":") for p in args.runs.split(","))]
        counts = sorted({n for n, _ in pairs})
    n_train = 4 if args.quick else args.train
    cycles_n = 2 if args.quick else args.cycles
    os.environ.setdefault("PRESCALE_FORECAST__EPOCHS", "3")
    results = {"apps": [], "train": [], "machine": {"cpus": os.cpu_count()}, "args": vars(args)}
    WORK.mkdir(parents=True, exist_ok=True)
    server = prefect_server(WORK)
    try:
        run_all(pairs, counts, n_train, cycles_n, args, results)
    finally:
        server.terminate()
        server.wait(30)


_CLUSTERS: dict[int, object] = {}


def _runner(name: str) -> RunnerSettings:
    """threads; dask (a LocalCluster per flow run); dask-cluster[-N] (one long-lived LocalCluster of N worker
    processes of one thread each, default 2, passed by address)."""
    if not name.startswith("dask-cluster"):
        return RunnerSettings(kind=name)
    n = int(name.rpartition("-")[2]) if name != "dask-cluster" else 2
    if n not in _CLUSTERS:
        from distributed import LocalCluster

        _CLUSTERS[n] = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None)
    return RunnerSettings(kind="dask", dask_address=_CLUSTERS[n].scheduler_address)


def run_all(pairs, counts, n_train, cycles_n, args, results) -> None:
    for n, runner_name in pairs:
        runner = _runner(runner_name)
        home = WORK / f"{n}-{runner_name}"
        t0 = time.perf_counter()
        at = build(home, n, args.days)
        built = time.perf_counter() - t0
        apps = [app_name(i) for i in range(n)]
        # training is measured once per runner, at the first app count that holds --train apps
        k = min(n_train, n) if n == min([c for c in counts if c >= n_train] or [max(counts)]) else min(4, n)
        trained = train(apps[:k], runner)
        trained.update({"apps": n, "runner": runner_name})
        results["train"].append(trained)
        shared = share_champions(n, k)
        ran = cycles(apps, at, cycles_n, runner)
        warm = [c["flow_run_s"] for c in ran[1:]] or [ran[0]["flow_run_s"]]
        entry = {"apps": n, "runner": runner_name, "setup_s": round(built, 1), "register_s": round(shared, 1),
                 "cold_cycle_s": ran[0]["flow_run_s"], "warm_cycle_s": max(warm),
                 "warm_p95_s": round(float(np.percentile(warm, 95)), 2),
                 "warm_per_app_ms": round(1000 * max(warm) / n, 1), "cycles": ran, **rss_mib()}
        results["apps"].append(entry)
        print(json.dumps({k: v for k, v in entry.items() if k != "cycles"}), flush=True)
        write(results, name=args.name or ("scale-quick" if args.quick else "scale"))


def _modes(modes: dict, failed: int) -> str:
    return f"{modes.get('predictive', 0)} / {modes.get('reactive', 0)} / {failed}"


def write(results: dict, *, name: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}.json").write_text(json.dumps(results, indent=2, default=str))
    lines = ["# Orchestrate cycle and training at scale", "",
             f"Machine: {results['machine']['cpus']} cores. Dry-run cycles (decide and record); times from "
             "Prefect's flow and task runs; the last (warm) cycle's figures. Targets (issue 19): the warm 1,000-app "
             "cycle <= 60 s on threads with 0 failed, cost per app flat from 50 to 1,000 apps, forecast <= 5 ms "
             "per app, decide p50 <= 10 ms, 2 Dask processes no slower than threads.", "",
             "| apps | runner | cold cycle s | warm cycle s (worst) | warm ms/app | decide-apps s (sum) | "
             "decisions predictive / reactive / failed | decide p50 / p95 ms | peak RSS MiB (self / child) |",
             "|---:|---|---:|---:|---:|---:|---|---:|---:|"]
    for e in results["apps"]:
        last = e["cycles"][-1]
        tasks, decide = last["tasks"], last.get("decide_ms", {})
        lines.append(f"| {e['apps']} | {e['runner']} | {e['cold_cycle_s']} | {e['warm_cycle_s']} | "
                     f"{e['warm_per_app_ms']} | {tasks.get('decide-apps', {}).get('sum_s', '-')} | "
                     f"{_modes(last['modes'], last.get('failed_count', 0))} | {decide.get('p50', '-')} / "
                     f"{decide.get('p95', '-')} | {e['self_peak_mib']} / {e['largest_child_peak_mib']} |")
    stages = list(STAGES) + ["total"]
    lines += ["", "CPU ms per app by stage, warm cycle (each chunk's thread CPU per stage over its apps; record: the "
              "record step's per app):", "",
              "| apps | runner | " + " | ".join(stages) + " |", "|---:|---|" + "---:|" * len(stages)]
    for e in results["apps"]:
        cpu = e["cycles"][-1].get("cpu_ms_per_app", {})
        lines.append(f"| {e['apps']} | {e['runner']} | " + " | ".join(str(cpu.get(k, "-")) for k in stages) + " |")
    lines += ["", "| training: apps | runner | (app, phase) pairs | trained | s | s per pair |",
              "|---:|---|---:|---:|---:|---:|"]
    for t in results["train"]:
        lines.append(f"| {t['apps']} | {t['runner']} | {t['pairs']} | {t['trained']} | {t['seconds']} | "
                     f"{t['seconds_per_pair']} |")
    text = "\n".join(lines) + "\n"
    (OUT / f"{name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
