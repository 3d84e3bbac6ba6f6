"""One typed settings tree for everything prescale reads from its environment.

Every field has an embedded default, so `prescale demo` runs with no
configuration at all. All local state (the Parquet store, the quarantine, the
MLflow SQLite database and artifacts, Prefect's home) lives under one folder,
``PRESCALE_HOME`` (default ``./.prescale``), so moving or deleting that folder
moves or resets everything at once.

Environment variables use the prefix ``PRESCALE_`` and ``__`` between a group
and its field: ``PRESCALE_STORE__ROOT=/data/metrics``,
``PRESCALE_PROMETHEUS__URL=http://prom:9090``. Paths left unset are derived
from ``home`` after loading, so setting ``PRESCALE_HOME`` alone relocates every
one of them.

Decision code never reads settings: callers load them once (``load_settings``)
and pass plain values in.

The replay's per-policy groups (``replay.policies.<name>``) are built from the
replay's policy registry (``prescale.replay.policies``): a new policy brings its
settings, defaults and descriptions with it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from prescale.names import APP_NAME_RULE, is_valid_app_name
from prescale.replay.policies import POLICIES as REPLAY_POLICIES


def _path_or_uri(value: object) -> object:
    """A URI (``scheme://...``) stays a string; any other location is a local Path (as StoreSettings roots)."""
    return value if value is None or (isinstance(value, str) and "://" in value) else Path(value)


# A local folder (a Path) or an object-store URI (a string, e.g. s3://bucket/prefix); see StoreSettings.
PathOrUri = Annotated[Path | str | None, BeforeValidator(_path_or_uri)]


def _with_store_endpoint(location: Path | str, endpoint_url: str | None) -> Path | str:
    """An s3:// location gets the store's endpoint_url (unless it has one); a local Path stays as it is."""
    if isinstance(location, Path):
        return location
    from prescale.metrics.location import with_endpoint  # imports pyarrow: only for URI locations

    return with_endpoint(location, endpoint_url)


class StoreSettings(BaseModel):
    """Where accepted metrics and quarantined rows are written (Parquet): a local folder or object storage.

    A root is a local path (a ``Path``) or a URI (kept as a string): ``s3://bucket/prefix``,
    ``file:///path``, ``memory://name`` (see docs/object-store.md). S3 credentials come only
    from the environment, the standard way (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
    a profile or a pod role).
    """

    root: Path | str | None = Field(
        default=None,
        description="Root of the metrics dataset: a folder, or a URI such as s3://bucket/prefix. "
        "Default: <home>/data/metrics.",
    )
    quarantine: Path | str | None = Field(
        default=None,
        description="Root of the quarantine dataset (rejected rows with a reason): a folder or a URI. "
        "Default: <home>/data/quarantine; for a URI root, the folder 'quarantine' beside it on the same store.",
    )
    endpoint_url: str | None = Field(
        default=None,
        description="Endpoint of an S3-compatible server (MinIO, Ceph...) for s3:// roots, e.g. http://minio:9000. "
        "Unset: $AWS_ENDPOINT_URL_S3 or $AWS_ENDPOINT_URL, else AWS itself.",
    )
    compact_min_files: int = Field(
        default=8, ge=2, description="Compact a partition once it holds at least this many files."
    )

    @model_validator(mode="before")
    @classmethod
    def _path_or_uri(cls, data: object) -> object:
        """A URI (``scheme://...``) stays a string; any other root is a local Path."""
        if isinstance(data, dict):
            for key in ("root", "quarantine"):
                value = data.get(key)
                if value is not None and not (isinstance(value, str) and "://" in value):
                    data = {**data, key: Path(value)}
        return data

    @model_validator(mode="after")
    def _object_store(self) -> StoreSettings:
        """A URI root keeps its quarantine beside it on the same store; endpoint_url rides in the s3:// URIs."""
        if isinstance(self.root, str):
            from prescale.metrics.location import sibling, with_endpoint  # imports pyarrow: only for URI roots

            self.quarantine = self.quarantine or sibling(self.root, "quarantine")
            self.root = with_endpoint(self.root, self.endpoint_url)
        if isinstance(self.quarantine, str):
            from prescale.metrics.location import with_endpoint

            self.quarantine = with_endpoint(self.quarantine, self.endpoint_url)
        return self


class IngestSettings(BaseModel):
    """File ingestion."""

    block_size_mib: int = Field(default=64, ge=1, description="CSV read block size; bigger blocks parse faster.")


class PrometheusSettings(BaseModel):
    """The Prometheus metrics source (HTTP API, `query_range`)."""

    url: str = Field(default="http://127.0.0.1:9090", description="Base URL of the Prometheus server.")
    step_seconds: int = Field(default=60, ge=1, description="Resolution of `query_range`.")
    chunk_hours: float = Field(
        default=6.0,
        gt=0,
        description="Split long ranges into chunks of this many hours (Prometheus caps points per series at 11,000).",
    )
    timeout_seconds: float = Field(default=30.0, gt=0, description="Timeout of one HTTP request.")
    retries: int = Field(default=3, ge=0, description="Retries of one chunk on connection errors, timeouts and 5xx.")
    backoff_seconds: float = Field(default=0.5, ge=0, description="First retry delay; doubles each retry.")


class RegistrySettings(BaseModel):
    """MLflow tracking and model registry."""

    tracking_uri: str | None = Field(
        default=None,
        description="MLflow tracking URI. Default: sqlite:///<home>/mlflow/mlflow.db.",
    )
    artifacts: Path | None = Field(
        default=None, description="Artifact root for the embedded registry. Default: <home>/mlflow/artifacts."
    )


class OrchestrateSettings(BaseModel):
    """The every-minute decision loop (flows/orchestrate.py)."""

    ledger: PathOrUri = Field(default=None, description="Decision ledger (Parquet): a folder, or a URI such as "
                              "s3://bucket/ledger (store.endpoint_url applies). Default: <home>/ledger.")  # fmt: skip
    lookback_hours: float = Field(default=192.0, gt=0, description="History read per decision (8 days feeds "
                                  "the weekly Holt-Winters and daily baselines).")  # fmt: skip
    error_budget: float = Field(default=0.35, gt=0, description="Largest relative error of the recent median "
                                "forecasts before the champion is set aside for the reactive rule.")  # fmt: skip
    min_coverage: float = Field(default=0.5, ge=0, le=1, description="Lowest recent coverage of the 80% band.")
    monitor_points: int = Field(default=240, ge=1, description="Recent forecast points judged by monitoring.")
    min_points: int = Field(default=30, ge=1, description="Points needed before monitoring judges at all.")
    max_staleness_hours: float = Field(default=2.0, gt=0, description="Newest metric older than this: no "
                                       "decision for the app (stale input), reported as skipped.")  # fmt: skip
    dry_run: bool = Field(default=False, description="Decide and record, never apply.")
    retrain_deployment: str = Field(default="train-forecasters/train-daily",
                                    description="Deployment run when a champion is missing, fails to "
                                    "load or forecast, or falls outside its budget.")  # fmt: skip
    retrain_cooldown_minutes: float = Field(default=60.0, ge=0, description="An app is sent for retraining at "
                                            "most once in this many minutes (an app too short of history to "
                                            "train would otherwise start a run every minute).")  # fmt: skip
    max_workers: int = Field(default=2, ge=1, description="Apps decided in parallel (threads runner).")


class ServeSettings(BaseModel):
    """`prescale serve`: local Prefect and MLflow servers, a work pool and a worker."""

    host: str = Field(default="127.0.0.1", description="Interface the servers listen on.")
    prefect_port: int = Field(default=4200, ge=1, le=65535, description="Prefect API and UI port.")
    mlflow_port: int = Field(default=5000, ge=1, le=65535, description="MLflow tracking server and UI port.")
    work_pool: str = Field(default="prescale", description="Process work pool the deployments run on.")
    startup_timeout_seconds: float = Field(default=120.0, gt=0, description="Wait this long for each server.")
    # Production backends (docs/backends.md). URLs may carry a password, so they are secrets: set them from the
    # environment only; nothing prints them unmasked, and cli/services.py checks them (a pydantic validator
    # would echo the rejected value, password included, in its error).
    prefect_database_url: SecretStr | None = Field(
        default=None,
        description="Prefect server's database, postgresql+asyncpg://USER:PASSWORD@HOST:5432/DB (given to the server "
        "as PREFECT_SERVER_DATABASE_CONNECTION_URL). Unset: Prefect's SQLite under <home>/prefect.",
    )
    mlflow_backend_store_uri: SecretStr | None = Field(
        default=None,
        description="MLflow tracking and registry database, postgresql://USER:PASSWORD@HOST:5432/DB (given to the "
        "server as MLFLOW_BACKEND_STORE_URI). Unset: sqlite:///<home>/mlflow/mlflow.db.",
    )
    mlflow_artifacts_destination: str | None = Field(
        default=None,
        description="Where MLflow's server stores artifacts (it proxies them to clients): s3://BUCKET/PREFIX, or "
        "a folder. Unset: registry.artifacts (<home>/mlflow/artifacts). S3 credentials: the standard AWS_* variables.",
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        description="Endpoint of an S3-compatible store (MinIO, Ceph, ...) for the artifacts destination, given to "
        "MLflow's server as MLFLOW_S3_ENDPOINT_URL. Unset: AWS S3 (or MLFLOW_S3_ENDPOINT_URL if already set).",
    )


class PrefectSettings(BaseModel):
    """Where Prefect keeps its local state when no API server is configured."""

    home: Path | None = Field(default=None, description="PREFECT_HOME for embedded runs. Default: <home>/prefect.")


class SearchSettings(BaseModel):
    """The allocation search (prescale/allocation): solver, budget and the policy it optimises."""

    solver: str = Field(default="optuna", pattern="^(optuna|milp)$", description="optuna (search) or milp (exact).")
    trials: int = Field(default=60, ge=1, le=100_000, description="Most Optuna trials per decision.")
    time_budget_ms: int | None = Field(
        default=800, ge=1, le=600_000,
        description="Wall-clock budget per decision in ms (at most 10 minutes); unset: trials only (reproducible).",
    )
    seed: int = Field(default=0, description="Seed of the Optuna sampler.")
    covered_quantile: float = Field(default=0.9, gt=0, lt=1, description="Forecast quantile the allocation covers.")
    risk_quantile: float = Field(default=0.99, gt=0, lt=1, description="Quantile at which risk (uncovered) is read.")
    churn_cost: float = Field(default=0.05, ge=0, description="USD charged once per node added or removed.")
    penalty_per_unit: float | None = Field(
        default=None, gt=0, description="USD/h per uncovered demand unit; unset: penalty_multiple x cheapest unit cost."
    )
    penalty_multiple: float = Field(
        default=10.0, gt=0, description="Uncovered demand costs this many times the cheapest way to serve it."
    )
    max_spot_share: float = Field(
        default=0.5, ge=0, le=1, description="Most of the spend (at on-demand prices) put on spot."
    )
    spot_interruption_probability: float = Field(
        default=0.05, ge=0, le=1, description="Chance that all spot nodes are reclaimed within the horizon."
    )
    amortize_hours: float = Field(
        default=6.0, gt=0, description="Hours over which one-off costs (churn, boot, overlap) are spread."
    )
    multi_objective: bool = Field(default=False, description="Search the Pareto front of cost against risk.")
    storage: str | None = Field(default=None, description="Optuna storage URL (for optuna-dashboard); unset: memory.")
    catalog: Path = Field(
        default_factory=lambda: Path(__file__).resolve().parents[1] / "infra" / "catalog.yaml",
        description="Resource catalog YAML. Default: infra/catalog.yaml in the repository.",
    )
    profiles: Path = Field(
        default_factory=lambda: Path(__file__).resolve().parents[1] / "infra" / "apps",
        description="Folder of app profiles (<app>.yaml). Default: infra/apps in the repository.",
    )


class ForecastSettings(BaseModel):
    """Forecaster training (models/, flows/train.py): windows, network budget, calibration, promotion."""

    preset: str = Field(default="default", pattern="^(default|small)$", description="default, or small (tests, demo).")
    horizon_minutes: float = Field(default=15.0, gt=0, description="How far ahead to forecast (production horizon).")
    input_minutes: float = Field(default=240.0, gt=0, description="History the LSTM sees per forecast.")
    max_input_steps: int = Field(default=64, ge=2, description="Cap on the LSTM input window in rows.")
    quantiles: list[float] = Field(
        default=[0.05, 0.1, 0.5, 0.9, 0.95, 0.99, 0.995],
        description="Forecast quantile levels (with 0.5; 0.9, 0.99 and 0.995 for the decision score).",
    )
    holdout_fraction: float = Field(default=0.2, gt=0, lt=0.5, description="Share of history held out for scoring.")
    epochs: int = Field(default=30, ge=1, description="Most LSTM epochs (early stopping usually ends sooner).")
    max_samples: int = Field(default=20_000, ge=100, description="Most training windows per series (the newest); a "
                             "global fit over several series uses up to 3x this in all (at least 2 days per series), "
                             "spread over their spans.")
    extra_candidates: list[str] = Field(default=[], description="Optional candidates to train as well: fracast "
                                        "(zero-shot, about 0.1 s per scored origin), tide, nhits, tsmixer (darts).")
    lstm_members: int = Field(default=3, ge=1, description="LSTM networks averaged into the 'lstm' candidate (seeds "
                              "seed, seed+1, ...): about 1% lower MAE than one, for that many times the training.")
    lag_window_minutes: float = Field(default=30.0, ge=0, description="The day- and week-ago covariates are the "
                                      "mean of the observed rows within this many minutes of the lagged instant.")
    conformal_lr: float = Field(default=0.1, gt=0, description="Step of the online interval calibration.")
    calibration_bins: int = Field(default=24, ge=1, le=24, description="Hour-of-day bins of the calibration "
                                  "(the target row's UTC hour; 1 = one width at every hour); a divisor of 24.")
    score_leads_minutes: list[float] = Field(default=[1.0, 5.0, 15.0], min_length=1, description="Lead times "
                                             "(minutes) at which the decision score judges the upper quantiles.")
    promotion_margin: float = Field(default=0.02, ge=0, lt=1, description="Relative gain in the decision score "
                                    "(MASE when a side has none) a new champion needs.")
    history_days: float = Field(default=30.0, gt=0, description="Days of history read from the store per training.")
    min_phase_minutes: float = Field(default=240.0, gt=0, description="Shortest phase run; shorter runs are merged.")
    threads: int = Field(default=1, ge=1, description="torch threads per training and per orchestrate forecast "
                         "(more hurts on a busy host).")
    seed: int = Field(default=0, description="Seed of every random source in training.")
    phase_reports: PathOrUri = Field(
        default=None,
        description="Where training keeps each app's phase report (<app>.json) and orchestrate reads it: a folder, "
        "or a URI such as s3://bucket/phases (store.endpoint_url applies). Default: <home>/phases.",
    )

    @field_validator("calibration_bins")
    @classmethod
    def _bins_divide_the_day(cls, bins: int) -> int:
        if 24 % bins:
            raise ValueError(f"calibration_bins {bins} does not divide 24 hours; use 1, 2, 3, 4, 6, 8, 12 or 24")
        return bins

    @field_validator("quantiles")
    @classmethod
    def _quantiles_have_the_median(cls, quantiles: list[float]) -> list[float]:
        if 0.5 not in quantiles or not all(0 < q < 1 for q in quantiles):
            raise ValueError(f"quantiles {quantiles} must lie in (0, 1) and include the median 0.5")
        return quantiles

class SimulationSettings(BaseModel):
    """The simulated cluster (prescale/cluster/simulated.py): its random source and injectable faults."""

    seed: int = Field(default=0, description="Seed of the simulated cluster's random source (faults).")
    provision_failure_rate: float = Field(
        default=0.0, ge=0, le=1, description="Chance that a requested node fails instead of becoming ready."
    )
    spot_preemption_per_hour: float = Field(
        default=0.0, ge=0, description="Rate at which each spot node is reclaimed, per node-hour (Poisson)."
    )
    slow_start_probability: float = Field(
        default=0.0, ge=0, le=1, description="Chance that a node takes slow_start_factor times its lead time."
    )
    slow_start_factor: float = Field(default=3.0, ge=1, description="Lead-time multiplier of a slow start.")
    pod_start_seconds: float = Field(default=20.0, ge=0, description="Seconds from a free slot to a ready replica.")


class ClusterSettings(BaseModel):
    """The cluster backend (prescale/cluster): which one, where it is, and the guardrails of every plan."""

    backend: str = Field(
        default="simulated", pattern="^(simulated|kubernetes)$", description="simulated (embedded) or kubernetes."
    )
    state_file: Path | None = Field(
        default=None, description="Simulated cluster state, kept between runs. Default: <home>/cluster/state.json."
    )
    kubeconfig: Path | None = Field(
        default=None, description="kubeconfig file; unset: $KUBECONFIG or ~/.kube/config, or in-cluster in a pod."
    )
    context: str | None = Field(default=None, description="kubeconfig context; unset: the current context.")
    namespace: str = Field(default="prescale", description="Namespace of the apps' Deployments, templates, Services.")
    pool_namespace: str = Field(default="prescale", description="Namespace of the Cluster API MachineDeployments.")
    capi_version: str = Field(default="v1beta1", description="API version of cluster.x-k8s.io MachineDeployments.")
    fpga_resource: str = Field(
        default="xilinx.com/fpga", description="Extended resource the FPGA device plugin advertises per device."
    )
    max_step_nodes: int = Field(default=10, ge=1, description="Most nodes added or removed by one plan step.")
    budget_per_hour: float | None = Field(
        default=None, gt=0, description="Most USD/h an app may cost at any point of a plan; unset: no cap."
    )
    min_nodes_per_app: int = Field(default=1, ge=0, description="Fewest nodes any app keeps (with its own min_nodes).")
    rollout_deadline_seconds: float = Field(
        default=600.0, gt=0, description="A step not done this long (plus the type's lead time) is rolled back."
    )
    poll_seconds: float = Field(default=5.0, gt=0, description="Interval between readiness checks while waiting.")
    retries: int = Field(default=5, ge=0, description="Retries of one API call on 409/429/5xx and timeouts.")
    backoff_seconds: float = Field(default=0.5, ge=0, description="First retry delay; doubles each retry.")
    backoff_max_seconds: float = Field(default=30.0, ge=0, description="Longest retry delay.")
    request_timeout_seconds: float = Field(default=30.0, gt=0, description="Timeout of one Kubernetes API call.")
    simulation: SimulationSettings = Field(default_factory=SimulationSettings)


def _replay_policy_settings() -> type[BaseModel]:
    """One group per registered replay policy (``prescale.replay.policies``), its settings model as the type."""
    fields: dict[str, Any] = {
        name: (policy.settings_type, Field(default_factory=policy.settings_type, description=policy.description))
        for name, policy in REPLAY_POLICIES.items()
    }
    return create_model("ReplayPolicySettings", __doc__="Each replay policy's knobs and sweep.", **fields)


ReplayPolicySettings = _replay_policy_settings()


class ReplaySettings(BaseModel):
    """Trace replay (prescale/replay, `prescale backtest`): window, demand mapping, forecaster, each policy's sweep."""

    days: float = Field(default=7.0, gt=0, description="Days replayed: the last days of the app's metrics.")
    metric: str | None = Field(default=None, description="Stored metric driving demand; unset: chosen by name.")
    peak_scale: float | None = Field(
        default=None,
        gt=0,
        description="Map a trace onto the profile: its history's p99 becomes this multiple of the example peak. "
        "Unset: the app's own units when the profile declares the metric's source, else 1.",
    )
    forecaster: str = Field(
        default="best",
        pattern="^(best|persistence|seasonal_naive|ses|holt_winters)$",
        description="best (train every candidate before the window, keep the lowest decision score) or one baseline.",
    )
    preset: str = Field(default="small", pattern="^(default|small)$", description="Training preset of 'best'.")
    warmup_minutes: float = Field(default=60.0, ge=0, description="Unscored warm-up (at least 2x the slowest lead).")
    lookahead_minutes: float = Field(default=30.0, gt=0, description="Forecast this far past the slowest lead.")
    tune_days: float = Field(
        default=2.0, ge=0, description="Ex ante: the SLO policy is tuned on this many days before the window (the "
        "forecaster trains before them); 0 leaves the ex-ante comparison out.",
    )
    hold_minutes: float = Field(default=5.0, ge=0, description="Predictive keeps what the next lead + this needs.")
    consolidation_margin: float = Field(default=0.1, ge=0, description="Swap to the cheapest mix when this dearer.")
    cover_resolution: float = Field(default=0.01, gt=0, lt=1, description="Relative grid step of cached covers.")
    policies: ReplayPolicySettings = Field(
        default_factory=ReplayPolicySettings,
        description="Each replay policy's knobs and sweep, by name (PRESCALE_REPLAY__POLICIES__REACTIVE__TARGETS).",
    )
    output: Path | None = Field(default=None, description="Folder for plots and reports. Default: <home>/backtest.")


class RunnerSettings(BaseModel):
    """Where the flows' mapped tasks run (per app and phase in training, per app in orchestration)."""

    kind: str = Field(
        default="threads",
        pattern="^(threads|dask)$",
        description="threads (in the flow's process), or dask (prefect-dask: the scheduler at dask_address, else "
        "a LocalCluster started for the flow run).",
    )
    dask_address: str | None = Field(
        default=None, description="Dask scheduler to use, e.g. tcp://10.0.0.5:8786; unset: a LocalCluster per run."
    )
    dask_workers: int = Field(default=2, ge=1, description="Workers of the LocalCluster (one per core is right).")
    dask_threads_per_worker: int = Field(default=1, ge=1, description="Threads per LocalCluster worker.")
    dask_processes: bool = Field(default=True, description="LocalCluster workers are processes (else threads).")


# The upper end of a violation budget; the same bound as prescale.catalog.MAX_VIOLATION_BUDGET, repeated here
# because settings does not import the catalog (tests/test_slo_profile.py checks the two agree).
MAX_VIOLATION_BUDGET = 0.2


class SloSettings(BaseModel):
    """Overrides of the apps' SLO (``slo.violation_budget`` of each profile, prescale/catalog.py).

    The budget is the share of minutes whose demand may exceed serving capacity, in (0, 0.2]. Precedence, most
    specific first (:meth:`budget_for`): ``apps[<app>]``, then ``violation_budget``, then the app's profile.
    """

    violation_budget: float | None = Field(
        default=None, gt=0, le=MAX_VIOLATION_BUDGET, allow_inf_nan=False,
        description="Violation budget of every app, in (0, 0.2], over each profile's slo.violation_budget "
        "(0.005: capacity may fall short on at most 0.5% of minutes); unset: each profile's own.",
    )  # fmt: skip
    apps: dict[str, float] = Field(
        default_factory=dict,
        description="Per-app violation budget, app name -> share of minutes in (0, 0.2], over both the global "
        "override and the profile: PRESCALE_SLO__APPS='{\"web\": 0.001}' or PRESCALE_SLO__APPS__WEB=0.001.",
    )

    @field_validator("apps")
    @classmethod
    def _budgets_in_range(cls, apps: dict[str, float]) -> dict[str, float]:
        for app, budget in apps.items():
            if not is_valid_app_name(app):
                raise ValueError(f"app {app[:80]!r} is not an app name ({APP_NAME_RULE})")
            if not 0 < budget <= MAX_VIOLATION_BUDGET:  # also refuses NaN
                raise ValueError(
                    f"app {app!r}: violation budget {budget!r} is outside (0, {MAX_VIOLATION_BUDGET}]; "
                    "give the share of minutes capacity may fall short, e.g. 0.005 for 0.5%"
                )
        return apps

    def budget_for(self, app: str, profile_budget: float) -> float:
        """The violation budget ``app`` runs under: its own override, else the global one, else its profile's."""
        if app in self.apps:
            return self.apps[app]
        if self.violation_budget is not None:
            return self.violation_budget
        return profile_budget


class Settings(BaseSettings):
    """The whole tree. Load it with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="PRESCALE_", env_nested_delimiter="__", extra="ignore", validate_default=True
    )

    home: Path = Field(
        default=Path(".prescale"), description="Folder holding all embedded state; relocates everything at once."
    )
    store: StoreSettings = Field(default_factory=StoreSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    prometheus: PrometheusSettings = Field(default_factory=PrometheusSettings)
    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    prefect: PrefectSettings = Field(default_factory=PrefectSettings)
    serve: ServeSettings = Field(default_factory=ServeSettings)
    orchestrate: OrchestrateSettings = Field(default_factory=OrchestrateSettings)
    search: SearchSettings = Field(default_factory=SearchSettings)
    forecast: ForecastSettings = Field(default_factory=ForecastSettings)
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)
    replay: ReplaySettings = Field(default_factory=ReplaySettings)
    runner: RunnerSettings = Field(default_factory=RunnerSettings)
    slo: SloSettings = Field(
        default_factory=SloSettings,
        description="Overrides of the apps' SLO violation budgets (per app, then for all apps, then the profile's).",
    )

    @model_validator(mode="after")
    def _derive_paths(self) -> Settings:
        home = self.home.expanduser().absolute()
        self.home = home
        self.store.root = self.store.root or home / "data" / "metrics"
        self.store.quarantine = self.store.quarantine or home / "data" / "quarantine"
        self.registry.artifacts = self.registry.artifacts or home / "mlflow" / "artifacts"
        self.registry.tracking_uri = self.registry.tracking_uri or f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"
        self.prefect.home = self.prefect.home or home / "prefect"
        endpoint = self.store.endpoint_url  # also for s3:// ledger and phase reports
        self.orchestrate.ledger = _with_store_endpoint(self.orchestrate.ledger or home / "ledger", endpoint)
        self.forecast.phase_reports = _with_store_endpoint(self.forecast.phase_reports or home / "phases", endpoint)
        self.cluster.state_file = self.cluster.state_file or home / "cluster" / "state.json"
        return self


class SettingsError(ValueError):
    """A setting that does not validate; the message names its environment variable and what is wrong."""


def load_settings(**overrides: object) -> Settings:
    """Read the environment (and any explicit overrides) into a validated tree; :class:`SettingsError` if invalid."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    """One line per invalid setting, named as its variable; a secret's value is never shown."""
    lines = []
    for err in exc.errors():
        loc = [str(part) for part in err["loc"] if not isinstance(part, int)]
        variable = "PRESCALE_" + "__".join(loc).upper()
        value = err.get("input")
        shown = "" if _is_secret(loc) or isinstance(value, dict) else f" (got {str(value)[:80]!r})"
        lines.append(f"{variable}: {err['msg']}{shown}")
    return "invalid settings: " + "; ".join(lines)


def _is_secret(loc: list[str]) -> bool:
    model: type[BaseModel] | None = Settings
    for part in loc:
        info = model.model_fields.get(part) if model is not None else None
        if info is None:
            return False
        if info.annotation is not None and "SecretStr" in str(info.annotation):
            return True
        nested = info.annotation
        model = nested if isinstance(nested, type) and issubclass(nested, BaseModel) else None
    return False
