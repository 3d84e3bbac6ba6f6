"""``KubeAPI``: kmock 0.8's ``KubernetesEmulator`` plus what the real API server does and these tests rely on.

kmock's emulator stores objects and serves them back, but merges every patch into the stored dict and
knows nothing of versions. The subclass serves every request to a declared resource itself, on kmock's
object store (``self.objects``, with its history), and adds:

* ``metadata.resourceVersion`` (one counter for the server), ``generation`` (bumped when ``spec`` changes),
  ``uid`` and ``creationTimestamp``;
* **409** ``Conflict`` for a write whose ``metadata.resourceVersion`` (or delete precondition) is stale,
  and ``AlreadyExists`` for a create of a name that exists; **201** on create; **404** for a missing object
  or an undeclared resource (an uninstalled CRD);
* **label selectors** on lists (``k=v``, ``k==v``, ``k!=v``, ``k``, ``!k``, ``k in (..)``, ``k notin (..)``);
* the **status** subresource (only ``status`` is written; the main resource ignores ``status``) and the
  **scale** subresource (``autoscaling/v1`` ``Scale`` over ``spec.replicas``);
* patch types: JSON merge patch, JSON patch; a strategic merge patch on a custom resource is refused with
  **415** as the real server does (on built-in kinds it is applied as a merge patch: a known gap);
* **faults** (``Fault``), matched on method, path and the client's User-Agent, applied *before* the write
  is stored (an HTTP status: 409/429/500...), as a concurrent writer (the object changes first, so the
  request's resourceVersion is stale, or a create finds the name taken: a real 409), or after it (the
  answer is held back longer than the client waits: a timeout with the write done).
* the ``namespaces`` resource itself (kmock 0.8 parses ``/api/v1/namespaces/<name>`` as a namespace prefix
  and fails), served before kmock parses the path; and ``customresourcedefinitions``, so the opt-in
  real-cluster rig can also be pointed at this server through a kubeconfig.

``EmulatorThread`` runs the server on 127.0.0.1 in a thread with its own event loop, so the synchronous
official client can talk to it over real HTTP. Everything the request handlers touch is guarded by one
lock, which the test thread takes too (``api.lock``) when it reads the store.
"""

from __future__ import annotations

import asyncio
import copy
import re
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp.web
import jsonpatch
import kmock
from kmock._internal import dicts

BUILTIN_GROUPS = {"", "apps", "autoscaling", "batch", "policy", "networking.k8s.io", "rbac.authorization.k8s.io"}
# (group, version, plural) -> (kind, namespaced, subresources)
RESOURCES: dict[tuple[str, str, str], tuple[str, bool, tuple[str, ...]]] = {
    ("apps", "v1", "deployments"): ("Deployment", True, ("status", "scale")),
    ("", "v1", "services"): ("Service", True, ("status",)),
    ("", "v1", "nodes"): ("Node", False, ("status",)),
    ("cluster.x-k8s.io", "v1beta1", "machinedeployments"): ("MachineDeployment", True, ("status", "scale")),
    ("cluster.x-k8s.io", "v1beta1", "machines"): ("Machine", True, ("status",)),
    ("apiextensions.k8s.io", "v1", "customresourcedefinitions"): ("CustomResourceDefinition", False, ("status",)),
}


