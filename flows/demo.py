"""`demo`: the main job on the bundled traces (what `make run` runs). Wiring only.

1. ingest every app of ``data/demo.yaml`` through the ``ingest-metrics`` flow (a
   subflow run each, visible in the Prefect UI) and summarise the store;
2. train and register each app's forecasters (``train-forecasters``, the ``small``
   preset: about a minute on 2 cores);
3. replay the last ``replay_days`` of each app under every policy (``backtest``, a
   subflow run per app): its profile is the one named like the app (``web``,
   ``analytics``, ``inference``, ``transcoder``), the trace's p99 becomes the
   profile's example peak (``peak_scale=1``), and the replay's forecaster is trained
   only on the history before the window (``best``: every candidate, LSTM included;
   quick mode uses the Holt-Winters baseline). One app's failed replay is reported
   with its error; the others go on;
4. the every-minute loop, on the path ``prescale serve`` runs: the traces, from
   different years, are played on one recent time axis (the ``replay`` metrics source,
   ``prescale/live/player.py``: weekday and UTC time of day kept, so the models trained
   on the original timestamps still fit) over the orchestrate lookback before now, then
   the real ``orchestrate`` flow decides for every app at ``cycles`` instants
   ``step_minutes`` apart ending now, one flow run per instant, on the configured
   cluster backend (the simulated one by default: its state file under the home, its
   virtual clock set to each instant). ``prescale.demo_loop.summarise_loop`` then says
   per app what was ordered, booted and released, and which kinds it left for which.

The replays run before the loop on purpose: the loop's played history is newer than
the traces, and a replay takes the *last* days of an app's rows.

``quick`` trims history, training, the replayed window and the loop for the test
suite, on the same code path. Progress goes to ``prescale.demo.stage`` (the command
line shows it).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE

from flows.backtest import backtest
from flows.ingest import ingest_metrics
from flows.orchestrate import orchestrate
from flows.train import train_forecasters
from prescale.catalog import CatalogError, load_catalog, resolve_profile
from prescale.cluster import open_cluster
from prescale.demo import DEFAULT_MANIFEST, load_manifest, stage, step, summarise_store
from prescale.demo_loop import summarise_loop
from prescale.metrics.store import MetricsStore
from prescale.settings import Settings, load_settings
from tasks.ingest import IO_RETRIES, IO_RETRY_DELAYS

REPLAY_DAYS = 2.0
QUICK_REPLAY_DAYS = 0.5
QUICK_TUNE_DAYS = 0.5  # the SLO policy's tuning stretch in quick mode (settings' replay.tune_days otherwise)
# The loop: orchestrate runs `LOOP_STEP_MINUTES` apart, ending now. The first run starts every app from what the
# cluster holds (nothing, on a fresh home): it provisions; the next ones follow demand, and a champion whose
# forecast favours another kind migrates to it make-before-break (GPU nodes boot in 5-7 min, FPGAs 10-15,
# bare metal 20-25: each plan waits for them on the simulated cluster's virtual clock, in milliseconds). An app
# whose first plans are blocked (a target over a type's quota) provisions once its SLO controller has seen the
# misses, three runs later at most so far: quick mode keeps room for that.
LOOP_CYCLES = 10
QUICK_LOOP_CYCLES = 6
LOOP_STEP_MINUTES = 3


@task(name="summarise-store", retries=2, retry_delay_seconds=2)
def summarise(root: str, apps: list[str]) -> list[dict]:
    return summarise_store(MetricsStore(root), apps)


@task(name="read-cluster-record", retries=IO_RETRIES, retry_delay_seconds=IO_RETRY_DELAYS, cache_policy=NONE)
def cluster_record(settings: Settings) -> dict[str, Any]:
    """The cluster's clock and every node's lifetime, where the backend keeps them (the simulated one)."""
    cluster = open_cluster(settings.cluster, load_catalog(settings.search.catalog))
    lifetimes = getattr(cluster, "lifetimes", None)
    return {"clock": cluster.observe().at, "lifetimes": lifetimes() if lifetimes else []}


@flow(name="demo", log_prints=True)
def demo(manifest: str = str(DEFAULT_MANIFEST), quick: bool = False, replay: bool = True, loop: bool = True) -> dict:
    settings = load_settings()
    spec = load_manifest(manifest)
    apps = [entry.app for entry in spec.apps]
    with stage(f"ingesting {len(apps)} bundled traces") as now:
        reports = [
            ingest_metrics(path=str(entry.file), app=entry.app, mapping=str(entry.mapping) if entry.mapping else None)
            for entry in spec.apps
        ]
        stored = summarise(str(settings.store.root), apps)
        now.done = f"ingested {len(stored)} apps: {sum(s['rows'] for s in stored):,} rows stored"
    with stage("training forecasters (the small preset)") as now:
        trained = train_forecasters(apps=apps, preset="small", history_days=3.0 if quick else None)
        champions = sum(1 for m in trained.to_dict()["models"] if m.get("champion"))
        now.done = f"trained {len(apps)} apps: {champions} champion(s) registered in MLflow"
    replays = []
    if replay:
        with stage(f"replaying each app's last {_days(quick):g} days under every policy") as now:
            for app in apps:
                step(f"replaying {app} under every policy")
                replays.append(_replay(app, quick))
            failed = sum(1 for r in replays if "error" in r)
            now.done = f"replayed {len(apps)} apps, {_days(quick):g} days each under every policy"
            now.done += f" ({failed} failed)" if failed else ""
    looped = _loop(manifest, apps, settings, quick) if loop else None
    return {
        "quick": quick,
        "tracking_uri": settings.registry.tracking_uri,
        "train": trained.to_dict(),
        "replay": replays,
        "loop": looped,
        "home": str(settings.home),
        "store": str(settings.store.root),
        "ingest": [r.to_dict() for r in reports],
        "stored": stored,
    }


def _loop(manifest: str, apps: list[str], settings: Settings, quick: bool) -> dict[str, Any]:
    """Play the traces on today's clock, run orchestrate at the loop's instants, and summarise (module docstring)."""
    cycles = QUICK_LOOP_CYCLES if quick else LOOP_CYCLES
    end = pd.Timestamp.now(tz="UTC").floor("min")
    instants = [end - pd.Timedelta(minutes=LOOP_STEP_MINUTES * (cycles - 1 - k)) for k in range(cycles)]
    lookback = int(settings.orchestrate.lookback_hours * 60) + LOOP_STEP_MINUTES * cycles
    with stage(f"playing the traces on today's clock ({lookback / 1440:.1f} days)") as now:
        played = ingest_metrics(source="replay", options={"manifest": manifest}, lookback_minutes=lookback)
        now.done = f"played the traces' last {lookback / 1440:.1f} days on today's clock: {played.accepted:,} rows"
    before = cluster_record(settings)
    rows: list[dict] = []
    with stage(f"running orchestrate {cycles} times") as now:
        for k, at in enumerate(instants, start=1):
            step(f"orchestrate run {k}/{cycles}: every app at {at:%H:%M} UTC")
            rows += orchestrate(apps=apps, at=at.isoformat())
        after = cluster_record(settings)
        catalog = load_catalog(settings.search.catalog)
        summary = summarise_loop(rows, catalog, lifetimes=after["lifetimes"], since=before["clock"])
        summary.sort(key=lambda a: apps.index(a.app) if a.app in apps else len(apps))
        changed = sum(1 for a in summary if a.provisioned or a.migrations)
        now.done = f"ran orchestrate {cycles} times: {changed} of {len(apps)} apps provisioned or migrated"
    return {
        "cycles": cycles,
        "step_minutes": LOOP_STEP_MINUTES,
        "first": instants[0].isoformat(),
        "last": instants[-1].isoformat(),
        "played_rows": played.accepted,
        "apps": [a.to_dict() for a in summary],
        "units": _units(apps, settings),
        "ledger": str(settings.orchestrate.ledger),
        "cluster": settings.cluster.backend if settings.cluster.backend != "simulated" else
        str(settings.cluster.state_file),
    }


def _units(apps: list[str], settings: Settings) -> dict[str, dict[str, str]]:
    """Per app, the unit of each profile metric (its demand as the loop reports it)."""
    units = {}
    for app in apps:
        try:
            units[app] = {m.name: m.unit for m in resolve_profile(app, settings.search.profiles).metrics}
        except CatalogError:  # no profile: orchestrate skipped it with the reason; no units to show
            units[app] = {}
    return units


def _days(quick: bool) -> float:
    return QUICK_REPLAY_DAYS if quick else REPLAY_DAYS


def _replay(app: str, quick: bool) -> dict[str, Any]:
    """One app's backtest summary, or ``{"app", "error"}`` when its replay failed (the others go on)."""
    try:
        return backtest(
            app=app,
            days=_days(quick),
            forecaster="holt_winters" if quick else "best",
            peak_scale=1.0,
            tune_days=QUICK_TUNE_DAYS if quick else None,
        )
    except Exception as exc:  # noqa: BLE001 - one app's failure never stops the demo
        get_run_logger().error("replay of %s failed: %s: %s", app, type(exc).__name__, exc)
        return {"app": app, "error": f"{type(exc).__name__}: {exc}"}
