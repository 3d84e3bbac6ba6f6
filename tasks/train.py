"""Prefect tasks for training: one step each; retried where they touch the store or MLflow.

The work lives in ``models`` (phase panels, training, scoring, the registry
adapter) and ``prescale.phases`` (phase labels); these wrappers add names, retries and logs,
and turn every expected failure of one (app, phase) into a *skip with a reason*
rather than an exception, so one bad app never fails the whole flow:

- ``load-history`` (retried): the store's rows of one app over the last days;
- ``label-phases``: the panel (the app's demand metrics on a regular grid) and
  its phase labels, stable against the previous report, which
  ``read-phase-report``/``write-phase-report`` (retried) keep as ``<app>.json``
  under the ``forecast.phase_reports`` location (default ``<home>/phases``; an
  ``s3://`` URI when flow runs share no disk), where orchestrate reads it;
- ``train-phase``: every candidate on one (app, phase) (compute, no retries: the
  same data would fail the same way); the LSTM's checkpoints go to
  ``<home>/tmp/checkpoints`` (:func:`checkpoints_folder`) and are removed after;
- ``tune-slo``: the app's profile and the catalog read from their paths, the budget
  (``SloSettings.budget_for``: settings over the profile), then the before-use SLO tuning
  (``prescale.slo.tuning.tune``) on the training's held-out tail with the best candidate's out-of-sample
  forecasts (``models.slo_stretch``) -> the tuned ``SloPolicy``, or None with the reason logged (no profile,
  a tail too short). No retries: the search is seeded, so the same stretch fails the same way; an
  unexpected error is the flow's to log, and the version is then published without a policy. It takes
  paths, not a ``Catalog``: Prefect's Dask runner rebuilds pydantic parameters from their iteration, and a
  ``Catalog`` iterates its types;
- ``publish-phase`` (retried): runs, model version, champion decision in MLflow, and the tuned policy;
- ``publish-train-artifact``: the scores table as a Prefect artifact, and a summary of the decisions that,
  when the registry is an MLflow server (``make serve``), links each version's page and shows its forecast
  plot and SLO frontier, loaded by the browser from the server (``models.registry.version_links``); with the
  embedded registry (SQLite, no server) there is no URL to show, and the summary says where to look.

Large inputs (frames, panels, trained models) go between tasks in memory, so the
tasks use ``cache_policy=NONE``: hashing them would cost more than it saves.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE

from models.phase_panels import AppPhases, split_phases
from models.registry import Registry, version_links
from models.scoring import rank_key
from models.series import Panel
from models.slo_stretch import stretch_input
from models.train import PanelResult, TrainConfig, train_panels
from prescale.catalog import CatalogError, load_catalog, resolve_profile
from prescale.metrics.store import MetricsStore
from prescale.names import AppName, app_names
from prescale.phase_reports import read_report, write_report
from prescale.settings import SloSettings
from prescale.slo.policy import SloPolicy
from prescale.slo.tuning import tune

IO_RETRIES = 3
IO_RETRY_DELAYS = [1, 5, 15]


@dataclass
class PhaseOutcome:
    """One row of the flow's result (the CLI's ``models`` list)."""

    app: str
    phase: str
    champion: str | None = None  # candidate name holding the alias after this run
    promoted: bool = False
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)
    best: str | None = None
    version: str | None = None
    champion_version: str | None = None
    reason: str | None = None
    skipped: str | None = None
    unavailable: dict[str, str] = field(default_factory=dict)
    train_seconds: dict[str, float] = field(default_factory=dict)
    slo: dict[str, Any] | None = None  # the tuned SLO policy's summary, None when untuned
    links: dict[str, str] = field(default_factory=dict)  # the version's page and plots on an MLflow server

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- store ------------------------------------------------------------------------------------------

@task(name="list-apps", retries=IO_RETRIES, retry_delay_seconds=IO_RETRY_DELAYS, cache_policy=NONE)
def list_apps(store_root: str) -> list[AppName]:
    return app_names(MetricsStore(store_root).apps())


@task(name="load-history", retries=IO_RETRIES, retry_delay_seconds=IO_RETRY_DELAYS, cache_policy=NONE)
def load_history(app: str, store_root: str, days: float, metrics: list[str] | None = None) -> pd.DataFrame:
    """The last ``days`` of the app's rows (relative to its newest row, not to the clock)."""
    store = MetricsStore(store_root)
    dates = store.dates(app)
    if not dates:
        return pd.DataFrame(columns=["app", "ts", "metric", "value", "phase"])
    start = pd.Timestamp(dates[-1], tz="UTC") + timedelta(days=1) - timedelta(days=days)
    rows = store.read(app, start=start.to_pydatetime(), metrics=metrics)
    get_run_logger().info("%s: %s rows since %s", app, f"{len(rows):,}", start.date())
    return rows


# -- phases -----------------------------------------------------------------------------------------

