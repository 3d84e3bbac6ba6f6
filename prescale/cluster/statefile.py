"""The simulated cluster's state file: its schema, the lock its writers take, and atomic writes.

The file is one JSON object::

    {"version": 1, "generation": 7, "world": {...}, "rng": [3, [625 ints], null]}

``world`` is everything the simulation keeps (``simulated._World``: clock, claims, nodes, workloads, the
cost account, holds, scheduled faults), ``rng`` the random source's state, and ``generation`` counts the
saves: each write stores one more than the generation it replaced. A file without ``generation`` (written
before it existed) is generation 0.

**Reading** (:func:`read_state`) checks the whole shape before anything is used: a file of the right
version but the wrong shape (``[]``, ``"nodes": "x"``, a missing key, a string where a count belongs, an
app name that is not an :class:`~prescale.names.AppName`, a type the catalog does not list) raises
``ClusterError`` naming the file and the field (``world.nodes.0.ready_at``), never a ``TypeError`` later.
The schema is strict (no ``"5"`` for 5) and every number finite.

**Writing** (:func:`write_state`) goes to a temporary file beside the target, fsynced, renamed over it,
then the folder fsynced, so a reader sees the old file or the new one, never half of one (readers need no
lock), and a saved state survives a power cut.

**Writers** serialise on :func:`locked`: an exclusive ``fcntl.flock`` on ``<state>.lock`` beside the state
file, taken on a descriptor of its own each time (two such descriptors conflict even inside one process,
so threads exclude each other as processes do). The lock file is never deleted: deleting it would let a
writer that opened the old one and a writer that created a new one both hold "the" lock. The kernel
releases the lock when its holder exits, so a killed writer leaves nothing stale. POSIX only (``fcntl``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from prescale.catalog import Catalog
from prescale.cluster.protocol import ClusterError, ClusterUnavailable
from prescale.names import AppName, shown

STATE_VERSION = 1
_AFRESH = "fix it, or delete it to start afresh"
_SHOWN_ERRORS = 3


def _app_first(key: str) -> str:
    """``key`` (``app/type[/market]``) if its first part is an app name."""
    AppName(key.split("/")[0], what=f"the app of key {key!r}")
    return key


Finite = Annotated[float, Field(allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0)]
App = Annotated[str, AfterValidator(AppName)]
AppOrAll = Annotated[str, AfterValidator(lambda v: AppName(v) if v else v)]
WorkKey = Annotated[str, Field(pattern=r"^[^/]+/[^/]+$"), AfterValidator(_app_first)]
CostKey = Annotated[str, Field(pattern=r"^[^/]+/[^/]+/(spot|on-demand)$"), AfterValidator(_app_first)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class _Node(_Strict):
    id: str
    type: str
    app: App
    spot: bool
    created: Finite
    ready_at: Finite
    fails: bool
    preempt_at: Finite | None
    state: Literal["provisioning", "ready", "failed"]
    failed_at: Finite | None


class _Workload(_Strict):
    app: App
    type: str
    pool: str
    waiting: Count
    scheduled: list[tuple[Finite, Count, bool]]  # [started at, replicas, held]
    rpn: Count
    desired: Count


class _Life(_Strict):
    id: str
    type: str
    app: App
    spot: bool
    start: Finite
    end: Finite
    how: str


class _Fault(_Strict):
    at: Finite
    kind: Literal["preempt", "hold", "lift"]
    rtype: str
    app: AppOrAll
    count: Count
    hold: str


class _World(_Strict):
    """Every key has the default of ``simulated._World``, so a file written before a key existed loads."""

    now: Finite = 0.0
    next_id: Count = 0
    claims: dict[str, dict[App, Count]] = {}
    spot: dict[str, dict[App, Count]] = {}
    nodes: list[_Node] = []
    workloads: dict[WorkKey, _Workload] = {}
    node_seconds: dict[CostKey, Annotated[Finite, Field(ge=0)]] = {}
    ledger: list[_Life] = []
    failed_total: dict[str, Count] = {}
    preempted_total: dict[str, Count] = {}
    holds: list[str] = []
    schedule: list[_Fault] = []


class _File(BaseModel):
    model_config = ConfigDict(strict=True)  # unknown top-level keys are ignored: a newer writer may add some

    version: Literal[1]
    generation: Count = 0
    world: _World
    rng: tuple[int, list[int], Finite | None]


def read_state(path: Path, catalog: Catalog) -> dict[str, Any]:
    """The state at ``path`` as plain data (``version``, ``generation``, ``world``, ``rng``), checked whole."""
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ClusterError(f"simulated cluster state {path} is unreadable ({exc}); delete it to start afresh") from None
    if not isinstance(data, dict):
        raise ClusterError(f"simulated cluster state {path} is a JSON {_json_type(data)}, not an object; {_AFRESH}")
    if data.get("version") != STATE_VERSION or isinstance(data.get("version"), bool):
        raise ClusterError(
            f"simulated cluster state {path} has version {shown(data.get('version'))}, expected {STATE_VERSION} "
            f"(written by another prescale?); delete it to start afresh"
        )
    try:
        _File.model_validate_json(text)
    except ValidationError as exc:
        raise ClusterError(f"simulated cluster state {path}: {_describe(exc)}; {_AFRESH}") from None
    _check_types(path, data["world"], catalog)
    return {"generation": 0, **data}


def generation_of(path: Path, catalog: Catalog) -> int:
    """The generation of the state at ``path`` (0 if there is none yet)."""
    return read_state(path, catalog)["generation"] if path.is_file() else 0


def write_state(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` atomically and durably (module docstring).

    ``ClusterUnavailable`` if it cannot: a full or read-only disk is the simulated cluster's API failing, not
    bad input (the command exits 1, as for an unreachable Kubernetes API).
    """
    try:
        _replace(path, json.dumps(data, allow_nan=False))
    except OSError as exc:
        raise ClusterUnavailable(f"cannot write the simulated cluster state {path}: {exc}") from None


