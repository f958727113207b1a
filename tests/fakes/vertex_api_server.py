"""A real HTTP server speaking the part of the Vertex AI v1 REST API that
``google-cloud-aiplatform`` 2.x calls (with ``api_transport="rest"``) to version a model in the
Model Registry and deploy it to an endpoint:

- ModelService: ``models`` list (``filter``), ``models:upload`` (long-running), ``models/{id}``
  get (also ``@<version id>`` and ``@<alias>``), ``:listVersions`` (``labels.k="v"`` filter),
  ``:mergeVersionAliases``;
- EndpointService: ``endpoints`` list / create (long-running) / get / patch (UpdateEndpoint:
  ``trafficSplit``, ``displayName``, ``description``, ``labels``), ``:deployModel`` (long-running;
  keeps ``deployedModels`` and ``trafficSplit``);
- JobService: ``customJobs`` create / get / ``:cancel`` (worker pools checked as Vertex does; a job
  runs when polled and ends as ``custom_job_outcome`` says);
- Operations: ``.../operations/{id}`` get (the generated client polls ``/ui/{name}``, its first
  binding for GetOperation; ``/v1/{name}`` works too).

Paths, bodies and JSON field names are the ones the generated REST transports
(``aiplatform_v1/services/*/transports/rest_base.py``) send and parse. Behaviour follows the
Vertex documentation where a client could notice it: resource names come back with the project
*number*; a new model's first version carries the ``default`` alias; an alias is unique within a
model (giving it to a new version takes it from the old one); ``parentModel`` adds version
``max + 1``; long-running operations are not done when created and finish when polled;
``deployModel`` applies the request's ``trafficSplit`` (key ``"0"`` = the model being deployed),
which must name only deployed models and sum to 100; a deployed model records the model name
without version plus ``modelVersionId``. Errors use the Google JSON error shape
(``{"error": {"code", "message", "status"}}``), which the client turns into
``google.api_core.exceptions``.

Every request is recorded (method, path, query, headers, JSON body, RPC name). ``fail`` makes an
RPC answer with an HTTP error; ``fail_operation`` makes a long-running RPC's operation end with an
error status (nothing is created).

    with VertexApiServer() as server:
        aiplatform.init(project=server.project, location="us-central1", api_transport="rest",
                        api_endpoint=server.url, credentials=AnonymousCredentials())
        ...
        server.calls("UploadModel")
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import json
import re
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Optional
from urllib.parse import parse_qs, unquote, urlparse

from tests.fakes.http_server import FakeHttpServer

TYPE = "type.googleapis.com/google.cloud.aiplatform.v1."
# https://cloud.google.com/vertex-ai/docs/model-registry/model-alias: [a-z][a-zA-Z0-9-]{0,126}[a-z0-9]
ALIAS_RE = re.compile(r"[a-z][a-zA-Z0-9-]{0,126}[a-z0-9]")
LABEL_RE = re.compile(r"[a-z0-9_-]{0,63}")
LABEL_KEY_RE = re.compile(r"[a-z][a-z0-9_-]{0,62}")
STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
}
# google.rpc.Code of an operation's error
RPC_CODE = {
    "INVALID_ARGUMENT": 3,
    "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
}


@dataclasses.dataclass
class Request:
    method: str
    path: str  # unquoted, e.g. /v1/projects/p/locations/l/models/1@2
    query: dict
    headers: dict
    body: object  # parsed JSON or None
    rpc: str = ""  # e.g. "UploadModel"; "" when no route matched


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _now() -> str:
    return (
        datetime.datetime.now(datetime.timezone.utc)
        .isoformat(timespec="microseconds")
        .replace("+00:00", "Z")
    )


def _parse_filter(expr: Optional[str]) -> list:
    """AIP-160 conjunctions this stand-in understands: ``field="v"``, ``field!="v"``,
    ``labels.key="v"``, ``labels.key:*``, joined by ``AND``. Anything else is INVALID_ARGUMENT."""
    if not expr or not expr.strip():
        return []
    terms = []
    for part in re.split(r"\s+AND\s+", expr.strip()):
        m = re.fullmatch(r'\s*([A-Za-z_][\w.-]*)\s*(=|!=|:)\s*("(?:[^"\\]|\\.)*"|[^\s"]+)\s*', part)
        if not m:
            raise ApiError(400, f"Unsupported or invalid filter: {expr!r}")
        field, op, value = m.groups()
        if value.startswith('"'):
            value = json.loads(value)
        if op == ":" and value != "*":
            raise ApiError(400, f"Unsupported or invalid filter: {expr!r}")
        terms.append((field, op, value))
    return terms


def _field(resource: dict, field: str):
    if field.startswith("labels."):
        return (resource.get("labels") or {}).get(field[len("labels.") :])
    camel = re.sub(r"_([a-z])", lambda m: m.group(1).upper(), field)
    if camel not in ("displayName", "name", "description"):
        raise ApiError(400, f"Unsupported filter field: {field!r}")
    return resource.get(camel)


def _matches(resource: dict, terms: list) -> bool:
    for field, op, value in terms:
        actual = _field(resource, field)
        if op == "=" and actual != value:
            return False
        if op == "!=" and actual == value:
            return False
        if op == ":" and actual is None:
            return False
    return True


def _validate_labels(labels: dict) -> None:
    for k, v in (labels or {}).items():
        if not LABEL_KEY_RE.fullmatch(k) or not isinstance(v, str) or not LABEL_RE.fullmatch(v):
            raise ApiError(
                400,
                f"Invalid label {k!r}: {v!r}; keys and values may hold lowercase letters, "
                "digits, '_' and '-' (at most 63 characters, keys start with a letter)",
            )


class VertexApiServer(FakeHttpServer):
    """In-memory Vertex AI v1 API (one project) on 127.0.0.1:<free port>, served from a thread."""

    thread_name = "fake-vertex-api"
    poll_interval = 0.05
    content_type = "application/json; charset=UTF-8"

    def __init__(
        self,
        project: str = "demo-project",
        project_number: str = "123456789012",
        page_size: int = 100,
        polls_until_done: int = 1,
    ):
        self.project = project
        self.project_number = project_number
        self.page_size = (
            page_size  # largest page returned; small values exercise the client's paging
        )
        self.polls_until_done = polls_until_done
        self.requests: list = []
        self.models: dict = {}  # (location, model id) -> {"versions": {version id: Model json}}
        self.endpoints: dict = {}  # (location, endpoint id) -> Endpoint json
        self.operations: dict = {}  # name -> {"op": Operation json, "polls": int, "finish": callable}
        self.fail: dict = {}  # rpc name -> (http status, message)
        self.fail_operation: dict = {}  # rpc name -> (google.rpc status name, message)
        self.custom_jobs: dict = {}  # (location, job id) -> CustomJob json
        # how a CustomJob ends once it has run (a get after RUNNING): (JobState name, error message);
        # None: it runs until cancelled
        self.custom_job_outcome: tuple = ("JOB_STATE_SUCCEEDED", "")
        self._ids = itertools.count(1)
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ assertions

    def calls(self, rpc: str) -> list:
        """Recorded requests of one RPC (``UploadModel``, ``DeployModel``, ``GetOperation``, ...)."""
        return [r for r in self.requests if r.rpc == rpc]

    def model_versions(self, location: str, display_name: str) -> list:
        """Every version (Model json) of the models with this display name, oldest first."""
        with self._lock:
            return [
                v
                for (loc, _), m in self.models.items()
                if loc == location
                for v in m["versions"].values()
                if v["displayName"] == display_name
            ]

    def endpoint(self, location: str, display_name: str) -> Optional[dict]:
        with self._lock:
            found = [
                e
                for (loc, _), e in self.endpoints.items()
                if loc == location and e["displayName"] == display_name
            ]
        return found[0] if found else None

    # ------------------------------------------------------------------ dispatch

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        parsed = urlparse(h.path)
        query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        body: object = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
        req = Request(
            method, unquote(parsed.path), query, {k.lower(): v for k, v in h.headers.items()}, body
        )
        with self._lock:
            self.requests.append(req)
        try:
            payload = self._route(req)
            status = 200
        except ApiError as exc:
            status = exc.status
            payload = {
                "error": {
                    "code": exc.status,
                    "message": exc.message,
                    "status": STATUS.get(exc.status, "UNKNOWN"),
                }
            }
        self._send(h, status, payload)

    def _route(self, req: Request) -> dict:
        loc = r"/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
        routes: list = [
            ("GET", rf"{loc}/models", "ListModels", self._list_models),
            ("POST", rf"{loc}/models:upload", "UploadModel", self._upload_model),
            (
                "GET",
                rf"{loc}/models/(?P<model>[^/:]+):listVersions",
                "ListModelVersions",
                self._list_versions,
            ),
            (
                "POST",
                rf"{loc}/models/(?P<model>[^/:]+):mergeVersionAliases",
                "MergeVersionAliases",
                self._merge_aliases,
            ),
            ("GET", rf"{loc}/models/(?P<model>[^/:]+)", "GetModel", self._get_model),
            ("GET", rf"{loc}/endpoints", "ListEndpoints", self._list_endpoints),
            ("POST", rf"{loc}/endpoints", "CreateEndpoint", self._create_endpoint),
            ("GET", rf"{loc}/endpoints/(?P<endpoint>[^/:]+)", "GetEndpoint", self._get_endpoint),
            ("PATCH", rf"{loc}/endpoints/(?P<endpoint>[^/:]+)", "UpdateEndpoint", self._update_endpoint),
            (
                "POST",
                rf"{loc}/endpoints/(?P<endpoint>[^/:]+):deployModel",
                "DeployModel",
                self._deploy_model,
            ),
            ("POST", rf"{loc}/customJobs", "CreateCustomJob", self._create_custom_job),
            ("GET", rf"{loc}/customJobs/(?P<job>[^/:]+)", "GetCustomJob", self._get_custom_job),
            ("POST", rf"{loc}/customJobs/(?P<job>[^/:]+):cancel", "CancelCustomJob", self._cancel_custom_job),
            # the generated operations client polls the first matching binding, which is /ui/...
            (
                "GET",
                rf"/(?:ui|v1){loc[3:]}(?:/[^:]+)?/operations/(?P<operation>[^/:]+)",
                "GetOperation",
                self._get_operation,
            ),
        ]
        for method, pattern, rpc, fn in routes:
            match = re.fullmatch(pattern, req.path)
            if method != req.method or not match:
                continue
            req.rpc = rpc
            args = match.groupdict()
            if args["project"] not in (self.project, self.project_number):
                raise ApiError(
                    403,
                    f"Permission denied on resource project {args['project']} (or it may not exist).",
                )
            if rpc in self.fail:
                raise ApiError(*self.fail[rpc])
            with self._lock:
                return fn(req, **args)
        raise ApiError(501, f"the Vertex AI stand-in does not implement {req.method} {req.path}")

    # ------------------------------------------------------------------ helpers

    def _parent(self, location: str) -> str:
        return f"projects/{self.project_number}/locations/{location}"

    def _new_id(self) -> str:
        # Vertex ids are large decimal numbers; keep them distinct and deterministic
        return str(1000000000000000000 + next(self._ids))

    def _page(self, items: list, key: str, q: dict) -> dict:
        size = min(int(q.get("pageSize") or self.page_size), self.page_size)
        start = int(q.get("pageToken") or 0)
        out = {key: items[start : start + size]}
        if start + size < len(items):
            out["nextPageToken"] = str(start + size)
        return out

    def _model(self, location: str, model_id: str) -> dict:
        model = self.models.get((location, model_id))
        if model is None:
            raise ApiError(
                404, f'The Model "{self._parent(location)}/models/{model_id}" does not exist.'
            )
        return model

    def _version(self, location: str, ref: str) -> dict:
        """Model json of ``<id>``, ``<id>@<version id>`` or ``<id>@<alias>`` (no suffix: the default version)."""
        model_id, _, version = ref.partition("@")
        model = self._model(location, model_id)
        version = version or "default"
        for v in model["versions"].values():
            if v["versionId"] == version or version in v["versionAliases"]:
                return v
        raise ApiError(404, f'The Model "{self._parent(location)}/models/{ref}" does not exist.')

    def _operation(
        self, resource: str, rpc: str, metadata_type: str, finish: Callable[[], tuple]
    ) -> dict:
        """A long-running operation, not done yet; ``finish() -> (response type, response)`` runs when it is."""
        name = f"{resource}/operations/{self._new_id()}"
        op = {
            "name": name,
            "metadata": {
                "@type": TYPE + metadata_type,
                "genericMetadata": {"createTime": _now(), "updateTime": _now()},
            },
        }
        self.operations[name] = {"op": op, "polls": 0, "finish": finish, "rpc": rpc}
        return dict(op)

    def _get_operation(self, req: Request, project: str, location: str, operation: str) -> dict:
        name = re.sub(r"^/(?:ui|v1)/projects/[^/]+", f"projects/{self.project_number}", req.path)
        entry = self.operations.get(name)
        if entry is None:
            raise ApiError(404, f"Operation {name} does not exist.")
        op = entry["op"]
        if not op.get("done"):
            entry["polls"] += 1
            if entry["polls"] >= self.polls_until_done:
                op["done"] = True
                op["metadata"]["genericMetadata"]["updateTime"] = _now()
                if entry["rpc"] in self.fail_operation:
                    status, message = self.fail_operation[entry["rpc"]]
                    op["error"] = {"code": RPC_CODE.get(status, 2), "message": message}
                else:
                    rtype, response = entry["finish"]()
                    op["response"] = {"@type": TYPE + rtype, **response}
        return op

    # ------------------------------------------------------------------ ModelService

    def _list_models(self, req: Request, project: str, location: str) -> dict:
        terms = _parse_filter(req.query.get("filter"))
        defaults = [self._version(location, mid) for (loc, mid) in self.models if loc == location]
        return self._page([m for m in defaults if _matches(m, terms)], "models", req.query)

    def _list_versions(self, req: Request, project: str, location: str, model: str) -> dict:
        terms = _parse_filter(req.query.get("filter"))
        versions = list(self._model(location, model)["versions"].values())
        return self._page([v for v in versions if _matches(v, terms)], "models", req.query)

    def _get_model(self, req: Request, project: str, location: str, model: str) -> dict:
        return self._version(location, model)

    def _upload_model(self, req: Request, project: str, location: str) -> dict:
        body = req.body if isinstance(req.body, dict) else {}
        spec = body.get("model") or {}
        if not spec.get("displayName"):
            raise ApiError(400, "Model.display_name is required.")
        image = (spec.get("containerSpec") or {}).get("imageUri")
        if spec.get("artifactUri") is not None and not image:
            raise ApiError(400, "Model.container_spec.image_uri is required for a custom model.")
        if spec.get("artifactUri") and not spec["artifactUri"].startswith("gs://"):
            raise ApiError(
                400,
                f"Model.artifact_uri must be a Cloud Storage URI (gs://...), got {spec['artifactUri']!r}.",
            )
        _validate_labels(spec.get("labels"))
        aliases = list(spec.get("versionAliases") or [])
        for alias in aliases:
            if not ALIAS_RE.fullmatch(alias):
                raise ApiError(
                    400,
                    f"Invalid version alias {alias!r}: it must match [a-z][a-zA-Z0-9-]{{0,126}}[a-z0-9].",
                )
        if len(set(aliases)) != len(aliases):
            raise ApiError(400, f"Duplicate version aliases: {aliases}.")
        parent_model = body.get("parentModel")
        if parent_model:
            m = re.fullmatch(r"projects/([^/]+)/locations/([^/]+)/models/([^/@]+)", parent_model)
            if (
                not m
                or m.group(1) not in (self.project, self.project_number)
                or m.group(2) != location
            ):
                raise ApiError(
                    400, f"Invalid parent_model {parent_model!r} for location {location}."
                )
            model_id = m.group(3)
            self._model(location, model_id)  # 404 when the parent does not exist
        else:
            model_id = req.query.get("modelId") or body.get("modelId") or self._new_id()
            if (location, model_id) in self.models:
                raise ApiError(
                    409, f"Model {self._parent(location)}/models/{model_id} already exists."
                )
        resource = f"{self._parent(location)}/models/{model_id}"

        def finish() -> tuple:
            model = self.models.setdefault((location, model_id), {"versions": {}})
            versions = model["versions"]
            version_id = str(max((int(v) for v in versions), default=0) + 1)
            new_aliases = list(aliases)
            if not versions and "default" not in new_aliases:
                new_aliases.append("default")  # a model's first version is its default
            for other in versions.values():  # an alias names one version of a model
                other["versionAliases"] = [
                    a for a in other["versionAliases"] if a not in new_aliases
                ]
            now = _now()
            versions[version_id] = {
                **{
                    k: v
                    for k, v in spec.items()
                    if k not in ("name", "versionId", "versionAliases")
                },
                "name": resource,
                "versionId": version_id,
                "versionAliases": new_aliases,
                "createTime": versions["1"]["createTime"] if versions else now,
                "updateTime": now,
                "versionCreateTime": now,
                "versionUpdateTime": now,
                "supportedDeploymentResourcesTypes": ["DEDICATED_RESOURCES"],
                "etag": f"etag-{model_id}-{version_id}",
            }
            return "UploadModelResponse", {"model": resource, "modelVersionId": version_id}

        return self._operation(resource, "UploadModel", "UploadModelOperationMetadata", finish)

    def _merge_aliases(self, req: Request, project: str, location: str, model: str) -> dict:
        target = self._version(location, model)
        changes = list((req.body or {}).get("versionAliases") or [])
        added = [a for a in changes if not a.startswith("-")]
        removed = [a[1:] for a in changes if a.startswith("-")]
        for alias in added + removed:
            if not ALIAS_RE.fullmatch(alias):
                raise ApiError(400, f"Invalid version alias {alias!r}.")
        if "default" in removed:
            raise ApiError(
                400, "The default alias cannot be removed; give it to another version instead."
            )
        for other in self._model(location, model.partition("@")[0])["versions"].values():
            if other is not target:
                other["versionAliases"] = [a for a in other["versionAliases"] if a not in added]
        target["versionAliases"] = [a for a in target["versionAliases"] if a not in removed]
        target["versionAliases"] += [a for a in added if a not in target["versionAliases"]]
        target["versionUpdateTime"] = _now()
        return target

    # ------------------------------------------------------------------ EndpointService

    def _endpoint(self, location: str, endpoint_id: str) -> dict:
        endpoint = self.endpoints.get((location, endpoint_id))
        if endpoint is None:
            raise ApiError(
                404,
                f'The Endpoint "{self._parent(location)}/endpoints/{endpoint_id}" does not exist.',
            )
        return endpoint

    def _list_endpoints(self, req: Request, project: str, location: str) -> dict:
        terms = _parse_filter(req.query.get("filter"))
        found = [
            e for (loc, _), e in self.endpoints.items() if loc == location and _matches(e, terms)
        ]
        return self._page(found, "endpoints", req.query)

    def _get_endpoint(self, req: Request, project: str, location: str, endpoint: str) -> dict:
        return self._endpoint(location, endpoint)

    def _create_endpoint(self, req: Request, project: str, location: str) -> dict:
        spec = req.body if isinstance(req.body, dict) else {}
        if not spec.get("displayName"):
            raise ApiError(400, "Endpoint.display_name is required.")
        _validate_labels(spec.get("labels"))
        endpoint_id = req.query.get("endpointId") or self._new_id()
        if (location, endpoint_id) in self.endpoints:
            raise ApiError(409, f"Endpoint {endpoint_id} already exists.")
        resource = f"{self._parent(location)}/endpoints/{endpoint_id}"

        def finish() -> tuple:
            now = _now()
            endpoint = {
                **spec,
                "name": resource,
                "deployedModels": [],
                "trafficSplit": {},
                "createTime": now,
                "updateTime": now,
                "etag": f"etag-{endpoint_id}",
            }
            self.endpoints[(location, endpoint_id)] = endpoint
            return "Endpoint", endpoint

        return self._operation(
            resource, "CreateEndpoint", "CreateEndpointOperationMetadata", finish
        )

    def _deploy_model(self, req: Request, project: str, location: str, endpoint: str) -> dict:
        target = self._endpoint(location, endpoint)
        body = req.body if isinstance(req.body, dict) else {}
        spec = body.get("deployedModel") or {}
        m = re.fullmatch(
            r"projects/([^/]+)/locations/([^/]+)/models/([^/]+)", spec.get("model") or ""
        )
        if not m or m.group(1) not in (self.project, self.project_number) or m.group(2) != location:
            raise ApiError(
                400,
                f"DeployedModel.model must be a model of {self._parent(location)}, got {spec.get('model')!r}.",
            )
        version = self._version(location, m.group(3))
        if "DEDICATED_RESOURCES" in version["supportedDeploymentResourcesTypes"]:
            machine = ((spec.get("dedicatedResources") or {}).get("machineSpec") or {}).get(
                "machineType"
            )
            if not machine:
                raise ApiError(
                    400,
                    "This model needs dedicated resources: DeployedModel.dedicated_resources."
                    "machine_spec.machine_type is required.",
                )
        split = {k: int(v) for k, v in (body.get("trafficSplit") or {}).items()}
        existing = {d["id"] for d in target["deployedModels"]}
        unknown = set(split) - existing - {"0"}
        if unknown:
            raise ApiError(
                400,
                f"traffic_split names deployed models that are not on the endpoint: {sorted(unknown)}.",
            )
        if split and sum(split.values()) != 100:
            raise ApiError(400, f"The traffic_split percentages must add up to 100, got {split}.")
        if any(v < 0 for v in split.values()):
            raise ApiError(400, f"traffic_split percentages must not be negative: {split}.")
        model_id = m.group(3).partition("@")[0]
        resource = target["name"]

        def finish() -> tuple:
            deployed_id = self._new_id()
            deployed = {
                **spec,
                "id": deployed_id,
                "model": f"{self._parent(location)}/models/{model_id}",
                "modelVersionId": version["versionId"],
                "createTime": _now(),
            }
            deployed.setdefault("displayName", version["displayName"])
            target["deployedModels"].append(deployed)
            if split:
                target["trafficSplit"] = {
                    (deployed_id if k == "0" else k): v for k, v in split.items()
                }
            target["updateTime"] = _now()
            version.setdefault("deployedModels", []).append(
                {"endpoint": resource, "deployedModelId": deployed_id}
            )
            return "DeployModelResponse", {"deployedModel": deployed}

        return self._operation(resource, "DeployModel", "DeployModelOperationMetadata", finish)

    def _update_endpoint(self, req: Request, project: str, location: str, endpoint: str) -> dict:
        """UpdateEndpoint (not long-running): only the fields in ``updateMask``; a traffic split must
        name deployed models only, without negatives, and sum to 100 (or be empty)."""
        target = self._endpoint(location, endpoint)
        body = req.body if isinstance(req.body, dict) else {}
        mask = {re.sub(r"_([a-z])", lambda m: m.group(1).upper(), f.strip())
                for f in (req.query.get("updateMask") or "").split(",") if f.strip()}
        if not mask:
            raise ApiError(400, "update_mask is required.")
        unknown = mask - {"trafficSplit", "displayName", "description", "labels"}
        if unknown:
            raise ApiError(400, f"update_mask names fields this stand-in does not update: {sorted(unknown)}.")
        if "trafficSplit" in mask:
            split = {k: int(v) for k, v in (body.get("trafficSplit") or {}).items()}
            deployed = {d["id"] for d in target["deployedModels"]}
            if set(split) - deployed:
                raise ApiError(400, f"traffic_split names deployed models that are not on the endpoint: "
                                    f"{sorted(set(split) - deployed)}.")
            if any(v < 0 for v in split.values()):
                raise ApiError(400, f"traffic_split percentages must not be negative: {split}.")
            if split and sum(split.values()) != 100:
                raise ApiError(400, f"The traffic_split percentages must add up to 100, got {split}.")
            target["trafficSplit"] = {k: v for k, v in split.items() if v}  # 0 % and absent both mean no traffic
        if "labels" in mask:
            _validate_labels(body.get("labels"))
        for field in mask - {"trafficSplit"}:
            target[field] = body.get(field)
        target["updateTime"] = _now()
        return target

    # ------------------------------------------------------------------ JobService: CustomJobs
    # A job is PENDING when created, RUNNING at its first get and ends at the next one as
    # ``custom_job_outcome`` says; cancel makes it CANCELLING, then CANCELLED at the next get.

    def _custom_job(self, location: str, job_id: str) -> dict:
        job = self.custom_jobs.get((location, job_id))
        if job is None:
            raise ApiError(
                404, f'The CustomJob "{self._parent(location)}/customJobs/{job_id}" does not exist.'
            )
        return job

    def _create_custom_job(self, req: Request, project: str, location: str) -> dict:
        spec = req.body if isinstance(req.body, dict) else {}
        if not spec.get("displayName"):
            raise ApiError(400, "CustomJob.display_name is required.")
        _validate_labels(spec.get("labels"))
        job_spec = spec.get("jobSpec") or {}
        pools = job_spec.get("workerPoolSpecs") or []
        if not pools:
            raise ApiError(400, "CustomJob.job_spec.worker_pool_specs must not be empty.")
        for i, pool in enumerate(pools):
            machine = pool.get("machineSpec") or {}
            if not machine.get("machineType"):
                raise ApiError(400, f"worker_pool_specs[{i}].machine_spec.machine_type is required.")
            if int(machine.get("acceleratorCount") or 0) and not machine.get("acceleratorType"):
                raise ApiError(400, f"worker_pool_specs[{i}].machine_spec.accelerator_type is required "
                                    "with accelerator_count.")
            if not (pool.get("containerSpec") or {}).get("imageUri"):
                raise ApiError(400, f"worker_pool_specs[{i}].container_spec.image_uri is required.")
            if int(pool.get("replicaCount") or 0) < 1:
                raise ApiError(400, f"worker_pool_specs[{i}].replica_count must be at least 1.")
        if int(pools[0].get("replicaCount") or 0) != 1:
            raise ApiError(400, "The first worker pool (the chief) must have exactly one replica.")
        out = (job_spec.get("baseOutputDirectory") or {}).get("outputUriPrefix", "")
        if out and not out.startswith("gs://"):
            raise ApiError(400, f"base_output_directory must be a Cloud Storage URI, got {out!r}.")
        job_id = self._new_id()
        now = _now()
        job = {**spec, "name": f"{self._parent(location)}/customJobs/{job_id}",
               "state": "JOB_STATE_PENDING", "createTime": now, "updateTime": now}
        self.custom_jobs[(location, job_id)] = job
        return job

    def _get_custom_job(self, req: Request, project: str, location: str, job: str) -> dict:
        found = self._custom_job(location, job)
        state, now = found["state"], _now()
        if state == "JOB_STATE_PENDING":
            found.update(state="JOB_STATE_RUNNING", startTime=now, updateTime=now)
        elif state == "JOB_STATE_CANCELLING" or (state == "JOB_STATE_RUNNING" and self.custom_job_outcome):
            end, message = (("JOB_STATE_CANCELLED", "CANCELED") if state == "JOB_STATE_CANCELLING"
                            else self.custom_job_outcome)
            found.update(state=end, endTime=now, updateTime=now)
            if end != "JOB_STATE_SUCCEEDED":
                found["error"] = {"code": 1 if end == "JOB_STATE_CANCELLED" else 13, "message": message}
        return found

    def _cancel_custom_job(self, req: Request, project: str, location: str, job: str) -> dict:
        found = self._custom_job(location, job)
        if found["state"] in ("JOB_STATE_PENDING", "JOB_STATE_RUNNING"):
            found.update(state="JOB_STATE_CANCELLING", updateTime=_now())
        return {}
