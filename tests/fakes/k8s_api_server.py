"""A real HTTP server speaking the part of the Kubernetes REST API that the official
``kubernetes`` Python client (30.x, ``CustomObjectsApi``) and the ``kserve`` SDK call for custom
objects, generically: any group, version, namespace and plural.

Routes (``{ns}`` routes for namespaced objects, the same without ``namespaces/{ns}/`` for
cluster-scoped ones; ``/status`` is the status subresource):

- ``POST   /apis/{group}/{version}/namespaces/{ns}/{plural}``                 create
- ``GET    /apis/{group}/{version}/namespaces/{ns}/{plural}``                 list (``labelSelector``,
  ``fieldSelector=metadata.name=x``, ``watch=true`` with ``timeoutSeconds``)
- ``GET    /apis/{group}/{version}/{plural}``                                 list in every namespace
- ``GET    /apis/{group}/{version}/namespaces/{ns}/{plural}/{name}[/status]``  get
- ``PUT    .../{name}[/status]``                                             replace (needs
  ``metadata.resourceVersion``; a stale one is 409 Conflict)
- ``PATCH  .../{name}[/status]``  ``application/merge-patch+json`` (RFC 7386) or
  ``application/json-patch+json`` (RFC 6902). ``application/strategic-merge-patch+json`` is
  415 as on a real API server (custom resources do not support it); the 30.x client sends
  merge-patch for ``patch_*_custom_object``.
- ``DELETE .../{name}``                                                       returns the object

Bookkeeping as the API server does it for a custom resource with the status subresource:
``metadata.uid``, ``creationTimestamp``, ``namespace``, ``generateName``; a cluster-wide
``resourceVersion`` bumped by every write; ``generation`` starts at 1 and grows only when
something other than ``metadata``/``status`` changes; writes to the main resource ignore
``status`` and writes to ``/status`` change only ``status``; ``dryRun=All`` stores nothing.
Errors are ``kind: Status`` objects (``reason`` NotFound / AlreadyExists / Conflict / Invalid /
UnsupportedMediaType / BadRequest) with the HTTP code, which the client raises as
``kubernetes.client.ApiException``.

Objects are stored per (group, plural, namespace, name), not per version: a request for another
version of the group sees the same object with that ``apiVersion`` (no conversion, as a CRD with
``conversion: None``).

A controller stand-in: ``on_write(group, plural, react, delay=0)`` calls ``react(server, obj)``
after every create/replace/patch of the main resource (in a thread after ``delay`` seconds when
``delay > 0``); ``react`` typically calls ``set_status``. ``kserve_controller(...)`` returns a
``react`` that sets what the KServe controller sets on an InferenceService (``Ready``,
``PredictorReady`` ... conditions, ``components.predictor`` revisions and the ``traffic`` split
for ``canaryTrafficPercent``, ``observedGeneration``, ``url``).

Every request is recorded (method, path, query, content type, JSON body).

    with K8sApiServer() as server:
        api = kubernetes.client.CustomObjectsApi(server.api_client())
        api.create_namespaced_custom_object("kubeflow.org", "v1", "ns", "tfjobs", body)
        server.set_status("kubeflow.org", "tfjobs", "ns", "name", {"conditions": [...]})
        server.requests_to("POST")
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import itertools
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Optional
from urllib.parse import parse_qs, unquote, urlparse

from tests.fakes.http_server import FakeHttpServer

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
REASON = {
    400: "BadRequest",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "AlreadyExists",
    415: "UnsupportedMediaType",
    422: "Invalid",
    500: "InternalError",
}
# metadata fields the server owns: a client cannot set or change them
SERVER_METADATA = ("uid", "creationTimestamp", "generation", "resourceVersion", "managedFields")


@dataclasses.dataclass
class Request:
    method: str
    path: str  # unquoted, without the query
    query: dict  # name -> first value
    content_type: str
    body: object  # parsed JSON or None


class ApiError(Exception):
    def __init__(
        self, code: int, message: str, reason: Optional[str] = None, details: Optional[dict] = None
    ):
        super().__init__(message)
        self.code, self.message = code, message
        self.reason = reason or REASON.get(code, "Unknown")
        self.details = details

    def status(self) -> dict:
        out = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            out["details"] = self.details
        return out


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(target: object, patch: object) -> object:
    """RFC 7386 JSON Merge Patch: objects merge recursively, ``null`` removes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _pointer(path: str) -> list:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ApiError(422, f"invalid JSON pointer {path!r}", "Invalid")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc: object, tokens: list, path: str):
    node = doc
    for tok in tokens[:-1]:
        if isinstance(node, dict) and tok in node:
            node = node[tok]
        elif isinstance(node, list) and tok.isdigit() and int(tok) < len(node):
            node = node[int(tok)]
        else:
            raise ApiError(
                422,
                f"the server rejected our request due to an error in our request: "
                f"jsonpatch path {path!r} does not exist",
                "Invalid",
            )
    return node


