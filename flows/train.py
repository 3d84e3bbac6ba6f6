"""`train-forecasters`: per app and phase, train every candidate and promote in MLflow. Wiring only.

For each app (all apps in the store, or the ones asked for: valid names only,
``prescale.names.AppName``, else the run fails before anything is read):
load the last ``history_days`` of rows -> the demand panel and its phases (stable
ids against the previous report) -> per (app, phase), mapped: train and score
every candidate -> tune the SLO policy on the held-out tail (the app's profile, its
budget from ``settings.slo.budget_for``) -> publish to MLflow (runs, a new version,
the tuned policy, the champion decision) -> one table artifact of the scores and a markdown summary of the decisions and
the phases found.

Nothing that goes wrong for one app or phase stops the others: too little
history, a constant or gappy series, a phase too short, even an unexpected
error, each ends as a row with ``skipped`` and the reason. Nor does the SLO
tuning fail a training: an app without a profile, a tail too short or an error
in the search is logged, and the version is published without a policy (the
loop then starts from ``SloPolicy.untuned``).

With the default runner, tasks run one at a time (one thread): a training uses
the machine's cores through torch threads, and SQLite (the embedded MLflow)
prefers one writer. ``PRESCALE_RUNNER__KIND=dask`` spreads the (app, phase)
trainings over Dask workers (``flows/runners.py``); publishing to MLflow stays
one at a time. The deployment in ``prefect.yaml`` runs this daily.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prefect import flow, get_run_logger, unmapped

from flows.runners import task_runner
from models.phase_panels import AppPhases
from models.train import TrainConfig
from prescale.names import app_names
from prescale.settings import load_settings
from prescale.slo.policy import SloPolicy
from tasks.train import (
    PhaseOutcome,
    checkpoints_folder,
    label_phases,
    list_apps,
    load_history,
    publish_artifact,
    publish_phase,
    read_phase_report,
    skipped_outcome,
    train_phase,
    tune_slo,
    write_phase_report,
)


@dataclass
class TrainReport:
    """What the flow returns (and ``prescale train --json`` prints)."""

    models: list[PhaseOutcome] = field(default_factory=list)
    phases: dict[str, Any] = field(default_factory=dict)
    preset: str = "default"

    def to_dict(self) -> dict[str, Any]:
        return {"preset": self.preset, "models": [m.to_dict() for m in self.models], "phases": self.phases}


@flow(name="train-forecasters", log_prints=True, task_runner=task_runner(threads=1))
def train_forecasters(
    apps: list[str] | None = None,
    preset: str | None = None,
    metrics: list[str] | None = None,
    history_days: float | None = None,
) -> TrainReport:
    settings = load_settings()
    fs = settings.forecast
    config = TrainConfig.from_settings(fs, preset=preset)
    root, reports = str(settings.store.root), str(settings.forecast.phase_reports)
    apps = list(dict.fromkeys(app_names(apps))) if apps else list_apps(root)
    days = history_days or fs.history_days
    report = TrainReport(preset=preset or fs.preset)
    histories = _settled(load_history.map(apps, unmapped(root), unmapped(days), unmapped(metrics)))
    previous = _settled(read_phase_report.map(unmapped(reports), apps))
    split = []
    for app, rows, old in zip(apps, histories, previous, strict=True):
        if isinstance(rows, BaseException):
            report.models.append(skipped_outcome(app, "-", f"could not read the store: {rows}"))
            continue
        split.append(label_phases.submit(app, rows, config, previous=None if isinstance(old, BaseException) else old,
                                         min_phase_minutes=fs.min_phase_minutes, metrics=metrics))
    jobs: list[tuple[AppPhases, str]] = []
    for phases in _settled(split):
        if isinstance(phases, BaseException):
            report.models.append(skipped_outcome("?", "-", f"phase labelling failed: {phases}"))
            continue
        report.phases[phases.app] = phases.report
        if phases.skipped:
            report.models.append(skipped_outcome(phases.app, "-", phases.skipped))
            continue
        write_phase_report(reports, phases.app, phases.report)
        jobs += [(phases, phase) for phase in phases.panels]
    report.models += _train_and_publish(jobs, config, settings=settings)
    publish_artifact(report.models, report.phases)
    _log(report)
    return report


def _train_and_publish(jobs: list[tuple[AppPhases, str]], config: TrainConfig, *, settings) -> list[PhaseOutcome]:
    if not jobs:
        return []
    apps = [p.app for p, _ in jobs]
    phases = [phase for _, phase in jobs]
    panels = [p.panels[phase] for p, phase in jobs]
    checkpoints = checkpoints_folder(settings.home)
    results = _settled(train_phase.map(apps, phases, panels, unmapped(config),
                                       checkpoints=unmapped(checkpoints)))
    # every tuning submitted at once (in parallel on Dask), each awaited before its publication
    tunings = [None if isinstance(result, BaseException) else tune_slo.submit(
        owner.app, phase, result, catalog_path=str(settings.search.catalog),
        profiles_dir=str(settings.search.profiles), slo=settings.slo,
    ) for (owner, phase), result in zip(jobs, results, strict=True)]
    outcomes: list[PhaseOutcome] = []
    for (owner, phase), result, tuning in zip(jobs, results, tunings, strict=True):
        if isinstance(result, BaseException):
            outcomes.append(skipped_outcome(owner.app, phase, f"training failed: {type(result).__name__}: {result}"))
            continue
        slo = _policy(owner.app, phase, tuning)
        # one at a time, whatever the runner: the registry's alias decisions must not interleave
        done = _settled([publish_phase.submit(
            result, owner.app, phase, config, tracking_uri=settings.registry.tracking_uri,
            artifact_root=str(settings.registry.artifacts), margin=settings.forecast.promotion_margin,
            phase_report=owner.report, slo=slo,
        )])[0]
        outcomes.append(done if not isinstance(done, BaseException)
                        else skipped_outcome(owner.app, phase, f"publishing failed: {type(done).__name__}: {done}"))
    return outcomes


def _policy(app: str, phase: str, tuning) -> SloPolicy | None:
    """The tuned policy, or None when there is none (the task logged why) or the tuning failed (logged here)."""
    policy = _settled([tuning])[0]
    if isinstance(policy, BaseException):
        get_run_logger().warning("%s/%s: SLO tuning failed, publishing without a policy: %s: %s", app, phase,
                                 type(policy).__name__, policy)
        return None
    return policy


def _settled(futures) -> list[Any]:
    """Each future's result, or the exception it ended with (never raises)."""
    out = []
    for future in futures:
        try:
            out.append(future.result())
        except Exception as exc:  # noqa: BLE001 - one failure must not stop the others
            out.append(exc)
    return out


def _log(report: TrainReport) -> None:
    logger = get_run_logger()
    for m in report.models:
        if m.skipped:
            logger.warning("%s/%s skipped: %s", m.app, m.phase, m.skipped)
        else:
            logger.info("%s/%s: best %s, champion %s (v%s)", m.app, m.phase, m.best, m.champion, m.champion_version)
