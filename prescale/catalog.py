"""The resource catalog and the application profiles: what can be bought, and what each app gets from it.

Two YAML documents feed the allocation search, both validated here into frozen pydantic models:

* ``infra/catalog.yaml`` -> :class:`Catalog`, a tuple of :class:`ResourceType`. A type is one kind of node
  (``cpu-vm``, ``gpu-vm``, ``fpga``, ``bare-metal``) with a capacity vector (vCPU, memory GiB, GPUs, FPGAs),
  an hourly price (on-demand, optional spot), a quota (most nodes of this type we may run), a provisioning
  lead time in seconds, performance tags (peak TFLOPS, sustained memory bandwidth, network latency, the
  accelerator and FPGA family) and the Kubernetes node pool it lands in (labels and taints).
* ``infra/apps/<app>.yaml`` -> :class:`AppProfile`: the app's demand metrics, the kinds it can run on, its
  workload class, the shape of one replica, min/max nodes, how much demand one node of each compatible
  type serves, and its service-level objective (:class:`Slo`).

The SLO is the user's one knob: ``slo.violation_budget`` is the share of minutes whose demand may exceed
serving capacity (default 0.005, i.e. capacity may fall short on at most 0.5% of minutes; valid range
(0, 0.2]). A profile states it; ``prescale.settings.SloSettings`` may override it per app or for every app.

How much one node serves (``AppProfile.served(rtype)``), per demand metric ``m``:

* given directly: ``serves[<type name>][<metric>]`` (measured, e.g. streams per FPGA card), else
* derived: ``per_unit_m * efficiency[kind] * score(rtype, basis_m)``, where the basis defaults to the
  app's workload class:

  =================  ==========================================================================
  workload class     score of a type
  =================  ==========================================================================
  compute            ``perf.peak_tflops``
  memory-bandwidth   ``perf.memory_bandwidth_gbps``
  latency            ``capacity.vcpu * 100 / perf.network_latency_us`` (workers / round trip)
  =================  ==========================================================================

  A metric may name another basis (``vcpu``, ``memory_gib``, ``gpus``, ``fpgas`` or any score above),
  e.g. a working set that scales with memory.

A type is *compatible* with an app (``AppProfile.incompatibility(rtype)`` returns ``None``) when its kind
is in the app's ``kinds``, an FPGA type's family has one of the app's bitstreams, at least one replica
fits on a node, and it serves something. Otherwise the function returns the reason, in words, for the
explanations the allocation attaches to every type it does not choose.

Public API (stable; the cluster backend builds on it):

* ``KINDS``, ``WORKLOAD_CLASSES``, ``CatalogError``
* ``ResourceType`` (``.name .kind .capacity .price .quota .lead_time_seconds .perf .pool``,
  ``.hourly_price(spot=False)``), ``Capacity``, ``Price``, ``PerformanceTags``, ``NodePool``, ``Taint``
* ``Catalog`` (iterable, ``len``, ``catalog["c7i.2xlarge"]``, ``.names``, ``.get(name)``, ``.of_kind(kind)``)
* ``AppProfile`` (``.metrics .metric_names .kinds .workload_class .replica .min_nodes .max_nodes .slo``,
  ``.incompatibility(rtype)``, ``.served(rtype)``, ``.replicas_per_node(rtype)``, ``.renamed(app)``),
  ``DemandMetric``, ``ReplicaShape``, ``ExampleDemand``, ``Slo``, ``DEFAULT_VIOLATION_BUDGET``,
  ``MAX_VIOLATION_BUDGET``
* ``load_catalog(path)``, ``load_profile(path)``, ``resolve_profile(app, profiles_dir, profile=None)``,
  ``list_profiles(profiles_dir)``, ``check_profile(profile, catalog)``, ``parse_catalog(data)``,
  ``parse_profile(data)``

Every load error is a :class:`CatalogError` naming the file, the field path (with the type's name where
there is one) and the offending value. This module reads YAML files and nothing else; prices are whatever
the file says, so refreshing them is an edit to the YAML, not to code.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from prescale.forecast import MAX_DEMAND, MAX_STEP_SECONDS, MAX_STEPS
from prescale.names import AppName, InvalidNameError, is_dns_label, to_dns_label

Kind = Literal["cpu-vm", "gpu-vm", "fpga", "bare-metal"]
WorkloadClass = Literal["compute", "memory-bandwidth", "latency"]
Basis = Literal["vcpu", "memory_gib", "gpus", "fpgas", "peak_tflops", "memory_bandwidth_gbps", "latency_score"]
TaintEffect = Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]

KINDS: tuple[str, ...] = get_args(Kind)
WORKLOAD_CLASSES: tuple[str, ...] = get_args(WorkloadClass)
CLASS_BASIS: dict[str, str] = {
    "compute": "peak_tflops",
    "memory-bandwidth": "memory_bandwidth_gbps",
    "latency": "latency_score",
}
LABEL_INSTANCE_TYPE = "node.kubernetes.io/instance-type"
LABEL_KIND = "prescale.io/kind"
LABEL_POOL = "prescale.io/pool"
# Node counts in these files (quotas, min/max nodes, running nodes) are bounded so that every count fits the
# search's 64-bit integers with room to multiply: a quota of 10**30 raised OverflowError deep in the search.
MAX_NODES = 1_000_000
NodeCount = Annotated[int, Field(ge=0, le=MAX_NODES)]
DemandValue = Annotated[float, Field(ge=0, le=MAX_DEMAND, allow_inf_nan=False)]
# The SLO's violation budget: share of minutes whose demand may exceed serving capacity. Zero is excluded (no
# finite capacity covers every possible minute); above 20% of minutes short is no longer a service objective.
DEFAULT_VIOLATION_BUDGET = 0.005
MAX_VIOLATION_BUDGET = 0.2


class CatalogError(ValueError):
    """A catalog or profile file (or value) is invalid; the message names the file, field and value."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --------------------------------------------------------------------------------------------- catalog