def _get(doc: object, path: str) -> object:
    tokens = _pointer(path)
    if not tokens:
        return doc
    parent, last = _parent(doc, tokens, path), tokens[-1]
    if isinstance(parent, dict) and last in parent:
        return parent[last]
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent[int(last)]
    raise ApiError(422, f"jsonpatch path {path!r} does not exist", "Invalid")


def _remove(doc: object, path: str) -> object:
    tokens = _pointer(path)
    parent, last = _parent(doc, tokens, path), tokens[-1]
    if isinstance(parent, dict) and last in parent:
        return parent.pop(last)
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent.pop(int(last))
    raise ApiError(
        422, f"jsonpatch remove operation does not apply: doc is missing path: {path}", "Invalid"
    )


def _add(doc: object, path: str, value: object, replace: bool = False) -> object:
    tokens = _pointer(path)
    if not tokens:
        return copy.deepcopy(value)
    parent, last = _parent(doc, tokens, path), tokens[-1]
    if isinstance(parent, dict):
        if replace and last not in parent:
            raise ApiError(
                422,
                f"jsonpatch replace operation does not apply: doc is missing key: {path}",
                "Invalid",
            )
        parent[last] = copy.deepcopy(value)
    elif isinstance(parent, list):
        if last == "-" and not replace:
            parent.append(copy.deepcopy(value))
        elif last.isdigit() and int(last) <= len(parent) - (1 if replace else 0):
            if replace:
                parent[int(last)] = copy.deepcopy(value)
            else:
                parent.insert(int(last), copy.deepcopy(value))
        else:
            raise ApiError(422, f"jsonpatch index out of range: {path}", "Invalid")
    else:
        raise ApiError(422, f"jsonpatch path {path!r} does not exist", "Invalid")
    return doc


def json_patch(doc: object, ops: object) -> object:
    """RFC 6902 JSON Patch (add, remove, replace, move, copy, test) on a copy of ``doc``."""
    if not isinstance(ops, list):
        raise ApiError(
            400, "the body of a json-patch must be a JSON array of operations", "BadRequest"
        )
    doc = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise ApiError(422, f"invalid jsonpatch operation {op!r}", "Invalid")
        kind, path = op["op"], op["path"]
        if kind in ("add", "replace", "test") and "value" not in op:
            raise ApiError(422, f"jsonpatch {kind} operation has no value", "Invalid")
        if kind == "add":
            doc = _add(doc, path, op["value"])
        elif kind == "replace":
            doc = _add(doc, path, op["value"], replace=True)
        elif kind == "remove":
            _remove(doc, path)
        elif kind == "move":
            doc = _add(doc, path, _remove(doc, op["from"]))
        elif kind == "copy":
            doc = _add(doc, path, copy.deepcopy(_get(doc, op["from"])))
        elif kind == "test":
            if _get(doc, path) != op["value"]:
                raise ApiError(422, f"testing value {path} failed", "Invalid")
        else:
            raise ApiError(422, f"unexpected jsonpatch operation {kind!r}", "Invalid")
    return doc