class ApiError(Exception):
    """An error the server answers with (a ``Status`` object)."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message


@dataclass
class Fault:
    """Make matching requests fail; ``times`` of them (``-1``: until removed).

    Exactly one of: ``status`` (answer with it, store nothing), ``conflict`` (a concurrent writer changes
    or creates the object first, then the request is served: a real 409), ``delay`` (store, then answer
    ``delay`` seconds late: the client times out with the write done).
    """

    method: str
    path: str  # regular expression searched in the URL path
    status: int | None = None
    conflict: bool = False
    delay: float | None = None
    times: int = 1
    agent: str = "prescale"  # only requests whose User-Agent starts with this
    hits: int = 0

    def matches(self, method: str, path: str, agent: str) -> bool:
        live = self.times < 0 or self.hits < self.times
        return (
            live and method == self.method and re.search(self.path, path) is not None and agent.startswith(self.agent)
        )


class KubeAPI(kmock.KubernetesEmulator):
    """The emulator with resourceVersions, conflicts, selectors, subresources and faults (module docstring)."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.lock = threading.RLock()
        self.faults: list[Fault] = []
        self.writes: list[tuple[str, str, int]] = []  # (method, path, status) of every answered write
        self.namespaces: dict[str, dict[str, Any]] = {}
        self._rv = 0
        for (group, version, plural), (kind, namespaced, subs) in RESOURCES.items():
            key = f"{group}/{version}/{plural}" if group else f"{version}/{plural}"
            self.resources[key] = kmock.ResourceInfo(
                kind=kind,
                namespaced=namespaced,
                subresources=set(subs),
                verbs={"get", "list", "create", "patch", "update", "delete"},
            )

    # ------------------------------------------------------------------------------------- plumbing

    def add_fault(self, fault: Fault) -> Fault:
        with self.lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        """Namespaces themselves first: kmock 0.8 reads ``/api/v1/namespaces/<name>`` as a namespace prefix."""
        parts = raw_request.path.strip("/").split("/")
        if parts[:3] == ["api", "v1", "namespaces"] and len(parts) <= 4:
            return await self._namespace(raw_request, parts[3] if len(parts) == 4 else None)
        return await super().__call__(raw_request)

    async def _namespace(self, raw: aiohttp.web.BaseRequest, name: str | None) -> aiohttp.web.StreamResponse:
        body = await raw.json() if raw.can_read_body else {}
        with self.lock:
            if raw.method == "POST":
                name = (body.get("metadata") or {}).get("name", "")
                if name in self.namespaces:
                    return _status(409, "AlreadyExists", f'namespaces "{name}" already exists')
                self.namespaces[name] = {
                    **body,
                    "metadata": {**body["metadata"], "resourceVersion": self._next_rv()},
                    "status": {"phase": "Active"},
                }
                return aiohttp.web.json_response(self.namespaces[name], status=201)
            if name is None:
                return aiohttp.web.json_response(
                    {
                        "kind": "NamespaceList",
                        "apiVersion": "v1",
                        "items": list(self.namespaces.values()),
                        "metadata": {},
                    }
                )
            if name not in self.namespaces:
                return _status(404, "NotFound", f'namespaces "{name}" not found')
            found = self.namespaces.pop(name) if raw.method == "DELETE" else self.namespaces[name]
            return aiohttp.web.json_response(found)

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        res = request.resource
        if res is None or res.plural is None or (res.group, res.version, res.plural) not in RESOURCES:
            if res is not None and res.plural is not None:
                return _status(404, "NotFound", f"the server could not find the requested resource ({res.plural})")
            return await super()._handle(request)
        method = str(request.method.value).upper()
        fault = self._fault(method, request)
        if fault is not None and fault.status is not None:
            return _status(
                fault.status,
                "Injected",
                f"injected HTTP {fault.status} before the write was stored",
                retry_after=fault.status == 429,
            )
        try:
            with self.lock:
                if fault is not None and fault.conflict:
                    self._concurrent_write(method, request)
                code, body = self._serve(method, request)
            answer = aiohttp.web.json_response(body, status=code)
        except ApiError as exc:
            code, answer = exc.code, _status(exc.code, exc.reason, exc.message)
        self._log(method, request, code)
        if fault is not None and fault.delay:
            await asyncio.sleep(fault.delay)  # whatever the answer, it comes too late
        return answer

    def _fault(self, method: str, request: kmock.Request) -> Fault | None:
        agent = _header(request, "User-Agent")
        with self.lock:
            for fault in self.faults:
                if fault.matches(method, request.url.path, agent):
                    fault.hits += 1
                    return fault
        return None

    def _log(self, method: str, request: kmock.Request, code: int) -> None:
        if method != "GET":
            with self.lock:
                self.writes.append((method, request.url.path, code))

    # ------------------------------------------------------------------------------------- serving

    def _serve(self, method: str, request: kmock.Request) -> tuple[int, Any]:
        res, ns, name, sub = request.resource, request.namespace, request.name, request.subresource
        if method == "GET" and name is None:
            return 200, self._list(res, ns, request.params)
        if method == "POST" and name is None:
            return 201, self._create(res, ns, request.data or {})
        if name is None:
            raise ApiError(405, "MethodNotAllowed", f"{method} needs an object name")
        obj = self._get(res, ns, name)
        if method == "GET":
            return 200, _scale(obj) if sub == "scale" else obj.raw
        if method == "DELETE":
            return 200, self._delete(name, obj, request.data or {})
        if method in ("PATCH", "PUT"):
            return 200, self._write(res, obj, sub, method, request)
        raise ApiError(405, "MethodNotAllowed", f"{method} is not served")

    def _get(self, res: Any, ns: str | None, name: str) -> Any:
        key = (res, ns, name)
        if key not in self.objects or self.objects[key].deleted:
            raise ApiError(404, "NotFound", f'{res.plural} "{name}" not found')
        return self.objects[key]

    def _list(self, res: Any, ns: str | None, params: dict[str, str]) -> dict[str, Any]:
        match = selector(params.get("labelSelector", ""))
        items = [
            copy.deepcopy(obj.raw)
            for (r, o_ns, _), obj in self.objects.items()
            if r == res
            and not obj.deleted
            and (ns is None or o_ns == ns)
            and match((obj.raw.get("metadata") or {}).get("labels") or {})
        ]
        kind = RESOURCES[(res.group, res.version, res.plural)][0]
        return {
            "kind": kind + "List",
            "apiVersion": _api_version(res),
            "items": items,
            "metadata": {"resourceVersion": str(self._rv)},
        }

    def _create(self, res: Any, ns: str | None, body: dict[str, Any]) -> dict[str, Any]:
        meta = body.get("metadata") or {}
        name = meta.get("name")
        if not name:
            raise ApiError(422, "Invalid", "metadata.name: Required value")
        key = (res, ns, name)
        if key in self.objects and not self.objects[key].deleted:
            raise ApiError(409, "AlreadyExists", f'{res.plural} "{name}" already exists')
        obj = copy.deepcopy(body)
        obj["metadata"] = {
            **meta,
            "namespace": ns,
            "uid": str(uuid.uuid4()),
            "generation": 1,
            "creationTimestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "resourceVersion": self._next_rv(),
        }
        if ns is None:
            obj["metadata"].pop("namespace")
        if key in self.objects:
            self.objects[key].create(obj)
        else:
            self.objects[key] = obj
        return copy.deepcopy(obj)

    def _delete(self, name: str, obj: Any, options: dict[str, Any]) -> dict[str, Any]:
        wanted = (options.get("preconditions") or {}).get("resourceVersion")
        _precondition(obj.raw, wanted, name)
        obj.delete()
        self._next_rv()
        return {"kind": "Status", "apiVersion": "v1", "status": "Success", "details": {"name": name}}

    def _write(self, res: Any, obj: Any, sub: str | None, method: str, request: kmock.Request) -> dict[str, Any]:
        current = copy.deepcopy(obj.raw)
        if sub == "scale":
            return self._write_scale(obj, current, method, request)
        if method == "PATCH":
            updated = _patched(current, request.data, _header(request, "Content-Type"), res)
        else:
            updated = copy.deepcopy(request.data or {})
        _precondition(current, (updated.get("metadata") or {}).get("resourceVersion"), current["metadata"]["name"])
        if sub == "status":
            new = {**current, "status": updated.get("status") or {}}
        else:
            new = {
                **updated,
                "status": current.get("status"),
                "metadata": {
                    **(updated.get("metadata") or {}),
                    **{
                        k: current["metadata"][k]
                        for k in ("name", "uid", "creationTimestamp", "generation")
                        if k in current["metadata"]
                    },
                },
            }
            if current["metadata"].get("namespace"):
                new["metadata"]["namespace"] = current["metadata"]["namespace"]
            if new.get("spec") != current.get("spec"):
                new["metadata"]["generation"] = int(current["metadata"].get("generation") or 1) + 1
            if new.get("status") is None:
                new.pop("status")
        new["metadata"]["resourceVersion"] = self._next_rv()
        obj.history.append(new)
        return copy.deepcopy(new)

    def _write_scale(self, obj: Any, current: dict[str, Any], method: str, request: kmock.Request) -> dict[str, Any]:
        body = request.data or {}
        if method == "PATCH":
            body = _patched(_scale(obj), body, _header(request, "Content-Type"), None)
        _precondition(current, (body.get("metadata") or {}).get("resourceVersion"), current["metadata"]["name"])
        replicas = (body.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise ApiError(422, "Invalid", f"spec.replicas must be a whole number >= 0, got {replicas!r}")
        if (current.get("spec") or {}).get("replicas") != replicas:
            current.setdefault("spec", {})["replicas"] = replicas
            current["metadata"]["generation"] = int(current["metadata"].get("generation") or 1) + 1
        current["metadata"]["resourceVersion"] = self._next_rv()
        obj.history.append(current)
        return _scale(obj)

    def _concurrent_write(self, method: str, request: kmock.Request) -> None:
        """Another writer gets in first: annotate the object (new resourceVersion), or create the name."""
        res, ns, name = request.resource, request.namespace, request.name
        if method == "POST":
            body = copy.deepcopy(request.data or {})
            body.setdefault("metadata", {}).setdefault("annotations", {})["test/created-by"] = "someone-else"
            self._create(res, ns, body)
            return
        obj = self._get(res, ns, name)
        other = copy.deepcopy(obj.raw)
        other["metadata"].setdefault("annotations", {})["test/touched-by"] = "someone-else"
        other["metadata"]["resourceVersion"] = self._next_rv()
        obj.history.append(other)

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    # ----------------------------------------------------------------------------- test-side access

    def get(self, plural: str, ns: str | None, name: str) -> dict[str, Any] | None:
        """The stored object (a copy), or None."""
        res = _resource(plural)
        with self.lock:
            key = (res, ns, name)
            if key not in self.objects or self.objects[key].deleted:
                return None
            return copy.deepcopy(self.objects[key].raw)

    def all(self, plural: str) -> list[dict[str, Any]]:
        res = _resource(plural)
        with self.lock:
            return [copy.deepcopy(o.raw) for (r, _, _), o in self.objects.items() if r == res and not o.deleted]


class EmulatorThread:
    """A ``KubeAPI`` served on 127.0.0.1 from a background thread with its own event loop."""

    def __init__(self, api: KubeAPI) -> None:
        self.api = api
        self.url = ""
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="kube-api", daemon=True)

    def start(self) -> str:
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            raise RuntimeError(f"the emulated API server did not start: {self._error!r}")
        return self.url

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        async with self.api, kmock.Server(self.api, host="127.0.0.1") as server:
            self.url = str(server.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()


# ------------------------------------------------------------------------------------------------ helpers


def selector(text: str):
    """A predicate over a label dict for a Kubernetes label selector string."""
    terms = [t.strip() for t in re.split(r",(?![^(]*\))", text) if t.strip()]
    checks = [_term(t) for t in terms]
    return lambda labels: all(check(labels) for check in checks)


def _term(term: str):
    if m := re.fullmatch(r"([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)", term):
        key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if m := re.fullmatch(r"([\w./-]+)\s*(==|=|!=)\s*([\w./-]*)", term):
        key, op, value = m.groups()
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if m := re.fullmatch(r"!([\w./-]+)", term):
        return lambda labels: m.group(1) not in labels
    if re.fullmatch(r"[\w./-]+", term):
        return lambda labels: term in labels
    raise ApiError(400, "BadRequest", f"unable to parse requirement: {term!r}")


def _patched(current: dict[str, Any], patch: Any, content_type: str, res: Any) -> dict[str, Any]:
    kind = content_type.split(";")[0].strip()
    if kind == "application/json-patch+json":
        if not isinstance(patch, list):
            raise ApiError(400, "BadRequest", "a JSON patch must be a list of operations")
        return jsonpatch.apply_patch(current, patch)
    if kind == "application/strategic-merge-patch+json" and res is not None and res.group not in BUILTIN_GROUPS:
        raise ApiError(
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: "
            "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
        )
    if kind not in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
        raise ApiError(415, "UnsupportedMediaType", f"unsupported patch type {kind!r}")
    if not isinstance(patch, dict):
        raise ApiError(400, "BadRequest", "a merge patch must be an object")
    return dict(dicts.merge_patch_dict(current, patch))


def _precondition(current: dict[str, Any], wanted: str | None, name: str) -> None:
    have = current["metadata"].get("resourceVersion")
    if wanted is not None and str(wanted) != str(have):
        raise ApiError(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on "{name}": the object has been '
            "modified; please apply your changes to the latest version and try again",
        )


def _scale(obj: Any) -> dict[str, Any]:
    raw = obj.raw
    meta = raw["metadata"]
    labels = ((raw.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {
            k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in meta
        },
        "spec": {"replicas": (raw.get("spec") or {}).get("replicas", 0)},
        "status": {
            "replicas": (raw.get("status") or {}).get("replicas", 0),
            "selector": ",".join(f"{k}={v}" for k, v in labels.items()),
        },
    }


def _status(code: int, reason: str, message: str, *, retry_after: bool = False) -> aiohttp.web.Response:
    headers = {"Retry-After": "1"} if retry_after else None
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    return aiohttp.web.json_response(body, status=code, headers=headers)


def _header(request: kmock.Request, name: str) -> str:
    return next((v for k, v in request.headers.items() if k.lower() == name.lower()), "")


def _api_version(res: Any) -> str:
    return f"{res.group}/{res.version}" if res.group else res.version


def _resource(plural: str) -> Any:
    for group, version, name in RESOURCES:
        if name == plural:
            return kmock.resource(group, version, name)
    raise KeyError(f"undeclared resource {plural!r}; declare it in RESOURCES")