class Capacity(_Frozen):
    """What one node offers: vCPUs, memory (GiB), GPUs and FPGAs."""

    vcpu: float = Field(gt=0, description="Virtual CPUs (hyperthreads) of one node.")
    memory_gib: float = Field(gt=0, description="Memory of one node in GiB.")
    gpus: int = Field(default=0, ge=0, description="GPUs attached to one node.")
    fpgas: int = Field(default=0, ge=0, description="FPGA devices attached to one node.")


class Price(_Frozen):
    """Hourly price of one node in USD."""

    on_demand: float = Field(gt=0, description="On-demand list price, USD per hour.")
    spot: float | None = Field(default=None, gt=0, description="Typical spot price, USD per hour; null if none.")

    @model_validator(mode="after")
    def _spot_below_on_demand(self) -> Price:
        if self.spot is not None and self.spot > self.on_demand:
            raise ValueError(f"spot price {self.spot} exceeds the on-demand price {self.on_demand}")
        return self


class PerformanceTags(_Frozen):
    """Performance tags from which an app's served demand can be derived (see the module docstring)."""

    peak_tflops: float = Field(gt=0, description="Peak FP32 TFLOPS of the node (CPU SIMD or accelerator).")
    memory_bandwidth_gbps: float = Field(gt=0, description="Sustained memory bandwidth in GB/s.")
    network_latency_us: float = Field(gt=0, description="Typical same-AZ round trip in microseconds.")
    accelerator: str | None = Field(default=None, description="GPU or FPGA model, e.g. nvidia-a10g.")
    fpga_family: str | None = Field(default=None, description="FPGA family a bitstream must target.")


class Taint(_Frozen):
    """A Kubernetes node taint."""

    key: str = Field(min_length=1)
    value: str = ""
    effect: TaintEffect = "NoSchedule"


class NodePool(_Frozen):
    """The Kubernetes node pool a type's nodes join. Standard labels are added by :class:`ResourceType`."""

    name: str = Field(default="", description="Pool name (a DNS-1123 label: it names the MachineDeployment and is "
                      "a label value); default prescale-<type name, lower case, other characters as '-'>.")
    labels: dict[str, str] = Field(default_factory=dict)
    taints: tuple[Taint, ...] = ()

    @field_validator("name")
    @classmethod
    def _dns_label(cls, name: str) -> str:
        if not is_dns_label(name):
            raise ValueError("must be a DNS-1123 label: at most 63 lower-case letters, digits and '-', starting and "
                             "ending alphanumeric (it names the pool's MachineDeployment)")
        return name