def _label_selector(expr: str) -> list:
    """Equality-based selectors (``a=b``, ``a==b``, ``a!=b``, ``a``, ``!a``), comma-joined."""
    terms = []
    for part in filter(None, (p.strip() for p in expr.split(","))):
        m = re.fullmatch(r"([\w./-]+)\s*(==|=|!=)\s*([\w.-]*)", part)
        if m:
            terms.append((m.group(1), "!=" if m.group(2) == "!=" else "=", m.group(3)))
        elif re.fullmatch(r"!?[\w./-]+", part):
            terms.append((part.lstrip("!"), "absent" if part.startswith("!") else "exists", None))
        else:
            raise ApiError(400, f"unable to parse requirement: {part!r}", "BadRequest")
    return terms


def _selected(obj: dict, labels: list, fields: list) -> bool:
    have = obj["metadata"].get("labels") or {}
    for key, op, value in labels:
        if (op == "=" and have.get(key) != value) or (op == "!=" and have.get(key) == value):
            return False
        if (op == "exists" and key not in have) or (op == "absent" and key in have):
            return False
    for key, op, value in fields:
        actual = {
            "metadata.name": obj["metadata"]["name"],
            "metadata.namespace": obj["metadata"].get("namespace"),
        }.get(key)
        if (op == "=" and actual != value) or (op == "!=" and actual == value):
            return False
    return True


def _field_selector(expr: str) -> list:
    terms = []
    for part in filter(None, (p.strip() for p in expr.split(","))):
        m = re.fullmatch(r"(metadata\.name|metadata\.namespace)\s*(==|=|!=)\s*(.*)", part)
        if not m:
            raise ApiError(
                400, f"field label not supported: {part.split('=')[0].rstrip('!')}", "BadRequest"
            )
        terms.append((m.group(1), "!=" if m.group(2) == "!=" else "=", m.group(3)))
    return terms


