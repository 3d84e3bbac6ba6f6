"""The MLflow adapter: the only module that imports ``mlflow``.

What one training of (app, phase) leaves in MLflow:

- experiment ``prescale-<app>``; a parent run ``train-<phase>`` with the phase
  report and the split, and one child run per candidate with its parameters,
  the training/validation/held-out windows, the data fingerprint, its scores
  (``decision``: the decision score that ranks; ``mae``, ``mae_last``, ``mase``, ``smape``, ``pinball``,
  raw and calibrated ``coverage_80/90``, ``train_seconds``; the lead-time tail and the hourly coverage in
  ``scores.json``) and ``forecast.png`` (forecast against actuals with the calibrated bands); the best
  candidate's run (every run's with ``log_all_models``) also holds the model as an MLflow pyfunc
  (:class:`PyfuncForecaster`: the darts files and JSON state as artifacts, a
  signature and an input example). Logging a model costs about a second each,
  so by default only the one that is registered is logged;
- the best candidate of this training registered as a new version of
  ``prescale-<app>-<phase>``, tagged with the stored metrics it reads
  (``prescale.inputs``: what the orchestrator must read to serve it); the current champion re-scored on the same
  held-out windows; the verdict (``promotion.judge``) applied to the aliases
  ``champion``/``challenger`` and written, with every candidate's scores, into
  the version's description (and, as JSON, its tag ``prescale.decision``), readable
  in the MLflow UI. The description ends with the pictures (:func:`pictures`): the version's
  ``forecast.png`` and, with a policy, ``slo/frontier.png``, as Markdown images the MLflow UI loads from
  its own ``get-artifact`` endpoint, so the version page shows them (checked in MLflow 3's UI, both
  with proxied artifacts and a local artifact root).

With a tuned SLO policy (``prescale.slo``: the before-use search on the training's held-out tail,
``tasks.train.tune_slo``), the version also carries it: on the run that logged the model,
``slo/policy.json`` (:meth:`SloPolicy.to_json`), ``slo/study.json`` (the search's summary, the reasons, the
skill and every trial of the frontier) and ``slo/frontier.png`` (cost against violation share, the budget,
the chosen point); on the version, the tags ``slo.violation_budget``, ``slo.rule`` and ``slo.setting``.
:meth:`Registry.load_policy` reads it back (None for a version without one).

Retries are safe: a version carries the tag ``prescale.session`` (data
fingerprint + configuration + candidate), and publishing the same session again
returns the version already registered instead of a second one.

:class:`ChampionLoader` returns the champion's :class:`~models.forecaster.Forecaster`
by (app, phase), cached; it asks the registry at most every ``refresh_seconds``
where the alias points and reloads only when it moved; :meth:`ChampionLoader.policy` gives the champion's SLO
policy the same way.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any
from urllib.parse import quote

import mlflow
import mlflow.pyfunc
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

from models.forecaster import Forecaster
from models.plots import forecast_png, frontier_png
from models.promotion import CHALLENGER, CHAMPION, Verdict, describe, judge
from models.scoring import Scores
from models.series import fingerprint
from models.train import PanelResult, TrainConfig, rescore
from prescale.forecast import Forecast
from prescale.slo.policy import SloPolicy

SESSION_TAG = "prescale.session"
INPUTS_TAG = "prescale.inputs"  # JSON list of the stored metrics the version reads (Forecaster.inputs)
FORECASTER_ARTIFACT = "forecaster"
SLO_FOLDER = "slo"  # artifacts of the tuned SLO policy, on the run that logged the model version
SLO_POLICY_ARTIFACT = f"{SLO_FOLDER}/policy.json"
SLO_FRONTIER_ARTIFACT = f"{SLO_FOLDER}/frontier.png"
FORECAST_ARTIFACT = "forecast.png"  # on every candidate's run, so on every version's
SLO_BUDGET_TAG, SLO_RULE_TAG, SLO_SETTING_TAG = "slo.violation_budget", "slo.rule", "slo.setting"


def slug(text: str) -> str:
    """Lower-case letters, digits and dashes: safe in registered model and experiment names."""
    cleaned = re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")
    if not cleaned:
        raise ValueError(f"{text!r} has no letters or digits to name a model with")
    return cleaned


def _headline(scores: Scores) -> str:
    decision = "" if scores.decision is None else f"decision score {scores.decision:.3f}, "
    return f"{decision}MASE {scores.mase:.3f}"


def model_name(app: str, phase: str) -> str:
    return f"prescale-{slug(app)}-{slug(phase)}"


def experiment_name(app: str) -> str:
    return f"prescale-{slug(app)}"


def forecast_frame(forecast: Forecast) -> pd.DataFrame:
    """A :class:`Forecast` as long rows ``ts, metric, quantile, value`` (the pyfunc's output)."""
    index = forecast.index
    rows = [
        (index[t].tz_convert("UTC").tz_localize(None), metric, q, float(forecast.values[t, m, k]))
        for t in range(forecast.horizon)
        for m, metric in enumerate(forecast.metrics)
        for k, q in enumerate(forecast.quantiles)
    ]
    return pd.DataFrame(rows, columns=["ts", "metric", "quantile", "value"])


class PyfuncForecaster(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc: recent history in, forecast quantiles out.

    Input: a frame with ``ts`` (naive UTC: MLflow's schema has no time zones) and one
    column per metric, at least ``history_steps`` rows. Output: long rows ``ts``,
    ``metric``, ``quantile``, ``value``. The frame type hints only quiet MLflow's
    advice; the logged signature is explicit.
    """

    def load_context(self, context) -> None:
        self.forecaster = Forecaster.load(Path(context.artifacts[FORECASTER_ARTIFACT]))

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        history = model_input.copy()
        history["ts"] = pd.to_datetime(history["ts"], utc=True)
        return forecast_frame(self.forecaster.forecast(history.set_index("ts")))


@dataclass(frozen=True)
class Published:
    """The outcome of publishing one (app, phase)."""

    app: str
    phase: str
    model: str
    version: str
    candidate: str
    promoted: bool
    alias: str
    reason: str
    champion_version: str | None  # the champion after this publication
    previous_champion: str | None
    new_mase: float
    champion_mase: float | None
    experiment_id: str
    run_ids: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Registry:
    """Log, register, promote and load forecasters in one MLflow tracking server / registry."""

    def __init__(self, tracking_uri: str, *, artifact_root: Path | None = None, log_all_models: bool = False) -> None:
        self.tracking_uri = tracking_uri
        self.artifact_root = artifact_root
        self.log_all_models = log_all_models
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        self.activate()
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def activate(self) -> None:
        """Point MLflow's process-wide (fluent) API at this registry; every method that uses it calls this."""
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)

    # -- experiments and runs ----------------------------------------------------------------
    def experiment_id(self, app: str) -> str:
        name = experiment_name(app)
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        # A tracking server decides where artifacts go (its --artifacts-destination: a folder, or s3://...) and
        # proxies them; a client-side file:// location would bypass it and leave the artifacts on this machine.
        # Only the embedded store (sqlite:///..., a folder) takes the local artifact root.
        embedded = not self.tracking_uri.startswith(("http://", "https://"))
        location = (self.artifact_root / name).absolute().as_uri() if self.artifact_root and embedded else None
        try:
            return self.client.create_experiment(name, artifact_location=location)
        except MlflowException:  # created concurrently
            return self.client.get_experiment_by_name(name).experiment_id

    def publish(
        self,
        result: PanelResult,
        *,
        app: str,
        phase: str,
        config: TrainConfig,
        margin: float,
        phase_report: dict[str, Any] | None = None,
        slo: SloPolicy | None = None,
    ) -> Published:
        """Log every candidate, register the best, decide the aliases, attach ``slo``. Idempotent per session.

        Publishing a session again returns its version; a policy given then is attached when the version has
        none or one for another budget (a retry after a failure in between, or a changed budget).
        """
        if result.best is None or result.split is None:
            raise ValueError(f"{app}/{phase} has no trained candidate to publish ({result.skipped})")
        self.activate()
        name = model_name(app, phase)
        session = session_id(result, config)
        existing = self._session_version(name, session)
        if existing is not None:
            if slo is not None and existing.tags.get(SLO_BUDGET_TAG) != _budget_tag(slo):
                self.log_policy(name, str(existing.version), slo, title=f"{app}/{phase}")
            return self._published_from_tags(existing, app=app, phase=phase)
        experiment = self.experiment_id(app)
        window = training_window(result)
        run_ids, model_uris = self._log_runs(result, experiment=experiment, phase=phase, window=window,
                                             phase_report=phase_report, config=config)
        best = result.candidates[result.best]
        mv = self._register(name, model_uris[result.best], session=session, candidate=best.name, window=window,
                            scores=best.scores, inputs=best.forecaster.inputs)
        if slo is not None:
            self.log_policy(name, str(mv.version), slo, title=f"{app}/{phase}")
        current_version, current = self._current_champion(name, result, config, window)
        verdict = judge(best.scores, current, margin=margin)
        notes = self._notes(current_version, name, window)
        self._apply(name, mv.version, verdict, current_version)
        text = describe(verdict, candidate=best.name, scores=result.scores(), champion_version=current_version,
                        window=window, notes=notes) + pictures(mv.run_id, frontier=slo is not None)
        self.client.update_model_version(name, mv.version, description=text)
        self.client.set_model_version_tag(name, mv.version, "prescale.decision", json.dumps(asdict(verdict)))
        champion = str(mv.version) if verdict.promote else current_version
        return Published(app, phase, name, str(mv.version), best.name, verdict.promote, verdict.alias,
                         verdict.reason, champion, current_version, verdict.new_mase, verdict.champion_mase,
                         experiment, run_ids)

    def _log_runs(self, result: PanelResult, *, experiment: str, phase: str, window: dict[str, str],
                  phase_report: dict[str, Any] | None, config: TrainConfig) -> tuple[dict[str, str], dict[str, str]]:
        run_ids: dict[str, str] = {}
        model_uris: dict[str, str] = {}
        common = {**window, "fingerprint": fingerprint(result.panel), "metrics": ",".join(result.panel.metrics),
                  "step_seconds": str(result.panel.step_seconds), "phase": phase}
        with mlflow.start_run(experiment_id=experiment, run_name=f"train-{phase}") as parent:
            mlflow.set_tags({"prescale.phase": phase, "prescale.best": result.best or ""})
            mlflow.log_params({**common, "holdout_fraction": config.holdout_fraction,
                               "validation_fraction": config.validation_fraction, "best": result.best})
            if phase_report is not None:
                mlflow.log_dict(phase_report, "phases.json")
            if result.unavailable:
                mlflow.log_dict(result.unavailable, "unavailable_candidates.json")
            for name, candidate in result.candidates.items():
                with mlflow.start_run(experiment_id=experiment, run_name=name, nested=True) as run:
                    with_model = self.log_all_models or name == result.best
                    uri = self._log_candidate(result, candidate, common=common, phase=phase, with_model=with_model)
                    model_uris[name] = uri
                    run_ids[name] = run.info.run_id
            run_ids["parent"] = parent.info.run_id
        return run_ids, model_uris

    def _log_candidate(self, result: PanelResult, candidate, *, common: dict[str, str], phase: str,
                       with_model: bool) -> str | None:
        """Log one candidate into the active run; returns its model URI when its model is logged."""
        mlflow.set_tags({"prescale.phase": phase, "prescale.candidate": candidate.name,
                         "prescale.best": str(candidate.name == result.best)})
        mlflow.log_params({**common, "candidate": candidate.name, **_flat(candidate.params)})
        numbers = {k: v for k, v in candidate.scores.headline().items() if isinstance(v, int | float)}
        numbers["train_seconds"] = candidate.train_seconds
        for metric, values in candidate.scores.per_metric.items():
            numbers.update({f"{slug(metric)}.{k}": v for k, v in values.items()})
        for lead, values in candidate.scores.tail.items():  # the upper tail at each tier's lead time
            numbers.update({f"lead_{lead}.{k}": v for k, v in values.items() if k != "step"})
        mlflow.log_metrics(numbers)
        mlflow.log_dict(candidate.scores.to_dict(), "scores.json")
        split = result.split
        png = forecast_png(
            index=result.panel.index, origins=split.test_origins, actual=result.actual(),
            quantiles=candidate.test_quantiles, levels=candidate.forecaster.quantiles, metrics=result.panel.metrics,
            title=f"{candidate.name}: last-step forecast vs actual (calibrated bands), {_headline(candidate.scores)}",
        )
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / FORECAST_ARTIFACT
            path.write_bytes(png)
            mlflow.log_artifact(str(path))
            return self._log_model(result, candidate.forecaster, Path(tmp)) if with_model else None

    def _log_model(self, result: PanelResult, forecaster: Forecaster, tmp: Path) -> str:
        folder = forecaster.save(tmp / FORECASTER_ARTIFACT)
        example = _input_example(result, forecaster)
        output = forecast_frame(forecaster.forecast(example.set_index("ts")))
        quiet = logging.getLogger("mlflow.pyfunc")
        level, quiet.level = quiet.level, logging.ERROR  # the cloudpickle advice, once per candidate
        try:
            info = self._pyfunc(example, output, folder)
        finally:
            quiet.level = level
        return info.model_uri

    @staticmethod
    def _pyfunc(example: pd.DataFrame, output: pd.DataFrame, folder: Path):
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=PyfuncForecaster(),
            artifacts={FORECASTER_ARTIFACT: str(folder)},
            signature=infer_signature(example, output),
            input_example=example,
            pip_requirements=_requirements(),
        )

    # -- the SLO policy ------------------------------------------------------------------------------
    def log_policy(self, name: str, version: str, policy: SloPolicy, *, title: str) -> None:
        """``policy`` on the run that logged ``name`` v``version`` (artifacts) and on the version (tags)."""
        run_id = self.client.get_model_version(name, version).run_id
        study = {"tuning": policy.tuning, "reasons": list(policy.reasons), "skill": policy.skill,
                 "frontier": [p.model_dump() for p in policy.frontier]}
        png = frontier_png(policy, title=f"{title} v{version}: SLO tuning, {policy.rule} {policy.setting} at "
                                         f"budget {policy.violation_budget:.2%}")
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            (folder / "policy.json").write_text(policy.to_json())
            (folder / "study.json").write_text(json.dumps(study, indent=1, default=str))
            (folder / "frontier.png").write_bytes(png)
            for file in ("policy.json", "study.json", "frontier.png"):
                self.client.log_artifact(run_id, str(folder / file), artifact_path=SLO_FOLDER)
        self._show_frontier(name, version, run_id)
        # tags last: they say the artifacts are complete
        for key, value in ((SLO_BUDGET_TAG, _budget_tag(policy)), (SLO_RULE_TAG, policy.rule),
                           (SLO_SETTING_TAG, policy.setting)):
            self.client.set_model_version_tag(name, version, key, value)

    def _show_frontier(self, name: str, version: str, run_id: str) -> None:
        """Add the frontier's picture to a version described without it (a policy attached after publishing);
        a version being published gets it with its description."""
        description = self.client.get_model_version(name, version).description or ""
        if description and SLO_FRONTIER_ARTIFACT not in description:
            self.client.update_model_version(name, version, description=description + _image(
                "SLO tuning: cost against violation share", run_id, SLO_FRONTIER_ARTIFACT))

    def load_policy(self, name: str, version: str) -> SloPolicy | None:
        """The SLO policy logged with ``name`` v``version``; None when it has none (its tags say so)."""
        self.activate()
        mv = self.client.get_model_version(name, version)
        if SLO_RULE_TAG not in mv.tags:
            return None
        with tempfile.TemporaryDirectory() as tmp:
            path = self.client.download_artifacts(mv.run_id, SLO_POLICY_ARTIFACT, tmp)
            return SloPolicy.from_json(Path(path).read_text())

    # -- registration and aliases -------------------------------------------------------------
    def _register(self, name: str, model_uri: str, *, session: str, candidate: str, window: dict[str, str],
                  scores: Scores, inputs: tuple[str, ...]):
        with contextlib.suppress(MlflowException):  # exists already
            self.client.create_registered_model(
                name, description="prescale forecaster; each version's description holds its training's decision"
            )
        tags = {SESSION_TAG: session, "prescale.candidate": candidate, "prescale.mase": f"{scores.mase:.6f}",
                **({} if scores.decision is None else {"prescale.decision_score": f"{scores.decision:.6f}"}),
                INPUTS_TAG: json.dumps(list(inputs)), **{f"prescale.{k}": v for k, v in window.items()}}
        return mlflow.register_model(model_uri, name, tags=tags)

    def _current_champion(self, name: str, result: PanelResult, config: TrainConfig, window: dict[str, str]):
        """``(version, scores or reason)`` of the current champion re-scored on this training's windows."""
        try:
            mv = self.client.get_model_version_by_alias(name, CHAMPION)
        except MlflowException:
            return None, None
        version = str(mv.version)
        try:
            forecaster = self.load_version(name, version)
        except Exception as exc:  # noqa: BLE001 - an unloadable champion is replaced, with the reason
            return version, f"v{version} could not be loaded ({type(exc).__name__}: {exc})"
        return version, rescore(forecaster, result, config)

    def _notes(self, current_version: str | None, name: str, window: dict[str, str]) -> tuple[str, ...]:
        if current_version is None:
            return ()
        tags = self.client.get_model_version(name, current_version).tags
        trained_until = tags.get("prescale.train_end")
        if trained_until and trained_until >= window["test_start"]:
            return (f"caution: the champion v{current_version} was trained on data up to {trained_until}, "
                    f"overlapping this held-out tail (from {window['test_start']}): its score is optimistic",)
        return ()

    def _apply(self, name: str, version: str, verdict: Verdict, current_version: str | None) -> None:
        if verdict.promote:
            self.client.set_registered_model_alias(name, CHAMPION, version)
            try:
                holder = self.client.get_model_version_by_alias(name, CHALLENGER)
                if str(holder.version) == str(version):
                    self.client.delete_registered_model_alias(name, CHALLENGER)
            except MlflowException:
                pass
            if current_version is not None:
                self.client.set_model_version_tag(name, current_version, "prescale.superseded_by", str(version))
        else:
            self.client.set_registered_model_alias(name, CHALLENGER, version)

    def _session_version(self, name: str, session: str):
        try:
            found = self.client.search_model_versions(f"name = '{name}' and tag.`{SESSION_TAG}` = '{session}'")
        except MlflowException:
            return None
        done = [mv for mv in found if "prescale.decision" in mv.tags]
        return done[0] if done else None

    def _published_from_tags(self, mv, *, app: str, phase: str) -> Published:
        verdict = json.loads(mv.tags["prescale.decision"])
        champion = self.champion_version(app, phase)
        return Published(app, phase, mv.name, str(mv.version), mv.tags.get("prescale.candidate", ""),
                         verdict["promote"], CHAMPION if verdict["promote"] else CHALLENGER, verdict["reason"],
                         champion, None, verdict["new_mase"], verdict["champion_mase"], "",
                         {"model": mv.run_id})

    # -- loading ----------------------------------------------------------------------------------
    def champion_version(self, app: str, phase: str) -> str | None:
        try:
            return str(self.client.get_model_version_by_alias(model_name(app, phase), CHAMPION).version)
        except MlflowException:
            return None

    def load_version(self, name: str, version: str) -> Forecaster:
        self.activate()
        model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
        return model.unwrap_python_model().forecaster


class ChampionLoader:
    """The champion's forecaster by (app, phase): cached, refreshed when the alias moves.

    The alias is asked of the registry at most once per ``refresh_seconds`` per (app, phase), whoever asks
    (monitoring's :meth:`champion_version`, then :meth:`get` in the same cycle share the answer); a missing
    champion is not remembered, so a first training is picked up at the next call.
    ``clock`` (seconds, monotonic) is injected so tests and replays can drive it.
    """

    def __init__(self, registry: Registry, *, refresh_seconds: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.registry = registry
        self.refresh_seconds = refresh_seconds
        self.clock = clock
        self._cache: dict[tuple[str, str], tuple[str, Forecaster]] = {}
        self._policies: dict[tuple[str, str], tuple[str, SloPolicy | None]] = {}
        self._versions: dict[tuple[str, str], tuple[str, float]] = {}  # the alias's answer and when it was asked
        self._lock = threading.RLock()
        self.loads = 0
        self.policy_loads = 0

    def champion_version(self, app: str, phase: str) -> str | None:
        """The version the champion alias names (None: no champion), asked at most once per refresh window."""
        key, now = (app, phase), self.clock()
        with self._lock:
            seen = self._versions.get(key)
            if seen is not None and now - seen[1] < self.refresh_seconds:
                return seen[0]
            version = self.registry.champion_version(app, phase)
            if version is not None:
                self._versions[key] = (version, now)
            return version

    def get(self, app: str, phase: str) -> Forecaster:
        key = (app, phase)
        with self._lock:
            version = self.champion_version(app, phase)
            if version is None:
                raise LookupError(f"no champion for app {app!r} phase {phase!r} ({model_name(app, phase)}): "
                                  f"run `prescale train --app {app}` first")
            cached = self._cache.get(key)
            if cached is not None and cached[0] == version:
                return cached[1]
            forecaster = self.registry.load_version(model_name(app, phase), version)
            self.loads += 1
            self._cache[key] = (version, forecaster)
            return forecaster

    def policy(self, app: str, phase: str) -> SloPolicy | None:
        """The champion's tuned SLO policy; None without a champion or when it was published without one.

        Cached by the champion's version, so it follows the alias as :meth:`get` does (and is read once per
        version). The caller applies its budget (``SloPolicy.for_budget``): settings may override the
        profile's since the training.
        """
        key = (app, phase)
        with self._lock:
            version = self.champion_version(app, phase)
            if version is None:
                return None
            cached = self._policies.get(key)
            if cached is not None and cached[0] == version:
                return cached[1]
            policy = self.registry.load_policy(model_name(app, phase), version)
            self.policy_loads += 1
            self._policies[key] = (version, policy)
            return policy

    def version(self, app: str, phase: str) -> str | None:
        cached = self._cache.get((app, phase))
        return cached[0] if cached else None


# -- helpers -----------------------------------------------------------------------------------------

def session_id(result: PanelResult, config: TrainConfig) -> str:
    text = json.dumps({"data": fingerprint(result.panel), "config": asdict(config), "best": result.best},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def training_window(result: PanelResult) -> dict[str, str]:
    index, split = result.panel.index, result.split
    return {
        "train_start": _iso(index[0]), "train_end": _iso(index[split.train_stop - 1]),
        "validation_end": _iso(index[split.val_stop - 1]), "test_start": _iso(index[split.val_stop]),
        "test_end": _iso(index[-1]), "test_windows": str(len(split.test_origins)),
    }


def pictures(run_id: str, *, frontier: bool) -> str:
    """The end of a version's description: its plots as Markdown images.

    The URL is the MLflow UI's ``get-artifact?path=...&run_uuid=...``, relative (no leading slash), so it
    resolves against wherever the UI is served (a ``--static-prefix`` included) and works whether the server
    proxies the artifacts or reads them from its own artifact root."""
    text = "\n\n### Pictures" + _image("Held-out forecast against actuals (last horizon step, calibrated bands)",
                                          run_id, FORECAST_ARTIFACT)
    return text + (_image("SLO tuning: cost against violation share", run_id, SLO_FRONTIER_ARTIFACT) if frontier
                   else "")


def version_links(tracking_uri: str, name: str, version: str, run_id: str, *, frontier: bool) -> dict[str, str]:
    """Absolute URLs a browser can open, when the tracking URI is an MLflow server (http/https; else none):
    ``page`` (the version's page in the MLflow UI), ``forecast`` and, with ``frontier``, ``frontier`` (the
    PNGs, from the server's ``get-artifact``). For other pages to show, e.g. a Prefect artifact."""
    if not tracking_uri.startswith(("http://", "https://")):
        return {}
    base = tracking_uri.rstrip("/")
    links = {"page": f"{base}/#/models/{name}/versions/{version}",
             "forecast": f"{base}/{_artifact_url(run_id, FORECAST_ARTIFACT)}"}
    if frontier:
        links["frontier"] = f"{base}/{_artifact_url(run_id, SLO_FRONTIER_ARTIFACT)}"
    return links


def _artifact_url(run_id: str, path: str) -> str:
    """The MLflow UI's relative URL of a run's artifact."""
    return f"get-artifact?path={quote(path, safe='')}&run_uuid={run_id}"


def _image(caption: str, run_id: str, path: str) -> str:
    return f"\n\n{caption}:\n\n![{caption}]({_artifact_url(run_id, path)})"


def _budget_tag(policy: SloPolicy) -> str:
    return f"{policy.violation_budget:g}"


def _iso(ts: pd.Timestamp) -> str:
    return pd.Timestamp(ts).tz_convert("UTC").isoformat()


def _flat(params: dict[str, Any]) -> dict[str, str]:
    out = {}
    for key, value in params.items():
        text = json.dumps(value, default=str) if isinstance(value, dict | list | tuple) else str(value)
        out[key] = text[:5000]
    return out


def _input_example(result: PanelResult, forecaster: Forecaster) -> pd.DataFrame:
    """The ``history_steps`` rows up to the panel's newest observed row, as the pyfunc expects them (naive UTC
    ``ts``). Up to the newest observed row, not the newest row: a phase's panel is missing where the app's other
    phases run, and when one of them runs at the end, the newest rows would give no forecast to show."""
    seen = result.panel.observed.nonzero()[0]
    stop = int(seen[-1]) + 1 if len(seen) else len(result.panel)
    frame = result.panel.to_frame().iloc[max(0, stop - forecaster.history_steps):stop]
    frame = frame.ffill().bfill()
    frame.index = frame.index.tz_convert("UTC").tz_localize(None)
    return frame.rename_axis("ts").reset_index()


def _requirements() -> list[str]:
    out = []
    for package in ("darts", "torch", "pandas", "numpy", "scipy", "mlflow"):
        try:
            out.append(f"{package}=={version(package).split('+')[0]}")
        except PackageNotFoundError:
            out.append(package)
    return out