class ResourceType(_Frozen):
    """One kind of node that can be bought (an instance type in one pricing region)."""

    name: str = Field(min_length=1, description="Instance type name, unique in the catalog.")
    kind: Kind
    capacity: Capacity
    price: Price
    quota: int = Field(ge=0, le=MAX_NODES, description="Most nodes of this type we may run at once (0: unavailable).")
    lead_time_seconds: float = Field(ge=0, description="Seconds from request until a node serves traffic.")
    perf: PerformanceTags
    pool: NodePool = Field(default_factory=NodePool)
    description: str = ""

    @model_validator(mode="after")
    def _kind_matches_capacity(self) -> ResourceType:
        cap = self.capacity
        if self.kind == "gpu-vm" and cap.gpus < 1:
            raise ValueError(f"kind gpu-vm needs capacity.gpus >= 1, got {cap.gpus}")
        if self.kind == "fpga" and (cap.fpgas < 1 or not self.perf.fpga_family):
            raise ValueError("kind fpga needs capacity.fpgas >= 1 and perf.fpga_family")
        if self.kind == "cpu-vm" and (cap.gpus or cap.fpgas):
            raise ValueError(f"kind cpu-vm cannot have accelerators (gpus={cap.gpus}, fpgas={cap.fpgas})")
        return self

    @model_validator(mode="before")
    @classmethod
    def _standard_pool_labels(cls, data: Any) -> Any:
        """Name the pool and add the standard labels (instance type, kind, pool) unless the file sets them."""
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            return data
        pool = dict(data.get("pool") or {})
        if not isinstance(pool.get("labels", {}), dict):
            return data
        pool["name"] = pool.get("name") or to_dns_label("prescale-" + data["name"])
        standard = {LABEL_INSTANCE_TYPE: data["name"], LABEL_KIND: str(data.get("kind", "")), LABEL_POOL: pool["name"]}
        pool["labels"] = {**standard, **pool.get("labels", {})}
        return {**data, "pool": pool}

    def hourly_price(self, *, spot: bool = False) -> float:
        """USD per hour of one node; ``spot=True`` raises if the type has no spot price."""
        if not spot:
            return self.price.on_demand
        if self.price.spot is None:
            raise CatalogError(f"type {self.name!r} has no spot price; buy it on demand or add price.spot")
        return self.price.spot

    def score(self, basis: str) -> float:
        """The capacity or performance figure named by ``basis`` (see the module docstring)."""
        if basis == "latency_score":
            return self.capacity.vcpu * 100.0 / self.perf.network_latency_us
        if basis in Capacity.model_fields:
            return float(getattr(self.capacity, basis))
        if basis in ("peak_tflops", "memory_bandwidth_gbps"):
            return float(getattr(self.perf, basis))
        raise CatalogError(f"unknown basis {basis!r}; use one of {', '.join(get_args(Basis))}")