class K8sApiServer(FakeHttpServer):
    """In-memory Kubernetes API for custom objects on 127.0.0.1:<free port>, served from a thread."""

    thread_name = "fake-k8s-api"
    poll_interval = 0.05

    def __init__(self):
        self.requests: list = []
        self.objects: dict = {}  # (group, plural, namespace or "", name) -> object json (stored version)
        self.fail: dict = {}  # (method, plural) -> (http code, message): answer that request with an error
        self._reactors: list = []  # (group, plural, react, delay)
        self._events: list = []  # (resourceVersion int, type, key, object) for watches
        self._rv = itertools.count(1)
        self._last_rv = 0
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._stopping = False

    # ------------------------------------------------------------------ lifecycle

    def start(self):
        super().start()
        # FakeHttpServer's handler has no PUT; the Kubernetes API needs it (replace)
        self._httpd.RequestHandlerClass.do_PUT = lambda h: self._handle(h, "PUT")
        self._stopping = False
        return self

    def stop(self) -> None:
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        super().stop()

    def api_client(self):
        """A ``kubernetes.client.ApiClient`` pointed at this server (no credentials)."""
        from kubernetes import client

        config = client.Configuration()
        config.host = self.url
        return client.ApiClient(config)

    # ------------------------------------------------------------------ assertions and hooks

    def requests_to(self, method: Optional[str] = None, plural: Optional[str] = None) -> list:
        """Recorded requests, optionally of one method and/or one plural (``inferenceservices``)."""
        out = []
        for r in self.requests:
            if method and r.method != method:
                continue
            if plural and f"/{plural}" not in r.path:
                continue
            out.append(r)
        return out

    def writes(self, plural: Optional[str] = None) -> list:
        """Recorded POST/PUT/PATCH/DELETE requests (what changed, or tried to change, the store)."""
        return [
            r
            for r in self.requests_to(plural=plural)
            if r.method in ("POST", "PUT", "PATCH", "DELETE")
        ]

    def get(self, group: str, plural: str, namespace: Optional[str], name: str) -> Optional[dict]:
        """A copy of the stored object, or None."""
        with self._lock:
            obj = self.objects.get((group, plural, namespace or "", name))
            return copy.deepcopy(obj)

    def put_object(self, group: str, plural: str, obj: dict) -> dict:
        """Store an object directly (as if created earlier by someone else); returns it."""
        with self._lock:
            meta = obj.setdefault("metadata", {})
            key = (group, plural, meta.get("namespace", ""), meta["name"])
            stored = self._stamp(copy.deepcopy(obj), None)
            self.objects[key] = stored
            self._event("ADDED", key, stored)
            return copy.deepcopy(stored)

    def set_status(
        self,
        group: str,
        plural: str,
        namespace: Optional[str],
        name: str,
        status: dict,
        merge: bool = True,
    ) -> dict:
        """Set ``status`` as a controller would (merge-patch by default): bumps resourceVersion,
        never generation. Returns the stored object."""
        with self._lock:
            key = (group, plural, namespace or "", name)
            obj = self.objects.get(key)
            if obj is None:
                raise KeyError(f"no {plural}.{group} {namespace}/{name}")
            new = copy.deepcopy(obj)
            new["status"] = (
                merge_patch(obj.get("status") or {}, status) if merge else copy.deepcopy(status)
            )
            new["metadata"]["resourceVersion"] = self._next_rv()
            self.objects[key] = new
            self._event("MODIFIED", key, new)
            return copy.deepcopy(new)

    def on_write(self, group: str, plural: str, react: Callable, delay: float = 0.0) -> None:
        """After each create/replace/patch of a (group, plural) object, call ``react(server, obj)``."""
        self._reactors.append((group, plural, react, delay))

    # ------------------------------------------------------------------ internals

    def _next_rv(self) -> str:
        self._last_rv = next(self._rv)
        return str(self._last_rv)

    def _event(self, kind: str, key: tuple, obj: dict) -> None:
        self._events.append(
            (int(obj["metadata"]["resourceVersion"]), kind, key, copy.deepcopy(obj))
        )
        self._changed.notify_all()

    def _stamp(self, obj: dict, old: Optional[dict]) -> dict:
        meta = obj["metadata"]
        if old is None:
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now()
            meta["generation"] = 1
        else:
            for f in ("uid", "creationTimestamp", "generation"):
                meta[f] = old["metadata"][f]
            spec_of = lambda o: {
                k: v for k, v in o.items() if k not in ("metadata", "status", "apiVersion", "kind")
            }  # noqa: E731
            if spec_of(obj) != spec_of(old):
                meta["generation"] = old["metadata"]["generation"] + 1
        meta.pop("managedFields", None)
        meta["resourceVersion"] = self._next_rv()
        return obj

    def _react(self, group: str, plural: str, obj: dict) -> None:
        for g, p, react, delay in self._reactors:
            if g != group or p != plural:
                continue
            name, ns = obj["metadata"]["name"], obj["metadata"].get("namespace")

            def run(react=react, ns=ns, name=name):
                current = self.get(group, plural, ns, name)
                if current is not None and not self._stopping:
                    react(self, current)

            if delay > 0:
                t = threading.Timer(delay, run)
                t.daemon = True
                t.start()
            else:
                run()

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urlparse(h.path)
        path = unquote(url.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        ctype = (h.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        body = None
        try:
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError as e:
                    body = raw.decode(errors="replace")
                    if ctype != APPLY_PATCH:
                        raise ApiError(
                            400,
                            "the body of the request was in an unknown format - "
                            "accepted media types include: application/json",
                            "BadRequest",
                        ) from e
            with self._lock:
                self.requests.append(Request(method, path, query, ctype, copy.deepcopy(body)))
            if (
                str(query.get("watch", "")).lower() in ("true", "1", "t") and method == "GET"
            ):  # Go ParseBool
                return self._watch(h, path, query)
            status, payload, reacted = self._route(method, path, query, ctype, body)
        except ApiError as e:
            return self._send(h, e.code, e.status())
        self._send(h, status, payload)
        if reacted is not None:
            self._react(*reacted)

    def _parse(self, path: str) -> tuple:
        """(group, version, namespace or "", plural, name or None, subresource or None)."""
        m = re.fullmatch(
            r"/apis/([^/]+)/([^/]+)(?:/namespaces/([^/]+))?/([^/]+)(?:/([^/]+))?(?:/([^/]+))?/?",
            path,
        )
        if not m:
            raise ApiError(
                404, f"the server could not find the requested resource ({path})", "NotFound"
            )
        group, version, ns, plural, name, sub = m.groups()
        if sub not in (None, "status"):
            raise ApiError(
                404, f"the server could not find the requested resource ({path})", "NotFound"
            )
        return group, version, ns or "", plural, name, sub

    def _route(self, method: str, path: str, query: dict, ctype: str, body: object) -> tuple:
        group, version, ns, plural, name, sub = self._parse(path)
        if (method, plural) in self.fail:
            code, message = self.fail[(method, plural)]
            raise ApiError(code, message)
        dry = query.get("dryRun") == "All"
        what = f"{plural}.{group}"
        details = {"name": name, "group": group, "kind": plural} if name else None
        with self._lock:
            key = (group, plural, ns, name)
            old = self.objects.get(key) if name else None
            if method == "GET" and name is None:
                return 200, self._list(group, version, ns, plural, query), None
            if method == "POST" and name is None:
                return self._create(group, version, ns, plural, body, dry)
            if name is None:
                raise ApiError(
                    405,
                    "the server does not allow this method on the requested resource",
                    "MethodNotAllowed",
                )
            if method == "POST":
                raise ApiError(
                    405,
                    "the server does not allow this method on the requested resource",
                    "MethodNotAllowed",
                )
            if old is None:
                raise ApiError(404, f'{what} "{name}" not found', "NotFound", details)
            if method == "GET":
                return 200, self._out(old, group, version), None
            if method == "DELETE":
                if not dry:
                    del self.objects[key]
                    gone = copy.deepcopy(old)
                    gone["metadata"]["resourceVersion"] = self._next_rv()
                    self._event("DELETED", key, gone)
                return 200, self._out(old, group, version), None
            if method == "PUT":
                if not isinstance(body, dict):
                    raise ApiError(400, "the body of a replace must be a JSON object", "BadRequest")
                meta = body.get("metadata") or {}
                if meta.get("name", name) != name:
                    raise ApiError(
                        400,
                        f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})",
                        "BadRequest",
                    )
                rv = meta.get("resourceVersion")
                if not rv:
                    raise ApiError(
                        422,
                        f'{what} "{name}" is invalid: metadata.resourceVersion: Invalid value: 0x0: '
                        "must be specified for an update",
                        "Invalid",
                        details,
                    )
                if rv != old["metadata"]["resourceVersion"]:
                    raise ApiError(
                        409,
                        f'Operation cannot be fulfilled on {what} "{name}": the object has been '
                        "modified; please apply your changes to the latest version and try again",
                        "Conflict",
                        details,
                    )
                new = body
            elif method == "PATCH":
                current = self._out(old, group, version)
                if ctype == MERGE_PATCH:
                    if not isinstance(body, dict):
                        raise ApiError(400, "a merge patch must be a JSON object", "BadRequest")
                    new = merge_patch(current, body)
                elif ctype == JSON_PATCH:
                    new = json_patch(current, body)
                elif ctype in (STRATEGIC_PATCH, APPLY_PATCH):
                    raise ApiError(
                        415,
                        f"the body of the request was in an unknown format - accepted media types "
                        f"include: {JSON_PATCH}, {MERGE_PATCH}, {APPLY_PATCH}"
                        if ctype == STRATEGIC_PATCH
                        else f"{APPLY_PATCH} (server-side apply) is not implemented by this stand-in",
                        "UnsupportedMediaType",
                    )
                else:
                    raise ApiError(
                        415,
                        f"the body of the request was in an unknown format - accepted media types "
                        f"include: {JSON_PATCH}, {MERGE_PATCH}, {APPLY_PATCH}",
                        "UnsupportedMediaType",
                    )
                if not isinstance(new, dict):
                    raise ApiError(422, "the patched object is not a JSON object", "Invalid")
                rv = (new.get("metadata") or {}).get("resourceVersion")
                if rv and rv != old["metadata"]["resourceVersion"]:
                    raise ApiError(
                        409,
                        f'Operation cannot be fulfilled on {what} "{name}": the object has been '
                        "modified; please apply your changes to the latest version and try again",
                        "Conflict",
                        details,
                    )
            else:
                raise ApiError(
                    405,
                    "the server does not allow this method on the requested resource",
                    "MethodNotAllowed",
                )
            stored = self._write(old, new, sub, group, version, ns, plural, name)
            if dry:
                return 200, self._out(stored, group, version), None
            self.objects[key] = stored
            self._event("MODIFIED", key, stored)
            return (
                200,
                self._out(stored, group, version),
                ((group, plural, stored) if sub is None else None),
            )

    def _write(
        self,
        old: dict,
        new: dict,
        sub: Optional[str],
        group: str,
        version: str,
        ns: str,
        plural: str,
        name: str,
    ) -> dict:
        """The object a replace/patch stores: the status subresource splits what each route may change."""
        new = copy.deepcopy(new)
        if sub == "status":
            out = copy.deepcopy(old)
            out["status"] = new.get("status")
            if out["status"] is None:
                out.pop("status")
            out["metadata"]["resourceVersion"] = self._next_rv()
            return out
        meta = new.setdefault("metadata", {})
        meta["name"], meta["namespace"] = name, ns or None
        if not ns:
            meta.pop("namespace")
        self._check_kind(new, old.get("kind"), group, version)
        if "status" in old:
            new["status"] = copy.deepcopy(old["status"])
        else:
            new.pop("status", None)
        return self._stamp(new, old)

    def _check_kind(self, obj: dict, kind: Optional[str], group: str, version: str) -> None:
        if not obj.get("kind"):
            raise ApiError(400, "Object 'Kind' is missing in the request body", "BadRequest")
        if kind and obj["kind"] != kind:
            raise ApiError(
                400,
                f"the kind of the object ({obj['kind']}) does not match the stored kind ({kind})",
                "BadRequest",
            )
        api_version = obj.get("apiVersion")
        if api_version != f"{group}/{version}":
            raise ApiError(
                400,
                f"the API version in the data ({api_version}) does not match the expected API "
                f"version ({group}/{version})",
                "BadRequest",
            )

    def _create(
        self, group: str, version: str, ns: str, plural: str, body: object, dry: bool
    ) -> tuple:
        if not isinstance(body, dict):
            raise ApiError(400, "the body of a create must be a JSON object", "BadRequest")
        obj = copy.deepcopy(body)
        self._check_kind(obj, None, group, version)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name"):
            if meta.get("generateName"):
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            else:
                raise ApiError(
                    422,
                    f"{plural}.{group} is invalid: metadata.name: Required value: name or "
                    "generateName is required",
                    "Invalid",
                )
        name = meta["name"]
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", name):
            raise ApiError(
                422,
                f'{plural}.{group} "{name}" is invalid: metadata.name: Invalid value: "{name}": a '
                "lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
                "'-' or '.'",
                "Invalid",
                {"name": name, "group": group, "kind": plural},
            )
        if meta.get("namespace") and ns and meta["namespace"] != ns:
            raise ApiError(
                400,
                "the namespace of the provided object does not match the namespace sent on the request",
                "BadRequest",
            )
        if ns:
            meta["namespace"] = ns
        for f in SERVER_METADATA:
            meta.pop(f, None)
        obj.pop("status", None)  # the status subresource: create ignores status
        key = (group, plural, ns, name)
        if key in self.objects:
            raise ApiError(
                409,
                f'{plural}.{group} "{name}" already exists',
                "AlreadyExists",
                {"name": name, "group": group, "kind": plural},
            )
        stored = self._stamp(obj, None)
        if dry:
            return 201, self._out(stored, group, version), None
        self.objects[key] = stored
        self._event("ADDED", key, stored)
        return 201, self._out(stored, group, version), (group, plural, stored)

    @staticmethod
    def _out(obj: dict, group: str, version: str) -> dict:
        out = copy.deepcopy(obj)
        out["apiVersion"] = f"{group}/{version}"
        return out

    def _matching(self, group: str, ns: str, plural: str, query: dict) -> list:
        labels = _label_selector(query.get("labelSelector", ""))
        fields = _field_selector(query.get("fieldSelector", ""))
        return [
            (k, o)
            for k, o in sorted(self.objects.items())
            if k[0] == group
            and k[1] == plural
            and (not ns or k[2] == ns)
            and _selected(o, labels, fields)
        ]

    def _list(self, group: str, version: str, ns: str, plural: str, query: dict) -> dict:
        items = [self._out(o, group, version) for _, o in self._matching(group, ns, plural, query)]
        kind = items[0]["kind"] + "List" if items else "List"
        return {
            "apiVersion": f"{group}/{version}",
            "kind": kind,
            "items": items,
            "metadata": {"resourceVersion": str(self._last_rv), "continue": ""},
        }

    def _watch(self, h: BaseHTTPRequestHandler, path: str, query: dict) -> None:
        """``?watch=true``: ADDED for what exists (or the events after ``resourceVersion``), then every
        change as it happens, one JSON event a line (chunked), until ``timeoutSeconds`` or stop."""
        try:
            group, version, ns, plural, name, sub = self._parse(path)
        except ApiError as e:
            return self._send(h, e.code, e.status())
        if name is not None:
            e = ApiError(405, "watch is on a collection", "MethodNotAllowed")
            return self._send(h, e.code, e.status())
        timeout = float(query.get("timeoutSeconds") or 1800)
        deadline = time.monotonic() + timeout
        try:
            labels, fields = (
                _label_selector(query.get("labelSelector", "")),
                _field_selector(query.get("fieldSelector", "")),
            )
        except ApiError as e:
            return self._send(h, e.code, e.status())
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()

        def chunk(data: bytes) -> None:
            h.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            h.wfile.flush()

        def wanted(key: tuple, obj: dict) -> bool:
            return (
                key[0] == group
                and key[1] == plural
                and (not ns or key[2] == ns)
                and _selected(obj, labels, fields)
            )

        try:
            with self._changed:
                since = query.get("resourceVersion")
                if since and since != "0":
                    seen = int(since)
                    pending = [(t, o) for rv, t, k, o in self._events if rv > seen and wanted(k, o)]
                else:
                    pending = [
                        ("ADDED", o) for k, o in sorted(self.objects.items()) if wanted(k, o)
                    ]
                seen = self._last_rv
            while True:
                for kind, obj in pending:
                    chunk(
                        json.dumps(
                            {"type": kind, "object": self._out(obj, group, version)}
                        ).encode()
                        + b"\n"
                    )
                with self._changed:
                    while not self._stopping and time.monotonic() < deadline:
                        new = [(rv, t, k, o) for rv, t, k, o in self._events if rv > seen]
                        if new:
                            break
                        self._changed.wait(min(0.2, max(0.0, deadline - time.monotonic())))
                    else:
                        new = None
                    if new is None:
                        break
                    seen = max(rv for rv, *_ in new)
                    pending = [(t, o) for rv, t, k, o in new if wanted(k, o)]
            chunk(b"")
        except (BrokenPipeError, ConnectionResetError):
            pass
        h.close_connection = True