def _replace(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".state-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the rename itself is durable only once the folder is
    finally:
        os.close(folder)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the exclusive lock of the state at ``path`` (``<path>.lock``, created if missing)."""
    lock = path.with_name(path.name + ".lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = lock.open("a")  # "a": created if missing, never truncated
    except OSError as exc:
        raise ClusterUnavailable(f"cannot open the lock {lock} of the simulated cluster state: {exc}") from None
    with handle:  # closing the last descriptor releases the lock
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _json_type(value: object) -> str:
    names = {list: "array", str: "string", bool: "boolean", int: "number", float: "number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _describe(exc: ValidationError) -> str:
    """The first errors as ``field: message (got value)``."""
    parts = []
    for err in exc.errors()[:_SHOWN_ERRORS]:
        where = ".".join(str(p) for p in err["loc"] if p != "[key]") or "the top level"
        where += " (the key)" if "[key]" in err["loc"] else ""
        got = f" (got {shown(err['input'])})" if err["type"] != "missing" else ""
        parts.append(f"{where}: {err['msg']}{got}")
    more = exc.error_count() - _SHOWN_ERRORS
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def _check_types(path: Path, world: dict[str, Any], catalog: Catalog) -> None:
    """Every type the state prices, sizes or faults must be in the catalog (a removed type would fail later)."""
    used = {
        "world.nodes": {n["type"] for n in world.get("nodes", [])},
        "world.claims": set(world.get("claims", {})),
        "world.workloads": {w["type"] for w in world.get("workloads", {}).values()},
        "world.node_seconds": {k.split("/")[1] for k in world.get("node_seconds", {})},
        "world.schedule": {e["rtype"] for e in world.get("schedule", [])},
    }
    for field, types in used.items():
        missing = sorted(t for t in types if catalog.get(t) is None)
        if missing:
            raise ClusterError(
                f"simulated cluster state {path}: {field} uses type {missing[0]!r}, which the catalog does not "
                f"list; add the type back to the catalog, or delete the file to start afresh"
            )