@task(name="read-phase-report", retries=IO_RETRIES, retry_delay_seconds=IO_RETRY_DELAYS, cache_policy=NONE)
def read_phase_report(reports: str, app: str) -> dict[str, Any] | None:
    """The app's previous report under `reports` (a folder or a URI: ``forecast.phase_reports``), or None."""
    return read_report(reports, app)


@task(name="write-phase-report", retries=IO_RETRIES, retry_delay_seconds=IO_RETRY_DELAYS, cache_policy=NONE)
def write_phase_report(reports: str, app: str, report: dict[str, Any] | None) -> None:
    """Replace the app's report under `reports` as a whole (atomic locally and on an object store)."""
    if report is not None:
        write_report(reports, app, report)


@task(name="label-phases", cache_policy=NONE)
def label_phases(
    app: str, rows: pd.DataFrame, config: TrainConfig, *, previous: dict[str, Any] | None = None,
    min_phase_minutes: float = 240.0, metrics: list[str] | None = None,
) -> AppPhases:
    """The app's panel, cut into one panel per phase (other phases' rows set missing: ``models.phase_panels``)."""
    return split_phases(app, rows, config, previous=previous, min_phase_minutes=min_phase_minutes, metrics=metrics)


# -- training and publishing ------------------------------------------------------------------------

def checkpoints_folder(home: Path) -> Path:
    """Where the LSTM keeps its checkpoints while it fits: inside ``PRESCALE_HOME``, one subfolder per fit,
    each removed when its fit ends (``models.lstm``)."""
    return Path(home) / "tmp" / "checkpoints"


@task(name="train-phase", cache_policy=NONE)
def train_phase(app: str, phase: str, panel: Panel, config: TrainConfig, *,
                checkpoints: Path | None = None) -> PanelResult:
    logger = get_run_logger()
    result = train_panels([(f"{app}/{phase}", panel)], config, progress=lambda msg: logger.info("%s", msg),
                          scratch=checkpoints)[0]
    if result.skipped:
        logger.warning("%s/%s skipped: %s", app, phase, result.skipped)
    else:
        best = result.candidates[result.best].scores
        logger.info("%s/%s: best %s (decision score %s, MASE %.4f)", app, phase, result.best,
                    "-" if best.decision is None else f"{best.decision:.4f}", best.mase)
    return result


@task(name="tune-slo", cache_policy=NONE)
def tune_slo(
    app: str, phase: str, result: PanelResult, *, catalog_path: str, profiles_dir: str, slo: SloSettings,
    trials: int = 20, reactive_trials: int = 8, timeout_seconds: float = 50.0,
    min_scored_minutes: float = 1440.0,
) -> SloPolicy | None:
    """The SLO policy tuned on ``result``'s held-out tail at the app's budget (``slo.budget_for``: settings over
    its profile's); None, the reason logged, without a profile or when the tail cannot be replayed."""
    logger = get_run_logger()
    if result.skipped or result.best is None:
        return None
    try:
        catalog, profile = load_catalog(catalog_path), resolve_profile(app, profiles_dir)
    except CatalogError as exc:
        logger.warning("%s/%s: no SLO tuning, the profile cannot be read: %s", app, phase, exc)
        return None
    budget = slo.budget_for(app, profile.slo.violation_budget)
    built = stretch_input(result, profile, catalog, min_scored_minutes=min_scored_minutes)
    if isinstance(built, str):
        logger.warning("%s/%s: no SLO tuning: %s", app, phase, built)
        return None
    inp, fleet = built
    tuned = tune(inp, fleet, budget, trials=trials, reactive_trials=reactive_trials,
                 timeout_seconds=timeout_seconds)
    policy = tuned.policy
    logger.info("%s/%s: SLO %.2f%% -> %s %s (%s trials, %.1f s on %s steps): %s", app, phase,
                100 * budget, policy.rule, policy.setting, policy.tuning.get("trials"),
                policy.tuning.get("seconds", 0.0), policy.tuning.get("steps"), "; ".join(policy.reasons))
    return policy


@task(name="publish-phase", retries=IO_RETRIES, retry_delay_seconds=IO_RETRY_DELAYS, cache_policy=NONE)
def publish_phase(
    result: PanelResult, app: str, phase: str, config: TrainConfig, *, tracking_uri: str, artifact_root: str,
    margin: float, phase_report: dict[str, Any] | None = None, slo: SloPolicy | None = None,
) -> PhaseOutcome:
    """Log and register in MLflow (with ``slo``, the tuned policy, when given); a skipped panel becomes a
    skipped outcome (nothing logged)."""
    outcome = outcome_of(result, app, phase)
    if result.skipped or result.best is None:
        return outcome
    registry = Registry(tracking_uri, artifact_root=Path(artifact_root))
    published = registry.publish(result, app=app, phase=phase, config=config, margin=margin,
                                 phase_report=phase_report, slo=slo)
    outcome.slo = slo.summary() if slo is not None else None
    outcome.version = published.version
    outcome.promoted = published.promoted
    outcome.reason = published.reason
    outcome.champion_version = published.champion_version
    outcome.champion = published.candidate if published.promoted else _candidate_of(registry, published)
    run_id = published.run_ids.get(published.candidate) or published.run_ids.get("model")
    if run_id:
        outcome.links = version_links(tracking_uri, published.model, published.version, run_id,
                                      frontier=slo is not None)
    get_run_logger().info("%s v%s (%s): %s", published.model, published.version, published.alias, published.reason)
    return outcome