# ---------------------------------------------------------------------- a KServe controller stand-in

KSERVE_GROUP = "serving.kserve.io"
ISVC_PLURAL = "inferenceservices"


def kserve_controller(
    ready: bool = True,
    reason: str = "RevisionFailed",
    message: str = "Revision failed to become ready",
    domain: str = "example.com",
) -> Callable:
    """A ``react`` for ``on_write(KSERVE_GROUP, ISVC_PLURAL, ...)`` doing what KServe's controller
    does for a serverless InferenceService's predictor, in the shape of its v1beta1 status.

    Each change of ``spec.predictor`` makes a new revision ``<name>-predictor-0000N``. With
    ``canaryTrafficPercent`` p < 100 the new revision gets p % (tag ``latest``) and the last
    rolled-out revision 100 - p % (tag ``prev``); without it (or 100) the new revision takes
    100 % and becomes the rolled-out one. ``ready=False`` leaves the new revision failing:
    ``PredictorReady``/``Ready`` False with ``reason``/``message`` and traffic unchanged; the
    returned function's ``ready`` attribute can be changed between writes. KServe copies the
    InferenceService's annotations into the revision template, so a change of them also makes a
    new revision.
    """

    history: dict = {}  # (namespace, name) -> [[revision name, predictor spec without the canary], ...]

    def react(server: K8sApiServer, obj: dict) -> None:
        meta, spec = obj["metadata"], obj.get("spec") or {}
        status = copy.deepcopy(obj.get("status") or {})
        name, ns = meta["name"], meta.get("namespace", "")
        predictor = spec.get("predictor") or {}
        comp = status.setdefault("components", {}).setdefault("predictor", {})
        revisions = history.setdefault((ns, name), [])
        pred_no_canary = {k: v for k, v in predictor.items() if k != "canaryTrafficPercent"}
        pred_no_canary["annotations"] = meta.get("annotations") or {}
        if not revisions or revisions[-1][1] != pred_no_canary:
            revisions.append([f"{name}-predictor-{len(revisions) + 1:05d}", pred_no_canary])
        latest = revisions[-1][0]
        comp["latestCreatedRevision"] = latest
        host = f"{name}-predictor.{ns}.{domain}"
        comp["url"] = f"http://{host}"
        t = now()
        if react.ready:
            comp["latestReadyRevision"] = latest
            canary = predictor.get("canaryTrafficPercent")
            stable = comp.get("latestRolledoutRevision")
            if canary is None or canary >= 100 or stable in (None, latest):
                if stable and stable != latest:
                    comp["previousRolledoutRevision"] = stable
                comp["latestRolledoutRevision"] = latest
                comp["traffic"] = [
                    {
                        "tag": "latest",
                        "revisionName": latest,
                        "percent": 100,
                        "latestRevision": True,
                        "url": f"http://latest-{host}",
                    }
                ]
            else:
                comp["traffic"] = [
                    {
                        "tag": "latest",
                        "revisionName": latest,
                        "percent": int(canary),
                        "latestRevision": True,
                        "url": f"http://latest-{host}",
                    },
                    {
                        "tag": "prev",
                        "revisionName": stable,
                        "percent": 100 - int(canary),
                        "latestRevision": False,
                        "url": f"http://prev-{host}",
                    },
                ]
            conds = [
                {"type": c, "status": "True", "lastTransitionTime": t}
                for c in (
                    "IngressReady",
                    "LatestDeploymentReady",
                    "PredictorConfigurationReady",
                    "PredictorReady",
                    "PredictorRouteReady",
                    "Ready",
                )
            ]
        else:
            conds = [{"type": "IngressReady", "status": "True", "lastTransitionTime": t}] + [
                {
                    "type": c,
                    "status": "False",
                    "reason": reason,
                    "message": message,
                    "lastTransitionTime": t,
                }
                for c in (
                    "LatestDeploymentReady",
                    "PredictorConfigurationReady",
                    "PredictorReady",
                    "Ready",
                )
            ]
        status["conditions"] = conds
        status["observedGeneration"] = meta["generation"]
        status["url"] = f"http://{name}.{ns}.{domain}"
        status["address"] = {"url": f"http://{name}-predictor.{ns}.svc.cluster.local"}
        server.set_status(KSERVE_GROUP, ISVC_PLURAL, ns, name, status, merge=False)

    react.ready = ready
    return react