class Catalog(_Frozen):
    """All resource types, in file order."""

    types: tuple[ResourceType, ...] = Field(min_length=1)
    source: str = Field(default="", description="Where the prices come from, and when.")

    @field_validator("types")
    @classmethod
    def _unique(cls, types: tuple[ResourceType, ...]) -> tuple[ResourceType, ...]:
        for attr in ("name", "pool"):
            seen: set[str] = set()
            for t in types:
                key = t.name if attr == "name" else t.pool.name
                if key in seen:
                    raise ValueError(f"duplicate {'type name' if attr == 'name' else 'pool name'} {key!r}")
                seen.add(key)
        return types

    def __iter__(self) -> Iterator[ResourceType]:  # type: ignore[override]
        return iter(self.types)

    def __len__(self) -> int:
        return len(self.types)

    def __getitem__(self, name: str) -> ResourceType:
        found = self.get(name)
        if found is None:
            raise CatalogError(f"unknown resource type {name!r}; the catalog has: {', '.join(self.names)}")
        return found

    def get(self, name: str) -> ResourceType | None:
        return next((t for t in self.types if t.name == name), None)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.types)

    def of_kind(self, kind: str) -> tuple[ResourceType, ...]:
        if kind not in KINDS:
            raise CatalogError(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")
        return tuple(t for t in self.types if t.kind == kind)


# -------------------------------------------------------------------------------------------- profiles


class DemandMetric(_Frozen):
    """One dimension of an app's demand, and how much of it a node serves when not given directly."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    unit: str = ""
    per_unit: float | None = Field(
        default=None, gt=0, description="Demand served per unit of the basis score (before efficiency)."
    )
    basis: Basis | None = Field(default=None, description="Score to scale; default: the app's workload class.")
    description: str = ""
    source: str | None = Field(
        default=None,
        description="Stored metric that measures this demand (e.g. app.requests_per_s); default: none, so the "
        "orchestrator cannot forecast it and covers it at zero, saying so in the ledger.",
    )
    source_scale: float = Field(default=1.0, gt=0, description="Multiply the stored metric by this.")


class ReplicaShape(_Frozen):
    """Resources one replica requests; a node must fit at least one."""

    vcpu: float = Field(default=0, ge=0)
    memory_gib: float = Field(default=0, ge=0)
    gpus: int = Field(default=0, ge=0)
    fpgas: int = Field(default=0, ge=0)


class ExampleDemand(_Frozen):
    """Demand used by ``prescale plan`` when no forecast or demand file is given: a ramp from base to peak."""

    step_seconds: int = Field(default=60, gt=0, le=MAX_STEP_SECONDS)
    steps: int = Field(default=30, gt=0, le=MAX_STEPS)
    base: dict[str, DemandValue] = Field(description="Median demand at the first step, per metric.")
    peak: dict[str, DemandValue] = Field(description="Median demand at the last step, per metric.")
    spread: float = Field(default=0.15, ge=0, le=10, description="(q0.9 - q0.5) / q0.5 of the example forecast.")
    current: dict[str, NodeCount] = Field(default_factory=dict, description="Nodes running when the example starts.")


class Slo(_Frozen):
    """The app's service-level objective, stated as how often capacity may fall short of demand."""

    violation_budget: float = Field(
        default=DEFAULT_VIOLATION_BUDGET,
        gt=0,
        le=MAX_VIOLATION_BUDGET,
        allow_inf_nan=False,
        description="Share of minutes whose demand may exceed serving capacity, in (0, 0.2]; 0.005: capacity "
        "may fall short on at most 0.5% of minutes. Settings may override it (slo.violation_budget, slo.apps).",
    )


class AppProfile(_Frozen):
    """An application: its demand, where it can run and how much one node of each type serves."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    description: str = ""
    metrics: tuple[DemandMetric, ...] = Field(min_length=1)
    kinds: tuple[Kind, ...] = Field(min_length=1)
    workload_class: WorkloadClass
    efficiency: dict[Kind, float] = Field(
        default_factory=dict, description="Fraction of the derived score achieved per kind (default 1)."
    )
    fpga_bitstreams: tuple[str, ...] = Field(default=(), description="FPGA families the app has bitstreams for.")
    replica: ReplicaShape = Field(default_factory=ReplicaShape)
    min_nodes: int = Field(default=0, ge=0, le=MAX_NODES)
    max_nodes: int | None = Field(default=None, ge=1, le=MAX_NODES)
    serves: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="Measured demand served per node: type name -> metric -> value."
    )
    example_demand: ExampleDemand | None = None
    slo: Slo = Field(
        default_factory=Slo,
        description="Service-level objective: the share of minutes capacity may fall short (default 0.5%).",
    )

    @model_validator(mode="after")
    def _consistent(self) -> AppProfile:
        names = self.metric_names
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate metric names in {list(names)}")
        if self.max_nodes is not None and self.max_nodes < self.min_nodes:
            raise ValueError(f"max_nodes ({self.max_nodes}) must be >= min_nodes ({self.min_nodes})")
        for type_name, row in self.serves.items():
            _check_metric_keys(row, names, where=f"serves[{type_name!r}]", complete=False)
            for metric, value in row.items():
                if value < 0:
                    raise ValueError(f"serves[{type_name!r}][{metric!r}] must be >= 0, got {value}")
        if self.example_demand is not None:
            _check_metric_keys(self.example_demand.base, names, where="example_demand.base", complete=True)
            _check_metric_keys(self.example_demand.peak, names, where="example_demand.peak", complete=True)
        if "fpga" in self.kinds and not self.fpga_bitstreams:
            raise ValueError("kind fpga is listed but fpga_bitstreams is empty: no FPGA can run this app")
        return self

    @property
    def metric_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.metrics)

    def renamed(self, app: str) -> AppProfile:
        """This profile under another app's name (``--profile web`` for an app without its own file)."""
        return self.model_copy(update={"name": app})

    def replicas_per_node(self, rtype: ResourceType) -> int:
        """How many replicas fit on one node (no limit from a resource the replica does not request)."""
        fits = [
            int(getattr(rtype.capacity, field) // need) for field, need in self.replica.model_dump().items() if need > 0
        ]
        return min(fits) if fits else 1_000_000

    def incompatibility(self, rtype: ResourceType) -> str | None:
        """Why ``rtype`` cannot run this app, or ``None`` when it can."""
        if rtype.kind not in self.kinds:
            return f"incompatible: app {self.name!r} runs on {', '.join(self.kinds)}, not {rtype.kind}"
        family = rtype.perf.fpga_family
        if rtype.kind == "fpga" and family not in self.fpga_bitstreams:
            return f"incompatible: no bitstream for FPGA family {family!r} (have: {', '.join(self.fpga_bitstreams)})"
        if self.replicas_per_node(rtype) < 1:
            return (
                f"incompatible: one replica ({_shape(self.replica)}) does not fit on a node ({_shape(rtype.capacity)})"
            )
        if not any(v > 0 for v in self.served(rtype)):
            return "incompatible: serves no demand (no measured value and no per_unit to derive one)"
        return None

    def served(self, rtype: ResourceType) -> tuple[float, ...]:
        """Demand one node of ``rtype`` serves, per metric in ``metric_names`` order (0 where unknown)."""
        measured = self.serves.get(rtype.name, {})
        return tuple(self._served_one(rtype, m, measured) for m in self.metrics)

    def _served_one(self, rtype: ResourceType, metric: DemandMetric, measured: Mapping[str, float]) -> float:
        if metric.name in measured:
            return float(measured[metric.name])
        if metric.per_unit is None:
            return 0.0
        basis = metric.basis or CLASS_BASIS[self.workload_class]
        return metric.per_unit * self.efficiency.get(rtype.kind, 1.0) * rtype.score(basis)


def _check_metric_keys(row: Mapping[str, float], names: tuple[str, ...], *, where: str, complete: bool) -> None:
    unknown = sorted(set(row) - set(names))
    if unknown:
        raise ValueError(f"{where} names unknown metric(s) {unknown}; the app's metrics are {list(names)}")
    missing = sorted(set(names) - set(row))
    if complete and missing:
        raise ValueError(f"{where} lacks metric(s) {missing}")


def _shape(obj: BaseModel) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in obj.model_dump().items() if v)


def check_profile(profile: AppProfile, catalog: Catalog) -> None:
    """Cross-check a profile against a catalog: type names in ``serves`` and the example must exist."""
    example = profile.example_demand.current if profile.example_demand else {}
    for where, names in (("serves", profile.serves), ("example_demand.current", example)):
        unknown = sorted(set(names) - set(catalog.names))
        if unknown:
            raise CatalogError(
                f"profile {profile.name!r}: {where} names unknown type(s) {unknown}; "
                f"the catalog has: {', '.join(catalog.names)}"
            )


# ---------------------------------------------------------------------------------------------- loading


def parse_catalog(data: Any, *, source: str = "<catalog>") -> Catalog:
    """Validate already-parsed YAML/JSON data into a :class:`Catalog`."""
    if not isinstance(data, dict) or "types" not in data:
        raise CatalogError(f"{source}: expected a mapping with a 'types' list, got {type(data).__name__}")
    data = {k: v for k, v in data.items() if not str(k).startswith("x-")}  # x-*: YAML anchor holders
    try:
        return Catalog.model_validate(data)
    except ValidationError as exc:
        raise CatalogError(_format_errors(exc, data, source)) from None


def parse_profile(data: Any, *, source: str = "<profile>") -> AppProfile:
    """Validate already-parsed YAML/JSON data into an :class:`AppProfile`."""
    if not isinstance(data, dict):
        raise CatalogError(f"{source}: expected a mapping (an app profile), got {type(data).__name__}")
    try:
        return AppProfile.model_validate(data)
    except ValidationError as exc:
        raise CatalogError(_format_errors(exc, data, source)) from None


def load_catalog(path: str | Path) -> Catalog:
    """Read and validate a catalog YAML file (parsed once per version of the file: see :func:`_stamp`)."""
    path = Path(path)
    return _cached_catalog(str(path), _stamp(path))


def load_profile(path: str | Path) -> AppProfile:
    """Read and validate one app profile YAML file (parsed once per version of the file)."""
    path = Path(path)
    return _cached_profile(str(path), _stamp(path))


def _stamp(path: Path) -> tuple[int, int]:
    """What identifies a file's version: a changed file (mtime or size) is parsed again, a missing one fails."""
    try:
        st = path.stat()
    except OSError:
        raise CatalogError(f"{path}: file not found") from None
    return st.st_mtime_ns, st.st_size


# Every orchestrate decision needs the catalog and its app's profile: parsing the YAML took ~0.2 s per call.
# Callers share the cached objects and must not mutate them (they are treated as values everywhere).
@lru_cache(maxsize=4096)
def _cached_catalog(path: str, _stamp: tuple[int, int]) -> Catalog:
    return parse_catalog(_read_yaml(Path(path)), source=path)


@lru_cache(maxsize=4096)
def _cached_profile(path: str, _stamp: tuple[int, int]) -> AppProfile:
    return parse_profile(_read_yaml(Path(path)), source=path)


def list_profiles(profiles_dir: str | Path) -> list[str]:
    """Names of the profiles in a folder (``<name>.yaml``), sorted."""
    folder = Path(profiles_dir)
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def resolve_profile(app: str, profiles_dir: str | Path, profile: str | None = None) -> AppProfile:
    """The profile for ``app``: its own ``<app>.yaml``, or the named ``profile`` renamed to ``app``.

    Both names must be valid app names (:class:`~prescale.names.AppName`: no ``/``, no ``.``), and the file
    must lie directly in ``profiles_dir`` once links are resolved, so ``--profile ../x`` or a link out of the
    folder cannot load any other YAML file. An invalid name raises :class:`CatalogError`.
    """
    try:
        app = AppName(app, what="app")
        name = AppName(profile, what="profile") if profile is not None else app
    except InvalidNameError as exc:
        raise CatalogError(str(exc)) from None
    folder = Path(profiles_dir)
    path = folder / f"{name}.yaml"
    if path.is_file() and path.resolve().parent != folder.resolve():
        raise CatalogError(f"profile {name!r}: {path} resolves to {path.resolve()}, outside the profiles folder "
                           f"{folder}; profiles must be files in that folder")
    if not path.is_file():
        known = ", ".join(list_profiles(profiles_dir)) or "none"
        hint = "" if profile else f"; give app {app!r} an existing profile with --profile NAME"
        raise CatalogError(f"no profile {name!r} in {profiles_dir} (available: {known}){hint}")
    loaded = load_profile(path)
    return loaded.renamed(app) if loaded.name != app else loaded


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser when PyYAML has it: ~10x faster


def _read_yaml(path: Path) -> Any:
    if not path.is_file():
        raise CatalogError(f"{path}: file not found")
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_LOADER)
    except yaml.YAMLError as exc:
        raise CatalogError(f"{path}: not valid YAML: {exc}") from None


def _format_errors(exc: ValidationError, data: Any, source: str) -> str:
    lines = [f"{source}: {exc.error_count()} invalid value(s):"]
    for err in exc.errors():
        where = _location(err["loc"], data)
        value = err.get("input")
        shown = "" if isinstance(value, dict | list) else f" (got {value!r})"
        lines.append(f"  {where}: {err['msg']}{shown}")
    return "\n".join(lines)


def _location(loc: tuple[Any, ...], data: Any) -> str:
    """``types[3] (c7i.2xlarge).price.spot``: the field path, with the type's name where there is one."""
    parts: list[str] = []
    node = data
    for key in loc:
        if isinstance(key, int):
            node = node[key] if isinstance(node, list) and 0 <= key < len(node) else None
            label = f"[{key}]" + (f" ({node['name']})" if isinstance(node, dict) and "name" in node else "")
            if parts:
                parts[-1] += label
            else:
                parts.append(label)
        else:
            parts.append(str(key))
            node = node.get(key) if isinstance(node, dict) else None
    return ".".join(parts) or "<root>"