def _candidate_of(registry: Registry, published) -> str | None:
    if published.champion_version is None:
        return None
    mv = registry.client.get_model_version(published.model, published.champion_version)
    return mv.tags.get("prescale.candidate")


def outcome_of(result: PanelResult, app: str, phase: str) -> PhaseOutcome:
    return PhaseOutcome(
        app=app, phase=phase, scores=result.scores(), best=result.best, skipped=result.skipped,
        unavailable=dict(result.unavailable),
        train_seconds={n: round(c.train_seconds, 3) for n, c in result.candidates.items()},
    )


def skipped_outcome(app: str, phase: str, reason: str) -> PhaseOutcome:
    return PhaseOutcome(app=app, phase=phase, skipped=reason)


# -- artifact ---------------------------------------------------------------------------------------

def score_rows(outcomes: list[PhaseOutcome]) -> list[dict[str, Any]]:
    """One row per (app, phase, candidate), plus one per skipped (app, phase) with its reason."""
    rows = []
    for o in outcomes:
        if o.skipped:
            rows.append({"app": o.app, "phase": o.phase, "candidate": "-", "decision": None, "mae": None,
                         "mae_last": None, "mase": None, "smape": None, "coverage_80": None, "coverage_90": None,
                         "coverage_90_raw": None, "status": f"skipped: {o.skipped}"})
            continue
        for name, s in sorted(o.scores.items(), key=lambda kv: rank_key(kv[1])):
            status = "champion" if name == o.champion else ("best of this run" if name == o.best else "")
            rows.append({"app": o.app, "phase": o.phase, "candidate": name,
                         **{k: _r(s.get(k)) for k in ("decision", "mae", "mae_last", "mase", "smape", "coverage_80",
                                                      "coverage_90", "coverage_90_raw")},
                         "status": status})
    return rows


def _r(value: Any) -> Any:
    return None if value is None else round(float(value), 4)


@task(name="publish-train-artifact", retries=IO_RETRIES, retry_delay_seconds=IO_RETRY_DELAYS, cache_policy=NONE)
def publish_artifact(outcomes: list[PhaseOutcome], phase_reports: dict[str, Any]) -> None:
    create_table_artifact(key="train-scores", table=score_rows(outcomes),
                          description="Held-out scores per app, phase and candidate (the decision score ranks: "
                          "pinball at 0.9/0.99/0.995 at the tiers' leads, scaled; skips say why).")
    create_markdown_artifact(key="train-summary", markdown=summary_markdown(outcomes, phase_reports),
                             description="What training decided.")


def summary_markdown(outcomes: list[PhaseOutcome], phase_reports: dict[str, Any]) -> str:
    """The decisions per (app, phase), each with its MLflow version page and plots when it has links, then
    the phases found."""
    lines = ["# Training", ""]
    for o in outcomes:
        if o.skipped:
            lines.append(f"- **{o.app}/{o.phase}** skipped: {o.skipped}")
        else:
            verdict = "promoted" if o.promoted else "not promoted"
            slo = (f"; SLO {o.slo['violation_budget']:.2%}: {o.slo['rule']} `{o.slo['setting']}`" if o.slo
                   else "; SLO untuned (the flow's log says why)")
            lines.append(f"- **{o.app}/{o.phase}** best `{o.best}` v{o.version}, {verdict}: {o.reason}{slo}")
            lines += _pictures(o)
    if not any(o.links for o in outcomes):
        lines += ["", "Each version's forecast plot (`forecast.png`) and SLO frontier (`slo/frontier.png`) are on "
                      "its MLflow run, and shown on its page in the MLflow UI."]
    lines += ["", "## Phases", ""]
    for app, report in phase_reports.items():
        if report:
            found = ", ".join(f"{p['id']} ({p['rows']} rows, {p['runs']} runs)" for p in report["phases"])
            lines.append(f"- **{app}** ({report['method']}): {found}. {report['reason']}")
    return "\n".join(lines)


def _pictures(outcome: PhaseOutcome) -> list[str]:
    links = outcome.links
    if not links:
        return []
    out = [f"  [MLflow: {outcome.app}/{outcome.phase} v{outcome.version}]({links['page']})", ""]
    for name, caption in (("forecast", "held-out forecast against actuals"), ("frontier", "SLO frontier")):
        if name in links:
            out += [f"  ![{outcome.app}/{outcome.phase} {caption}]({links[name]})", ""]
    return out
